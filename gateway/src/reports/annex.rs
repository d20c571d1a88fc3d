//! The campaign's statistics annex (专项行动情况统计, domain.md last section), by district and
//! city-wide. Steps count by when they were accepted: a project is checked, a case settled or a
//! sanction recorded in the period when that step was accepted in it; a lead is received in the
//! period when it was.

use std::collections::BTreeSet;

use wagelink_proto::v1 as pb;

use super::Parts;
use super::facts::{Case, Kinds, Window, is_industry_authority, settled};
use super::table::{Cell, Chart, Column, Coverage, Note, Tally, by_district, col, district_table};

const COLUMNS: &[Column] = &[
    col(
        "gov_projects_checked",
        "检查政府投资工程项目（个）",
        "government-invested projects checked",
    ),
    col(
        "gov_projects_with_arrears",
        "查实存在欠薪项目（个）",
        "of them with arrears found",
    ),
    col(
        "gov_arrears_wan_yuan",
        "拖欠工资（万元）",
        "wages owed (10k yuan)",
    ),
    col(
        "gov_arrears_wan_people",
        "涉及（万人）",
        "workers concerned (10k)",
    ),
    col(
        "soe_projects_checked",
        "检查国企项目（个）",
        "state-owned-enterprise projects checked",
    ),
    col(
        "soe_projects_with_arrears",
        "查实存在欠薪项目（个）",
        "of them with arrears found",
    ),
    col(
        "soe_arrears_wan_yuan",
        "拖欠工资（万元）",
        "wages owed (10k yuan)",
    ),
    col(
        "soe_arrears_wan_people",
        "涉及（万人）",
        "workers concerned (10k)",
    ),
    col(
        "platform_cases",
        "解决新就业形态拖欠劳动报酬案件（件）",
        "new-employment-form arrears cases settled",
    ),
    col("platform_wan_people", "涉及（万人）", "workers paid (10k)"),
    col(
        "platform_wan_yuan",
        "涉及（万元）",
        "amount recovered (10k yuan)",
    ),
    col(
        "arbitration_cases",
        "通过劳动人事争议仲裁机构解决欠薪案件（件）",
        "arrears cases settled through arbitration",
    ),
    col(
        "arbitration_wan_people",
        "涉及（万人）",
        "workers paid (10k)",
    ),
    col(
        "arbitration_wan_yuan",
        "涉及（万元）",
        "amount recovered (10k yuan)",
    ),
    col(
        "court_cases",
        "通过法院开展集中执行活动解决欠薪案件（件）",
        "arrears cases settled through court enforcement",
    ),
    col("court_wan_people", "涉及（万人）", "workers paid (10k)"),
    col(
        "court_wan_yuan",
        "涉及（万元）",
        "amount recovered (10k yuan)",
    ),
    col(
        "industry_cases",
        "行业主管部门解决欠薪问题（件）",
        "arrears cases settled by industry authorities",
    ),
    col("industry_wan_people", "涉及（万人）", "workers paid (10k)"),
    col(
        "industry_wan_yuan",
        "涉及（万元）",
        "amount recovered (10k yuan)",
    ),
    col(
        "reception_day_leads",
        "集中接访接收欠薪线索（件）",
        "leads received on concentrated reception days",
    ),
    col(
        "serious_violator_units",
        "公布欠薪严重违法单位数（户）",
        "units published as serious violators",
    ),
    col(
        "joint_punishment_entries",
        "列入欠薪失信联合惩戒对象名单（件）",
        "entries on the joint-punishment list",
    ),
];

/// Projects of one kind (government-invested or state-owned).
#[derive(Debug, Default)]
struct Projects {
    checked: BTreeSet<String>,
    with_arrears: BTreeSet<String>,
    owed_fen: i64,
    workers: i64,
}

impl Projects {
    fn add(&mut self, o: &Projects) {
        self.checked.extend(o.checked.iter().cloned());
        self.with_arrears.extend(o.with_arrears.iter().cloned());
        self.owed_fen += o.owed_fen;
        self.workers += o.workers;
    }

    fn cells(&self) -> [Cell; 4] {
        [
            Cell::Int(self.checked.len() as i64),
            Cell::Int(self.with_arrears.len() as i64),
            Cell::wan_yuan(self.owed_fen),
            Cell::wan_people(self.workers),
        ]
    }
}

/// Settled arrears cases of one row: count, workers paid, amount recovered (the annex's
/// "件，涉及万人，万元").
#[derive(Debug, Default)]
pub(super) struct Settled {
    cases: i64,
    workers: i64,
    fen: i64,
}

impl Settled {
    pub(super) fn count(&mut self, r: &pb::case_action::Resolve) {
        self.cases += 1;
        self.workers += i64::from(r.workers_paid);
        self.fen += r.amount_recovered_fen;
    }

    pub(super) fn add(&mut self, o: &Settled) {
        self.cases += o.cases;
        self.workers += o.workers;
        self.fen += o.fen;
    }

    pub(super) fn cells(&self) -> [Cell; 3] {
        [
            Cell::Int(self.cases),
            Cell::wan_people(self.workers),
            Cell::wan_yuan(self.fen),
        ]
    }
}

#[derive(Debug, Default)]
struct Row {
    gov: Projects,
    soe: Projects,
    platform: Settled,
    arbitration: Settled,
    court: Settled,
    industry: Settled,
    reception_day: i64,
    violators: BTreeSet<String>,
    joint_punishment: i64,
}

impl Tally for Row {
    fn add(&mut self, o: &Self) {
        self.gov.add(&o.gov);
        self.soe.add(&o.soe);
        self.platform.add(&o.platform);
        self.arbitration.add(&o.arbitration);
        self.court.add(&o.court);
        self.industry.add(&o.industry);
        self.reception_day += o.reception_day;
        self.violators.extend(o.violators.iter().cloned());
        self.joint_punishment += o.joint_punishment;
    }

    fn cells(&self) -> Vec<Cell> {
        let mut out = Vec::new();
        out.extend(self.gov.cells());
        out.extend(self.soe.cells());
        out.extend(self.platform.cells());
        out.extend(self.arbitration.cells());
        out.extend(self.court.cells());
        out.extend(self.industry.cells());
        out.push(Cell::Int(self.reception_day));
        out.push(Cell::Int(self.violators.len() as i64));
        out.push(Cell::Int(self.joint_punishment));
        out
    }
}

fn count(row: &mut Row, case: &Case, kinds: &Kinds, w: Window) {
    let lead = case.lead();
    if let Some((resolver, r)) = case.resolved_in(w) {
        let found = settled(r);
        for (flag, projects) in [
            (lead.government_funded, &mut row.gov),
            (lead.state_owned, &mut row.soe),
        ] {
            if flag != Some(true) {
                continue;
            }
            projects.checked.insert(case.project_key());
            if found {
                projects.with_arrears.insert(case.project_key());
                // Owed is at least what was recovered: the lead's claim may be lower or unknown.
                projects.owed_fen += lead.amount_fen.max(r.amount_recovered_fen);
                projects.workers += i64::from(lead.worker_count.max(r.workers_paid));
            }
        }
        if found {
            let channel = pb::ResolutionChannel::try_from(r.channel).unwrap_or_default();
            if lead.sector == pb::Sector::PlatformWork as i32 {
                row.platform.count(r);
            }
            if channel == pb::ResolutionChannel::Arbitration {
                row.arbitration.count(r);
            }
            if channel == pb::ResolutionChannel::CourtEnforcement {
                row.court.count(r);
            }
            if is_industry_authority(kinds, resolver) {
                row.industry.count(r);
            }
        }
    }
    if w.contains(case.opened_at()) && case.channel() == pb::LeadChannel::ReceptionDay {
        row.reception_day += 1;
    }
    for kind in case.sanctions_in(w) {
        match kind {
            pb::SanctionKind::SeriousViolatorPublication => {
                row.violators.insert(case.employer_key());
            }
            pb::SanctionKind::JointPunishmentList => row.joint_punishment += 1,
            pb::SanctionKind::Unspecified => {}
        }
    }
}

const NOTES: &[Note] = &[
    Note {
        figure: "gov_projects_checked",
        coverage: Coverage::Partial,
        zh: "“检查”指该项目有案件在统计期内办结（任一办结结论）。网关只通过线索和预警认识项目：未产生线索的实地检查不在网关中，故本数为下限。是否政府投资、是否国企项目取自线索的填报，未填报的不计入。国企项目行同此。",
        en: "\"Checked\" = a case on the project was resolved (办结) in the period, whatever its conclusion. The gateway knows projects only through leads and warnings: inspections that raised no lead are not in it, so this is a lower bound. Government-invested / state-owned comes from the lead; leads that leave it unset are not counted. The same holds for the state-owned-enterprise rows.",
    },
    Note {
        figure: "gov_projects_with_arrears",
        coverage: Coverage::Complete,
        zh: "查实存在欠薪：办结结论为查实欠薪（已全部或部分支付），或办结时追回了工资。拖欠金额、人数按案件累加，取线索反映数与追回数中的较大者。同时属于政府投资和国企的项目两行分别统计。",
        en: "Arrears found: the resolution confirms arrears (paid in full or in part) or recovered wages. Owed amount and workers add up per case, each the larger of the lead's claim and what was recovered. A project both government-invested and state-owned counts in both rows.",
    },
    Note {
        figure: "platform_cases",
        coverage: Coverage::Complete,
        zh: "行业领域为新就业形态（平台用工）的案件，在统计期内办结且查实欠薪或追回工资；人数、金额为办结时支付的人数和追回金额。仲裁、法院、行业主管部门三行同此口径。",
        en: "Cases whose sector is platform work, resolved in the period with arrears confirmed or wages recovered; workers and amount are those paid and recovered at resolution. The arbitration, court and industry-authority rows use the same measure.",
    },
    Note {
        figure: "court_cases",
        coverage: Coverage::Partial,
        zh: "网关不区分法院集中执行活动与一般执行：计入全部经法院执行解决的案件。",
        en: "The gateway cannot tell a concentrated-enforcement campaign from ordinary enforcement: every case settled through court enforcement is counted.",
    },
    Note {
        figure: "industry_cases",
        coverage: Coverage::Complete,
        zh: "由住建、交通、水利部门作为主办单位办结的案件（办结步骤的签发方）。",
        en: "Cases resolved by a housing, transport or water authority as holder (the signer of the resolve step).",
    },
    Note {
        figure: "reception_day_leads",
        coverage: Coverage::Partial,
        zh: "以集中接访渠道线索立案的案件。集中接访线索若与已在办的同一事项合并，其渠道只在载荷中，报表不读取，不计入。",
        en: "Cases opened by a lead from a concentrated reception day. A reception-day lead linked to a case already open about the same matter is not counted: its channel is only in its payload, which reports never read.",
    },
    Note {
        figure: "serious_violator_units",
        coverage: Coverage::Partial,
        zh: "统计期内记录“公布欠薪严重违法单位”处理的案件所涉用人单位（按统一社会信用代码，无则按名称）去重计数。被处理单位本身的名称和代码只在处理载荷中，报表不读取，故以线索中的用人单位为准。",
        en: "Distinct employers (by credit code, else name) named by the leads of cases with a serious-violator publication recorded in the period. The sanctioned unit itself is named only in the sanction's payload, which reports never read, so the lead's employer stands for it.",
    },
    Note {
        figure: "joint_punishment_entries",
        coverage: Coverage::Complete,
        zh: "统计期内记录的列入失信联合惩戒名单处理（件）。",
        en: "Joint-punishment-list entries recorded in the period (one per decision).",
    },
];

pub(super) fn report(cases: &[Case], kinds: &Kinds, w: Window, district: Option<&str>) -> Parts {
    let rows = by_district(cases, |row: &mut Row, case| count(row, case, kinds, w));
    let table = district_table(
        ("annex", "专项行动情况统计表", "Campaign statistics annex"),
        COLUMNS,
        &rows,
        district,
    );
    Parts {
        tables: vec![table],
        charts: vec![
            Chart::bars(
                "查实欠薪项目拖欠工资（万元）",
                "Wages owed on projects with arrears found (10k yuan)",
                "annex",
                &["gov_arrears_wan_yuan", "soe_arrears_wan_yuan"],
            ),
            Chart::bars(
                "解决欠薪案件（件）",
                "Arrears cases settled",
                "annex",
                &[
                    "platform_cases",
                    "arbitration_cases",
                    "court_cases",
                    "industry_cases",
                ],
            ),
        ],
        notes: NOTES.to_vec(),
    }
}
