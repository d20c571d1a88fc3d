//! What a report reads off one stored case: the `CaseView` the gateway keeps (the lead without
//! the reporter's personal data, its full step history and clocks). Every figure of every report
//! is built from these few readings, so each is defined once, here.
//!
//! Time: a report looks at the steps accepted inside a [`Window`] and at the case as it stood
//! at the window's end (every step accepted before it).

use std::collections::{BTreeMap, BTreeSet};

use wagelink_proto::v1 as pb;

use crate::cases::machine::escalates;
use crate::identity::PartnerKind;

use pb::CaseEventKind as E;

/// `[start, end)` in Unix seconds: the period, cut at the moment the report is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    pub fn contains(self, t: i64) -> bool {
        self.start <= t && t < self.end
    }
}

fn secs(t: &Option<prost_types::Timestamp>) -> Option<i64> {
    t.as_ref().map(|t| t.seconds)
}

/// Whether a met (or stopped) clock was met after it ran out: after its due instant, or after
/// the gateway escalated it (the overdue scan escalates at the due second itself, and steps are
/// timed to the second, so a step in that same second still came after the escalation).
fn late(d: &pb::Deadline) -> bool {
    d.overdue
        || secs(&d.met_at)
            .zip(secs(&d.due_at))
            .is_some_and(|(met, due)| met > due)
}

/// Partner kinds by partner id, from the registry.
pub type Kinds = BTreeMap<String, PartnerKind>;

/// Agencies that handle cases: labour inspection, the industry and funding authorities, police,
/// procuratorates, courts and arbitration. Not lead sources, banks, leading offices (they
/// oversee and supervise; counting them would make every escalated case "collaborative"), peer
/// gateways, operators, or the gateway itself.
pub fn is_agency(kinds: &Kinds, partner: &str) -> bool {
    use PartnerKind as K;
    kinds.get(partner).is_some_and(|k| {
        matches!(
            k,
            K::Hrss
                | K::Housing
                | K::Transport
                | K::Water
                | K::Finance
                | K::DevelopmentReform
                | K::StateAssets
                | K::Police
                | K::Procuratorate
                | K::Court
                | K::Arbitration
        )
    })
}

/// Industry authorities (行业主管部门) in the annex's sense: housing, transport and water.
pub fn is_industry_authority(kinds: &Kinds, partner: &str) -> bool {
    matches!(
        kinds.get(partner),
        Some(PartnerKind::Housing | PartnerKind::Transport | PartnerKind::Water)
    )
}

/// Steps that are handling work (a reply letter included); a lead, a return, a transfer, a
/// supervision or an escalation is not.
fn is_handling(kind: i32) -> bool {
    matches!(
        E::try_from(kind),
        Ok(E::SignFor
            | E::Progress
            | E::Forward
            | E::Resolve
            | E::Feedback
            | E::Close
            | E::FilingDecision
            | E::CourtResult
            | E::Sanction
            | E::Letter)
    )
}

/// How a case first surfaced, for the look-back (回头看).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// On-site or online screening (排查): grid inspectors, smart construction sites.
    Screening,
    /// A monitoring-platform or early-warning-rule warning (预警).
    Warning,
    Petition,
    PoliceIncident,
    PublicOpinion,
    /// Any other reporting channel (platform, app, hotline, reception day, referral…).
    Report,
}

impl Origin {
    /// Whether the look-back counts it as surfacing outside screening and warnings.
    pub fn surfaced(self) -> bool {
        matches!(
            self,
            Origin::Petition | Origin::PoliceIncident | Origin::PublicOpinion
        )
    }
}

/// Conclusions that confirm arrears (查实欠薪).
fn confirms_arrears(conclusion: i32) -> bool {
    matches!(
        pb::CaseConclusion::try_from(conclusion),
        Ok(pb::CaseConclusion::ArrearsPaid | pb::CaseConclusion::ArrearsPartlyPaid)
    )
}

/// A resolution that settled arrears (解决欠薪): the conclusion confirms arrears, or wages were
/// recovered for workers (a case concluded through arbitration, a court or police records what
/// was recovered there).
pub fn settled(r: &pb::case_action::Resolve) -> bool {
    confirms_arrears(r.conclusion) || r.amount_recovered_fen > 0 || r.workers_paid > 0
}

/// One stored case, read for reports.
#[derive(Debug, Clone, Copy)]
pub struct Case<'a> {
    pub view: &'a pb::CaseView,
}

static NO_LEAD: std::sync::OnceLock<pb::Lead> = std::sync::OnceLock::new();

impl<'a> Case<'a> {
    pub fn new(view: &'a pb::CaseView) -> Self {
        Case { view }
    }

    pub fn id(self) -> &'a str {
        &self.view.case_id
    }

    /// The district the case is in now (a case re-routed to another district counts there).
    pub fn district(self) -> &'a str {
        &self.view.region_code
    }

    pub fn lead(self) -> &'a pb::Lead {
        self.view
            .lead
            .as_ref()
            .unwrap_or_else(|| NO_LEAD.get_or_init(pb::Lead::default))
    }

    /// When its first lead was accepted (history[0]), which dates the case.
    pub fn opened_at(self) -> i64 {
        self.view
            .history
            .first()
            .and_then(|e| secs(&e.accepted_at))
            .or_else(|| secs(&self.view.created_at))
            .unwrap_or_default()
    }

    /// Which case was opened first: by acceptance time, then by place in the evidence log
    /// (steps are timed to the second; the log orders them within it).
    pub fn opening_order(self) -> (i64, u64) {
        (
            self.opened_at(),
            self.view.history.first().map_or(0, |e| e.log_index),
        )
    }

    /// The channel of the lead that opened the case.
    pub fn channel(self) -> pb::LeadChannel {
        pb::LeadChannel::try_from(self.lead().channel).unwrap_or_default()
    }

    pub fn is_warning(self) -> bool {
        self.channel() == pb::LeadChannel::MonitoringWarning
    }

    pub fn origin(self) -> Origin {
        use pb::LeadChannel as C;
        match self.channel() {
            C::GridInspector | C::SmartSite => Origin::Screening,
            C::MonitoringWarning => Origin::Warning,
            C::Petition => Origin::Petition,
            C::PoliceIncident => Origin::PoliceIncident,
            C::PublicOpinion => Origin::PublicOpinion,
            _ => Origin::Report,
        }
    }

    /// Steps accepted inside the window.
    pub fn steps_in(self, w: Window) -> impl Iterator<Item = &'a pb::CaseEvent> {
        self.view
            .history
            .iter()
            .filter(move |e| w.contains(secs(&e.accepted_at).unwrap_or_default()))
    }

    /// Steps of one kind accepted inside the window.
    pub fn count(self, w: Window, kind: E) -> i64 {
        self.steps_in(w).filter(|e| e.kind == kind as i32).count() as i64
    }

    fn steps_before(self, at: i64) -> impl Iterator<Item = &'a pb::CaseEvent> {
        self.view
            .history
            .iter()
            .filter(move |e| secs(&e.accepted_at).unwrap_or_default() < at)
    }

    /// The state after the last step accepted before `at`; None when the case was not open yet.
    pub fn state_at(self, at: i64) -> Option<pb::CaseState> {
        self.steps_before(at)
            .last()
            .map(|e| pb::CaseState::try_from(e.state_after).unwrap_or_default())
    }

    /// Whether the case was open (neither resolved, fed back nor closed) just before `at`.
    pub fn open_at(self, at: i64) -> bool {
        use pb::CaseState as S;
        self.state_at(at)
            .is_some_and(|s| !matches!(s, S::Resolved | S::FedBack | S::Closed))
    }

    /// The clocks that bind a partner to act (those whose running out escalates the case),
    /// started before `at` and not met (or stopped) by then.
    pub fn running_at(self, at: i64) -> impl Iterator<Item = &'a pb::Deadline> {
        self.view.deadlines.iter().filter(move |d| {
            escalates(d.kind)
                && secs(&d.started_at).is_some_and(|t| t < at)
                && secs(&d.met_at).is_none_or(|t| t >= at)
        })
    }

    /// The running clocks whose due instant passed before `at`.
    pub fn overdue_at(self, at: i64) -> impl Iterator<Item = &'a pb::Deadline> {
        self.running_at(at)
            .filter(move |d| secs(&d.due_at).is_some_and(|t| t < at))
    }

    /// Clocks that ran out inside the window without being met first.
    pub fn ran_out_in(self, w: Window) -> impl Iterator<Item = &'a pb::Deadline> {
        self.view.deadlines.iter().filter(move |d| {
            escalates(d.kind)
                && secs(&d.due_at).is_some_and(|due| w.contains(due))
                && (secs(&d.met_at).is_none() || late(d))
        })
    }

    /// Clocks met (or stopped) inside the window after they had run out.
    pub fn met_late_in(self, w: Window) -> impl Iterator<Item = &'a pb::Deadline> {
        self.view.deadlines.iter().filter(move |d| {
            escalates(d.kind) && secs(&d.met_at).is_some_and(|m| w.contains(m)) && late(d)
        })
    }

    /// Sign-fors by the holder (the step that takes a case to SIGNED_FOR; a forward target's
    /// receipt of a referral leaves the state alone) inside the window, each with whether it came
    /// before the holder's sign-for clock ran out.
    pub fn sign_fors_in(self, w: Window) -> impl Iterator<Item = bool> + 'a {
        let view = self.view;
        self.steps_in(w)
            .filter(|e| {
                e.kind == E::SignFor as i32 && e.state_after == pb::CaseState::SignedFor as i32
            })
            .map(move |e| {
                let at = secs(&e.accepted_at).unwrap_or_default();
                view.deadlines
                    .iter()
                    .rfind(|d| {
                        d.kind == pb::ClockKind::SignFor as i32
                            && d.partner_id == e.actor
                            && secs(&d.started_at).is_some_and(|t| t <= at)
                    })
                    .is_none_or(|d| !late(d))
            })
    }

    /// The case's resolution, when its resolve step (办结) was accepted inside the window, with
    /// the partner that resolved it.
    pub fn resolved_in(self, w: Window) -> Option<(&'a str, &'a pb::case_action::Resolve)> {
        let step = self
            .steps_in(w)
            .filter(|e| e.kind == E::Resolve as i32)
            .last()?;
        Some((step.actor.as_str(), self.view.resolution.as_ref()?))
    }

    /// Sanctions recorded inside the window, by kind. The kind is the last word of the step's
    /// summary (the state machine writes `sanction recorded by <partner>: <KIND>`); the sanction
    /// itself is in the payload, which reports never read.
    pub fn sanctions_in(self, w: Window) -> impl Iterator<Item = pb::SanctionKind> + 'a {
        self.steps_in(w)
            .filter(|e| e.kind == E::Sanction as i32)
            .filter_map(|e| {
                let word = e.summary.rsplit(": ").next()?;
                [
                    pb::SanctionKind::JointPunishmentList,
                    pb::SanctionKind::SeriousViolatorPublication,
                ]
                .into_iter()
                .find(|k| k.as_str_name().trim_start_matches("SANCTION_KIND_") == word)
            })
    }

    /// The agencies that handled the case before `at`: those that took a handling step or held
    /// a co-handler role (协办), less those that returned it as not theirs (退回).
    pub fn agencies_at(self, kinds: &Kinds, at: i64) -> BTreeSet<&'a str> {
        let mut out = BTreeSet::new();
        let mut returned = BTreeSet::new();
        for e in self.steps_before(at) {
            if e.kind == E::Return as i32 {
                returned.insert(e.actor.as_str());
            }
            if is_handling(e.kind) && is_agency(kinds, &e.actor) {
                out.insert(e.actor.as_str());
            }
            for r in &e.routed_to {
                if r.role == pb::RoutingRole::CoHandler as i32 && is_agency(kinds, &r.partner_id) {
                    out.insert(r.partner_id.as_str());
                }
            }
        }
        out.retain(|p| !returned.contains(p));
        out
    }

    /// The project the lead names: its code, else its name in its region, else the case alone.
    pub fn project_key(self) -> String {
        let lead = self.lead();
        if !lead.project_code.is_empty() {
            format!("code:{}", lead.project_code)
        } else if !lead.project_name.trim().is_empty() {
            format!("name:{}|{}", lead.region_code, lead.project_name.trim())
        } else {
            format!("case:{}", self.id())
        }
    }

    /// The employer the lead names: its credit code, else its name, else the case alone.
    pub fn employer_key(self) -> String {
        let lead = self.lead();
        if !lead.employer_uscc.is_empty() {
            format!("uscc:{}", lead.employer_uscc.to_ascii_uppercase())
        } else if !lead.employer_name.trim().is_empty() {
            format!(
                "name:{}",
                lead.employer_name.split_whitespace().collect::<String>()
            )
        } else {
            format!("case:{}", self.id())
        }
    }
}

/// A China-time date and minute, for tables.
pub fn china_time(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)))
        .strftime("%Y-%m-%d %H:%M")
        .to_string()
}

/// Chinese and English names of the enums reports show.
pub fn channel_name(c: pb::LeadChannel) -> (&'static str, &'static str) {
    use pb::LeadChannel as C;
    match c {
        C::Unspecified => ("未填写", "unspecified"),
        C::NationalPlatform => ("国务院欠薪线索反映平台", "national lead platform"),
        C::CityApp => ("渝悦·根治欠薪", "city app"),
        C::Hotline => ("热线", "hotline"),
        C::Petition => ("信访", "petition"),
        C::PoliceIncident => ("警情", "police incident"),
        C::PublicOpinion => ("舆情", "public opinion"),
        C::GridInspector => ("实地排查（治欠协管员）", "on-site screening"),
        C::ReceptionDay => ("集中接访", "reception day"),
        C::MonitoringWarning => ("监控预警", "monitoring warning"),
        C::SmartSite => ("智慧工地", "smart site"),
        C::AgencyReferral => ("部门转送", "agency referral"),
        C::Other => ("其他", "other"),
    }
}

pub fn clock_name(k: i32) -> (&'static str, &'static str) {
    use pb::ClockKind as K;
    match K::try_from(k).unwrap_or_default() {
        K::Unspecified => ("未知", "unknown"),
        K::SignFor => ("签收", "sign for"),
        K::Handle => ("办理", "handle"),
        K::FeedBack => ("反馈", "feed back"),
        K::ReferralHandover => ("移送交接", "referral hand-over"),
        K::FilingDecision => ("立案决定", "filing decision"),
        K::FilingReview => ("申请复议", "filing review"),
        K::Reroute => ("重新转办", "re-route"),
        K::LetterReply => ("复函", "letter reply"),
        K::Supervision => ("督办期限", "supervision"),
    }
}

pub fn state_name(s: pb::CaseState) -> (&'static str, &'static str) {
    use pb::CaseState as S;
    match s {
        S::Unspecified => ("未知", "unknown"),
        S::Received => ("已接收", "received"),
        S::Transferred => ("已转办", "transferred"),
        S::SignedFor => ("已签收", "signed for"),
        S::Handling => ("办理中", "handling"),
        S::Returned => ("已退回", "returned"),
        S::Forwarded => ("已移送", "forwarded"),
        S::Resolved => ("已办结", "resolved"),
        S::FedBack => ("已反馈", "fed back"),
        S::Closed => ("已关闭", "closed"),
        S::Escalated => ("督办中", "escalated"),
    }
}

pub fn resolution_channel_name(c: pb::ResolutionChannel) -> (&'static str, &'static str) {
    use pb::ResolutionChannel as R;
    match c {
        R::Unspecified => ("未填写", "unspecified"),
        R::Mediation => ("调解协调", "mediation"),
        R::InspectionOrder => ("监察责令支付", "inspection order"),
        R::Arbitration => ("劳动人事争议仲裁", "arbitration"),
        R::CourtEnforcement => ("法院执行", "court enforcement"),
        R::CriminalCase => ("刑事案件", "criminal case"),
        R::GuaranteeDepositAdvance => ("工资保证金垫付", "guarantee deposit advance"),
        R::EmergencyFundAdvance => ("应急周转金垫付", "emergency fund advance"),
        R::Other => ("其他", "other"),
    }
}

/// "中文 English", for cells that name an enum value.
pub fn both((zh, en): (&str, &str)) -> String {
    format!("{zh} {en}")
}
