//! Routing rules as data (DESIGN §7): a versioned rules file decides, for each lead, the
//! handler, co-handlers, copies, supervisors and clocks; every decision records the rule and
//! version that made it and can be asked for in advance ("where would this lead go, and why").
//!
//! Rules are read top to bottom. The first matching rule that names a `handler` decides the
//! handler, co-handlers, copies and clocks; every matching `also` rule adds its co-handlers,
//! copies and supervisors. Partner ids may use `{region}` (the lead's region code) and `a|b`
//! ("a if registered, else b").

mod active;
mod rules;

pub use active::{ActiveRules, ActiveRulesError, rules_sha256};
pub use rules::{ClockUnit, Clocks, Lead, RuleSet, RulesError};

use std::collections::BTreeSet;

/// The default rules shipped with the gateway (version 1).
pub const DEFAULT_RULES: &str = include_str!("../../data/routing-default.toml");

/// A partner's part in a routed lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Handler,
    CoHandler,
    Copy,
    Supervisor,
}

/// One recipient of a routed lead, and the rule that put it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub partner: String,
    pub role: Role,
    pub rule_id: String,
}

/// Where a lead goes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub version: u32,
    /// The rule that chose the handler.
    pub rule_id: String,
    pub handler: String,
    pub recipients: Vec<Recipient>,
    pub clocks: Clocks,
    /// One line per rule that matched, and per partner left out because it is not registered.
    pub explanation: Vec<String>,
}

impl Decision {
    pub fn with_role(&self, role: Role) -> Vec<String> {
        self.recipients
            .iter()
            .filter(|r| r.role == role)
            .map(|r| r.partner.clone())
            .collect()
    }
}

/// Why a lead could not be routed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RouteError {
    #[error(
        "no routing rule (version {version}) names a registered handler for this lead: {explanation}"
    )]
    NoHandler { version: u32, explanation: String },
}

impl RuleSet {
    /// Routes a lead; `registered` says whether a partner id exists (and may receive leads).
    pub fn route(
        &self,
        lead: &Lead,
        registered: impl Fn(&str) -> bool,
    ) -> Result<Decision, RouteError> {
        let mut explanation = Vec::new();
        let mut recipients: Vec<Recipient> = Vec::new();
        let mut seen = BTreeSet::new();
        let mut add = |partner: String, role: Role, rule: &str, recipients: &mut Vec<Recipient>| {
            if seen.insert(partner.clone()) {
                recipients.push(Recipient {
                    partner,
                    role,
                    rule_id: rule.to_owned(),
                });
            }
        };
        let mut decided: Option<(String, String, Clocks)> = None;
        for rule in self.rules.iter().filter(|r| r.when.matches(lead)) {
            if rule.handler.is_none() && !rule.also {
                continue;
            }
            if !rule.also && decided.is_some() {
                continue;
            }
            let resolve = |spec: &str, explanation: &mut Vec<String>| {
                let found = spec
                    .split('|')
                    .map(|alt| alt.trim().replace("{region}", &lead.region))
                    .find(|p| registered(p));
                if found.is_none() {
                    explanation.push(format!(
                        "rule {}: no registered partner for {spec:?}; left out",
                        rule.id
                    ));
                }
                found
            };
            if let Some(spec) = &rule.handler {
                let Some(handler) = resolve(spec, &mut explanation) else {
                    continue;
                };
                explanation.push(format!(
                    "rule {} ({}): handler {handler}",
                    rule.id, rule.description
                ));
                add(handler.clone(), Role::Handler, &rule.id, &mut recipients);
                decided = Some((
                    rule.id.clone(),
                    handler,
                    rule.clocks.unwrap_or(self.defaults.clocks),
                ));
            } else {
                explanation.push(format!("rule {} ({})", rule.id, rule.description));
            }
            for (specs, role) in [
                (&rule.co_handlers, Role::CoHandler),
                (&rule.copies, Role::Copy),
                (&rule.supervisors, Role::Supervisor),
            ] {
                for spec in specs {
                    if let Some(p) = resolve(spec, &mut explanation) {
                        add(p, role, &rule.id, &mut recipients);
                    }
                }
            }
        }
        let Some((rule_id, handler, clocks)) = decided else {
            return Err(RouteError::NoHandler {
                version: self.version,
                explanation: explanation.join("; "),
            });
        };
        // The handler first, then by role.
        recipients.sort_by_key(|r| r.role);
        Ok(Decision {
            version: self.version,
            rule_id,
            handler,
            recipients,
            clocks,
            explanation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::regions;

    fn lead(region: &str) -> Lead {
        Lead {
            region: region.into(),
            ..Lead::default()
        }
    }

    /// The demo roster's partners, as the default rules expect them.
    fn roster(p: &str) -> bool {
        p.starts_with("hrss-5")
            || [
                "housing-500000",
                "transport-500000",
                "water-500000",
                "police-500103",
                "police-500112",
                "leading-office-500000",
            ]
            .contains(&p)
    }

    #[test]
    fn every_district_and_county_routes_to_its_own_labour_inspection() {
        let rules = RuleSet::parse(DEFAULT_RULES).unwrap();
        for region in regions().iter().filter(|r| !r.code.is_city()) {
            let d = rules.route(&lead(region.code.as_str()), roster).unwrap();
            assert_eq!(d.handler, format!("hrss-{}", region.code));
            assert_eq!(d.rule_id, "default");
            assert_eq!(d.version, 1);
        }
    }

    #[test]
    fn a_housing_project_in_yubei_goes_to_yubei_and_the_housing_authority() {
        let rules = RuleSet::parse(DEFAULT_RULES).unwrap();
        let l = Lead {
            sector: Some("construction".into()),
            industry: Some("housing-municipal".into()),
            workers: 12,
            ..lead("500112")
        };
        let d = rules.route(&l, roster).unwrap();
        assert_eq!(d.handler, "hrss-500112");
        assert_eq!(d.rule_id, "construction-housing");
        assert_eq!(d.with_role(Role::CoHandler), vec!["housing-500000"]);
        assert!(d.with_role(Role::Supervisor).is_empty());
        assert_eq!(
            d.clocks,
            Clocks {
                sign_for: 1,
                handle: 10,
                feed_back: 15,
                unit: ClockUnit::WorkingDays,
            }
        );
    }

    #[test]
    fn suspected_crime_copies_the_district_police_where_there_is_one() {
        let rules = RuleSet::parse(DEFAULT_RULES).unwrap();
        let l = Lead {
            lead_type: "suspected-crime".into(),
            workers: 40,
            ..lead("500112")
        };
        let d = rules.route(&l, roster).unwrap();
        assert_eq!(
            (d.handler.as_str(), d.rule_id.as_str()),
            ("hrss-500112", "suspected-crime")
        );
        assert_eq!(d.with_role(Role::Copy), vec!["police-500112"]);
        assert_eq!(
            d.with_role(Role::Supervisor),
            vec!["leading-office-500000"],
            "40 workers is a major case"
        );
        assert_eq!(d.clocks.handle, 3);
        // No police partner for Wanzhou in the roster: left out, and said so.
        let d = rules
            .route(
                &Lead {
                    region: "500101".into(),
                    ..l
                },
                roster,
            )
            .unwrap();
        assert!(d.with_role(Role::Copy).is_empty());
        assert!(
            d.explanation
                .iter()
                .any(|e| e.contains("police-{region}") && e.contains("left out")),
            "{:?}",
            d.explanation
        );
    }

    #[test]
    fn a_missing_district_office_falls_back_to_the_city() {
        let rules = RuleSet::parse(DEFAULT_RULES).unwrap();
        let d = rules
            .route(&lead("500112"), |p| p == "hrss-500000")
            .unwrap();
        assert_eq!(d.handler, "hrss-500000");
        let err = rules.route(&lead("500112"), |_| false).unwrap_err();
        assert!(err.to_string().contains("version 1"), "{err}");
    }
}
