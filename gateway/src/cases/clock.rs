//! When a clock runs out: working-day clocks end at 24:00 China time of their last working day
//! on the official calendar; hour and second clocks run on the wall clock.

use jiff::civil::Date;
use jiff::tz::{TimeZone, offset};

use super::calendar::Calendar;
use crate::routing::ClockUnit;

fn china() -> TimeZone {
    TimeZone::fixed(offset(8))
}

/// The date in China at a Unix instant.
pub fn china_date(unix: i64) -> Date {
    jiff::Timestamp::from_second(unix)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(china())
        .date()
}

/// 24:00 China time at the end of `date`, as Unix seconds.
pub fn end_of_day(date: Date) -> i64 {
    let next = date.tomorrow().unwrap_or(date);
    next.to_zoned(china())
        .map(|z| z.timestamp().as_second())
        .unwrap_or(i64::MAX)
}

/// When a clock of `amount` `unit`s started at `start` (Unix seconds) runs out.
pub fn due_at(calendar: &Calendar, start: i64, amount: u32, unit: ClockUnit) -> i64 {
    match unit {
        ClockUnit::WorkingDays => end_of_day(calendar.add_working_days(china_date(start), amount)),
        ClockUnit::Hours => start.saturating_add(i64::from(amount) * 3600),
        ClockUnit::Seconds => start.saturating_add(i64::from(amount)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn at(d: Date, hour: i8) -> i64 {
        d.at(hour, 0, 0, 0)
            .to_zoned(china())
            .unwrap()
            .timestamp()
            .as_second()
    }

    #[test]
    fn working_day_clocks_end_at_midnight_china_time_of_their_last_working_day() {
        let cal = Calendar::official();
        // Friday 2025-09-26, 15:00 in Chongqing, plus 1 working day: Sunday 28th is a make-up
        // working day of the National Day holiday, so the clock ends at its 24:00.
        let start = at(date(2025, 9, 26), 15);
        assert_eq!(
            due_at(cal, start, 1, ClockUnit::WorkingDays),
            at(date(2025, 9, 29), 0)
        );
        // Tuesday 2025-09-30 plus 1 working day skips the holiday (1–8 October) and lands on
        // Thursday 9 October.
        let start = at(date(2025, 9, 30), 10);
        assert_eq!(
            due_at(cal, start, 1, ClockUnit::WorkingDays),
            at(date(2025, 10, 10), 0)
        );
        // An ordinary weekend is skipped: Friday 2025-11-21 + 1 is Monday 24th.
        let start = at(date(2025, 11, 21), 9);
        assert_eq!(
            due_at(cal, start, 1, ClockUnit::WorkingDays),
            at(date(2025, 11, 25), 0)
        );
        // A zero-day clock ends at the end of the starting day.
        let start = at(date(2025, 9, 26), 23);
        assert_eq!(
            due_at(cal, start, 0, ClockUnit::WorkingDays),
            at(date(2025, 9, 27), 0)
        );
    }

    #[test]
    fn hour_and_second_clocks_run_on_the_wall_clock() {
        let cal = Calendar::official();
        assert_eq!(due_at(cal, 1000, 24, ClockUnit::Hours), 1000 + 86_400);
        assert_eq!(due_at(cal, 1000, 2, ClockUnit::Seconds), 1002);
    }
}
