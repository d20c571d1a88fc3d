//! The routing-rules parser on arbitrary text, and routing with whatever it accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wagelink_gateway::routing::{Lead, RuleSet};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(rules) = RuleSet::parse(text)
    {
        let lead = Lead::from_proto(&wagelink_proto::v1::Lead {
            region_code: "500112".into(),
            ..Default::default()
        });
        let _ = rules.route(&lead, |id| id.starts_with("hrss-"));
        let _ = rules.unusable_partner(|_| false);
    }
});
