//! The look-back (回头看): for each district, the cases that first surfaced through petitions
//! (信访), police incidents (警情) or public opinion (舆情) instead of through screening (排查)
//! or warnings (预警), and whether screening or a warning had already touched the same project
//! or employer before — the comparison the campaign notice asks for.

use std::collections::{BTreeMap, BTreeSet};

use super::Parts;
use super::facts::{Case, Origin, Window, both, channel_name, china_time, state_name};
use super::table::{
    Cell, Chart, Column, Coverage, Note, Tally, case_row, col, district_table, listing,
};
use crate::cases::machine::lead_key;

const COLUMNS: &[Column] = &[
    col("cases_opened", "新立案件（件）", "cases opened"),
    col("screening", "排查发现（件）", "found by screening"),
    col("warnings", "预警发现（件）", "found by warnings"),
    col(
        "other_reports",
        "其他渠道反映（件）",
        "reported through other channels",
    ),
    col("petition", "信访（件）", "petition"),
    col("police_incident", "警情（件）", "police incident"),
    col("public_opinion", "舆情（件）", "public opinion"),
    col(
        "surfaced",
        "信访、警情、舆情合计（件）",
        "surfaced through petition, police or opinion",
    ),
    col("surfaced_pct", "占比（%）", "share of cases opened (%)"),
    col(
        "surfaced_screened_before",
        "其中此前已排查或预警（件）",
        "of them screened or warned before",
    ),
];

const LISTING: &[Column] = &[
    col("channel", "首次反映渠道", "first surfaced through"),
    col("opened_at", "接收时间", "received"),
    col("occurred_on", "发生日期", "arose on"),
    col("project_code", "项目编码", "project code"),
    col("project_name", "项目名称", "project"),
    col("employer_name", "用人单位", "employer"),
    col(
        "amount_wan_yuan",
        "反映金额（万元）",
        "amount claimed (10k yuan)",
    ),
    col("workers", "涉及人数", "workers"),
    col("case_state", "案件状态", "case state"),
    col(
        "screened_before",
        "此前已排查或预警",
        "screened or warned before",
    ),
    col(
        "earlier_cases",
        "此前排查或预警案件",
        "earlier screening or warning cases",
    ),
];

#[derive(Debug, Default)]
struct Row {
    opened: i64,
    by_origin: BTreeMap<Origin, i64>,
    screened_before: i64,
}

impl Tally for Row {
    fn add(&mut self, o: &Self) {
        self.opened += o.opened;
        for (k, n) in &o.by_origin {
            *self.by_origin.entry(*k).or_default() += n;
        }
        self.screened_before += o.screened_before;
    }

    fn cells(&self) -> Vec<Cell> {
        let n = |o: Origin| self.by_origin.get(&o).copied().unwrap_or_default();
        let surfaced = n(Origin::Petition) + n(Origin::PoliceIncident) + n(Origin::PublicOpinion);
        vec![
            Cell::Int(self.opened),
            Cell::Int(n(Origin::Screening)),
            Cell::Int(n(Origin::Warning)),
            Cell::Int(n(Origin::Report)),
            Cell::Int(n(Origin::Petition)),
            Cell::Int(n(Origin::PoliceIncident)),
            Cell::Int(n(Origin::PublicOpinion)),
            Cell::Int(surfaced),
            Cell::Percent {
                part: surfaced,
                whole: self.opened,
            },
            Cell::Int(self.screened_before),
        ]
    }
}

fn surfaced_in<'a, 'b>(cases: &'b [Case<'a>], w: Window) -> impl Iterator<Item = &'b Case<'a>> {
    cases
        .iter()
        .filter(move |c| w.contains(c.opened_at()) && c.origin().surfaced())
}

/// The project codes and lead keys of the cases that surfaced in the window: the store looks
/// up earlier cases about them.
pub(super) fn earlier_keys(
    views: &[wagelink_proto::v1::CaseView],
    w: Window,
) -> (Vec<String>, Vec<String>) {
    let cases: Vec<Case> = views.iter().map(Case::new).collect();
    let mut codes = BTreeSet::new();
    let mut keys = BTreeSet::new();
    for c in surfaced_in(&cases, w) {
        if !c.lead().project_code.is_empty() {
            codes.insert(c.lead().project_code.clone());
        }
        keys.extend(lead_key(c.lead()));
    }
    (codes.into_iter().collect(), keys.into_iter().collect())
}

/// Earlier cases found by screening or a warning about the same project (its code) or the same
/// matter (region, employer and project).
fn screened_before<'a>(case: &Case, pool: &[Case<'a>]) -> Vec<Case<'a>> {
    let code = &case.lead().project_code;
    let key = lead_key(case.lead());
    pool.iter()
        .filter(|e| {
            e.id() != case.id()
                && e.opening_order() < case.opening_order()
                && matches!(e.origin(), Origin::Screening | Origin::Warning)
                && ((!code.is_empty() && e.lead().project_code == *code)
                    || (key.is_some() && lead_key(e.lead()) == key))
        })
        .copied()
        .collect()
}

pub(super) fn report(cases: &[Case], earlier: &[Case], w: Window, district: Option<&str>) -> Parts {
    let mut pool: Vec<Case> = cases.to_vec();
    let known: BTreeSet<&str> = cases.iter().map(|c| c.id()).collect();
    pool.extend(earlier.iter().filter(|c| !known.contains(c.id())).copied());

    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for case in cases.iter().filter(|c| w.contains(c.opened_at())) {
        let row = rows.entry(case.district().to_owned()).or_default();
        row.opened += 1;
        *row.by_origin.entry(case.origin()).or_default() += 1;
    }
    let mut listing = listing(
        (
            "lookback-cases",
            "信访、警情、舆情反映案件清单",
            "Cases that surfaced through petitions, police incidents or public opinion",
        ),
        LISTING,
    );
    for case in surfaced_in(cases, w) {
        let before = screened_before(case, &pool);
        if !before.is_empty() {
            rows.entry(case.district().to_owned())
                .or_default()
                .screened_before += 1;
        }
        let lead = case.lead();
        listing.rows.push(case_row(
            case,
            [
                Cell::text(both(channel_name(case.channel()))),
                Cell::text(china_time(case.opened_at())),
                Cell::text(lead.occurred_on.as_str()),
                Cell::text(lead.project_code.as_str()),
                Cell::text(lead.project_name.as_str()),
                Cell::text(lead.employer_name.as_str()),
                Cell::wan_yuan(lead.amount_fen),
                Cell::Int(i64::from(lead.worker_count)),
                Cell::text(both(state_name(case.state_at(w.end).unwrap_or_default()))),
                Cell::text(if before.is_empty() {
                    "否 no"
                } else {
                    "是 yes"
                }),
                Cell::text(
                    before
                        .iter()
                        .map(|e| format!("{} ({})", e.id(), channel_name(e.channel()).1))
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            ],
        ));
    }
    let table = district_table(
        (
            "lookback",
            "案件首次反映渠道（按区县）",
            "How cases first surfaced, by district",
        ),
        COLUMNS,
        &rows,
        district,
    );
    Parts {
        tables: vec![table, listing],
        charts: vec![
            Chart::bars(
                "案件首次反映渠道（件）",
                "How cases first surfaced",
                "lookback",
                &[
                    "screening",
                    "warnings",
                    "other_reports",
                    "petition",
                    "police_incident",
                    "public_opinion",
                ],
            )
            .stacked(),
        ],
        notes: vec![
            Note {
                figure: "lookback",
                coverage: Coverage::Complete,
                zh: "案件按首条线索的接受时间计入统计期，按首条线索的渠道归类：排查＝实地排查（治欠协管员）、智慧工地；预警＝监控预警（含网关预警规则）；信访、警情、舆情；其他渠道＝国务院平台、渝悦应用、热线、集中接访、部门转送、其他。",
                en: "A case counts in the period its first lead was accepted in, under the channel of that lead: screening = on-site screening (grid inspectors) and smart sites; warnings = monitoring warnings (the gateway's rules included); petition, police incident, public opinion; other = national platform, city app, hotlines, reception days, agency referrals, other.",
            },
            Note {
                figure: "surfaced_screened_before",
                coverage: Coverage::Partial,
                zh: "此前已排查或预警：同一项目编码，或同一区县、用人单位和项目的案件，经排查或预警立案且早于本案。信访、警情、舆情线索若并入了已在办的同一事项案件，其渠道只在载荷中，报表不读取，本表看不到。",
                en: "Screened or warned before: an earlier case opened by screening or a warning about the same project code, or the same region, employer and project. A petition, police or opinion lead linked to a case already open about the same matter is invisible here: its channel is only in its payload, which reports never read.",
            },
        ],
    }
}
