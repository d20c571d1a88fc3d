//! The weekly dispatch summary (周调度): how leads flowed through the closed loop in a week —
//! received, transferred (转办), signed for (签收) on time or late, returned, forwarded, resolved
//! (办结), fed back (反馈), escalated (督办) — and what was still open and overdue at its end, by
//! district. The monthly bulletin reuses this table over a month.

use wagelink_proto::v1 as pb;

use super::Parts;
use super::facts::{Case, Window};
use super::table::{
    Cell, Chart, Column, Coverage, Note, Table, by_district, col, counters, district_table,
};

use pb::CaseEventKind as E;

const COLUMNS: &[Column] = &[
    col("leads_received", "接收线索（条）", "leads received"),
    col("cases_opened", "新立案件（件）", "cases opened"),
    col("warnings_opened", "其中预警（件）", "of them warnings"),
    col("signed_for", "签收（次）", "signed for"),
    col("signed_for_on_time", "按时签收（次）", "signed for on time"),
    col(
        "sign_for_on_time_pct",
        "按时签收率（%）",
        "on-time sign-for (%)",
    ),
    col("returned", "退回（次）", "returned"),
    col(
        "transferred",
        "领导小组办公室转办（次）",
        "transferred by a leading office",
    ),
    col("forwarded", "移送（次）", "forwarded"),
    col("resolved", "办结（件）", "resolved"),
    col("fed_back", "反馈（件）", "fed back"),
    col("closed", "关闭（件）", "closed"),
    col("escalated", "超期督办（次）", "escalated when overdue"),
    col("supervised", "挂牌督办（次）", "put under supervision"),
    col("open_at_end", "期末在办（件）", "open at the end"),
    col("overdue_at_end", "期末超期（件）", "overdue at the end"),
];

counters!(
    struct Row {
        leads,
        opened,
        warnings,
        signed,
        on_time,
        returned,
        transferred,
        forwarded,
        resolved,
        fed_back,
        closed,
        escalated,
        supervised,
        open,
        overdue,
    }
);

impl Row {
    fn row(&self) -> Vec<Cell> {
        let mut out: Vec<Cell> = [
            self.leads,
            self.opened,
            self.warnings,
            self.signed,
            self.on_time,
        ]
        .map(Cell::Int)
        .to_vec();
        out.push(Cell::Percent {
            part: self.on_time,
            whole: self.signed,
        });
        out.extend(
            [
                self.returned,
                self.transferred,
                self.forwarded,
                self.resolved,
                self.fed_back,
                self.closed,
                self.escalated,
                self.supervised,
                self.open,
                self.overdue,
            ]
            .map(Cell::Int),
        );
        out
    }
}

fn count(row: &mut Row, case: &Case, w: Window) {
    row.leads += case.count(w, E::Lead);
    if w.contains(case.opened_at()) {
        row.opened += 1;
        row.warnings += i64::from(case.is_warning());
    }
    for on_time in case.sign_fors_in(w) {
        row.signed += 1;
        row.on_time += i64::from(on_time);
    }
    // A forward target that returns a referral is not a holder returning the case.
    row.returned += case
        .steps_in(w)
        .filter(|e| e.kind == E::Return as i32 && e.state_before != pb::CaseState::Forwarded as i32)
        .count() as i64;
    row.transferred += case
        .steps_in(w)
        .filter(|e| e.kind == E::Transfer as i32 && e.actor != crate::server::GATEWAY_ID)
        .count() as i64;
    row.forwarded += case.count(w, E::Forward);
    row.resolved += case.count(w, E::Resolve);
    row.fed_back += case.count(w, E::Feedback);
    row.closed += case.count(w, E::Close);
    row.escalated += case.count(w, E::Escalate);
    row.supervised += case.count(w, E::Supervise);
    row.open += i64::from(case.open_at(w.end));
    row.overdue += i64::from(case.overdue_at(w.end).next().is_some());
}

/// The flow table over the window, by district.
pub(super) fn flow_table(cases: &[Case], w: Window, district: Option<&str>) -> Table {
    district_table(
        ("flow", "线索流转情况", "Flow of leads and cases"),
        COLUMNS,
        &by_district(cases, |row: &mut Row, case| count(row, case, w)),
        district,
    )
}

pub(super) const FLOW_NOTES: &[Note] = &[
    Note {
        figure: "flow",
        coverage: Coverage::Complete,
        zh: "每个步骤按网关接受时间计入统计期；案件按当前所在区县统计（流转到其他区县的案件计入新区县，包括其被退回的记录）。接收线索含并入已有案件的同一事项线索；新立案件按首条线索接受时间。",
        en: "Each step counts in the period it was accepted in; a case counts in the district it is in now (a case re-routed to another district counts there, its return included). Leads received include leads linked to a case already open about the same matter; cases opened are dated by their first lead.",
    },
    Note {
        figure: "signed_for_on_time",
        coverage: Coverage::Complete,
        zh: "签收：主办单位签收（使案件进入已签收状态的步骤；被移送单位对移送的签收不计）。按时：签收时其签收时限尚未到期。",
        en: "Signed for: the holder's sign-for (the step into SIGNED_FOR; a forward target's receipt of a referral is not counted). On time: before the holder's sign-for clock ran out.",
    },
    Note {
        figure: "open_at_end",
        coverage: Coverage::Complete,
        zh: "期末（当期未结束时为生成时刻）状态不是已办结、已反馈、已关闭的案件；期末超期：当时有已超期未办的时限的案件（口径同每日超期扫描）。",
        en: "Cases neither resolved, fed back nor closed at the end of the period (or when the report is made, if earlier); overdue at the end: cases with an overdue clock then (as in the daily overdue scan).",
    },
];

pub(super) fn report(cases: &[Case], w: Window, district: Option<&str>) -> Parts {
    Parts {
        tables: vec![flow_table(cases, w, district)],
        charts: vec![flow_chart()],
        notes: FLOW_NOTES.to_vec(),
    }
}

pub(super) fn flow_chart() -> Chart {
    Chart::bars(
        "新立案件与办结（件）",
        "Cases opened and resolved",
        "flow",
        &["cases_opened", "resolved"],
    )
}
