//! The case state machine (DESIGN §7, cases.proto): which partner may take which step in which
//! state, what each step changes on the case and its clocks, and who is told.
//!
//! It is pure: the case as stored (a `CaseView` without the reporter's personal data) and the
//! step, with the facts about other partners the service looked up, go in; the changed case and
//! what to log and deliver come out. The evidence log's sequencer runs it inside the append
//! transaction, so a step is checked against the case exactly as it is when the step is logged
//! and two steps on one case never interleave.

use wagelink_proto::v1 as pb;

use super::calendar::Calendar;
use super::clock::{due_at, end_of_day};
use crate::identity::{Jurisdiction, PartnerKind, RegionCode};
use crate::routing::{ClockUnit, Clocks};

use pb::CaseState as S;
use pb::case_action::Action as A;

/// Decree 310: police decide on filing within 3 days; the agency may ask for a review within 3
/// days of a decision not to file; a decided referral is handed over within 24 hours.
const FILING_DECISION_HOURS: u32 = 72;
const FILING_REVIEW_HOURS: u32 = 72;
const REFERRAL_HANDOVER_HOURS: i64 = 24;
/// A returned case nobody else can handle waits this long for the leading office's transfer.
const REROUTE_HOURS: u32 = 24;

pub use crate::refusal::Refused as CaseError;

/// Who takes the step.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: String,
    /// `None` for the gateway itself (escalations, transfers of returned cases).
    pub kind: Option<PartnerKind>,
    pub jurisdiction: Jurisdiction,
}

/// Where a returned case goes next, decided by the routing rules before the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reroute {
    pub handler: String,
    pub region: String,
    /// Everyone the rules name, handler first.
    pub routing: Vec<pb::Routing>,
    pub clocks: Clocks,
    pub rule_id: String,
    pub rule_version: u32,
}

/// Facts about other partners, looked up by the service from the registry and the rules.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Kind of the partner the step names (forward or transfer target, letter addressee), when
    /// it is registered and active.
    pub target_kind: Option<PartnerKind>,
    /// For a return by the holder: where the rules send the case now; `None` when no other
    /// handler could be found (the leading office then transfers it).
    pub reroute: Option<Reroute>,
    /// Leading offices of the case's region, most local first (escalation, unroutable returns).
    pub leading_offices: Vec<String>,
    /// Partners told of a sanction beside those on the case (the credit system's keepers).
    pub sanction_notify: Vec<String>,
    /// The peer gateway that relayed the case's lead: it receives every step, to mirror the
    /// case on its side.
    pub mirror: Option<String>,
}

/// What is being done to the case.
#[derive(Debug, Clone)]
pub enum Input {
    Action(pb::CaseAction),
    Letter(pb::Letter),
}

/// A step, as the service hands it to the log.
#[derive(Debug, Clone)]
pub struct StepInput {
    pub case_id: String,
    pub actor: Actor,
    pub input: Input,
    /// The envelope's Header.message_id (a letter's or referral's id, awaited by its clock).
    pub message_id: String,
    /// The envelope's Header.in_reply_to (a filing decision's referral, a reply's letter).
    pub in_reply_to: String,
    pub facts: Facts,
}

/// What a step did.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub kind: pb::CaseEventKind,
    pub state_before: S,
    pub state_after: S,
    pub summary: String,
    /// Who receives the step (its log entry's routing).
    pub routed_to: Vec<pb::Routing>,
    /// New rows of who may see the case: (partner, role).
    pub parties: Vec<(String, &'static str)>,
}

/// A lead's case as it opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    /// The lead without the reporter's personal data.
    pub lead: pb::Lead,
    pub holder: String,
    /// The routing decision, handler first.
    pub routing: Vec<pb::Routing>,
    pub clocks: Clocks,
    pub rule_id: String,
    pub rule_version: u32,
    /// Region, employer and project: the same matter from another source links to the case.
    pub lead_key: Option<String>,
}

fn ts(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

fn state_of(v: i32) -> S {
    S::try_from(v).unwrap_or(S::Unspecified)
}

/// `CASE_STATE_SIGNED_FOR` → `SIGNED_FOR`.
pub fn state_name(s: S) -> &'static str {
    s.as_str_name().trim_start_matches("CASE_STATE_")
}

fn clock_name(k: pb::ClockKind) -> &'static str {
    k.as_str_name().trim_start_matches("CLOCK_KIND_")
}

/// The key that links the same lead from two sources: region, employer (its credit code when
/// given, else its name) and project, normalised. None when the lead names no employer.
pub fn lead_key(lead: &pb::Lead) -> Option<String> {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace() && !"()（）·,，.。-".contains(*c))
            .flat_map(char::to_lowercase)
            .collect()
    };
    let employer = if lead.employer_uscc.is_empty() {
        norm(&lead.employer_name)
    } else {
        lead.employer_uscc.to_ascii_uppercase()
    };
    if employer.is_empty() {
        return None;
    }
    Some(format!(
        "{}|{}|{}",
        lead.region_code,
        employer,
        norm(&lead.project_name)
    ))
}

/// The clock specs a case keeps from its routing.
pub fn clock_specs(clocks: &Clocks, partner: &str) -> Vec<pb::ClockSpec> {
    [
        (pb::ClockKind::SignFor, clocks.sign_for),
        (pb::ClockKind::Handle, clocks.handle),
        (pb::ClockKind::FeedBack, clocks.feed_back),
    ]
    .into_iter()
    .map(|(kind, n)| {
        let mut spec = pb::ClockSpec {
            kind: kind as i32,
            partner_id: partner.to_owned(),
            ..Default::default()
        };
        match clocks.unit {
            ClockUnit::WorkingDays => spec.working_days = n,
            ClockUnit::Hours => spec.hours = n,
            ClockUnit::Seconds => spec.seconds = n,
        }
        spec
    })
    .collect()
}

/// Opens the case of a routed lead; the caller adds the LEAD event to its history.
pub fn open(o: &Opening, case_id: &str, source: &str, now: i64) -> (pb::CaseView, Step) {
    let with = |role: pb::RoutingRole| -> Vec<String> {
        o.routing
            .iter()
            .filter(|r| r.role == role as i32)
            .map(|r| r.partner_id.clone())
            .collect()
    };
    let supervisors = with(pb::RoutingRole::Supervisor);
    let mut view = pb::CaseView {
        case_id: case_id.to_owned(),
        state: S::Transferred as i32,
        lead: Some(o.lead.clone()),
        source: source.to_owned(),
        holder: o.holder.clone(),
        co_handlers: with(pb::RoutingRole::CoHandler),
        copies: with(pb::RoutingRole::Copy),
        region_code: o.lead.region_code.clone(),
        // Routing names a supervisor only for a major case: it is supervised (挂牌督办) from the
        // start, with the three checks of 一案三查 to report on.
        supervised: !supervisors.is_empty(),
        checklist: if supervisors.is_empty() {
            Vec::new()
        } else {
            full_checklist()
        },
        supervisors,
        clocks: clock_specs(&o.clocks, ""),
        created_at: Some(ts(now)),
        updated_at: Some(ts(now)),
        ..Default::default()
    };
    start_clock(
        &mut view,
        pb::ClockKind::SignFor,
        &o.holder,
        now,
        (&o.rule_id, o.rule_version),
    );
    let mut parties: Vec<(String, &'static str)> = o
        .routing
        .iter()
        .map(|r| (r.partner_id.clone(), party_role(r.role)))
        .collect();
    parties.push((source.to_owned(), "source"));
    let step = Step {
        kind: pb::CaseEventKind::Lead,
        state_before: S::Received,
        state_after: S::Transferred,
        summary: format!(
            "lead routed to {} by rule {} v{}",
            o.holder, o.rule_id, o.rule_version
        ),
        routed_to: o.routing.clone(),
        parties,
    };
    (view, step)
}

/// The same matter reported again while the case is still being handled: linked to the case,
/// the holder told, the new source kept for the feedback. Supervisors and copies the new lead's
/// routing names (a major case, a suspected crime) join the case.
pub fn link(view: &mut pb::CaseView, source: &str, routing: &[pb::Routing]) -> Step {
    let state = state_of(view.state);
    if source != view.source && !view.also_reported_by.iter().any(|s| s == source) {
        view.also_reported_by.push(source.to_owned());
    }
    let mut routed_to = Vec::new();
    if !view.holder.is_empty() {
        routed_to.push(recipient(&view.holder, pb::RoutingRole::Handler));
    }
    let mut parties = vec![(source.to_owned(), "source")];
    for r in routing {
        let list = match role_of(r) {
            pb::RoutingRole::Copy => &mut view.copies,
            pb::RoutingRole::Supervisor => &mut view.supervisors,
            _ => continue,
        };
        if !list.contains(&r.partner_id) {
            list.push(r.partner_id.clone());
            routed_to.push(r.clone());
            parties.push((r.partner_id.clone(), party_role(r.role)));
            if role_of(r) == pb::RoutingRole::Supervisor && !view.supervised {
                view.supervised = true;
                view.checklist = full_checklist();
            }
        }
    }
    Step {
        kind: pb::CaseEventKind::Lead,
        state_before: state,
        state_after: state,
        summary: format!("the same lead from {source}, linked to this case"),
        routed_to,
        parties,
    }
}

fn party_role(role: i32) -> &'static str {
    match pb::RoutingRole::try_from(role) {
        Ok(pb::RoutingRole::Handler) => "handler",
        Ok(pb::RoutingRole::CoHandler) => "co-handler",
        Ok(pb::RoutingRole::Copy) => "copy",
        Ok(pb::RoutingRole::Supervisor) => "supervisor",
        _ => "recipient",
    }
}

fn full_checklist() -> Vec<pb::SupervisionCheck> {
    [
        pb::SupervisionCheckKind::HandlingMeasures,
        pb::SupervisionCheckKind::PaymentSystems,
        pb::SupervisionCheckKind::PriorScreening,
    ]
    .into_iter()
    .map(|kind| pb::SupervisionCheck {
        kind: kind as i32,
        ..Default::default()
    })
    .collect()
}

fn recipient(partner: &str, role: pb::RoutingRole) -> pb::Routing {
    pb::Routing {
        partner_id: partner.to_owned(),
        role: role as i32,
        rule_id: String::new(),
        rule_version: 0,
    }
}

/// Clocks whose running out escalates the case.
pub fn escalates(kind: i32) -> bool {
    !matches!(
        pb::ClockKind::try_from(kind),
        Ok(pb::ClockKind::FilingReview | pb::ClockKind::ReferralHandover)
    )
}

/// The earliest due instant of the running clocks that escalate.
pub fn next_due(view: &pb::CaseView) -> Option<i64> {
    view.deadlines
        .iter()
        .filter(|d| d.met_at.is_none() && !d.overdue && escalates(d.kind))
        .filter_map(|d| d.due_at.as_ref().map(|t| t.seconds))
        .min()
}

/// Whether any clock ran out before its action arrived.
pub fn any_overdue(view: &pb::CaseView) -> bool {
    view.deadlines.iter().any(|d| d.overdue)
}

/// The length of a clock kind on this case, from its routing.
fn spec(view: &pb::CaseView, kind: pb::ClockKind) -> (u32, ClockUnit) {
    view.clocks
        .iter()
        .find(|c| c.kind == kind as i32)
        .map(|c| {
            if c.seconds > 0 {
                (c.seconds, ClockUnit::Seconds)
            } else if c.hours > 0 {
                (c.hours, ClockUnit::Hours)
            } else {
                (c.working_days, ClockUnit::WorkingDays)
            }
        })
        .unwrap_or((0, ClockUnit::WorkingDays))
}

/// Starts a routing clock (sign for, handle, feed back) for `partner`.
fn start_clock(
    view: &mut pb::CaseView,
    kind: pb::ClockKind,
    partner: &str,
    now: i64,
    rule: (&str, u32),
) {
    let (n, unit) = spec(view, kind);
    let due = due_at(Calendar::official(), now, n, unit);
    push_clock(view, kind, partner, now, due, rule);
}

fn push_clock(
    view: &mut pb::CaseView,
    kind: pb::ClockKind,
    partner: &str,
    now: i64,
    due: i64,
    rule: (&str, u32),
) {
    view.deadlines.push(pb::Deadline {
        kind: kind as i32,
        partner_id: partner.to_owned(),
        started_at: Some(ts(now)),
        due_at: Some(ts(due)),
        met_at: None,
        overdue: false,
        rule_id: rule.0.to_owned(),
        rule_version: rule.1,
        awaits_reply_to: String::new(),
    });
}

/// Marks the running clock that awaits an answer to `message_id` as met.
fn meet_reply(view: &mut pb::CaseView, kind: pb::ClockKind, message_id: &str, now: i64) {
    for d in &mut view.deadlines {
        if d.met_at.is_none() && d.kind == kind as i32 && d.awaits_reply_to == message_id {
            d.met_at = Some(ts(now));
        }
    }
}

/// Marks the running clocks of these kinds (of `partner`, when given) as met.
fn meet(view: &mut pb::CaseView, kinds: &[pb::ClockKind], partner: Option<&str>, now: i64) {
    for d in &mut view.deadlines {
        if d.met_at.is_none()
            && kinds.iter().any(|k| *k as i32 == d.kind)
            && partner.is_none_or(|p| p == d.partner_id)
        {
            d.met_at = Some(ts(now));
        }
    }
}

/// Stops the running clocks of `partner` as it stops holding the case; a supervision due date
/// is the case's, not the holder's, and stays running (it passes to the next holder).
fn stop_all(view: &mut pb::CaseView, partner: &str, now: i64) {
    for d in &mut view.deadlines {
        if d.met_at.is_none()
            && d.partner_id == partner
            && d.kind != pb::ClockKind::Supervision as i32
        {
            d.met_at = Some(ts(now));
        }
    }
}

/// Passes the running supervision due date of the old holder to the new one.
fn hand_over(view: &mut pb::CaseView, old: &str, new: &str) {
    for d in &mut view.deadlines {
        if d.met_at.is_none() && d.partner_id == old && d.kind == pb::ClockKind::Supervision as i32
        {
            d.partner_id = new.to_owned();
        }
    }
}

fn rule_of(view: &pb::CaseView) -> (String, u32) {
    view.deadlines
        .iter()
        .find(|d| !d.rule_id.is_empty())
        .map(|d| (d.rule_id.clone(), d.rule_version))
        .unwrap_or_default()
}

/// Partners told of an ordinary step: holder, co-handlers, supervisors and forward targets,
/// except the one who took it.
fn audience(view: &pb::CaseView, actor: &str) -> Vec<pb::Routing> {
    let mut out: Vec<pb::Routing> = Vec::new();
    let mut add = |p: &str, role: pb::RoutingRole| {
        if !p.is_empty() && p != actor && !out.iter().any(|r| r.partner_id == p) {
            out.push(recipient(p, role));
        }
    };
    add(&view.holder, pb::RoutingRole::Handler);
    for p in &view.co_handlers {
        add(p, pb::RoutingRole::CoHandler);
    }
    for p in &view.supervisors {
        add(p, pb::RoutingRole::Supervisor);
    }
    for p in &view.forwarded_to {
        add(p, pb::RoutingRole::Recipient);
    }
    out
}

fn add_to(out: &mut Vec<pb::Routing>, partner: &str, role: pb::RoutingRole, actor: &str) {
    if !partner.is_empty() && partner != actor && !out.iter().any(|r| r.partner_id == partner) {
        out.push(recipient(partner, role));
    }
}

/// The caller's roles on a case, as names, for error messages.
fn roles_text(view: &pb::CaseView, actor: &Actor) -> String {
    let roles = roles(view, actor);
    if roles.is_empty() {
        "none".into()
    } else {
        roles
            .iter()
            .map(|r| {
                r.as_str_name()
                    .trim_start_matches("CASE_ROLE_")
                    .to_ascii_lowercase()
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A partner's roles on a case as the view shows them (visibility rows aside).
pub fn roles(view: &pb::CaseView, actor: &Actor) -> Vec<pb::CaseRole> {
    let id = actor.id.as_str();
    let mut out = Vec::new();
    if view.holder == id {
        out.push(pb::CaseRole::Holder);
    }
    if view.co_handlers.iter().any(|p| p == id) {
        out.push(pb::CaseRole::CoHandler);
    }
    if view.copies.iter().any(|p| p == id) {
        out.push(pb::CaseRole::Copy);
    }
    if view.source == id || view.also_reported_by.iter().any(|p| p == id) {
        out.push(pb::CaseRole::Source);
    }
    if view.forwarded_to.iter().any(|p| p == id) {
        out.push(pb::CaseRole::ForwardTarget);
    }
    if view.supervisors.iter().any(|p| p == id) {
        out.push(pb::CaseRole::Supervisor);
    }
    if oversees(view, actor) {
        out.push(pb::CaseRole::Oversight);
    }
    out
}

/// A leading office whose regions cover the case.
pub fn oversees(view: &pb::CaseView, actor: &Actor) -> bool {
    actor.kind == Some(PartnerKind::LeadingOffice)
        && view
            .region_code
            .parse::<RegionCode>()
            .is_ok_and(|r| actor.jurisdiction.covers(&r))
}

/// The actions the holder may take in a state, for FAILED_PRECONDITION messages.
fn allowed_in(state: S) -> &'static str {
    match state {
        S::Received => "transfer (leading office)",
        S::Transferred => "sign_for, return_case (holder); transfer (leading office)",
        S::SignedFor => {
            "progress, return_case, forward, resolve, sanction (holder); transfer (leading office)"
        }
        S::Handling => "progress, forward, resolve, sanction (holder); transfer (leading office)",
        S::Returned => "transfer (leading office)",
        S::Forwarded => {
            "progress, resolve (holder); sign_for, filing_decision, court_result, return_case (forward target); transfer (leading office)"
        }
        S::Resolved => "feedback, sanction (holder); close when the lead came from a warning rule",
        S::FedBack => "close (holder or supervisor), sanction",
        S::Closed => "sanction",
        S::Escalated | S::Unspecified => "none",
    }
}

fn wrong_state(case_id: &str, view: &pb::CaseView, action: &str) -> CaseError {
    let state = state_of(view.state);
    let effective = effective(view);
    let shown = if state == S::Escalated {
        format!(
            "ESCALATED (from {}, whose actions apply)",
            state_name(effective)
        )
    } else {
        state_name(state).to_owned()
    };
    CaseError::FailedPrecondition(format!(
        "case {case_id} is {shown}: {action} is not allowed now; allowed: {}",
        allowed_in(effective)
    ))
}

/// The state whose actions apply: for an escalated case, the state it was escalated from.
fn effective(view: &pb::CaseView) -> S {
    match state_of(view.state) {
        S::Escalated => state_of(view.escalated_from),
        s => s,
    }
}

fn denied(view: &pb::CaseView, actor: &Actor, action: &str, who: &str) -> CaseError {
    CaseError::PermissionDenied(format!(
        "{action} on case {} is for {who}; your roles on it: {}",
        view.case_id,
        roles_text(view, actor)
    ))
}

fn invalid(field: &str, why: impl std::fmt::Display) -> CaseError {
    CaseError::InvalidArgument(format!("{field}: {why}"))
}

/// Dates a case step may name: from 1990 to 2100 (so clock arithmetic stays in range).
fn parse_date(field: &str, text: &str) -> Result<jiff::civil::Date, CaseError> {
    let sane = |d: &jiff::civil::Date| (1990..=2100).contains(&d.year()) && text.len() == 10;
    text.parse::<jiff::civil::Date>()
        .ok()
        .filter(sane)
        .ok_or_else(|| {
            invalid(
                field,
                format!(
                    "{:?} is not a date: use YYYY-MM-DD",
                    text.chars().take(40).collect::<String>()
                ),
            )
        })
}

/// A date that must not be after today (China time).
fn past_date(field: &str, text: &str, now: i64) -> Result<jiff::civil::Date, CaseError> {
    let d = parse_date(field, text)?;
    if d > super::clock::china_date(now) {
        return Err(invalid(field, format!("{text} is in the future")));
    }
    Ok(d)
}

/// A due date that must not be before today (China time).
fn due_date(field: &str, text: &str, now: i64) -> Result<jiff::civil::Date, CaseError> {
    let d = parse_date(field, text)?;
    if d < super::clock::china_date(now) {
        return Err(invalid(field, format!("{text} is already past")));
    }
    Ok(d)
}

fn not_negative(field: &str, v: i64) -> Result<(), CaseError> {
    if v < 0 {
        return Err(invalid(field, format!("{v} is negative")));
    }
    Ok(())
}

fn required(field: &str, v: &str) -> Result<(), CaseError> {
    if v.trim().is_empty() {
        return Err(invalid(field, "is required"));
    }
    Ok(())
}

fn check_documents(docs: &[pb::Document]) -> Result<(), CaseError> {
    for (i, d) in docs.iter().enumerate() {
        if d.file_name.trim().is_empty() {
            return Err(invalid(
                &format!("forward.documents[{i}].file_name"),
                "is required",
            ));
        }
        if d.sha256.len() != 32 {
            return Err(invalid(
                &format!("forward.documents[{i}].sha256"),
                format!(
                    "is {} bytes; give the 32-byte SHA-256 of the file",
                    d.sha256.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Applies a step to a case. On error nothing is changed.
pub fn act(view: &mut pb::CaseView, input: &StepInput, now: i64) -> Result<Step, CaseError> {
    let mut next = view.clone();
    let step = match &input.input {
        Input::Action(action) => apply(&mut next, input, action, now)?,
        Input::Letter(letter) => letter_step(&mut next, input, letter, now)?,
    };
    next.updated_at = Some(ts(now));
    *view = next;
    Ok(step)
}

fn step(
    kind: pb::CaseEventKind,
    before: S,
    after: S,
    summary: String,
    routed_to: Vec<pb::Routing>,
) -> Step {
    Step {
        kind,
        state_before: before,
        state_after: after,
        summary,
        routed_to,
        parties: Vec::new(),
    }
}

/// Sets the new state; a state-changing step takes an escalated case out of ESCALATED (it
/// stays supervised).
fn set_state(view: &mut pb::CaseView, s: S) {
    view.state = s as i32;
    view.escalated_from = S::Unspecified as i32;
}

fn apply(
    view: &mut pb::CaseView,
    input: &StepInput,
    action: &pb::CaseAction,
    now: i64,
) -> Result<Step, CaseError> {
    use pb::CaseEventKind as E;
    let actor = &input.actor;
    let me = actor.id.as_str();
    let id = view.case_id.clone();
    let before = state_of(view.state);
    let eff = effective(view);
    let is_holder = view.holder == me;
    let action = action
        .action
        .as_ref()
        .ok_or_else(|| invalid("action", "set exactly one action (sign_for, progress, …)"))?;
    if before == S::Closed && !matches!(action, A::Sanction(_)) {
        // Only those with a role learn the case's state.
        if roles(view, actor).is_empty() {
            return Err(denied(
                view,
                actor,
                action.name(),
                "the partners with a role on it",
            ));
        }
        return Err(wrong_state(&id, view, action.name()));
    }
    if matches!(action, A::Escalate(_)) != actor.kind.is_none() {
        return Err(match action {
            A::Escalate(_) => CaseError::PermissionDenied(
                "escalate is sent only by the gateway itself, when a clock runs out; a leading office supervises with `supervise`".into(),
            ),
            _ => CaseError::PermissionDenied(format!(
                "the gateway does not take {} steps",
                action.name()
            )),
        });
    }
    match action {
        A::SignFor(s) => {
            if is_holder && eff == S::Transferred {
                meet(view, &[pb::ClockKind::SignFor], Some(me), now);
                let rule = rule_of(view);
                start_clock(view, pb::ClockKind::Handle, me, now, (&rule.0, rule.1));
                set_state(view, S::SignedFor);
                Ok(step(
                    E::SignFor,
                    before,
                    S::SignedFor,
                    format!("signed for by {me}"),
                    audience(view, me),
                ))
            } else if view.forwarded_to.iter().any(|p| p == me) && eff == S::Forwarded {
                let _ = s;
                Ok(step(
                    E::SignFor,
                    before,
                    before,
                    format!("referral signed for by {me}"),
                    audience(view, me),
                ))
            } else if is_holder || view.forwarded_to.iter().any(|p| p == me) {
                Err(wrong_state(&id, view, "sign_for"))
            } else {
                Err(denied(
                    view,
                    actor,
                    "sign_for",
                    "the holder, or a forward target for its referral",
                ))
            }
        }
        A::Progress(p) => {
            let co = view.co_handlers.iter().any(|c| c == me);
            if !is_holder && !co {
                return Err(denied(
                    view,
                    actor,
                    "progress",
                    "the holder or a co-handler",
                ));
            }
            if !matches!(eff, S::SignedFor | S::Handling | S::Forwarded) {
                return Err(wrong_state(&id, view, "progress"));
            }
            not_negative("progress.amount_paid_so_far_fen", p.amount_paid_so_far_fen)?;
            if !p.next_step_on.is_empty() {
                parse_date("progress.next_step_on", &p.next_step_on)?;
            }
            if !p.checks.is_empty() {
                if !is_holder {
                    return Err(denied(
                        view,
                        actor,
                        "reporting 一案三查 findings",
                        "the holder",
                    ));
                }
                for (i, c) in p.checks.iter().enumerate() {
                    let slot = view
                        .checklist
                        .iter_mut()
                        .find(|x| x.kind == c.kind && c.kind != 0)
                        .ok_or_else(|| {
                            invalid(
                                &format!("progress.checks[{i}].kind"),
                                "is not on this case's 一案三查 checklist (a case has one only when supervised)",
                            )
                        })?;
                    slot.finding = c.finding.clone();
                    slot.completed = c.completed;
                }
            }
            let after = if is_holder && eff == S::SignedFor {
                set_state(view, S::Handling);
                S::Handling
            } else {
                before
            };
            Ok(step(
                E::Progress,
                before,
                after,
                format!(
                    "progress by {me}: {} workers paid so far",
                    p.workers_paid_so_far
                ),
                audience(view, me),
            ))
        }
        A::ReturnCase(r) => {
            let reason = pb::ReturnReason::try_from(r.reason).unwrap_or_default();
            if reason == pb::ReturnReason::Unspecified {
                return Err(invalid(
                    "return_case.reason",
                    "is required (OUTSIDE_REGION, OUTSIDE_INDUSTRY, NOT_COMPETENT, DUPLICATE or OTHER)",
                ));
            }
            if reason == pb::ReturnReason::Other {
                required("return_case.explanation", &r.explanation)?;
            }
            let reason_name = reason.as_str_name().trim_start_matches("RETURN_REASON_");
            if view.forwarded_to.iter().any(|p| p == me) && !is_holder {
                if eff != S::Forwarded {
                    return Err(wrong_state(&id, view, "return_case"));
                }
                view.forwarded_to.retain(|p| p != me);
                stop_all(view, me, now);
                set_state(view, S::Handling);
                return Ok(step(
                    E::Return,
                    before,
                    S::Handling,
                    format!("referral returned by {me}: {reason_name}"),
                    audience(view, me),
                ));
            }
            if !is_holder {
                return Err(denied(
                    view,
                    actor,
                    "return_case",
                    "the holder, or a forward target for its referral",
                ));
            }
            if !matches!(eff, S::Transferred | S::SignedFor) {
                return Err(wrong_state(&id, view, "return_case"));
            }
            stop_all(view, me, now);
            view.co_handlers.clear();
            match &input.facts.reroute {
                Some(r) => {
                    let routed = transfer_to(view, r, now);
                    set_state(view, S::Transferred);
                    let mut s = step(
                        E::Return,
                        before,
                        S::Transferred,
                        format!(
                            "returned by {me}: {reason_name}; re-routed to {} by rule {} v{}",
                            r.handler, r.rule_id, r.rule_version
                        ),
                        routed,
                    );
                    s.parties = r
                        .routing
                        .iter()
                        .map(|x| (x.partner_id.clone(), party_role(x.role)))
                        .collect();
                    Ok(s)
                }
                None => {
                    view.holder.clear();
                    let mut routed = Vec::new();
                    let mut parties = Vec::new();
                    for (i, office) in input.facts.leading_offices.iter().enumerate() {
                        if !view.supervisors.contains(office) {
                            view.supervisors.push(office.clone());
                        }
                        if i == 0 {
                            push_clock(
                                view,
                                pb::ClockKind::Reroute,
                                office,
                                now,
                                now + i64::from(REROUTE_HOURS) * 3600,
                                ("", 0),
                            );
                        }
                        parties.push((office.clone(), "supervisor"));
                    }
                    for office in &view.supervisors {
                        add_to(&mut routed, office, pb::RoutingRole::Supervisor, me);
                    }
                    set_state(view, S::Returned);
                    let mut s = step(
                        E::Return,
                        before,
                        S::Returned,
                        format!(
                            "returned by {me}: {reason_name}; no other handler found, awaiting the leading office's transfer"
                        ),
                        routed,
                    );
                    s.parties = parties;
                    Ok(s)
                }
            }
        }
        A::Forward(f) => {
            if !is_holder {
                return Err(denied(view, actor, "forward", "the holder"));
            }
            if !matches!(eff, S::SignedFor | S::Handling) {
                return Err(wrong_state(&id, view, "forward"));
            }
            required("forward.to_partner", &f.to_partner)?;
            let target = f.target.as_ref().ok_or_else(|| {
                invalid(
                    "forward.target",
                    "set one of criminal_referral, arbitration, court, procuratorate",
                )
            })?;
            use pb::case_action::forward::Target as T;
            let (want, what) = match target {
                T::CriminalReferral(_) => (PartnerKind::Police, "criminal referral"),
                T::Arbitration(_) => (PartnerKind::Arbitration, "arbitration referral"),
                T::Court(_) => (PartnerKind::Court, "court request"),
                T::Procuratorate(_) => (PartnerKind::Procuratorate, "prosecution support"),
            };
            match input.facts.target_kind {
                None => {
                    return Err(invalid(
                        "forward.to_partner",
                        format!("{} is not a registered, active partner", f.to_partner),
                    ));
                }
                Some(k) if k != want => {
                    return Err(invalid(
                        "forward.to_partner",
                        format!(
                            "{} is a {k} partner; a {what} goes to a {want} partner",
                            f.to_partner
                        ),
                    ));
                }
                Some(_) => {}
            }
            check_documents(&f.documents)?;
            if let T::CriminalReferral(c) = target {
                if !f
                    .documents
                    .iter()
                    .any(|d| d.kind == pb::DocumentKind::ReferralLetter as i32)
                {
                    return Err(invalid(
                        "forward.documents",
                        "a criminal referral must list its referral letter (DOCUMENT_KIND_REFERRAL_LETTER, 移送书)",
                    ));
                }
                not_negative("forward.criminal_referral.amount_fen", c.amount_fen)?;
                let decided =
                    past_date("forward.criminal_referral.decided_on", &c.decided_on, now)?;
                if !c.order_delivered_on.is_empty() {
                    past_date(
                        "forward.criminal_referral.order_delivered_on",
                        &c.order_delivered_on,
                        now,
                    )?;
                }
                // Decree 310: hand over within 24 hours of the decision. With only the date of
                // the decision known, the hand-over is due by the end of the following day.
                let start = end_of_day(decided).saturating_sub(86_400);
                let due = end_of_day(decided).saturating_add(REFERRAL_HANDOVER_HOURS * 3600);
                push_clock(
                    view,
                    pb::ClockKind::ReferralHandover,
                    me,
                    start,
                    due,
                    ("", 0),
                );
                if let Some(d) = view.deadlines.last_mut() {
                    d.met_at = Some(ts(now));
                    d.overdue = now > due;
                }
                push_clock(
                    view,
                    pb::ClockKind::FilingDecision,
                    &f.to_partner,
                    now,
                    now + i64::from(FILING_DECISION_HOURS) * 3600,
                    ("", 0),
                );
                if let Some(d) = view.deadlines.last_mut() {
                    d.awaits_reply_to = input.message_id.clone();
                }
            }
            meet(view, &[pb::ClockKind::FilingReview], Some(me), now);
            if !view.forwarded_to.contains(&f.to_partner) {
                view.forwarded_to.push(f.to_partner.clone());
            }
            set_state(view, S::Forwarded);
            let mut routed = vec![recipient(&f.to_partner, pb::RoutingRole::Recipient)];
            for r in audience(view, me) {
                add_to(&mut routed, &r.partner_id.clone(), role_of(&r), me);
            }
            let mut s = step(
                E::Forward,
                before,
                S::Forwarded,
                format!("{what} to {} by {me}", f.to_partner),
                routed,
            );
            s.parties = vec![(f.to_partner.clone(), "forward-target")];
            Ok(s)
        }
        A::Resolve(r) => {
            if !is_holder {
                return Err(denied(view, actor, "resolve", "the holder"));
            }
            if !matches!(eff, S::SignedFor | S::Handling | S::Forwarded) {
                return Err(wrong_state(&id, view, "resolve"));
            }
            if pb::CaseConclusion::try_from(r.conclusion).unwrap_or_default()
                == pb::CaseConclusion::Unspecified
            {
                return Err(invalid("resolve.conclusion", "is required"));
            }
            if pb::ResolutionChannel::try_from(r.channel).unwrap_or_default()
                == pb::ResolutionChannel::Unspecified
            {
                return Err(invalid("resolve.channel", "is required"));
            }
            not_negative("resolve.amount_recovered_fen", r.amount_recovered_fen)?;
            past_date("resolve.resolved_on", &r.resolved_on, now)?;
            meet(
                view,
                &[
                    pb::ClockKind::Handle,
                    pb::ClockKind::Supervision,
                    pb::ClockKind::FilingReview,
                    pb::ClockKind::FilingDecision,
                ],
                None,
                now,
            );
            if !view.source.is_empty() && view.source != crate::server::GATEWAY_ID {
                let rule = rule_of(view);
                start_clock(view, pb::ClockKind::FeedBack, me, now, (&rule.0, rule.1));
            }
            view.resolution = Some(r.clone());
            set_state(view, S::Resolved);
            let mut routed = audience(view, me);
            for c in view.copies.clone() {
                add_to(&mut routed, &c, pb::RoutingRole::Copy, me);
            }
            Ok(step(
                E::Resolve,
                before,
                S::Resolved,
                format!(
                    "resolved by {me}: {}, {} workers paid",
                    pb::CaseConclusion::try_from(r.conclusion)
                        .unwrap_or_default()
                        .as_str_name()
                        .trim_start_matches("CASE_CONCLUSION_"),
                    r.workers_paid
                ),
                routed,
            ))
        }
        A::Feedback(f) => {
            if !is_holder {
                return Err(denied(view, actor, "feedback", "the holder"));
            }
            if eff != S::Resolved {
                return Err(wrong_state(&id, view, "feedback"));
            }
            required("feedback.text", &f.text)?;
            meet(view, &[pb::ClockKind::FeedBack], None, now);
            set_state(view, S::FedBack);
            let mut routed = Vec::new();
            for s in std::iter::once(&view.source).chain(&view.also_reported_by) {
                add_to(&mut routed, s, pb::RoutingRole::Recipient, me);
            }
            for r in audience(view, me) {
                add_to(&mut routed, &r.partner_id.clone(), role_of(&r), me);
            }
            Ok(step(
                E::Feedback,
                before,
                S::FedBack,
                format!("fed back to the source by {me}"),
                routed,
            ))
        }
        A::Close(_) => {
            let supervisor = view.supervisors.iter().any(|p| p == me);
            if !is_holder && !supervisor {
                return Err(denied(view, actor, "close", "the holder or a supervisor"));
            }
            let from_warning = view.source == crate::server::GATEWAY_ID;
            if !(eff == S::FedBack || (eff == S::Resolved && from_warning)) {
                return Err(wrong_state(&id, view, "close"));
            }
            // Nothing more can be done on a closed case: every clock stops.
            for d in &mut view.deadlines {
                if d.met_at.is_none() {
                    d.met_at = Some(ts(now));
                }
            }
            set_state(view, S::Closed);
            let mut routed = audience(view, me);
            for s in std::iter::once(&view.source).chain(&view.also_reported_by) {
                if s != crate::server::GATEWAY_ID {
                    add_to(&mut routed, s, pb::RoutingRole::Recipient, me);
                }
            }
            Ok(step(
                E::Close,
                before,
                S::Closed,
                format!("closed by {me}"),
                routed,
            ))
        }
        A::FilingDecision(d) => {
            answers_forward(
                view,
                input,
                eff,
                PartnerKind::Police,
                "filing_decision",
                "the police the case was referred to",
                "a filing decision answers the referral",
            )?;
            let outcome = pb::FilingOutcome::try_from(d.outcome).unwrap_or_default();
            if outcome == pb::FilingOutcome::Unspecified {
                return Err(invalid(
                    "filing_decision.outcome",
                    "is required (FILED or NOT_FILED)",
                ));
            }
            if outcome == pb::FilingOutcome::NotFiled {
                required("filing_decision.reason", &d.reason)?;
            }
            past_date("filing_decision.decided_on", &d.decided_on, now)?;
            meet_reply(view, pb::ClockKind::FilingDecision, &input.in_reply_to, now);
            view.filing = Some(d.clone());
            let after = if outcome == pb::FilingOutcome::NotFiled {
                let holder = view.holder.clone();
                push_clock(
                    view,
                    pb::ClockKind::FilingReview,
                    &holder,
                    now,
                    now + i64::from(FILING_REVIEW_HOURS) * 3600,
                    ("", 0),
                );
                set_state(view, S::Handling);
                S::Handling
            } else {
                before
            };
            Ok(step(
                E::FilingDecision,
                before,
                after,
                format!(
                    "filing decision by {me}: {}",
                    outcome.as_str_name().trim_start_matches("FILING_OUTCOME_")
                ),
                audience(view, me),
            ))
        }
        A::Supervise(s) => {
            if !oversees(view, actor) {
                return Err(denied(
                    view,
                    actor,
                    "supervise",
                    "a leading office whose regions cover the case",
                ));
            }
            let due = due_date("supervise.due_on", &s.due_on, now)?;
            required("supervise.instruction", &s.instruction)?;
            for (i, c) in s.checks.iter().enumerate() {
                if pb::SupervisionCheckKind::try_from(c.kind).unwrap_or_default()
                    == pb::SupervisionCheckKind::Unspecified
                {
                    return Err(invalid(
                        &format!("supervise.checks[{i}].kind"),
                        "is required",
                    ));
                }
            }
            if view.checklist.is_empty() {
                view.checklist = if s.checks.is_empty() {
                    full_checklist()
                } else {
                    s.checks.clone()
                };
            }
            view.supervised = true;
            if !view.supervisors.iter().any(|p| p == me) {
                view.supervisors.push(me.to_owned());
            }
            let holder = view.holder.clone();
            push_clock(
                view,
                pb::ClockKind::Supervision,
                &holder,
                now,
                end_of_day(due),
                ("", 0),
            );
            if before != S::Escalated {
                view.escalated_from = before as i32;
                view.state = S::Escalated as i32;
            }
            let mut s2 = step(
                E::Supervise,
                before,
                S::Escalated,
                format!("put under supervision (挂牌督办) by {me}, due {due}"),
                audience(view, me),
            );
            s2.parties = vec![(me.to_owned(), "supervisor")];
            Ok(s2)
        }
        A::Sanction(s) => {
            let hrss_holder = is_holder && actor.kind == Some(PartnerKind::Hrss);
            if !hrss_holder && !oversees(view, actor) {
                return Err(denied(
                    view,
                    actor,
                    "sanction",
                    "the labour-inspection holder or a leading office covering the case",
                ));
            }
            if matches!(eff, S::Received | S::Transferred | S::Returned) {
                return Err(wrong_state(&id, view, "sanction"));
            }
            if pb::SanctionKind::try_from(s.kind).unwrap_or_default()
                == pb::SanctionKind::Unspecified
            {
                return Err(invalid("sanction.kind", "is required"));
            }
            required("sanction.subject_name", &s.subject_name)?;
            super::lead::check_uscc(&s.subject_uscc)
                .map_err(|e| invalid("sanction.subject_uscc", e))?;
            required("sanction.decision_number", &s.decision_number)?;
            past_date("sanction.decided_on", &s.decided_on, now)?;
            let mut routed = audience(view, me);
            for p in view.copies.iter().chain(&input.facts.sanction_notify) {
                add_to(&mut routed, p, pb::RoutingRole::Copy, me);
            }
            for p in &input.facts.leading_offices {
                add_to(&mut routed, p, pb::RoutingRole::Supervisor, me);
            }
            Ok(step(
                pb::CaseEventKind::Sanction,
                before,
                before,
                format!(
                    "sanction recorded by {me}: {}",
                    pb::SanctionKind::try_from(s.kind)
                        .unwrap_or_default()
                        .as_str_name()
                        .trim_start_matches("SANCTION_KIND_")
                ),
                routed,
            ))
        }
        A::Transfer(t) => {
            if !oversees(view, actor) {
                return Err(denied(
                    view,
                    actor,
                    "transfer",
                    "a leading office whose regions cover the case",
                ));
            }
            if matches!(eff, S::Resolved | S::FedBack | S::Closed) {
                return Err(wrong_state(&id, view, "transfer"));
            }
            required("transfer.to_partner", &t.to_partner)?;
            required("transfer.reason", &t.reason)?;
            match input.facts.target_kind {
                Some(k) if HANDLER_KINDS.contains(&k) => {}
                Some(k) => {
                    return Err(invalid(
                        "transfer.to_partner",
                        format!(
                            "{} is a {k} partner; a case is handled by labour inspection or an industry authority",
                            t.to_partner
                        ),
                    ));
                }
                None => {
                    return Err(invalid(
                        "transfer.to_partner",
                        format!("{} is not a registered, active partner", t.to_partner),
                    ));
                }
            }
            let old = view.holder.clone();
            hand_over(view, &old, &t.to_partner);
            // Referrals made by the old holder end with its holding: their clocks stop.
            for target in std::mem::take(&mut view.forwarded_to) {
                stop_all(view, &target, now);
            }
            if !old.is_empty() {
                stop_all(view, &old, now);
            }
            meet(view, &[pb::ClockKind::Reroute], None, now);
            view.holder = t.to_partner.clone();
            view.co_handlers.retain(|p| p != &t.to_partner);
            let rule = rule_of(view);
            start_clock(
                view,
                pb::ClockKind::SignFor,
                &t.to_partner,
                now,
                (&rule.0, rule.1),
            );
            set_state(view, S::Transferred);
            let mut routed = vec![recipient(&t.to_partner, pb::RoutingRole::Handler)];
            for r in audience(view, me) {
                add_to(&mut routed, &r.partner_id.clone(), role_of(&r), me);
            }
            add_to(&mut routed, &old, pb::RoutingRole::Recipient, me);
            let mut s = step(
                E::Transfer,
                before,
                S::Transferred,
                format!("transferred to {} by {me}", t.to_partner),
                routed,
            );
            s.parties = vec![(t.to_partner.clone(), "handler")];
            Ok(s)
        }
        A::CourtResult(c) => {
            answers_forward(
                view,
                input,
                eff,
                PartnerKind::Court,
                "court_result",
                "the court the case was forwarded to",
                "a court result answers the request",
            )?;
            let kind = pb::CourtResultKind::try_from(c.kind).unwrap_or_default();
            if kind == pb::CourtResultKind::Unspecified {
                return Err(invalid("court_result.kind", "is required"));
            }
            required("court_result.decision_number", &c.decision_number)?;
            past_date("court_result.decided_on", &c.decided_on, now)?;
            not_negative("court_result.amount_ordered_fen", c.amount_ordered_fen)?;
            not_negative("court_result.amount_enforced_fen", c.amount_enforced_fen)?;
            Ok(step(
                E::CourtResult,
                before,
                before,
                format!(
                    "court result by {me}: {}",
                    kind.as_str_name().trim_start_matches("COURT_RESULT_KIND_")
                ),
                audience(view, me),
            ))
        }
        A::Escalate(_) => {
            let mut overdue = Vec::new();
            for d in &mut view.deadlines {
                let due = d.due_at.as_ref().map_or(i64::MAX, |t| t.seconds);
                if d.met_at.is_none() && !d.overdue && escalates(d.kind) && due <= now {
                    d.overdue = true;
                    overdue.push((d.kind, d.partner_id.clone()));
                }
            }
            if overdue.is_empty() {
                return Err(CaseError::FailedPrecondition(format!(
                    "no clock of case {id} has run out"
                )));
            }
            let mut parties = Vec::new();
            for office in &input.facts.leading_offices {
                if !view.supervisors.contains(office) {
                    view.supervisors.push(office.clone());
                }
                parties.push((office.clone(), "supervisor"));
            }
            if before != S::Escalated {
                view.escalated_from = before as i32;
                view.state = S::Escalated as i32;
            }
            let mut routed = audience(view, me);
            for (_, p) in &overdue {
                add_to(&mut routed, p, pb::RoutingRole::Recipient, me);
            }
            let what = overdue
                .iter()
                .map(|(k, p)| {
                    format!(
                        "{} of {p}",
                        clock_name(pb::ClockKind::try_from(*k).unwrap_or_default())
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let mut s = step(
                E::Escalate,
                before,
                S::Escalated,
                format!(
                    "escalated (督办) to {}: {what} overdue",
                    input.facts.leading_offices.join(", ")
                ),
                routed,
            );
            s.parties = parties;
            Ok(s)
        }
    }
}

/// Partner kinds that can hold a case.
const HANDLER_KINDS: &[PartnerKind] = &[
    PartnerKind::Hrss,
    PartnerKind::Housing,
    PartnerKind::Transport,
    PartnerKind::Water,
    PartnerKind::Finance,
    PartnerKind::DevelopmentReform,
    PartnerKind::StateAssets,
];

fn role_of(r: &pb::Routing) -> pb::RoutingRole {
    pb::RoutingRole::try_from(r.role).unwrap_or(pb::RoutingRole::Recipient)
}

/// Hands the case to the handler the rules chose for a returned case.
fn transfer_to(view: &mut pb::CaseView, r: &Reroute, now: i64) -> Vec<pb::Routing> {
    let old = view.holder.clone();
    hand_over(view, &old, &r.handler);
    view.holder = r.handler.clone();
    view.region_code = r.region.clone();
    if let Some(lead) = view.lead.as_mut() {
        lead.region_code = r.region.clone();
    }
    for x in &r.routing {
        let list = match role_of(x) {
            pb::RoutingRole::CoHandler => &mut view.co_handlers,
            pb::RoutingRole::Copy => &mut view.copies,
            pb::RoutingRole::Supervisor => &mut view.supervisors,
            _ => continue,
        };
        if !list.contains(&x.partner_id) {
            list.push(x.partner_id.clone());
        }
    }
    view.clocks = clock_specs(&r.clocks, "");
    start_clock(
        view,
        pb::ClockKind::SignFor,
        &r.handler,
        now,
        (&r.rule_id, r.rule_version),
    );
    let mut routed = r.routing.clone();
    for s in view.supervisors.clone() {
        add_to(&mut routed, &s, pb::RoutingRole::Supervisor, "");
    }
    routed
}

/// Checks an answer by a forward target to what was forwarded to it: the sender is the target
/// (of the right kind), the case is FORWARDED, and Header.in_reply_to names the latest forward
/// to the sender.
fn answers_forward(
    view: &pb::CaseView,
    input: &StepInput,
    eff: S,
    kind: PartnerKind,
    action: &str,
    who: &str,
    what: &str,
) -> Result<(), CaseError> {
    let me = input.actor.id.as_str();
    if !view.forwarded_to.iter().any(|p| p == me) || input.actor.kind != Some(kind) {
        return Err(denied(view, &input.actor, action, who));
    }
    if eff != S::Forwarded {
        return Err(wrong_state(&view.case_id, view, action));
    }
    let forward = view
        .history
        .iter()
        .rev()
        .find(|e| {
            e.kind == pb::CaseEventKind::Forward as i32
                && e.routed_to.first().is_some_and(|r| r.partner_id == me)
        })
        .map(|e| e.message_id.as_str())
        .unwrap_or_default();
    if input.in_reply_to != forward {
        return Err(invalid(
            "header.in_reply_to",
            format!("{what}: set it to that message's message_id {forward}"),
        ));
    }
    Ok(())
}

/// A letter of the 三交办 mechanism, or a reply to one.
fn letter_step(
    view: &mut pb::CaseView,
    input: &StepInput,
    l: &pb::Letter,
    now: i64,
) -> Result<Step, CaseError> {
    let actor = &input.actor;
    let me = actor.id.as_str();
    let state = state_of(view.state);
    if state == S::Closed {
        return Err(CaseError::FailedPrecondition(format!(
            "case {} is CLOSED: letters about it are no longer accepted",
            view.case_id
        )));
    }
    let kind = pb::LetterKind::try_from(l.kind).unwrap_or_default();
    required("letter.text", &l.text)?;
    let summary;
    let mut routed = vec![recipient(&l.to_partner, pb::RoutingRole::Recipient)];
    if kind == pb::LetterKind::Reply {
        let asked = view
            .history
            .iter()
            .find(|e| {
                e.kind == pb::CaseEventKind::Letter as i32 && e.message_id == input.in_reply_to
            })
            .ok_or_else(|| {
                invalid(
                    "header.in_reply_to",
                    format!(
                        "names no letter about case {}: set it to the message_id of the letter you answer",
                        view.case_id
                    ),
                )
            })?;
        let addressee = asked
            .routed_to
            .first()
            .map(|r| r.partner_id.clone())
            .unwrap_or_default();
        if addressee != me {
            return Err(CaseError::PermissionDenied(format!(
                "letter {} was addressed to {addressee}; only it may reply",
                input.in_reply_to
            )));
        }
        if asked.actor != l.to_partner {
            return Err(invalid(
                "letter.to_partner",
                format!("a reply goes to the letter's sender, {}", asked.actor),
            ));
        }
        let answered = format!("reply to {}", input.in_reply_to);
        if view.history.iter().any(|e| e.summary == answered) {
            return Err(CaseError::FailedPrecondition(format!(
                "letter {} was already answered",
                input.in_reply_to
            )));
        }
        if !l.due_on.is_empty() {
            return Err(invalid(
                "letter.due_on",
                "a reply has no due date; leave it empty",
            ));
        }
        meet_reply(view, pb::ClockKind::LetterReply, &input.in_reply_to, now);
        summary = answered;
    } else {
        if kind == pb::LetterKind::Unspecified {
            return Err(invalid(
                "letter.kind",
                "is required (ASSISTANCE_REQUEST, SUPERVISION, SITUATION_REPORT or REPLY)",
            ));
        }
        if !oversees(view, actor) {
            return Err(denied(
                view,
                actor,
                "a letter",
                "a leading office whose regions cover the case",
            ));
        }
        required("letter.title", &l.title)?;
        if input.facts.target_kind.is_none() {
            return Err(CaseError::NotFound(format!(
                "addressee {} is not a registered, active partner",
                l.to_partner
            )));
        }
        match kind {
            pb::LetterKind::SituationReport => {
                if !l.due_on.is_empty() {
                    return Err(invalid(
                        "letter.due_on",
                        "a situation report has no due date; leave it empty",
                    ));
                }
            }
            _ => {
                let due = due_date("letter.due_on", &l.due_on, now)?;
                push_clock(
                    view,
                    pb::ClockKind::LetterReply,
                    &l.to_partner,
                    now,
                    end_of_day(due),
                    ("", 0),
                );
                if let Some(d) = view.deadlines.last_mut() {
                    d.awaits_reply_to = input.message_id.clone();
                }
            }
        }
        summary = format!(
            "{} to {} by {me}",
            kind.as_str_name().trim_start_matches("LETTER_KIND_"),
            l.to_partner
        );
        for r in audience(view, me) {
            add_to(&mut routed, &r.partner_id.clone(), role_of(&r), me);
        }
    }
    let mut s = step(pb::CaseEventKind::Letter, state, state, summary, routed);
    s.parties = vec![(l.to_partner.clone(), "addressee")];
    Ok(s)
}
