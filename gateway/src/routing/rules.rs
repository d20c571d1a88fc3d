//! The rules file: its TOML form, its checks (each refusal names the line and the reason), and
//! the facts of a lead that rules match on.

use serde::Deserialize;
use toml::Spanned;
use wagelink_proto::v1 as pb;

const INDUSTRIES: &[&str] = &[
    "housing-municipal",
    "transport",
    "water",
    "other",
    "railway",
    "civil-aviation",
];
const SECTORS: &[&str] = &[
    "construction",
    "manufacturing",
    "retail",
    "hospitality",
    "transport-logistics",
    "platform-work",
    "services",
    "other",
];
const LEAD_TYPES: &[&str] = &[
    "arrears",
    "suspected-crime",
    "dispute",
    "enforcement",
    "risk-warning",
];

/// Why a rules file was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("rules file line {line}: {reason}")]
pub struct RulesError {
    pub line: usize,
    pub reason: String,
}

/// What a clock length counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClockUnit {
    /// Working days on the official calendar; the clock ends at 24:00 China time of its last day.
    #[default]
    WorkingDays,
    /// Calendar hours.
    Hours,
    /// Seconds: for drills and tests of the escalation path.
    Seconds,
}

/// Clock lengths, each counted from the step that starts it: sign for from the transfer,
/// handle from the sign-for, feed back from the resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clocks {
    /// To sign for (签收) the lead.
    pub sign_for: u32,
    /// To handle it to a result (办结).
    pub handle: u32,
    /// To feed the result back to the source (反馈).
    pub feed_back: u32,
    /// What the three numbers count; working days when absent.
    #[serde(default)]
    pub unit: ClockUnit,
}

/// What a rule matches; an empty list or an absent value matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub industries: Vec<String>,
    #[serde(default)]
    pub sectors: Vec<String>,
    #[serde(default)]
    pub lead_types: Vec<String>,
    pub government_funded: Option<bool>,
    pub state_owned: Option<bool>,
    pub min_amount_fen: Option<i64>,
    pub max_amount_fen: Option<i64>,
    pub min_workers: Option<u32>,
    pub max_workers: Option<u32>,
}

/// The facts of a lead that rules match on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lead {
    pub region: String,
    pub industry: Option<String>,
    pub sector: Option<String>,
    pub lead_type: String,
    pub government_funded: Option<bool>,
    pub state_owned: Option<bool>,
    pub amount_fen: i64,
    pub workers: u32,
}

/// `SECTOR_PLATFORM_WORK` → `platform-work`.
fn name(proto_name: &str, prefix: &str) -> String {
    proto_name
        .trim_start_matches(prefix)
        .to_ascii_lowercase()
        .replace('_', "-")
}

impl Lead {
    pub fn from_proto(lead: &pb::Lead) -> Self {
        let industry = pb::Industry::try_from(lead.project_industry)
            .ok()
            .filter(|i| *i != pb::Industry::Unspecified)
            .map(|i| name(i.as_str_name(), "INDUSTRY_"));
        let sector = pb::Sector::try_from(lead.sector)
            .ok()
            .filter(|s| *s != pb::Sector::Unspecified)
            .map(|s| name(s.as_str_name(), "SECTOR_"));
        Self {
            region: lead.region_code.clone(),
            industry,
            sector,
            lead_type: pb::LeadType::try_from(lead.lead_type)
                .map(|t| name(t.as_str_name(), "LEAD_TYPE_"))
                .unwrap_or_default(),
            government_funded: lead.government_funded,
            state_owned: lead.state_owned,
            amount_fen: lead.amount_fen,
            workers: lead.worker_count,
        }
    }
}

fn listed(list: &[String], value: Option<&str>) -> bool {
    list.is_empty() || value.is_some_and(|v| list.iter().any(|x| x == v))
}

impl When {
    pub fn matches(&self, lead: &Lead) -> bool {
        listed(&self.regions, Some(&lead.region))
            && listed(&self.industries, lead.industry.as_deref())
            && listed(&self.sectors, lead.sector.as_deref())
            && listed(&self.lead_types, Some(&lead.lead_type))
            && self
                .government_funded
                .is_none_or(|g| lead.government_funded == Some(g))
            && self.state_owned.is_none_or(|s| lead.state_owned == Some(s))
            && self.min_amount_fen.is_none_or(|m| lead.amount_fen >= m)
            && self.max_amount_fen.is_none_or(|m| lead.amount_fen <= m)
            && self.min_workers.is_none_or(|m| lead.workers >= m)
            && self.max_workers.is_none_or(|m| lead.workers <= m)
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    /// The line of its `id` in the rules file.
    pub line: usize,
    pub description: String,
    pub also: bool,
    pub when: When,
    pub handler: Option<String>,
    pub co_handlers: Vec<String>,
    pub copies: Vec<String>,
    pub supervisors: Vec<String>,
    pub clocks: Option<Clocks>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    clocks: Clocks,
}

/// A parsed, checked rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    pub version: u32,
    pub description: String,
    pub rules: Vec<Rule>,
    pub(super) defaults: DefaultsView,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DefaultsView {
    pub clocks: Clocks,
}

impl RuleSet {
    /// The clocks of leads no rule gives clocks of their own (and of leads relayed to a peer).
    pub fn default_clocks(&self) -> Clocks {
        self.defaults.clocks
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    id: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    also: bool,
    #[serde(default)]
    when: When,
    handler: Option<String>,
    #[serde(default)]
    co_handlers: Vec<String>,
    #[serde(default)]
    copies: Vec<String>,
    #[serde(default)]
    supervisors: Vec<String>,
    clocks: Option<Clocks>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    description: String,
    #[serde(rename = "rule", default)]
    rules: Vec<FileRule>,
    defaults: Defaults,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn check_names(kind: &str, values: &[String], known: &[&str]) -> Result<(), String> {
    match values.iter().find(|v| !known.contains(&v.as_str())) {
        Some(v) => Err(format!(
            "{kind} {v:?} is unknown: use one of {}",
            known.join(", ")
        )),
        None => Ok(()),
    }
}

fn check_partner_spec(spec: &str) -> Result<(), String> {
    for alt in spec.split('|') {
        let probe = alt.trim().replace("{region}", "500000");
        if probe.parse::<crate::identity::PartnerId>().is_err() {
            return Err(format!(
                "{spec:?} is not a partner id (alternatives a|b, {{region}} for the lead's region)"
            ));
        }
    }
    Ok(())
}

impl RuleSet {
    /// The first partner named outright (not through `{region}`) for which no alternative
    /// passes `usable`, as a refusal naming its rule's line.
    pub fn unusable_partner(&self, usable: impl Fn(&str) -> bool) -> Option<RulesError> {
        for rule in &self.rules {
            for spec in rule
                .handler
                .iter()
                .chain(&rule.co_handlers)
                .chain(&rule.copies)
                .chain(&rule.supervisors)
            {
                if spec.contains("{region}") {
                    continue;
                }
                if !spec.split('|').any(|alt| usable(alt.trim())) {
                    return Some(RulesError {
                        line: rule.line,
                        reason: format!(
                            "rule {:?}: {spec:?} is not an active registered partner; onboard it first or correct the id",
                            rule.id
                        ),
                    });
                }
            }
        }
        None
    }

    /// Parses and checks a rules file.
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        let file: File = toml::from_str(text).map_err(|e| RulesError {
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            reason: e.message().to_owned(),
        })?;
        if file.version == Some(0) {
            return Err(RulesError {
                line: 1,
                reason: "version must be 1 or more".into(),
            });
        }
        let mut rules = Vec::with_capacity(file.rules.len());
        let mut ids = std::collections::BTreeSet::new();
        for r in file.rules {
            let line = line_of(text, r.id.span().start);
            let id = r.id.into_inner();
            let bad = |reason: String| RulesError {
                line,
                reason: format!("rule {id:?}: {reason}"),
            };
            if !ids.insert(id.clone()) {
                return Err(bad("the id is used twice".into()));
            }
            check_names("industry", &r.when.industries, INDUSTRIES).map_err(bad)?;
            check_names("sector", &r.when.sectors, SECTORS).map_err(bad)?;
            check_names("lead type", &r.when.lead_types, LEAD_TYPES).map_err(bad)?;
            for region in &r.when.regions {
                region
                    .parse::<crate::identity::RegionCode>()
                    .map_err(|e| bad(e.to_string()))?;
            }
            match (r.also, &r.handler) {
                (true, Some(_)) => {
                    return Err(bad(
                        "an `also` rule adds recipients and names no handler".into()
                    ));
                }
                (false, None) => {
                    return Err(bad("name a handler, or mark the rule `also = true`".into()));
                }
                _ => {}
            }
            if r.also && r.clocks.is_some() {
                return Err(bad(
                    "an `also` rule sets no clocks (the handler's rule does)".into(),
                ));
            }
            for spec in r
                .handler
                .iter()
                .chain(&r.co_handlers)
                .chain(&r.copies)
                .chain(&r.supervisors)
            {
                check_partner_spec(spec).map_err(bad)?;
            }
            rules.push(Rule {
                id,
                line,
                description: r.description,
                also: r.also,
                when: r.when,
                handler: r.handler,
                co_handlers: r.co_handlers,
                copies: r.copies,
                supervisors: r.supervisors,
                clocks: r.clocks,
            });
        }
        let catch_all = rules.iter().any(|r| !r.also && r.when == When::default());
        if !catch_all {
            return Err(RulesError {
                line: line_of(text, text.len()),
                reason:
                    "no rule catches every lead: end with a rule that has a handler and no `when`"
                        .into(),
            });
        }
        Ok(Self {
            version: file.version.unwrap_or(0),
            description: file.description,
            rules,
            defaults: DefaultsView {
                clocks: file.defaults.clocks,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAIL: &str = "\n[[rule]]\nid = \"default\"\nhandler = \"hrss-{region}\"\n[defaults]\nclocks = { sign_for = 1, handle = 2, feed_back = 3 }\n";

    #[test]
    fn mistakes_are_refused_with_the_line_and_the_reason() {
        let cases = [
            (
                "version = 1\n[[rule]]\nid = \"a\"\nwhen.sectors = [\"farming\"]\nhandler = \"hrss-1\"\n",
                3,
                "sector \"farming\" is unknown",
            ),
            (
                "version = 1\n[[rule]]\nid = \"a\"\nhandler = \"hrss-{region}\"\n[[rule]]\nid = \"a\"\nhandler = \"x-1\"\n",
                6,
                "used twice",
            ),
            (
                "version = 1\n[[rule]]\nid = \"a\"\nalso = true\nhandler = \"hrss-1\"\n",
                3,
                "names no handler",
            ),
            (
                "version = 1\n[[rule]]\nid = \"a\"\nwhen.regions = [\"509999\"]\nhandler = \"hrss-1\"\n",
                3,
                "509999",
            ),
            (
                "version = 1\n[[rule]]\nid = \"a\"\ncopies = [\"Police_1\"]\nhandler = \"hrss-1\"\n",
                3,
                "not a partner id",
            ),
            (
                "version = 1\n[[rule]]\nid = \"a\"\nhandlr = \"hrss-1\"\n",
                4,
                "handlr",
            ),
        ];
        for (head, line, needle) in cases {
            let err = RuleSet::parse(&format!("{head}{TAIL}")).unwrap_err();
            assert_eq!(err.line, line, "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
        let err = RuleSet::parse("version = 1\n[[rule]]\nid = \"a\"\nwhen.min_workers = 3\nhandler = \"hrss-1\"\n[defaults]\nclocks = { sign_for = 1, handle = 2, feed_back = 3 }\n").unwrap_err();
        assert!(err.reason.contains("catches every lead"), "{err}");
    }

    #[test]
    fn lead_facts_come_from_the_proto_names() {
        let lead = pb::Lead {
            region_code: "500112".into(),
            sector: pb::Sector::PlatformWork as i32,
            project_industry: pb::Industry::HousingMunicipal as i32,
            lead_type: pb::LeadType::SuspectedCrime as i32,
            government_funded: Some(true),
            ..Default::default()
        };
        let facts = Lead::from_proto(&lead);
        assert_eq!(facts.sector.as_deref(), Some("platform-work"));
        assert_eq!(facts.industry.as_deref(), Some("housing-municipal"));
        assert_eq!(facts.lead_type, "suspected-crime");
        for s in SECTORS {
            assert!(
                pb::Sector::from_str_name(&format!(
                    "SECTOR_{}",
                    s.to_uppercase().replace('-', "_")
                ))
                .is_some(),
                "{s}"
            );
        }
        for i in INDUSTRIES {
            assert!(
                pb::Industry::from_str_name(&format!(
                    "INDUSTRY_{}",
                    i.to_uppercase().replace('-', "_")
                ))
                .is_some(),
                "{i}"
            );
        }
        for t in LEAD_TYPES {
            assert!(
                pb::LeadType::from_str_name(&format!(
                    "LEAD_TYPE_{}",
                    t.to_uppercase().replace('-', "_")
                ))
                .is_some(),
                "{t}"
            );
        }
    }
}
