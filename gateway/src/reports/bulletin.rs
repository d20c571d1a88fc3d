//! The monthly bulletin (月度通报): the month's flow of leads and cases (as the weekly dispatch
//! summary), what was recovered for workers, through which channels leads came and cases were
//! resolved, and the collaborative-handling rate, by district and city-wide.

use std::collections::BTreeMap;

use wagelink_proto::v1 as pb;

use super::Parts;
use super::annex::Settled;
use super::facts::{Case, Kinds, Window, both, channel_name, resolution_channel_name, settled};
use super::table::{
    Cell, Chart, Column, Coverage, Note, Table, Tally, col, counters, district_table,
};
use super::{collaboration, dispatch};

const OUTCOMES: &[Column] = &[
    col("resolved", "办结（件）", "resolved"),
    col("settled", "解决欠薪（件）", "arrears settled"),
    col(
        "workers_paid_wan_people",
        "支付人数（万人）",
        "workers paid (10k)",
    ),
    col(
        "recovered_wan_yuan",
        "追回工资（万元）",
        "wages recovered (10k yuan)",
    ),
];

/// Resolutions, and of them those that settled arrears with what they recovered.
#[derive(Debug, Default)]
struct Outcome {
    resolved: i64,
    settled: Settled,
}

impl Outcome {
    fn count(&mut self, r: &pb::case_action::Resolve) {
        self.resolved += 1;
        if settled(r) {
            self.settled.count(r);
        }
    }
}

impl Tally for Outcome {
    fn add(&mut self, o: &Self) {
        self.resolved += o.resolved;
        self.settled.add(&o.settled);
    }

    fn cells(&self) -> Vec<Cell> {
        let mut out = vec![Cell::Int(self.resolved)];
        out.extend(self.settled.cells());
        out
    }
}

/// Rows per value of an enum, then the total.
fn by_value<T: Tally>(
    mut table: Table,
    values: impl Iterator<Item = (i32, String)>,
    tallies: &BTreeMap<i32, T>,
) -> Table {
    let mut total = T::default();
    let empty = T::default();
    for (value, name) in values {
        let t = tallies.get(&value).unwrap_or(&empty);
        total.add(t);
        let mut row = vec![Cell::Text(name)];
        row.extend(t.cells());
        table.rows.push(row);
    }
    let mut row = vec![Cell::text("合计 total")];
    row.extend(total.cells());
    table.rows.push(row);
    table.total = true;
    table
}

counters!(
    struct Opened {
        opened,
        resolved,
    } shown as counts
);

pub(super) fn report(cases: &[Case], kinds: &Kinds, w: Window, district: Option<&str>) -> Parts {
    let mut by_district: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut by_resolution: BTreeMap<i32, Outcome> = BTreeMap::new();
    let mut by_channel: BTreeMap<i32, Opened> = BTreeMap::new();
    for case in cases {
        let channel = by_channel.entry(case.channel() as i32).or_default();
        channel.opened += i64::from(w.contains(case.opened_at()));
        if let Some((_, r)) = case.resolved_in(w) {
            channel.resolved += 1;
            by_district
                .entry(case.district().to_owned())
                .or_default()
                .count(r);
            by_resolution.entry(r.channel).or_default().count(r);
        }
    }
    let outcomes = district_table(
        (
            "outcomes",
            "办结与追回工资（按区县）",
            "Resolutions and wages recovered, by district",
        ),
        OUTCOMES,
        &by_district,
        district,
    );

    let resolution_channels = by_value(
        Table::new(
            "resolution-channels",
            "办结渠道",
            "Resolutions by channel",
            &[
                &[col("resolution_channel", "办结渠道", "resolution channel")],
                OUTCOMES,
            ]
            .concat(),
        ),
        (1..=pb::ResolutionChannel::Other as i32).map(|v| {
            (
                v,
                both(resolution_channel_name(
                    pb::ResolutionChannel::try_from(v).unwrap_or_default(),
                )),
            )
        }),
        &by_resolution,
    );
    let lead_channels = by_value(
        Table::new(
            "lead-channels",
            "线索来源渠道",
            "Cases by the channel of their first lead",
            &[
                col("lead_channel", "线索渠道", "lead channel"),
                col("cases_opened", "新立案件（件）", "cases opened"),
                col("resolved", "办结（件）", "resolved"),
            ],
        ),
        (1..=pb::LeadChannel::Other as i32).map(|v| {
            (
                v,
                both(channel_name(
                    pb::LeadChannel::try_from(v).unwrap_or_default(),
                )),
            )
        }),
        &by_channel,
    );
    let (collaboration, _) = collaboration::tables(cases, kinds, w, district);

    let mut notes = dispatch::FLOW_NOTES.to_vec();
    notes.push(Note {
        figure: "outcomes",
        coverage: Coverage::Complete,
        zh: "办结按办结步骤的接受时间计入；解决欠薪：办结结论为查实欠薪（已全部或部分支付）或追回了工资；追回金额、支付人数为办结时记录的数额。",
        en: "Resolutions count by when the resolve step was accepted; arrears settled: the conclusion confirms arrears (paid in full or in part) or wages were recovered; amounts and workers are those recorded at resolution.",
    });
    notes.extend(collaboration::NOTES.iter().cloned());
    Parts {
        tables: vec![
            dispatch::flow_table(cases, w, district),
            outcomes,
            resolution_channels,
            lead_channels,
            collaboration,
        ],
        charts: vec![
            dispatch::flow_chart(),
            Chart::bars(
                "追回工资（万元）",
                "Wages recovered (10k yuan)",
                "outcomes",
                &["recovered_wan_yuan"],
            ),
            collaboration::chart(),
        ],
        notes,
    }
}
