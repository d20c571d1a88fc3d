//! Early-warning rules (domain.md, "Early-warning rules"): silence or strain on an account, or
//! repeated complaints about a project, becomes a warning lead routed like any lead, once per
//! rule, subject and period.
//!
//! - R1: no labour cost credited to a wage account for `r1_cycle_days` (the agreed cycle) since
//!   the last credit (or the opening); period = the date of that last credit.
//! - R2: no payroll through the wage account for month M by the end of M+1; period = M.
//! - R3: available balance (latest CLAV / ITAV / CLBD report) below the expected monthly
//!   payroll (the mean of the last three payrolls); period = the balance's month.
//! - R7: a guarantee letter expiring within `r7_expiry_days` (period = letter number); a deposit
//!   drawn and not topped up within `r7_topup_working_days` working days (period = the draw's
//!   date).
//! - R8: `r8_leads` or more leads about one project within `r8_window_days`; period = the month.

use jiff::civil::Date;
use prost::Message;
use serde::{Deserialize, Serialize};
use wagelink_proto::v1 as pb;

use crate::cases::calendar::Calendar;
use crate::cases::clock::china_date;
use crate::store::{AccountRow, Store, StoreError};

/// The thresholds of the rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarningRules {
    /// R1: days within which labour cost must be credited again. 0 turns R1 off. Default 31.
    pub r1_cycle_days: u32,
    /// R2 on or off. Default on.
    pub r2: bool,
    /// R3 on or off. Default on.
    pub r3: bool,
    /// R7: warn this many days before a guarantee letter expires. 0 turns it off. Default 30.
    pub r7_expiry_days: u32,
    /// R7: working days within which a drawn deposit must be topped up. 0 turns it off.
    /// Default 10.
    pub r7_topup_working_days: u32,
    /// R8: this many leads about one project … Default 3; 0 turns R8 off.
    pub r8_leads: u32,
    /// … within this many days. Default 90.
    pub r8_window_days: u32,
}

impl Default for WarningRules {
    fn default() -> Self {
        Self {
            r1_cycle_days: 31,
            r2: true,
            r3: true,
            r7_expiry_days: 30,
            r7_topup_working_days: 10,
            r8_leads: 3,
            r8_window_days: 90,
        }
    }
}

/// A warning to raise: the lead, and what makes it unique.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    pub rule: &'static str,
    /// The project code (or the account number when the account names no project).
    pub subject: String,
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

fn day(unix: i64) -> Date {
    china_date(unix)
}

struct Found<'a> {
    store: &'a Store,
    today: Date,
    out: Vec<Warning>,
}

impl Found<'_> {
    /// Adds a warning about an account unless it was raised before.
    async fn add(
        &mut self,
        rule: &'static str,
        a: &AccountRow,
        period: String,
        lead_type: pb::LeadType,
        text: String,
    ) -> Result<(), StoreError> {
        let subject = if a.project_code.is_empty() {
            a.account_number.clone()
        } else {
            a.project_code.clone()
        };
        self.add_subject(
            rule,
            subject,
            &a.region,
            &a.project_code,
            &a.contractor_uscc,
            period,
            lead_type,
            text,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn add_subject(
        &mut self,
        rule: &'static str,
        subject: String,
        region: &str,
        project_code: &str,
        contractor_uscc: &str,
        period: String,
        lead_type: pb::LeadType,
        text: String,
    ) -> Result<(), StoreError> {
        if self.store.warning_raised(rule, &subject, &period).await? {
            return Ok(());
        }
        let project = if project_code.is_empty() {
            None
        } else {
            self.store.project(project_code).await?
        };
        let (project_name, project_industry) = project
            .map(|(name, ind)| (name, industry(&ind)))
            .unwrap_or_default();
        self.out.push(Warning {
            rule,
            subject,
            period,
            lead: pb::Lead {
                channel: pb::LeadChannel::MonitoringWarning as i32,
                lead_type: lead_type as i32,
                region_code: region.to_owned(),
                occurred_on: self.today.to_string(),
                project_name,
                project_code: project_code.to_owned(),
                project_industry: project_industry as i32,
                sector: pb::Sector::Construction as i32,
                employer_uscc: contractor_uscc.to_owned(),
                description: format!("{rule}: {text}"),
                warning_rule: rule.into(),
                ..Default::default()
            },
        });
        Ok(())
    }
}

/// The warnings due on `today` that were not raised yet.
pub async fn due(
    store: &Store,
    today: Date,
    rules: &WarningRules,
) -> Result<Vec<Warning>, StoreError> {
    let mut f = Found {
        store,
        today,
        out: Vec::new(),
    };
    let risk = pb::LeadType::RiskWarning;
    let month = r2_month(today);
    let r2_period = month.strftime("%Y-%m").to_string();
    for a in store.open_accounts("wage-account").await? {
        let Ok(opened) = a.opened_on.parse::<Date>() else {
            continue;
        };
        // R1: labour cost not credited within the agreed cycle.
        if rules.r1_cycle_days > 0 {
            let last = store
                .latest_events(&a.account_number, &["labour-cost-credited"], 1)
                .await?
                .first()
                .map(|e| day(e.0))
                .unwrap_or(opened);
            let limit = last
                .checked_add(jiff::Span::new().days(i64::from(rules.r1_cycle_days)))
                .unwrap_or(last);
            if today > limit {
                f.add(
                    "R1",
                    &a,
                    last.to_string(),
                    risk,
                    format!(
                        "no labour cost credited to the dedicated wage account {} ({}) since {last}, more than {} days",
                        a.account_number, a.bank, rules.r1_cycle_days
                    ),
                )
                .await?;
            }
        }
        // R2: no payroll for month M by the end of M+1.
        if rules.r2
            && opened <= month.last_of_month()
            && !store.payroll_paid(&a.account_number, &r2_period).await?
        {
            let next = month
                .checked_add(jiff::Span::new().months(1))
                .unwrap_or(month);
            f.add(
                "R2",
                &a,
                r2_period.clone(),
                risk,
                format!(
                    "no payroll through the dedicated wage account {} ({}) for {r2_period} by the end of {}",
                    a.account_number,
                    a.bank,
                    next.strftime("%Y-%m")
                ),
            )
            .await?;
        }
        // R3: available balance below the expected monthly payroll.
        if rules.r3 {
            let payrolls = store
                .latest_events(&a.account_number, &["payroll-paid"], 3)
                .await?;
            let balances = store
                .latest_events(&a.account_number, &["balance-reported"], 10)
                .await?;
            let available = balances.iter().find(|(_, _, _, bytes)| {
                pb::AccountEvent::decode(bytes.as_slice())
                    .ok()
                    .and_then(|e| match e.kind {
                        Some(pb::account_event::Kind::BalanceReported(b)) => Some(b.balance_type),
                        _ => None,
                    })
                    .is_some_and(|t| ["CLAV", "ITAV", "CLBD", "ITBD"].contains(&t.as_str()))
            });
            if let (false, Some((at, _, balance, _))) = (payrolls.is_empty(), available) {
                let expected = payrolls.iter().map(|p| p.2).sum::<i64>() / payrolls.len() as i64;
                if *balance < expected {
                    f.add(
                        "R3",
                        &a,
                        day(*at).strftime("%Y-%m").to_string(),
                        risk,
                        format!(
                            "the available balance of the dedicated wage account {} ({}) is {} fen on {}, below the expected monthly payroll of {expected} fen",
                            a.account_number,
                            a.bank,
                            balance,
                            day(*at)
                        ),
                    )
                    .await?;
                }
            }
        }
    }
    for a in store.open_accounts("guarantee-deposit").await? {
        // R7: a guarantee letter expiring soon.
        if rules.r7_expiry_days > 0 {
            let letters = store
                .latest_events(
                    &a.account_number,
                    &["guarantee-letter-issued", "guarantee-letter-expiring"],
                    50,
                )
                .await?;
            for (_, _, _, bytes) in letters {
                let Ok(e) = pb::AccountEvent::decode(bytes.as_slice()) else {
                    continue;
                };
                let (number, valid_to) = match e.kind {
                    Some(pb::account_event::Kind::GuaranteeLetterIssued(l)) => {
                        (l.letter_number, l.valid_to)
                    }
                    Some(pb::account_event::Kind::GuaranteeLetterExpiring(l)) => {
                        (l.letter_number, l.valid_to)
                    }
                    _ => continue,
                };
                let Ok(until) = valid_to.parse::<Date>() else {
                    continue;
                };
                let warn_from = until
                    .checked_sub(jiff::Span::new().days(i64::from(rules.r7_expiry_days)))
                    .unwrap_or(until);
                if today >= warn_from && today <= until {
                    f.add(
                        "R7",
                        &a,
                        format!("letter {number}"),
                        risk,
                        format!(
                            "the wage guarantee letter {number} on deposit account {} ({}) expires on {until}",
                            a.account_number, a.bank
                        ),
                    )
                    .await?;
                }
            }
        }
        // R7: a deposit drawn and not topped up in time.
        if rules.r7_topup_working_days > 0 {
            let moves = store
                .latest_events(
                    &a.account_number,
                    &["deposit-drawn", "deposit-topped-up", "deposit-stored"],
                    1,
                )
                .await?;
            if let Some((at, kind, amount, _)) = moves.first()
                && kind == "deposit-drawn"
            {
                let drawn = day(*at);
                let limit =
                    Calendar::official().add_working_days(drawn, rules.r7_topup_working_days);
                if today > limit {
                    f.add(
                        "R7",
                        &a,
                        format!("drawn {drawn}"),
                        risk,
                        format!(
                            "{amount} fen were drawn from the wage guarantee deposit {} ({}) on {drawn} and not topped up within {} working days",
                            a.account_number, a.bank, rules.r7_topup_working_days
                        ),
                    )
                    .await?;
                }
            }
        }
    }
    // R8: many leads about one project.
    if rules.r8_leads > 0 {
        let since = today
            .checked_sub(jiff::Span::new().days(i64::from(rules.r8_window_days)))
            .unwrap_or(today);
        let since_unix = crate::cases::clock::end_of_day(since);
        for (project, region) in store.projects_with_leads(since_unix).await? {
            let n = store.leads_on_project(&project, since_unix).await?;
            if n >= rules.r8_leads {
                f.add_subject(
                    "R8",
                    project.clone(),
                    &region,
                    &project,
                    "",
                    today.strftime("%Y-%m").to_string(),
                    risk,
                    format!(
                        "{n} leads about project {project} within {} days",
                        rules.r8_window_days
                    ),
                )
                .await?;
            }
        }
    }
    Ok(f.out)
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
