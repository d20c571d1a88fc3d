//! The daily overdue scan (每日超期扫描): at the end of a day (or now, for today), which clocks
//! that bind a partner to act — sign for, handle, feed back, decide on filing, re-route, answer
//! a letter, meet a supervision due date — are running past their due instant, by district, and
//! each of them by name.

use std::collections::BTreeMap;

use wagelink_proto::v1 as pb;

use super::Parts;
use super::facts::{Case, Window, both, channel_name, china_time, clock_name, state_name};
use super::table::{
    Cell, Chart, Column, Coverage, Note, case_row, col, counters, district_table,
    listing as listing_table,
};

const SUMMARY: &[Column] = &[
    col(
        "cases_with_running_clocks",
        "计时中案件（件）",
        "cases with running clocks",
    ),
    col("running_clocks", "计时中时限（个）", "running clocks"),
    col("overdue_clocks", "已超期时限（个）", "overdue clocks"),
    col("overdue_cases", "超期案件（件）", "overdue cases"),
    col(
        "ran_out_today",
        "当日到期未办（个）",
        "clocks that ran out this day",
    ),
    col(
        "met_late_today",
        "当日超期后办理（个）",
        "clocks met late this day",
    ),
];

const LISTING: &[Column] = &[
    col("clock", "时限", "clock"),
    col("partner", "应办单位", "partner due to act"),
    col("started_at", "起算时间", "started"),
    col("due_at", "到期时间", "due"),
    col("hours_overdue", "超期小时数", "hours overdue"),
    col("case_state", "案件状态", "case state"),
    col("channel", "线索渠道", "lead channel"),
    col("project_name", "项目名称", "project"),
    col("employer_name", "用人单位", "employer"),
];

counters!(
    struct Row {
        cases_running,
        running,
        overdue,
        overdue_cases,
        ran_out,
        met_late,
    } shown as counts
);

fn ts(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().map_or(0, |t| t.seconds)
}

pub(super) fn report(cases: &[Case], w: Window, district: Option<&str>) -> Parts {
    let at = w.end;
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut listing = Vec::new();
    for case in cases {
        let row = rows.entry(case.district().to_owned()).or_default();
        let running = case.running_at(at).count() as i64;
        let overdue: Vec<&pb::Deadline> = case.overdue_at(at).collect();
        row.cases_running += i64::from(running > 0);
        row.running += running;
        row.overdue += overdue.len() as i64;
        row.overdue_cases += i64::from(!overdue.is_empty());
        row.ran_out += case.ran_out_in(w).count() as i64;
        row.met_late += case.met_late_in(w).count() as i64;
        let lead = case.lead();
        let state = case.state_at(at).unwrap_or_default();
        for d in overdue {
            let due = ts(&d.due_at);
            listing.push((
                (case.district().to_owned(), due, case.id().to_owned()),
                case_row(
                    case,
                    [
                        Cell::text(both(clock_name(d.kind))),
                        Cell::text(d.partner_id.as_str()),
                        Cell::text(china_time(ts(&d.started_at))),
                        Cell::text(china_time(due)),
                        Cell::Int((at - due).max(0) / 3600),
                        Cell::text(both(state_name(state))),
                        Cell::text(both(channel_name(case.channel()))),
                        Cell::text(lead.project_name.as_str()),
                        Cell::text(lead.employer_name.as_str()),
                    ],
                ),
            ));
        }
    }
    let summary = district_table(
        (
            "overdue-by-district",
            "超期情况（按区县）",
            "Overdue clocks by district",
        ),
        SUMMARY,
        &rows,
        district,
    );
    listing.sort_by(|a, b| a.0.cmp(&b.0));
    let mut list = listing_table(
        (
            "overdue-clocks",
            "超期时限清单",
            "Overdue clocks, one by one",
        ),
        LISTING,
    );
    list.rows = listing.into_iter().map(|(_, row)| row).collect();
    Parts {
        tables: vec![summary, list],
        charts: vec![Chart::bars(
            "已超期时限（个）",
            "Overdue clocks",
            "overdue-by-district",
            &["overdue_clocks"],
        )],
        notes: vec![
            Note {
                figure: "overdue_clocks",
                coverage: Coverage::Complete,
                zh: "扫描时点为当日24:00（当日报表为生成时刻）。计入督办的时限（签收、办理、反馈、立案决定、重新转办、复函、督办期限）：在扫描时点前起算、未办理，且到期时间已过。移送交接和申请复议时限不计入（前者在移送时即已了结，后者是权利而非义务）。",
                en: "Taken at 24:00 of the day (for today, when the report is made). The clocks whose running out escalates a case (sign for, handle, feed back, filing decision, re-route, letter reply, supervision) that started before that instant, were not met (or stopped by a transfer, return or close) by then, and whose due instant had passed. The referral hand-over clock (settled when the referral is made) and the filing-review clock (an option, not a duty) are left out.",
            },
            Note {
                figure: "ran_out_today",
                coverage: Coverage::Complete,
                zh: "到期时间在当日、到期前未办理的时限；当日超期后办理：当日办理（或因转办、退回、关闭而终止）且晚于到期时间的时限。",
                en: "Clocks due within the day and not met before they were due; met late: clocks met (or stopped by a transfer, return or close) within the day after their due instant.",
            },
            Note {
                figure: "hours_overdue",
                coverage: Coverage::Complete,
                zh: "扫描时点与到期时间之差，按整小时向下取整。",
                en: "Whole hours from the due instant to the scan instant, rounded down.",
            },
        ],
    }
}
