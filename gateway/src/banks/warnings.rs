//! Early-warning rules (domain.md, "Early-warning rules"): silence on an account becomes a
//! warning lead, routed like any lead, once per rule, subject and period.
//!
//! Built: R2 — no payroll through the dedicated wage account for month M by the end of M+1.

use jiff::civil::Date;
use wagelink_proto::v1 as pb;

use crate::store::{Store, StoreError};

/// A warning to raise: the lead, and what makes it unique.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    pub rule: &'static str,
    /// The project code (or the account number when the account names no project).
    pub subject: String,
    /// `YYYY-MM` for monthly rules.
    pub period: String,
    pub lead: pb::Lead,
}

/// The month two before `today`'s: the latest month M whose M+1 has ended.
pub fn r2_month(today: Date) -> Date {
    let first = today.first_of_month();
    first
        .checked_sub(jiff::Span::new().months(2))
        .unwrap_or(first)
}

fn industry(name: &str) -> pb::Industry {
    match name {
        "housing-municipal" => pb::Industry::HousingMunicipal,
        "transport" => pb::Industry::Transport,
        "water" => pb::Industry::Water,
        "railway" => pb::Industry::Railway,
        "civil-aviation" => pb::Industry::CivilAviation,
        "other" => pb::Industry::Other,
        _ => pb::Industry::Unspecified,
    }
}

/// The warnings due on `today` that were not raised yet.
pub async fn due(store: &Store, today: Date) -> Result<Vec<Warning>, StoreError> {
    let mut out = Vec::new();
    let month = r2_month(today);
    let period = month.strftime("%Y-%m").to_string();
    let end_of_month = month.last_of_month();
    for a in store.open_wage_accounts().await? {
        let Ok(opened) = a.opened_on.parse::<Date>() else {
            continue;
        };
        if opened > end_of_month {
            continue;
        }
        let subject = if a.project_code.is_empty() {
            a.account_number.clone()
        } else {
            a.project_code.clone()
        };
        if store.payroll_paid(&a.account_number, &period).await?
            || store.warning_raised("R2", &subject, &period).await?
        {
            continue;
        }
        let project = if a.project_code.is_empty() {
            None
        } else {
            store.project(&a.project_code).await?
        };
        let (project_name, project_industry) = project
            .map(|(name, ind)| (name, industry(&ind)))
            .unwrap_or_default();
        let next = month
            .checked_add(jiff::Span::new().months(1))
            .unwrap_or(month);
        out.push(Warning {
            rule: "R2",
            subject,
            period: period.clone(),
            lead: pb::Lead {
                channel: pb::LeadChannel::MonitoringWarning as i32,
                lead_type: pb::LeadType::RiskWarning as i32,
                region_code: a.region.clone(),
                occurred_on: today.to_string(),
                project_name,
                project_code: a.project_code.clone(),
                project_industry: project_industry as i32,
                sector: pb::Sector::Construction as i32,
                employer_uscc: a.contractor_uscc.clone(),
                description: format!(
                    "R2: no payroll through the dedicated wage account {} ({}) for {period} by the end of {}",
                    a.account_number,
                    a.bank,
                    next.strftime("%Y-%m")
                ),
                warning_rule: "R2".into(),
                ..Default::default()
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn r2_looks_at_the_month_whose_next_month_has_ended() {
        assert_eq!(r2_month(date(2026, 11, 28)), date(2026, 9, 1));
        assert_eq!(r2_month(date(2026, 11, 1)), date(2026, 9, 1));
        assert_eq!(r2_month(date(2026, 1, 15)), date(2025, 11, 1));
        assert_eq!(r2_month(date(2026, 2, 28)), date(2025, 12, 1));
    }
}
