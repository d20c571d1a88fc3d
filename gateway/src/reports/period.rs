//! The span a report covers: whole days in China time, `[from, to)`, and the instant the
//! report is taken, which cuts a period that has not ended yet.

use jiff::civil::{Date, Weekday};

use super::ReportError;
use crate::cases::clock::end_of_day;

/// Whole China-time days `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub from: Date,
    /// The first day after the period.
    pub to: Date,
    /// How files name it: `2026-11-28`, `2026-W48`, `2026-11` or `2026-11-01_2026-12-01`.
    pub label: String,
}

/// 00:00 China time of `date`, as Unix seconds (China keeps no daylight saving time, so every
/// day is 86,400 seconds).
pub fn start_of(date: Date) -> i64 {
    end_of_day(date).saturating_sub(86_400)
}

fn bad(what: impl Into<String>) -> ReportError {
    ReportError::BadPeriod(what.into())
}

fn parse_date(flag: &str, text: &str) -> Result<Date, ReportError> {
    text.parse::<Date>()
        .ok()
        .filter(|d| (1990..=2100).contains(&d.year()) && text.len() == 10)
        .ok_or_else(|| bad(format!("{flag} {text:?} is not a date: use YYYY-MM-DD")))
}

impl Period {
    /// `--from` / `--to`: the days from `from` up to, not including, `to`.
    pub fn between(from: &str, to: &str) -> Result<Self, ReportError> {
        let (from, to) = (parse_date("--from", from)?, parse_date("--to", to)?);
        if to <= from {
            return Err(bad(format!(
                "--to {to} must come after --from {from} (the period is [from, to): --to is the first day not included)"
            )));
        }
        Ok(Period {
            from,
            to,
            label: format!("{from}_{to}"),
        })
    }

    /// One day (the daily overdue scan).
    pub fn day(date: &str) -> Result<Self, ReportError> {
        let from = parse_date("--date", date)?;
        Ok(Period {
            from,
            to: from.tomorrow().map_err(|e| bad(e.to_string()))?,
            label: from.to_string(),
        })
    }

    /// The week, Monday to Sunday, holding `date` (the weekly dispatch summary).
    pub fn week_of(date: &str) -> Result<Self, ReportError> {
        let day = parse_date("--week-of", date)?;
        let back = i64::from(day.weekday().to_monday_zero_offset());
        let from = day
            .checked_sub(jiff::Span::new().days(back))
            .map_err(|e| bad(e.to_string()))?;
        debug_assert_eq!(from.weekday(), Weekday::Monday);
        let to = from
            .checked_add(jiff::Span::new().days(7))
            .map_err(|e| bad(e.to_string()))?;
        let week = from.iso_week_date();
        Ok(Period {
            from,
            to,
            label: format!("{}-W{:02}", week.year(), week.week()),
        })
    }

    /// A calendar month, `YYYY-MM` (the monthly bulletin).
    pub fn month(month: &str) -> Result<Self, ReportError> {
        let from = (month.len() == 7)
            .then(|| format!("{month}-01"))
            .and_then(|d| parse_date("--month", &d).ok())
            .ok_or_else(|| bad(format!("--month {month:?} is not a month: use YYYY-MM")))?;
        let to = from
            .checked_add(jiff::Span::new().months(1))
            .map_err(|e| bad(e.to_string()))?;
        Ok(Period {
            from,
            to,
            label: month.to_owned(),
        })
    }

    /// 00:00 China time of the first day.
    pub fn start(&self) -> i64 {
        start_of(self.from)
    }

    /// 00:00 China time of the first day after the period.
    pub fn end(&self) -> i64 {
        start_of(self.to)
    }

    /// The last day of the period, for display.
    pub fn last_day(&self) -> Date {
        self.to.yesterday().unwrap_or(self.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn periods_are_whole_china_days() {
        let p = Period::between("2026-11-01", "2026-12-01").unwrap();
        // 2026-11-01 00:00 +08:00 is 2026-10-31 16:00 UTC.
        assert_eq!(p.start(), 1_793_462_400);
        assert_eq!(p.end() - p.start(), 30 * 86_400);
        assert_eq!(p.label, "2026-11-01_2026-12-01");
        assert!(Period::between("2026-11-01", "2026-11-01").is_err());
        assert!(Period::between("2026-11-1", "2026-12-01").is_err());

        let w = Period::week_of("2026-11-28").unwrap();
        assert_eq!((w.from, w.to), (date(2026, 11, 23), date(2026, 11, 30)));
        assert_eq!(w.label, "2026-W48");
        let w = Period::week_of("2026-11-23").unwrap();
        assert_eq!(w.from, date(2026, 11, 23));

        let m = Period::month("2026-12").unwrap();
        assert_eq!((m.from, m.to), (date(2026, 12, 1), date(2027, 1, 1)));
        assert_eq!(m.last_day(), date(2026, 12, 31));
        assert!(Period::month("2026-13").is_err());
        assert!(Period::month("2026-1").is_err());

        let d = Period::day("2026-02-28").unwrap();
        assert_eq!(d.to, date(2026, 3, 1));
    }
}
