//! The campaign reports over a data set seeded through a real gateway: thirteen leads from
//! every kind of channel (one of them linked to an open case, one an early warning the gateway
//! raises itself), taken through sign-for, returns, transfers, referrals to police and a court,
//! resolutions through every channel the annex counts, sanctions, supervision, and clocks of
//! seconds that run out and escalate. Every figure of every report is checked against numbers
//! worked out by hand below; then the files: the CSV parses back to the same tables, the XLSX
//! is a zip holding one sheet per table, the HTML page is one file with inline SVG charts and
//! nothing fetched, and no reporter's name, phone or ID number appears anywhere. The command
//! line writes the same annex.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use wagelink_gateway::reports::{self, Format, Kind, Period, Report, Request, Table};
use wagelink_proto::envelope::sha256;
use wagelink_proto::v1 as pb;
use wagelink_proto::v1::case_action::Action;
use wagelink_proto::v1::cases_client::CasesClient;
use wagelink_tests::{TestDb, TestGateway, each_backend, header};

const SOURCE: &str = "source-national-platform";
const HRSS: &str = "hrss-500112";
const OFFICE: &str = "leading-office-500000";
const REPORTER: &str = "张三丰";
const PHONE: &str = "13800138000";
const ID_NUMBER: &str = "11010519491231002X";

async fn start(db: TestDb) -> TestGateway {
    TestGateway::start_with(db, |c| {
        wagelink_tests::use_drill_rules(c);
        c.cases.overdue_scan_ms = 100;
        c.banks.warning_scan_ms = 100;
    })
    .await
}

/// A lead with the reporter's personal data filled in (it must never reach a report).
fn lead(
    region: &str,
    channel: pb::LeadChannel,
    employer: &str,
    fen: i64,
    workers: u32,
) -> pb::Lead {
    pb::Lead {
        channel: channel as i32,
        lead_type: pb::LeadType::Arrears as i32,
        region_code: region.into(),
        sector: pb::Sector::Services as i32,
        employer_name: format!("重庆{employer}有限公司"),
        amount_fen: fen,
        worker_count: workers,
        occurred_on: today(),
        reporter_name: REPORTER.into(),
        reporter_phone: PHONE.into(),
        reporter_id_number: ID_NUMBER.into(),
        ..Default::default()
    }
}

fn on_project(mut l: pb::Lead, industry: pb::Industry, code: &str, name: &str) -> pb::Lead {
    l.sector = pb::Sector::Construction as i32;
    l.project_industry = industry as i32;
    l.project_code = code.into();
    l.project_name = name.into();
    l
}

fn today() -> String {
    wagelink_gateway::cases::china_today().to_string()
}

fn day(offset: i64) -> String {
    wagelink_gateway::cases::china_today()
        .checked_add(jiff::Span::new().days(offset))
        .unwrap()
        .to_string()
}

async fn submit(gw: &TestGateway, who: &str, l: &pb::Lead) -> String {
    wagelink_tests::submit_lead(gw, who, l).await.case_id
}

/// One step on a case, signed by `who`.
async fn act(gw: &TestGateway, who: &str, case: &str, action: Action) {
    reply(gw, who, case, action, "").await;
}

/// One step answering an earlier message (a filing decision, a court result).
async fn reply(gw: &TestGateway, who: &str, case: &str, action: Action, in_reply_to: &str) {
    let mut h = header(who);
    h.subject = case.into();
    h.in_reply_to = in_reply_to.into();
    let payload = pb::CaseAction {
        case_id: case.into(),
        action: Some(action),
    };
    let env = gw.signer(who).seal(h, &payload).unwrap();
    CasesClient::new(gw.channel_as(who).await)
        .act_on_case(env)
        .await
        .unwrap_or_else(|s| panic!("{who} on {case}: {s:?}"));
}

async fn view(gw: &TestGateway, case: &str) -> pb::CaseView {
    gw.running
        .log
        .store()
        .case(case)
        .await
        .unwrap()
        .expect("a stored case")
        .view
}

/// Waits until the case satisfies `done` (the gateway's scans act on their own).
async fn until(gw: &TestGateway, case: &str, done: impl Fn(&pb::CaseView) -> bool) -> pb::CaseView {
    for _ in 0..200 {
        let v = view(gw, case).await;
        if done(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("case {case} never got there: {:?}", view(gw, case).await);
}

fn escalations(v: &pb::CaseView) -> usize {
    v.history
        .iter()
        .filter(|e| e.kind() == pb::CaseEventKind::Escalate)
        .count()
}

fn last_forward(v: &pb::CaseView) -> String {
    v.history
        .iter()
        .rev()
        .find(|e| e.kind() == pb::CaseEventKind::Forward)
        .map(|e| e.message_id.clone())
        .unwrap()
}

fn sign_for() -> Action {
    Action::SignFor(pb::case_action::SignFor::default())
}

fn resolve(
    conclusion: pb::CaseConclusion,
    channel: pb::ResolutionChannel,
    fen: i64,
    workers: u32,
) -> Action {
    Action::Resolve(pb::case_action::Resolve {
        conclusion: conclusion as i32,
        channel: channel as i32,
        amount_recovered_fen: fen,
        workers_paid: workers,
        resolved_on: today(),
        summary: "办结".into(),
    })
}

fn sanction(kind: pb::SanctionKind, number: &str) -> Action {
    Action::Sanction(pb::case_action::Sanction {
        kind: kind as i32,
        subject_name: "重庆某建筑工程有限公司".into(),
        subject_uscc: "91350100M000100Y43".into(),
        decision_number: number.into(),
        decided_on: today(),
        note: String::new(),
    })
}

/// The seeded cases, in the order they were opened.
struct Seeded {
    c1: String,
    c2: String,
    c3: String,
    c4: String,
    c5: String,
    c6: String,
    c7: String,
    c8: String,
    c10: String,
    warning: String,
    c12: String,
    c13: String,
}

async fn seed(gw: &TestGateway) -> Seeded {
    use pb::CaseConclusion as C;
    use pb::LeadChannel as L;
    use pb::ResolutionChannel as R;
    use pb::SanctionKind as K;

    // The drill cases first: their clocks run while the rest is seeded.
    let c6 = submit(
        gw,
        SOURCE,
        &lead("500101", L::NationalPlatform, "万州甲餐饮", 500_000, 2),
    )
    .await;
    let c7 = submit(
        gw,
        SOURCE,
        &lead("500101", L::CityApp, "万州乙物业", 800_000, 3),
    )
    .await;

    // C1: a government-funded housing project in 渝北区 (co-handled by the housing authority),
    // reported again by the city HRSS office (linked), settled by an inspection order, fed back,
    // closed, then sanctioned three times (two publications of the same employer).
    let mut l1 = on_project(
        lead("500112", L::NationalPlatform, "渝北甲建筑", 36_000_000, 12),
        pb::Industry::HousingMunicipal,
        "P-YB-01",
        "渝北一号安置房项目",
    );
    l1.government_funded = Some(true);
    l1.state_owned = Some(false);
    let c1 = submit(gw, SOURCE, &l1).await;
    let mut again = l1.clone();
    again.channel = L::AgencyReferral as i32;
    assert_eq!(
        submit(gw, "hrss-500000", &again).await,
        c1,
        "linked, not a new case"
    );

    // C2: found by an on-site screening: government-funded and state-owned, 50 workers (a major
    // case, supervised from the start); settled through arbitration.
    let mut l2 = on_project(
        lead("500112", L::GridInspector, "渝北乙建设", 10_000_000, 50),
        pb::Industry::HousingMunicipal,
        "P-YB-02",
        "渝北二号学校项目",
    );
    l2.government_funded = Some(true);
    l2.state_owned = Some(true);
    let c2 = submit(gw, SOURCE, &l2).await;

    // C3: a petition about platform work; partly paid after mediation; the employer published.
    let mut l3 = lead("500112", L::Petition, "渝北丙配送", 2_500_000, 5);
    l3.sector = pb::Sector::PlatformWork as i32;
    let c3 = submit(gw, SOURCE, &l3).await;

    // C4: a police incident on the project C2's screening found; referred to police, filed.
    let mut l4 = on_project(
        lead("500112", L::PoliceIncident, "渝北丁劳务", 60_000_000, 20),
        pb::Industry::HousingMunicipal,
        "P-YB-02",
        "渝北二号学校项目",
    );
    l4.lead_type = pb::LeadType::SuspectedCrime as i32;
    let c4 = submit(gw, "police-500112", &l4).await;

    // C5: public opinion about a factory routed to 渝中区, which returns it to 江北区.
    let mut l5 = lead("500103", L::PublicOpinion, "江北戊制造", 1_000_000, 3);
    l5.sector = pb::Sector::Manufacturing as i32;
    let c5 = submit(gw, SOURCE, &l5).await;

    // C8: a reception-day lead on a state-owned road project; transferred by the leading
    // office to the transport authority, which settles it.
    let mut l8 = on_project(
        lead("500112", L::ReceptionDay, "渝北己路桥", 5_000_000, 8),
        pb::Industry::Transport,
        "P-YB-03",
        "渝北三号道路项目",
    );
    l8.government_funded = Some(false);
    l8.state_owned = Some(true);
    let c8 = submit(gw, SOURCE, &l8).await;

    // C10: the third lead on P-YB-02 within 90 days: the gateway raises an R8 warning.
    let c10 = submit(
        gw,
        SOURCE,
        &on_project(
            lead("500112", L::NationalPlatform, "渝北庚劳务", 3_000_000, 6),
            pb::Industry::HousingMunicipal,
            "P-YB-02",
            "渝北二号学校项目",
        ),
    )
    .await;

    // C12: a hotline lead known only at city level; put under supervision.
    let c12 = submit(
        gw,
        SOURCE,
        &lead("500000", L::Hotline, "市辛商贸", 400_000, 2),
    )
    .await;

    // C13: a dispute in 渝中区, sent to court for enforcement, enforced in full.
    let mut l13 = lead("500103", L::NationalPlatform, "渝中壬餐饮", 1_500_000, 3);
    l13.lead_type = pb::LeadType::Dispute as i32;
    let c13 = submit(gw, SOURCE, &l13).await;

    let close = || Action::Close(pb::case_action::Close::default());
    act(gw, HRSS, &c1, sign_for()).await;
    act(
        gw,
        HRSS,
        &c1,
        resolve(C::ArrearsPaid, R::InspectionOrder, 36_000_000, 12),
    )
    .await;
    let fed_back = Action::Feedback(pb::case_action::Feedback {
        text: "已全额支付".into(),
        reporter_contacted: true,
        reporter_satisfied: Some(true),
    });
    act(gw, HRSS, &c1, fed_back).await;
    act(gw, HRSS, &c1, close()).await;
    act(
        gw,
        HRSS,
        &c1,
        sanction(K::JointPunishmentList, "渝北人社失信〔2026〕1号"),
    )
    .await;
    act(
        gw,
        HRSS,
        &c1,
        sanction(K::SeriousViolatorPublication, "渝北人社公布〔2026〕1号"),
    )
    .await;
    act(
        gw,
        HRSS,
        &c1,
        sanction(K::SeriousViolatorPublication, "渝北人社公布〔2026〕2号"),
    )
    .await;

    act(gw, HRSS, &c2, sign_for()).await;
    act(
        gw,
        HRSS,
        &c2,
        resolve(C::ReferredToArbitration, R::Arbitration, 8_000_000, 40),
    )
    .await;

    act(gw, HRSS, &c3, sign_for()).await;
    act(
        gw,
        HRSS,
        &c3,
        resolve(C::ArrearsPartlyPaid, R::Mediation, 2_000_000, 4),
    )
    .await;
    act(
        gw,
        OFFICE,
        &c3,
        sanction(K::SeriousViolatorPublication, "渝治欠办公布〔2026〕3号"),
    )
    .await;

    act(gw, HRSS, &c4, sign_for()).await;
    let referral = Action::Forward(pb::case_action::Forward {
        to_partner: "police-500112".into(),
        summary: "涉嫌拒不支付劳动报酬罪".into(),
        documents: vec![pb::Document {
            file_name: "移送书.pdf".into(),
            sha256: sha256(b"letter").to_vec(),
            size_bytes: 6,
            kind: pb::DocumentKind::ReferralLetter as i32,
            media_type: "application/pdf".into(),
        }],
        target: Some(pb::case_action::forward::Target::CriminalReferral(
            pb::case_action::CriminalReferral {
                amount_fen: 60_000_000,
                worker_count: 20,
                months_owed: 4,
                order_to_pay_number: "渝北人社监令〔2026〕9号".into(),
                order_delivered_on: today(),
                decided_on: today(),
            },
        )),
    });
    act(gw, HRSS, &c4, referral).await;
    act(gw, "police-500112", &c4, sign_for()).await;
    let forward = last_forward(&view(gw, &c4).await);
    let filed = Action::FilingDecision(pb::case_action::FilingDecision {
        outcome: pb::FilingOutcome::Filed as i32,
        reason: String::new(),
        police_case_number: "渝北公（经）立字〔2026〕12号".into(),
        decided_on: today(),
    });
    reply(gw, "police-500112", &c4, filed, &forward).await;

    let back = Action::ReturnCase(pb::case_action::Return {
        reason: pb::ReturnReason::OutsideRegion as i32,
        explanation: "工厂位于江北区".into(),
        suggested_handler: "hrss-500105".into(),
    });
    act(gw, "hrss-500103", &c5, back).await;
    act(gw, "hrss-500105", &c5, sign_for()).await;

    act(gw, HRSS, &c8, sign_for()).await;
    let transfer = Action::Transfer(pb::case_action::Transfer {
        to_partner: "transport-500000".into(),
        reason: "道路项目由交通部门主办".into(),
    });
    act(gw, OFFICE, &c8, transfer).await;
    act(gw, "transport-500000", &c8, sign_for()).await;
    let settled = resolve(C::ArrearsPaid, R::Mediation, 5_000_000, 8);
    act(gw, "transport-500000", &c8, settled).await;

    let supervise = Action::Supervise(pb::case_action::Supervise {
        instruction: "限期办结".into(),
        due_on: "2099-12-31".into(),
        checks: vec![],
        supervision_number: "渝治欠办督〔2026〕7号".into(),
    });
    act(gw, OFFICE, &c12, supervise).await;

    act(gw, "hrss-500103", &c13, sign_for()).await;
    let to_court = Action::Forward(pb::case_action::Forward {
        to_partner: "court-500103".into(),
        summary: "申请强制执行".into(),
        documents: vec![],
        target: Some(pb::case_action::forward::Target::Court(
            pb::case_action::CourtRequest {
                kind: pb::CourtRequestKind::Enforcement as i32,
                decision_number: "渝中劳人仲案〔2026〕55号".into(),
                amount_fen: 1_500_000,
                worker_count: 3,
            },
        )),
    });
    act(gw, "hrss-500103", &c13, to_court).await;
    act(gw, "court-500103", &c13, sign_for()).await;
    let forward = last_forward(&view(gw, &c13).await);
    let enforced = Action::CourtResult(pb::case_action::CourtResult {
        kind: pb::CourtResultKind::EnforcedInFull as i32,
        decision_number: "（2026）渝0103执100号".into(),
        decided_on: today(),
        amount_ordered_fen: 1_500_000,
        amount_enforced_fen: 1_200_000,
        worker_count: 3,
        summary: String::new(),
    });
    reply(gw, "court-500103", &c13, enforced, &forward).await;
    let settled = resolve(C::ReferredToCourt, R::CourtEnforcement, 1_200_000, 3);
    act(gw, "hrss-500103", &c13, settled).await;

    // The R8 warning: signed for, cleared, closed.
    let store = gw.running.log.store();
    let mut warning = None;
    for _ in 0..200 {
        if let Some(w) = store.warnings("R8").await.unwrap().first() {
            warning = Some(w.2.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let warning = warning.expect("the R8 warning was raised");
    act(gw, HRSS, &warning, sign_for()).await;
    act(gw, HRSS, &warning, resolve(C::RiskCleared, R::Other, 0, 0)).await;
    act(gw, HRSS, &warning, close()).await;

    // The drill cases: C6 is escalated for not being signed for; C7 is signed for late, then
    // escalated again when its one-second handling clock runs out.
    until(gw, &c6, |v| escalations(v) == 1).await;
    until(gw, &c7, |v| escalations(v) == 1).await;
    act(gw, "hrss-500101", &c7, sign_for()).await;
    until(gw, &c7, |v| escalations(v) == 2).await;

    Seeded {
        c1,
        c2,
        c3,
        c4,
        c5,
        c6,
        c7,
        c8,
        c10,
        warning,
        c12,
        c13,
    }
}

async fn report(
    gw: &TestGateway,
    kind: Kind,
    period: Period,
    district: Option<&str>,
    as_of: i64,
) -> Report {
    let request = Request {
        kind,
        period,
        district: district.map(|d| reports::parse_district(d).unwrap()),
        as_of,
    };
    reports::build(gw.running.log.store(), &request)
        .await
        .unwrap()
}

fn is_zero(cell: &str) -> bool {
    cell.chars().all(|c| c == '0' || c == '.')
}

/// A row written out as its cells joined by `|`.
fn cells(row: &str) -> Vec<String> {
    row.split('|').map(str::to_owned).collect()
}

/// A district table: the rows given in full (district code → figures joined by `|`), every
/// other district and county all zero, in the official order, then the city level and total.
fn check_districts(table: &Table, expected: &[(&str, &str)]) {
    let rows = table.text_rows();
    let codes = [&rows[0][0], &rows[38][0], &rows[39][0]];
    assert_eq!(
        rows.len(),
        38 + 2,
        "{}: districts, city level, total",
        table.id
    );
    assert_eq!(codes, ["500101", "500000", "total"]);
    assert!(table.total);
    let keys: Vec<&str> = table.columns.iter().map(|c| c.key).collect();
    for row in &rows {
        match expected.iter().find(|(code, _)| *code == row[0]) {
            Some((_, want)) => {
                let (id, keys) = (table.id, &keys[2..]);
                assert_eq!(row[2..], cells(want), "{id} row {} ({keys:?})", row[0]);
            }
            None => assert!(
                row[2..].iter().all(|c| is_zero(c)),
                "{} row {} should be all zero: {row:?}",
                table.id,
                row[0]
            ),
        }
    }
}

fn china_minute(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)))
        .strftime("%Y-%m-%d %H:%M")
        .to_string()
}

/// RFC 4180, by hand: quoted fields, doubled quotes, commas and newlines inside quotes.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut field) = (Vec::new(), String::new());
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        !quoted && field.is_empty() && row.is_empty(),
        "the CSV ends mid-record"
    );
    rows
}

/// The names in a zip's central directory, read by hand (PKWARE APPNOTE 4.3.12, 4.3.16).
fn zip_names(bytes: &[u8]) -> Vec<String> {
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]) as usize;
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
    let end = (0..=bytes.len() - 22)
        .rev()
        .find(|&i| bytes[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .expect("an end-of-central-directory record");
    let (count, mut at) = (u16_at(end + 10), u32_at(end + 16));
    let mut names = Vec::new();
    for _ in 0..count {
        assert_eq!(
            bytes[at..at + 4],
            [0x50, 0x4b, 0x01, 0x02],
            "a central directory entry"
        );
        let (name, extra, comment) = (u16_at(at + 28), u16_at(at + 30), u16_at(at + 32));
        names.push(String::from_utf8(bytes[at + 46..at + 46 + name].to_vec()).unwrap());
        at += 46 + name + extra + comment;
    }
    names
}

/// Writes every format and checks the files against the report.
fn check_files(report: &Report, dir: &Path) -> Vec<PathBuf> {
    let written = reports::write(report, dir, Format::All).unwrap();
    let stem = report.file_stem();
    for table in &report.tables {
        let path = dir.join(format!("{stem}_{}.csv", table.id));
        let rows = parse_csv(&std::fs::read_to_string(&path).unwrap());
        let keys: Vec<&str> = table.columns.iter().map(|c| c.key).collect();
        assert_eq!(rows[0], keys, "{}", path.display());
        assert_eq!(rows[1..], table.text_rows(), "{}", path.display());
    }
    let notes = parse_csv(&std::fs::read_to_string(dir.join(format!("{stem}_notes.csv"))).unwrap());
    assert_eq!(
        notes[0],
        [
            "figure", "label_zh", "label_en", "coverage", "note_zh", "note_en"
        ]
    );
    for note in &report.notes {
        assert!(
            notes
                .iter()
                .any(|r| r[0] == note.figure && !r[5].is_empty()),
            "{}",
            note.figure
        );
    }

    let xlsx = std::fs::read(dir.join(format!("{stem}.xlsx"))).unwrap();
    let names = zip_names(&xlsx);
    assert!(names.iter().any(|n| n == "xl/workbook.xml"), "{names:?}");
    let sheets = reports::sheet_names(report);
    assert_eq!(sheets.len(), report.tables.len() + 1);
    for i in 1..=sheets.len() {
        assert!(
            names.contains(&format!("xl/worksheets/sheet{i}.xml")),
            "{names:?}"
        );
    }
    assert!(!names.contains(&format!("xl/worksheets/sheet{}.xml", sheets.len() + 1)));

    let html = std::fs::read_to_string(dir.join(format!("{stem}.html"))).unwrap();
    let (zh, en) = report.kind.title();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains(zh) && html.contains(en));
    assert_eq!(html.matches("<svg").count(), report.charts.len());
    for gone in ["<script", "<link", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(gone), "the page fetches something: {gone}");
    }
    for table in &report.tables {
        assert!(html.contains(&format!("id=\"{}\"", table.id)));
        for c in &table.columns {
            assert!(html.contains(c.zh) && html.contains(c.en), "{}", c.key);
        }
    }
    assert_eq!(written.len(), report.tables.len() + 1 + 2);
    for path in &written {
        let bytes = std::fs::read(path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in [REPORTER, PHONE, ID_NUMBER] {
            assert!(!text.contains(secret), "{} holds {secret}", path.display());
        }
    }
    // Nothing is left under a temporary name.
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".partial"), "{name}");
    }
    written
}

#[tokio::test]
async fn every_figure_of_every_report_on_both_backends() {
    for db in each_backend().await {
        let gw = start(db).await;
        check_reports(&gw).await;
        gw.stop().await;
    }
}

async fn check_reports(gw: &TestGateway) {
    let s = seed(gw).await;
    let as_of = wagelink_tests::now();
    let span = || Period::between(&day(-1), &day(2)).unwrap();
    let out = tempfile::tempdir().unwrap();

    // The annex. 渝北区: government-invested P-YB-01 (C1: 36万元 owed, 12 workers) and
    // P-YB-02 (C2: owed 10万元 ≥ 8万元 recovered, 50 workers ≥ 40 paid) checked with arrears
    // found; state-owned P-YB-02 (C2) and P-YB-03 (C8: 5万元, 8); platform work C3 (4 workers,
    // 2万元); arbitration C2 (40, 8万元); industry authority C8 (transport: 8, 5万元); one
    // reception-day lead (C8); two employers published (C1 twice, C3), one joint-punishment
    // entry. 渝中区: C13 enforced by the court (3, 1.2万元). Columns: government-invested
    // checked | with arrears | 万元 | 万人, the same for state-owned, then cases | 万人 | 万元 for
    // platform work, arbitration, courts, industry authorities, then reception-day leads |
    // units published | joint-punishment entries.
    let yubei = "2|2|46.000000|0.0062|2|2|15.000000|0.0058|\
                 1|0.0004|2.000000|1|0.0040|8.000000|0|0.0000|0.000000|1|0.0008|5.000000|1|2|1";
    let annex_rows = [
        ("500112", yubei),
        (
            "500103",
            "0|0|0.000000|0.0000|0|0|0.000000|0.0000|\
             0|0.0000|0.000000|0|0.0000|0.000000|1|0.0003|1.200000|0|0.0000|0.000000|0|0|0",
        ),
        (
            "total",
            "2|2|46.000000|0.0062|2|2|15.000000|0.0058|\
             1|0.0004|2.000000|1|0.0040|8.000000|1|0.0003|1.200000|1|0.0008|5.000000|1|2|1",
        ),
    ];
    let annex = report(gw, Kind::Annex, span(), None, as_of).await;
    check_districts(annex.table("annex").unwrap(), &annex_rows);
    let partial: Vec<&str> = annex
        .notes
        .iter()
        .filter(|n| n.coverage == reports::Coverage::Partial)
        .map(|n| n.figure)
        .collect();
    assert_eq!(
        partial,
        [
            "gov_projects_checked",
            "court_cases",
            "reception_day_leads",
            "serious_violator_units"
        ]
    );
    check_files(&annex, out.path());

    // One district alone: its row, no city-wide total.
    let one = report(gw, Kind::Annex, span(), Some("500112"), as_of).await;
    let t = one.table("annex").unwrap();
    assert!(!t.total);
    assert_eq!(t.text_rows(), [cells(&format!("500112|渝北区|{yubei}"))]);
    // A period before any of it: nothing.
    let earlier = Period::between(&day(-10), &day(-3)).unwrap();
    let before = report(gw, Kind::Annex, earlier, None, as_of).await;
    check_districts(before.table("annex").unwrap(), &[]);

    // The daily overdue scan. Running clocks: 渝北区 the feed-back clocks of C2, C3 and C8, the
    // handling clock of C4, the sign-for clock of C10; 江北区 C5's handling; 万州区 C6's
    // sign-for and C7's handling, both overdue (C7's sign-for ran out and was met late); 渝中区
    // C13's feed-back; city level C12's sign-for and supervision due date. Columns: cases with
    // running clocks | running | overdue | overdue cases | ran out this day | met late this day.
    let overdue = report(
        gw,
        Kind::Overdue,
        Period::day(&today()).unwrap(),
        None,
        as_of,
    )
    .await;
    check_districts(
        overdue.table("overdue-by-district").unwrap(),
        &[
            ("500112", "5|5|0|0|0|0"),
            ("500105", "1|1|0|0|0|0"),
            ("500101", "2|2|2|2|3|1"),
            ("500103", "1|1|0|0|0|0"),
            ("500000", "1|2|0|0|0|0"),
            ("total", "10|11|2|2|3|1"),
        ],
    );
    let clock = |v: &pb::CaseView, kind: pb::ClockKind| {
        let d = v.deadlines.iter().find(|d| d.kind() == kind).unwrap();
        let (start, due) = (d.started_at.unwrap().seconds, d.due_at.unwrap().seconds);
        format!("{}|{}", china_minute(start), china_minute(due))
    };
    let c6 = clock(&view(gw, &s.c6).await, pb::ClockKind::SignFor);
    let c7 = clock(&view(gw, &s.c7).await, pb::ClockKind::Handle);
    assert_eq!(
        overdue.table("overdue-clocks").unwrap().text_rows(),
        [
            cells(&format!(
                "{}|500101|万州区|签收 sign for|hrss-500101|{c6}|0|督办中 escalated|\
                 国务院欠薪线索反映平台 national lead platform||重庆万州甲餐饮有限公司",
                s.c6
            )),
            cells(&format!(
                "{}|500101|万州区|办理 handle|hrss-500101|{c7}|0|督办中 escalated|\
                 渝悦·根治欠薪 city app||重庆万州乙物业有限公司",
                s.c7
            )),
        ]
    );
    check_files(&overdue, out.path());

    // The weekly dispatch summary (every step of the seed falls in this week). Columns: leads
    // received | cases opened | warnings | signed for | on time | on-time % | returned |
    // transferred | forwarded | resolved | fed back | closed | escalated | supervised | open at
    // the end | overdue at the end.
    let flow = [
        ("500112", "8|7|1|7|7|100.0|0|1|1|5|1|2|0|0|2|0"),
        ("500105", "1|1|0|1|1|100.0|1|0|0|0|0|0|0|0|1|0"),
        ("500101", "2|2|0|1|0|0.0|0|0|0|0|0|0|3|0|2|2"),
        ("500103", "1|1|0|1|1|100.0|0|0|1|1|0|0|0|0|0|0"),
        ("500000", "1|1|0|0|0||0|0|0|0|0|0|0|1|1|0"),
        ("total", "13|12|1|10|9|90.0|1|1|2|6|1|2|3|1|6|2"),
    ];
    let week = Period::week_of(&today()).unwrap();
    let dispatch = report(gw, Kind::Dispatch, week, None, as_of).await;
    check_districts(dispatch.table("flow").unwrap(), &flow);
    check_files(&dispatch, out.path());

    // The collaborative-handling rate. Handled jointly: C1 and C2 (labour inspection with the
    // housing authority as co-handler), C4 (with the police it referred to), C8 (signed for by
    // labour inspection, then the transport authority), C13 (with the court), and the R8
    // warning (its project P-YB-02 is a housing project, so the housing authority co-handles
    // it). Not: C3 and C7 (one agency), C10 (only its co-handler; the holder has not acted), C5
    // (the district that returned it does not count), C6 and C12 (no agency has acted; the
    // leading office's supervision is not handling). City-wide 6 of 12: exactly the 50% target.
    // Columns: leads | jointly | warnings | jointly | total | jointly | % | meets the target.
    let collab_rows = [
        ("500112", "6|4|1|1|7|5|71.4|是 yes"),
        ("500105", "1|0|0|0|1|0|0.0|否 no"),
        ("500101", "2|0|0|0|2|0|0.0|否 no"),
        ("500103", "1|1|0|0|1|1|100.0|是 yes"),
        ("500000", "1|0|0|0|1|0|0.0|否 no"),
        ("total", "11|5|1|1|12|6|50.0|是 yes"),
    ];
    let collab = report(gw, Kind::Collaboration, span(), None, as_of).await;
    check_districts(collab.table("collaboration").unwrap(), &collab_rows);
    let national = "国务院欠薪线索反映平台 national lead platform";
    let housing = "housing-500000 hrss-500112";
    let mut expected: Vec<Vec<String>> = [
        (&s.c6, "500101|万州区", national, "|0|否 no"),
        (
            &s.c7,
            "500101|万州区",
            "渝悦·根治欠薪 city app",
            "hrss-500101|1|否 no",
        ),
        (
            &s.c1,
            "500112|渝北区",
            national,
            &format!("{housing}|2|是 yes"),
        ),
        (
            &s.c2,
            "500112|渝北区",
            "实地排查（治欠协管员） on-site screening",
            &format!("{housing}|2|是 yes"),
        ),
        (
            &s.c3,
            "500112|渝北区",
            "信访 petition",
            "hrss-500112|1|否 no",
        ),
        (
            &s.c4,
            "500112|渝北区",
            "警情 police incident",
            "hrss-500112 police-500112|2|是 yes",
        ),
        (
            &s.c5,
            "500105|江北区",
            "舆情 public opinion",
            "hrss-500105|1|否 no",
        ),
        (
            &s.c8,
            "500112|渝北区",
            "集中接访 reception day",
            "hrss-500112 transport-500000|2|是 yes",
        ),
        (&s.c10, "500112|渝北区", national, "housing-500000|1|否 no"),
        (&s.c12, "500000|重庆市", "热线 hotline", "|0|否 no"),
        (
            &s.c13,
            "500103|渝中区",
            national,
            "court-500103 hrss-500103|2|是 yes",
        ),
        (
            &s.warning,
            "500112|渝北区",
            "监控预警 monitoring warning",
            &format!("{housing}|2|是 yes"),
        ),
    ]
    .iter()
    .map(|(id, district, channel, agencies)| {
        cells(&format!("{id}|{district}|{channel}|{agencies}"))
    })
    .collect();
    let mut got = collab.table("collaboration-cases").unwrap().text_rows();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    check_files(&collab, out.path());

    // The look-back: C3 (petition), C4 (police incident) and C5 (public opinion, now in
    // 江北区) surfaced outside screening; C4's project had been found by C2's screening before.
    // Columns: cases opened | screening | warnings | other channels | petition | police
    // incident | public opinion | those three | % | of them screened or warned before.
    let lookback = report(gw, Kind::Lookback, span(), None, as_of).await;
    check_districts(
        lookback.table("lookback").unwrap(),
        &[
            ("500112", "7|1|1|3|1|1|0|2|28.6|1"),
            ("500105", "1|0|0|0|0|0|1|1|100.0|0"),
            ("500101", "2|0|0|2|0|0|0|0|0.0|0"),
            ("500103", "1|0|0|1|0|0|0|0|0.0|0"),
            ("500000", "1|0|0|1|0|0|0|0|0.0|0"),
            ("total", "12|1|1|7|1|1|1|3|25.0|1"),
        ],
    );
    let opened = |v: &pb::CaseView| china_minute(v.history[0].accepted_at.unwrap().seconds);
    let (o3, o4, o5) = (
        opened(&view(gw, &s.c3).await),
        opened(&view(gw, &s.c4).await),
        opened(&view(gw, &s.c5).await),
    );
    let t = today();
    assert_eq!(
        lookback.table("lookback-cases").unwrap().text_rows(),
        [
            cells(&format!(
                "{}|500112|渝北区|信访 petition|{o3}|{t}|||重庆渝北丙配送有限公司|2.500000|5|\
                 已办结 resolved|否 no|",
                s.c3
            )),
            cells(&format!(
                "{}|500112|渝北区|警情 police incident|{o4}|{t}|P-YB-02|渝北二号学校项目|\
                 重庆渝北丁劳务有限公司|60.000000|20|已移送 forwarded|是 yes|\
                 {} (on-site screening)",
                s.c4, s.c2
            )),
            cells(&format!(
                "{}|500105|江北区|舆情 public opinion|{o5}|{t}|||重庆江北戊制造有限公司|1.000000|3|\
                 已签收 signed for|否 no|",
                s.c5
            )),
        ]
    );
    check_files(&lookback, out.path());

    // The monthly bulletin: the week's flow (the same steps), what was recovered, the channels
    // of resolutions and of leads, and the collaborative-handling rate.
    let month = Period::month(&today()[..7]).unwrap();
    let bulletin = report(gw, Kind::Bulletin, month, None, as_of).await;
    check_districts(bulletin.table("flow").unwrap(), &flow);
    // Columns: resolved | arrears settled | 万人 paid | 万元 recovered.
    check_districts(
        bulletin.table("outcomes").unwrap(),
        &[
            ("500112", "5|4|0.0064|51.000000"),
            ("500103", "1|1|0.0003|1.200000"),
            ("total", "6|5|0.0067|52.200000"),
        ],
    );
    let rows = |table: &str| -> Vec<String> {
        let t = bulletin.table(table).unwrap();
        t.text_rows().iter().map(|r| r.join("|")).collect()
    };
    assert_eq!(
        rows("resolution-channels"),
        [
            "调解协调 mediation|2|2|0.0012|7.000000",
            "监察责令支付 inspection order|1|1|0.0012|36.000000",
            "劳动人事争议仲裁 arbitration|1|1|0.0040|8.000000",
            "法院执行 court enforcement|1|1|0.0003|1.200000",
            "刑事案件 criminal case|0|0|0.0000|0.000000",
            "工资保证金垫付 guarantee deposit advance|0|0|0.0000|0.000000",
            "应急周转金垫付 emergency fund advance|0|0|0.0000|0.000000",
            "其他 other|1|0|0.0000|0.000000",
            "合计 total|6|5|0.0067|52.200000",
        ]
    );
    // Columns: cases opened | resolved.
    assert_eq!(
        rows("lead-channels"),
        [
            "国务院欠薪线索反映平台 national lead platform|4|2",
            "渝悦·根治欠薪 city app|1|0",
            "热线 hotline|1|0",
            "信访 petition|1|1",
            "警情 police incident|1|0",
            "舆情 public opinion|1|0",
            "实地排查（治欠协管员） on-site screening|1|1",
            "集中接访 reception day|1|1",
            "监控预警 monitoring warning|1|1",
            "智慧工地 smart site|0|0",
            "部门转送 agency referral|0|0",
            "其他 other|0|0",
            "合计 total|12|6",
        ]
    );
    check_districts(bulletin.table("collaboration").unwrap(), &collab_rows);
    check_files(&bulletin, out.path());

    check_command_line(gw, &annex, out.path()).await;
}

/// `wagelink report annex` reads the database itself and writes the same annex; a district
/// that is not one is refused, naming the list to look in.
async fn check_command_line(gw: &TestGateway, annex: &Report, written: &Path) {
    let dir = written.join("cli");
    let config = gw.config.data_dir.join("wagelink.toml");
    let url = gw.config.effective_database_url();
    let (from, to) = (day(-1), day(2));
    let run = |args: Vec<&str>| {
        let mut argv = vec!["wagelink", "report"];
        argv.extend(args);
        argv.extend(["--config", config.to_str().unwrap(), "--database-url", &url]);
        argv.extend(["--from", &from, "--to", &to, "--out", dir.to_str().unwrap()]);
        wagelink_gateway::cli::run(wagelink_gateway::cli::Cli::try_parse_from(argv).unwrap())
    };
    run(vec!["annex"]).await.unwrap();
    let stem = annex.file_stem();
    for file in [format!("{stem}_annex.csv"), format!("{stem}_notes.csv")] {
        let (cli, lib) = (dir.join(&file), written.join(&file));
        assert_eq!(
            std::fs::read(cli).unwrap(),
            std::fs::read(lib).unwrap(),
            "{file}"
        );
    }
    // (The page and the workbook say when they were taken, so only that line differs.)
    for file in [format!("{stem}.xlsx"), format!("{stem}.html")] {
        assert!(dir.join(&file).exists(), "{file}");
    }
    let err = run(vec!["lookback", "--district", "500000"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("regions-chongqing.csv"), "{err}");
}
