//! A lead (欠薪线索) as the gateway accepts it: the fields the national lead platform takes,
//! checked once at the edge with an error that names the field and says what to fix. Personal
//! data (reporter ID number, phone) is checked but never echoed in an error, a log or a trace.

use thiserror::Error;
use wagelink_proto::v1 as pb;

use crate::identity::RegionCode;

/// Most workers one lead may name (larger groups are several leads).
const MAX_WORKERS: u32 = 100_000;
/// Largest amount one lead may claim, in fen (10 billion yuan).
const MAX_AMOUNT_FEN: i64 = 1_000_000_000_000;
const MAX_TEXT: usize = 4000;
const MAX_SHORT: usize = 200;

/// What is wrong with a lead: the field and what to fix. Never contains personal data.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("lead field {field}: {problem}")]
pub struct LeadError {
    pub field: &'static str,
    pub problem: String,
}

/// A caller's text quoted in an error, cut to a readable length.
fn quoted(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        format!("{text:?}")
    } else {
        format!("{:?}…", text.chars().take(MAX).collect::<String>())
    }
}

fn bad(field: &'static str, problem: impl Into<String>) -> LeadError {
    LeadError {
        field,
        problem: problem.into(),
    }
}

/// The characters of a unified social credit code (GB 32100-2015): digits and capitals
/// without I, O, S, V, Z.
const USCC_CHARS: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// Checks a unified social credit code: 18 characters of the GB 32100 set, the check digit right.
pub fn check_uscc(code: &str) -> Result<(), String> {
    let chars: Vec<char> = code.chars().collect();
    if chars.len() != 18 {
        return Err(format!("must be 18 characters, not {}", chars.len()));
    }
    let mut sum = 0;
    for (i, c) in chars[..17].iter().enumerate() {
        let v = USCC_CHARS
            .find(*c)
            .ok_or_else(|| format!("character {} ({c:?}) is not allowed: use digits and capitals other than I, O, S, V, Z", i + 1))?;
        sum += v as u32 * USCC_WEIGHTS[i];
    }
    let check = (31 - sum % 31) % 31;
    let expected = USCC_CHARS.as_bytes()[check as usize] as char;
    if chars[17] != expected {
        return Err("the check digit (18th character) is wrong: re-check the code with the business licence".into());
    }
    Ok(())
}

/// Checks a resident ID number's form and ISO 7064 MOD 11-2 check digit, without revealing it.
pub fn check_id_number(id: &str) -> Result<(), String> {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let bytes = id.as_bytes();
    if bytes.len() != 18 || !bytes[..17].iter().all(u8::is_ascii_digit) {
        return Err("must be 18 characters: 17 digits and a check digit (0-9 or X)".into());
    }
    let sum: u32 = bytes[..17]
        .iter()
        .zip(WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    if bytes[17].to_ascii_uppercase() != CHECK[(sum % 11) as usize] {
        return Err("the check digit is wrong: re-check the number with the reporter".into());
    }
    Ok(())
}

/// Checks a phone number: a mainland mobile (11 digits from 1) or a landline with area code.
pub fn check_phone(phone: &str) -> Result<(), String> {
    let digits: String = phone.chars().filter(|c| *c != '-' && *c != ' ').collect();
    let ok = digits.chars().all(|c| c.is_ascii_digit())
        && ((digits.len() == 11 && digits.starts_with('1'))
            || (digits.starts_with('0') && (10..=12).contains(&digits.len())));
    if ok {
        Ok(())
    } else {
        Err("must be an 11-digit mobile number or a landline with area code".into())
    }
}

fn date(
    field: &'static str,
    text: &str,
    today: jiff::civil::Date,
) -> Result<jiff::civil::Date, LeadError> {
    let d: jiff::civil::Date = text.parse().map_err(|_| {
        bad(
            field,
            format!("{} is not a date: use YYYY-MM-DD", quoted(text)),
        )
    })?;
    if d > today {
        return Err(bad(field, format!("{text} is in the future")));
    }
    Ok(d)
}

fn month(
    field: &'static str,
    text: &str,
    today: jiff::civil::Date,
) -> Result<(i16, i8), LeadError> {
    let parsed = text
        .split_once('-')
        .filter(|(y, m)| y.len() == 4 && m.len() == 2)
        .and_then(|(y, m)| Some((y.parse::<i16>().ok()?, m.parse::<i8>().ok()?)))
        .filter(|(y, m)| *y >= 1990 && (1..=12).contains(m));
    let (y, m) = parsed.ok_or_else(|| {
        bad(
            field,
            format!("{} is not a month: use YYYY-MM", quoted(text)),
        )
    })?;
    if (y, m) > (today.year(), today.month()) {
        return Err(bad(field, format!("{text} is in the future")));
    }
    Ok((y, m))
}

fn length(field: &'static str, text: &str, max: usize) -> Result<(), LeadError> {
    let n = text.chars().count();
    if n > max {
        return Err(bad(field, format!("is {n} characters long; at most {max}")));
    }
    Ok(())
}

/// Checks a lead against the rules every source must meet; `today` is the date in China.
pub fn validate(lead: &pb::Lead, today: jiff::civil::Date) -> Result<RegionCode, LeadError> {
    validate_in(lead, today, &|r: &RegionCode| r.is_local())
}

/// [`validate`] for a gateway that takes leads in the regions `accepted` allows (its own and
/// its peers').
pub fn validate_in(
    lead: &pb::Lead,
    today: jiff::civil::Date,
    accepted: &dyn Fn(&RegionCode) -> bool,
) -> Result<RegionCode, LeadError> {
    if lead.channel == pb::LeadChannel::Unspecified as i32
        || pb::LeadChannel::try_from(lead.channel).is_err()
    {
        return Err(bad(
            "channel",
            "say where the lead came from (a LeadChannel value other than UNSPECIFIED)",
        ));
    }
    if lead.lead_type == pb::LeadType::Unspecified as i32
        || pb::LeadType::try_from(lead.lead_type).is_err()
    {
        return Err(bad(
            "lead_type",
            "set the type of lead (arrears, suspected crime, dispute, …)",
        ));
    }
    if lead.region_code.is_empty() {
        return Err(bad(
            "region_code",
            "set the 6-digit code of the district or county where the arrears happened",
        ));
    }
    let region: RegionCode = lead.region_code.parse().map_err(|_| {
        bad(
            "region_code",
            format!(
                "{} is not in the official list of Chongqing region codes",
                quoted(&lead.region_code)
            ),
        )
    })?;
    if !accepted(&region) {
        return Err(bad(
            "region_code",
            format!(
                "{} is neither a region this gateway serves nor one a peer gateway owns",
                quoted(&lead.region_code)
            ),
        ));
    }
    if !lead.occurred_on.is_empty() {
        date("occurred_on", &lead.occurred_on, today)?;
    }
    if pb::Industry::try_from(lead.project_industry).is_err() {
        return Err(bad(
            "project_industry",
            format!("{} is not an Industry value", lead.project_industry),
        ));
    }
    if pb::Sector::try_from(lead.sector).is_err() {
        return Err(bad(
            "sector",
            format!("{} is not a Sector value", lead.sector),
        ));
    }
    if !lead.employer_uscc.is_empty() {
        check_uscc(&lead.employer_uscc).map_err(|p| bad("employer_uscc", p))?;
    }
    if !(0..=MAX_AMOUNT_FEN).contains(&lead.amount_fen) {
        return Err(bad(
            "amount_fen",
            format!("must be between 0 and {MAX_AMOUNT_FEN} fen (the amount owed, in fen)"),
        ));
    }
    if lead.worker_count > MAX_WORKERS {
        return Err(bad(
            "worker_count",
            format!(
                "is {}; at most {MAX_WORKERS} — split larger groups",
                lead.worker_count
            ),
        ));
    }
    if lead.lead_type == pb::LeadType::Arrears as i32 && lead.worker_count == 0 {
        return Err(bad(
            "worker_count",
            "an arrears lead names at least one worker",
        ));
    }
    let from = (!lead.arrears_from.is_empty())
        .then(|| month("arrears_from", &lead.arrears_from, today))
        .transpose()?;
    let to = (!lead.arrears_to.is_empty())
        .then(|| month("arrears_to", &lead.arrears_to, today))
        .transpose()?;
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(bad("arrears_to", "is before arrears_from"));
    }
    if !lead.reporter_id_number.is_empty() {
        check_id_number(&lead.reporter_id_number).map_err(|p| bad("reporter_id_number", p))?;
    }
    if !lead.reporter_phone.is_empty() {
        check_phone(&lead.reporter_phone).map_err(|p| bad("reporter_phone", p))?;
    }
    for (field, text, max) in [
        ("description", lead.description.as_str(), MAX_TEXT),
        (
            "source_reference",
            lead.source_reference.as_str(),
            MAX_SHORT,
        ),
        ("project_name", lead.project_name.as_str(), MAX_SHORT),
        ("employer_name", lead.employer_name.as_str(), MAX_SHORT),
        (
            "employer_address",
            lead.employer_address.as_str(),
            MAX_SHORT,
        ),
        (
            "workplace_address",
            lead.workplace_address.as_str(),
            MAX_SHORT,
        ),
        ("reporter_name", lead.reporter_name.as_str(), MAX_SHORT),
    ] {
        length(field, text, max)?;
    }
    Ok(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> jiff::civil::Date {
        jiff::civil::date(2026, 11, 28)
    }

    fn good() -> pb::Lead {
        pb::Lead {
            channel: pb::LeadChannel::NationalPlatform as i32,
            lead_type: pb::LeadType::Arrears as i32,
            region_code: "500112".into(),
            occurred_on: "2026-11-20".into(),
            employer_uscc: "91350100M000100Y43".into(),
            amount_fen: 12_345_600,
            worker_count: 17,
            arrears_from: "2026-09".into(),
            arrears_to: "2026-11".into(),
            reporter_id_number: "11010519491231002X".into(),
            reporter_phone: "13800138000".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_complete_lead_passes() {
        assert_eq!(validate(&good(), today()).unwrap().as_str(), "500112");
    }

    #[test]
    fn quoted_text_is_cut_to_a_readable_length() {
        let lead = pb::Lead {
            region_code: "5".repeat(100_000),
            ..good()
        };
        let err = validate(&lead, today()).unwrap_err().to_string();
        assert!(err.len() < 200, "{} bytes", err.len());
        assert!(err.contains("…"));
    }

    #[test]
    fn unified_social_credit_codes_follow_gb_32100() {
        assert!(check_uscc("91350100M000100Y43").is_ok());
        assert!(check_uscc("91110000600037341L").is_ok());
        assert!(
            check_uscc("91350100M000100Y44")
                .unwrap_err()
                .contains("check digit")
        );
        assert!(
            check_uscc("91350100M000100Y4")
                .unwrap_err()
                .contains("18 characters")
        );
        assert!(
            check_uscc("9135O100M000100Y43")
                .unwrap_err()
                .contains("character 5")
        );
    }

    #[test]
    fn id_numbers_follow_iso_7064() {
        assert!(check_id_number("11010519491231002X").is_ok());
        assert!(check_id_number("11010519491231002x").is_ok());
        assert!(check_id_number("110105194912310021").is_err());
        assert!(check_id_number("1101051949123100").is_err());
    }

    #[test]
    fn each_field_fault_is_named_and_personal_data_is_never_echoed() {
        type Change = Box<dyn Fn(&mut pb::Lead)>;
        let cases: Vec<(&str, Change)> = vec![
            ("channel", Box::new(|l| l.channel = 0)),
            ("channel", Box::new(|l| l.channel = 999)),
            ("lead_type", Box::new(|l| l.lead_type = 0)),
            ("region_code", Box::new(|l| l.region_code = "".into())),
            ("region_code", Box::new(|l| l.region_code = "110105".into())),
            (
                "occurred_on",
                Box::new(|l| l.occurred_on = "2026-13-01".into()),
            ),
            (
                "occurred_on",
                Box::new(|l| l.occurred_on = "2027-01-01".into()),
            ),
            (
                "employer_uscc",
                Box::new(|l| l.employer_uscc = "91350100M000100Y44".into()),
            ),
            ("amount_fen", Box::new(|l| l.amount_fen = -1)),
            ("worker_count", Box::new(|l| l.worker_count = 0)),
            ("worker_count", Box::new(|l| l.worker_count = 100_001)),
            (
                "arrears_from",
                Box::new(|l| l.arrears_from = "2026-9".into()),
            ),
            ("arrears_to", Box::new(|l| l.arrears_to = "2026-08".into())),
            ("arrears_to", Box::new(|l| l.arrears_to = "2027-01".into())),
            (
                "reporter_id_number",
                Box::new(|l| l.reporter_id_number = "110105194912310021".into()),
            ),
            (
                "reporter_phone",
                Box::new(|l| l.reporter_phone = "1380013800".into()),
            ),
            (
                "description",
                Box::new(|l| l.description = "欠".repeat(4001)),
            ),
        ];
        for (field, change) in cases {
            let mut lead = good();
            change(&mut lead);
            let err = validate(&lead, today()).unwrap_err();
            assert_eq!(err.field, field, "{err}");
            let text = err.to_string();
            for secret in ["110105194912310021", "1380013800", "11010519491231002X"] {
                assert!(!text.contains(secret), "personal data in {text:?}");
            }
        }
    }
}
