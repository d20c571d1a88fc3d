//! The official working-day calendar of mainland China: weekends off, except the make-up
//! working days (调休), and the public holidays announced by the State Council each year
//! (data in gateway/data/holidays-cn/, from the holiday-cn data set). Case clocks count
//! working days on it and end at 24:00 China time on the last one.

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::{Date, Weekday};
use serde::Deserialize;

const YEARS: &[&str] = &[
    include_str!("../../data/holidays-cn/2023.json"),
    include_str!("../../data/holidays-cn/2024.json"),
    include_str!("../../data/holidays-cn/2025.json"),
    include_str!("../../data/holidays-cn/2026.json"),
];

#[derive(Deserialize)]
struct YearFile {
    year: i16,
    days: Vec<DayFile>,
}

#[derive(Deserialize)]
struct DayFile {
    date: String,
    #[serde(rename = "isOffDay")]
    is_off_day: bool,
}

/// Working days and holidays.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    /// Dates whose status differs from the weekday rule: `true` = off, `false` = working.
    exceptions: BTreeMap<Date, bool>,
    years: BTreeSet<i16>,
}

impl Calendar {
    /// The official calendar for the years the gateway ships data for.
    pub fn official() -> &'static Calendar {
        static OFFICIAL: std::sync::OnceLock<Calendar> = std::sync::OnceLock::new();
        OFFICIAL.get_or_init(|| {
            let mut calendar = Calendar::default();
            for text in YEARS {
                // The files are part of the binary and tested; a malformed one is a build defect.
                let Ok(file) = serde_json::from_str::<YearFile>(text) else {
                    continue;
                };
                calendar.years.insert(file.year);
                for day in file.days {
                    if let Ok(date) = day.date.parse() {
                        calendar.exceptions.insert(date, day.is_off_day);
                    }
                }
            }
            calendar
        })
    }

    /// Whether the year's holidays are known; outside them only weekends are days off.
    pub fn covers(&self, year: i16) -> bool {
        self.years.contains(&year)
    }

    pub fn is_working_day(&self, date: Date) -> bool {
        match self.exceptions.get(&date) {
            Some(off) => !off,
            None => !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday),
        }
    }

    /// The `n`-th working day after `start` (`start` itself is not counted; n = 0 is `start`).
    pub fn add_working_days(&self, start: Date, n: u32) -> Date {
        let mut date = start;
        let mut left = n;
        while left > 0 {
            date = date.tomorrow().unwrap_or(date);
            if self.is_working_day(date) {
                left -= 1;
            }
        }
        date
    }

    /// Working days strictly after `from` up to and including `to`.
    pub fn working_days_between(&self, from: Date, to: Date) -> u32 {
        let mut n = 0;
        let mut date = from;
        while date < to {
            date = match date.tomorrow() {
                Ok(d) => d,
                Err(_) => break,
            };
            if self.is_working_day(date) {
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn the_2026_national_day_week_and_its_make_up_days() {
        let c = Calendar::official();
        assert_eq!(c.years.len(), YEARS.len(), "every shipped year file parses");
        assert!(c.covers(2026) && c.covers(2023) && !c.covers(2030));
        for day in 1..=7 {
            assert!(!c.is_working_day(date(2026, 10, day)), "2026-10-{day:02}");
        }
        assert!(
            c.is_working_day(date(2026, 10, 10)),
            "Saturday 10 October 2026 is a make-up working day"
        );
        assert!(
            c.is_working_day(date(2026, 9, 20)),
            "Sunday 20 September 2026 is a make-up working day"
        );
        assert!(!c.is_working_day(date(2026, 10, 11)), "an ordinary Sunday");
        // Three working days from Wednesday 30 September: 8, 9 and (Saturday) 10 October.
        assert_eq!(c.add_working_days(date(2026, 9, 30), 3), date(2026, 10, 10));
        assert_eq!(
            c.working_days_between(date(2026, 9, 30), date(2026, 10, 10)),
            3
        );
    }

    #[test]
    fn spring_festival_2025_and_plain_weeks() {
        let c = Calendar::official();
        // 2025: 28 January to 4 February off; Sunday 26 January and Saturday 8 February worked.
        assert!(c.is_working_day(date(2025, 1, 26)));
        assert!(!c.is_working_day(date(2025, 1, 28)));
        assert!(c.is_working_day(date(2025, 2, 8)));
        assert_eq!(c.add_working_days(date(2025, 1, 27), 1), date(2025, 2, 5));
        // An ordinary week: Friday + 1 working day is Monday.
        assert_eq!(c.add_working_days(date(2025, 3, 14), 1), date(2025, 3, 17));
        assert_eq!(c.add_working_days(date(2025, 3, 14), 0), date(2025, 3, 14));
        // A year without data falls back to weekdays.
        assert_eq!(c.add_working_days(date(2030, 1, 4), 1), date(2030, 1, 7));
    }
}
