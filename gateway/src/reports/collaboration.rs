//! The collaborative-handling rate (多跨协同处置率): the share of leads and warnings handled by
//! more than one agency. The campaign notice's target is at least 50%.

use std::collections::BTreeMap;

use super::Parts;
use super::facts::{Case, Kinds, Window, both, channel_name};
use super::table::{
    Cell, Chart, Column, Coverage, Note, Table, case_row, col, counters, district_table, listing,
};

/// The notice's target, in percent.
pub const TARGET_PERCENT: i64 = 50;

const COLUMNS: &[Column] = &[
    col("leads", "线索（件）", "leads"),
    col(
        "leads_collaborative",
        "其中协同处置（件）",
        "of them handled jointly",
    ),
    col("warnings", "预警（件）", "warnings"),
    col(
        "warnings_collaborative",
        "其中协同处置（件）",
        "of them handled jointly",
    ),
    col("total", "合计（件）", "total"),
    col("collaborative", "协同处置（件）", "handled jointly"),
    col(
        "collaborative_pct",
        "协同处置率（%）",
        "collaborative-handling rate (%)",
    ),
    col("meets_target", "达到50%目标", "meets the 50% target"),
];

const LISTING: &[Column] = &[
    col("channel", "线索渠道", "lead channel"),
    col("agencies", "参与处置单位", "agencies that handled it"),
    col("agency_count", "单位数", "agencies"),
    col("collaborative", "协同处置", "handled jointly"),
];

counters!(
    struct Row {
        leads,
        leads_joint,
        warnings,
        warnings_joint,
    }
);

impl Row {
    fn row(&self) -> Vec<Cell> {
        let total = self.leads + self.warnings;
        let joint = self.leads_joint + self.warnings_joint;
        let meets = match total {
            0 => "",
            _ if joint * 100 >= total * TARGET_PERCENT => "是 yes",
            _ => "否 no",
        };
        let mut out: Vec<Cell> = [
            self.leads,
            self.leads_joint,
            self.warnings,
            self.warnings_joint,
            total,
            joint,
        ]
        .map(Cell::Int)
        .to_vec();
        out.push(Cell::Percent {
            part: joint,
            whole: total,
        });
        out.push(Cell::text(meets));
        out
    }
}

/// The rate by district, and each case counted with the agencies that handled it.
pub(super) fn tables(
    cases: &[Case],
    kinds: &Kinds,
    w: Window,
    district: Option<&str>,
) -> (Table, Table) {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut listing = listing(
        (
            "collaboration-cases",
            "案件协同处置明细",
            "Each case and the agencies that handled it",
        ),
        LISTING,
    );
    for case in cases.iter().filter(|c| w.contains(c.opened_at())) {
        let agencies = case.agencies_at(kinds, w.end);
        let joint = agencies.len() >= 2;
        let row = rows.entry(case.district().to_owned()).or_default();
        if case.is_warning() {
            row.warnings += 1;
            row.warnings_joint += i64::from(joint);
        } else {
            row.leads += 1;
            row.leads_joint += i64::from(joint);
        }
        listing.rows.push(case_row(
            case,
            [
                Cell::text(both(channel_name(case.channel()))),
                Cell::text(agencies.iter().copied().collect::<Vec<_>>().join(" ")),
                Cell::Int(agencies.len() as i64),
                Cell::text(if joint { "是 yes" } else { "否 no" }),
            ],
        ));
    }
    let table = district_table(
        (
            "collaboration",
            "线索、预警信息协同处置率",
            "Collaborative-handling rate",
        ),
        COLUMNS,
        &rows,
        district,
    );
    (table, listing)
}

pub(super) fn chart() -> Chart {
    Chart::bars(
        "协同处置率（%），目标50%",
        "Collaborative-handling rate (%), target 50%",
        "collaboration",
        &["collaborative_pct"],
    )
    .target(TARGET_PERCENT)
}

pub(super) const NOTES: &[Note] = &[Note {
    figure: "collaborative_pct",
    coverage: Coverage::Complete,
    zh: "分母：统计期内新立的案件（每条线索或预警一件；并入已有案件的同一事项线索不另计）；预警指监控预警渠道（含网关预警规则）。协同处置：到期末至少有两个处置单位参与——签收、报告进展、移送、办结、反馈、关闭、立案决定、法院结果、惩戒或复函的单位，或曾任协办单位者；处置单位为人社、住建、交通、水利、财政、发改、国资、公安、检察院、法院、仲裁，不含线索来源、银行、领导小组办公室（督办而非处置）和网关；退回案件的单位不计。",
    en: "Denominator: the cases opened in the period (one per lead or warning; a lead linked to a case already open is not another). Warnings are the monitoring-warning channel (the gateway's warning rules included). Handled jointly: by the end, at least two agencies took part — one that signed for, reported progress, forwarded, resolved, fed back, closed, decided on filing, reported a court result, recorded a sanction or answered a letter, or held a co-handler role. Agencies are labour inspection, housing, transport, water, finance, development-reform, state assets, police, procuratorates, courts and arbitration — not lead sources, banks, leading offices (they supervise rather than handle) or the gateway. A partner that returned the case as not its own is not counted.",
}];

pub(super) fn report(cases: &[Case], kinds: &Kinds, w: Window, district: Option<&str>) -> Parts {
    let (table, listing) = tables(cases, kinds, w, district);
    Parts {
        tables: vec![table, listing],
        charts: vec![chart()],
        notes: NOTES.to_vec(),
    }
}
