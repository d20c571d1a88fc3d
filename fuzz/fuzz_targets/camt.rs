//! The camt.052/053/054 parser on arbitrary text: it refuses with a reason, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(xml) = std::str::from_utf8(data) {
        let _ = wagelink_adapters::bank::camt::parse(xml);
    }
});
