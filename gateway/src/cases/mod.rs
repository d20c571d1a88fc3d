//! Leads and cases (DESIGN §7): what comes in, where it goes, and how it comes back resolved.

pub mod calendar;
pub mod clock;
pub mod lead;
pub mod machine;

/// Today's date in China (UTC+8 all year: China keeps no daylight saving time).
pub fn china_today() -> jiff::civil::Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)))
        .date()
}
