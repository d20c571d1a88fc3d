//! `wagelink.v1.Cases`: leads in (SubmitLead, routed by the rules), steps on cases
//! (ActOnCase) and letters (SendLetter) checked by the case state machine as the log records
//! them, case views for those with a role (GetCase, ListCases), the dry run of the routing, and
//! the overdue scan that escalates (督办) cases whose clocks ran out.
//!
//! The service only gathers what the state machine cannot know itself — the registry's facts
//! about the partners a step names, where the rules send a returned case — and hands the step to
//! the log; the machine decides inside the append transaction.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use prost::Message;
use tonic::{Request, Response, Status};
use wagelink_proto::envelope::sha256;
use wagelink_proto::v1 as pb;

use super::status::store_unavailable;
use crate::cases::machine::{self, Actor, Facts, Input, Opening, Reroute, StepInput};
use crate::envelope;
use crate::federation::Federation;
use crate::identity::{
    PartnerId, PartnerKind, PartnerStatus, RegionCode, Registry, VerifiedPartner,
};
use crate::ledger::log::{AppendError, Effect, EvidenceLog};
use crate::routing::{ActiveRules, Decision, Lead, Role, RuleSet};
use crate::store::{CaseFilter, CaseRecord};

pub struct CasesService {
    registry: Arc<Registry>,
    log: Arc<EvidenceLog>,
    rules: Arc<ActiveRules>,
}

/// The kind of an active registered partner.
fn active_kind(registry: &Registry, id: &str) -> Option<PartnerKind> {
    id.parse::<PartnerId>()
        .ok()
        .and_then(|id| registry.partner(&id))
        .filter(|p| p.status == PartnerStatus::Active)
        .map(|p| p.kind)
}

/// The leading offices of a region, most local first: the district's (where registered) and
/// the city's.
fn leading_offices(registry: &Registry, region: &str) -> Vec<String> {
    let mut out = Vec::new();
    for id in [
        format!("leading-office-{region}"),
        format!("leading-office-{}", RegionCode::CITY),
    ] {
        if active_kind(registry, &id) == Some(PartnerKind::LeadingOffice) && !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

fn actor(me: &VerifiedPartner) -> Actor {
    Actor {
        id: me.id.to_string(),
        kind: Some(me.kind),
        jurisdiction: me.jurisdiction.clone(),
    }
}

impl CasesService {
    pub fn new(registry: Arc<Registry>, log: Arc<EvidenceLog>, rules: Arc<ActiveRules>) -> Self {
        Self {
            registry,
            log,
            rules,
        }
    }

    fn is_active(&self, id: &str) -> bool {
        active_kind(&self.registry, id).is_some()
    }

    /// Checks a lead and decides where it goes.
    fn route(&self, lead: &pb::Lead) -> Result<Decision, Status> {
        route_lead(
            &self.rules.current(),
            &self.rules.federation(),
            &self.registry,
            lead,
        )
    }

    /// Where a case returned by its holder goes now: the rules again, without the partners that
    /// returned it; for a case outside the region, in the region of the handler the returner
    /// names (the rules still decide who handles it there).
    fn reroute(
        &self,
        case: &CaseRecord,
        returner: &str,
        r: &pb::case_action::Return,
    ) -> Option<Reroute> {
        let mut excluded: Vec<String> = case
            .view
            .history
            .iter()
            .filter(|e| e.kind == pb::CaseEventKind::Return as i32)
            .map(|e| e.actor.clone())
            .collect();
        excluded.push(returner.to_owned());
        let mut lead = case.view.lead.clone().unwrap_or_default();
        if r.reason == pb::ReturnReason::OutsideRegion as i32 && !r.suggested_handler.is_empty() {
            let region = r
                .suggested_handler
                .parse::<PartnerId>()
                .ok()
                .and_then(|id| self.registry.partner(&id))
                .filter(|p| p.status == PartnerStatus::Active)
                .and_then(|p| {
                    let regions: Vec<_> = p.jurisdiction.regions.iter().collect();
                    (regions.len() == 1 && !regions[0].is_city())
                        .then(|| regions[0].as_str().to_owned())
                });
            if let Some(region) = region {
                lead.region_code = region;
            }
        }
        let d = self
            .rules
            .current()
            .route(&Lead::from_proto(&lead), |id| {
                self.is_active(id) && !excluded.iter().any(|x| x == id)
            })
            .ok()?;
        Some(Reroute {
            handler: d.handler.clone(),
            region: lead.region_code.clone(),
            routing: routing(&d),
            clocks: d.clocks,
            rule_id: d.rule_id.clone(),
            rule_version: d.version,
        })
    }

    async fn load(&self, case_id: &str) -> Result<CaseRecord, Status> {
        if case_id.is_empty() {
            return Err(Status::invalid_argument("case_id is required"));
        }
        self.log
            .store()
            .case(case_id)
            .await
            .map_err(store_unavailable)?
            .ok_or_else(|| Status::not_found(format!("there is no case {case_id}")))
    }

    /// Whether a partner may see a case: it had a role on it, or oversees its region.
    async fn visible(&self, case: &CaseRecord, me: &VerifiedPartner) -> Result<bool, Status> {
        if machine::oversees(&case.view, &actor(me)) {
            return Ok(true);
        }
        self.log
            .store()
            .is_party(&case.view.case_id, me.id.as_str())
            .await
            .map_err(store_unavailable)
    }

    /// The facts about other partners a step needs.
    fn facts(&self, case: &CaseRecord, me: &VerifiedPartner, input: &Input) -> Facts {
        let region = case.view.region_code.as_str();
        let mut facts = Facts {
            leading_offices: leading_offices(&self.registry, region),
            ..Facts::default()
        };
        use pb::case_action::Action as A;
        match input {
            Input::Action(a) => match &a.action {
                Some(A::Forward(f)) => {
                    facts.target_kind = active_kind(&self.registry, &f.to_partner)
                }
                Some(A::Transfer(t)) => {
                    facts.target_kind = active_kind(&self.registry, &t.to_partner)
                }
                Some(A::ReturnCase(r)) if case.view.holder == me.id.as_str() => {
                    facts.reroute = self.reroute(case, me.id.as_str(), r);
                }
                Some(A::Sanction(_)) => {
                    for id in [
                        format!("development-reform-{region}"),
                        format!("development-reform-{}", RegionCode::CITY),
                    ] {
                        if self.is_active(&id) && !facts.sanction_notify.contains(&id) {
                            facts.sanction_notify.push(id);
                        }
                    }
                }
                _ => {}
            },
            Input::Letter(l) => facts.target_kind = active_kind(&self.registry, &l.to_partner),
        }
        facts
    }

    /// The common path of ActOnCase and SendLetter: load the case, gather facts, log the step.
    #[tracing::instrument(name = "case.step", skip_all, fields(case_id = %case_id, actor = %me.id))]
    async fn step(
        &self,
        me: VerifiedPartner,
        mut accepted: crate::ledger::log::Accepted,
        case_id: String,
        input: Input,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        if !accepted.header.subject.is_empty() && accepted.header.subject != case_id {
            return Err(Status::invalid_argument(format!(
                "Header.subject is {:?} but the payload's case_id is {case_id:?}; they must match (or leave subject empty)",
                accepted.header.subject
            )));
        }
        // A resubmission goes straight to the log, which answers with the original receipt.
        let seen = super::seen(&self.log, me.id.as_str(), &accepted.header.message_id).await?;
        if !seen {
            let case = self.load(&case_id).await?;
            let facts = self.facts(&case, &me, &input);
            accepted.case_id = case_id.clone();
            let mut facts = facts;
            // A case linked to a peer's (by a lead relayed either way) sends it every step.
            if !self.rules.federation().peers.is_empty() {
                facts.mirror = self
                    .log
                    .store()
                    .case_peer(&case_id)
                    .await
                    .map_err(store_unavailable)?;
            }
            accepted.effects.insert(
                0,
                Effect::Case(Box::new(StepInput {
                    case_id,
                    actor: actor(&me),
                    input,
                    message_id: accepted.header.message_id.clone(),
                    in_reply_to: accepted.header.in_reply_to.clone(),
                    facts,
                })),
            );
        }
        super::record(&self.log, accepted).await
    }

    /// The case as `me` may see it: the reporter's personal data only for the holder and the
    /// source that submitted it.
    async fn view_for(
        &self,
        case: CaseRecord,
        me: &VerifiedPartner,
    ) -> Result<pb::CaseView, Status> {
        let who = actor(me);
        let mut view = case.view;
        view.my_roles = machine::roles(&view, &who)
            .into_iter()
            .map(|r| r as i32)
            .collect();
        if view.holder == me.id.as_str() || view.source == me.id.as_str() {
            let stored = self
                .log
                .store()
                .entries(case.opened_index, case.opened_index + 1, true)
                .await
                .map_err(store_unavailable)?;
            if let Some(full) = stored
                .into_iter()
                .next()
                .and_then(|e| e.payload)
                .and_then(|p| pb::Lead::decode(p.as_slice()).ok())
                && let Some(lead) = view.lead.as_mut()
            {
                lead.reporter_name = full.reporter_name;
                lead.reporter_id_number = full.reporter_id_number;
                lead.reporter_phone = full.reporter_phone;
            }
        }
        Ok(view)
    }
}

impl CasesService {
    /// Logs a lead a peer gateway relayed (its originator's and the peer's signatures already
    /// checked): routed by the rules here — never on to another peer — and linked to the case
    /// it opened at the peer. Returns this gateway's receipt.
    pub async fn relayed_lead(
        &self,
        peer: &VerifiedPartner,
        mut accepted: crate::ledger::log::Accepted,
        lead: &pb::Lead,
        remote_case_id: &str,
    ) -> Result<pb::SignedEnvelope, Status> {
        let seen = super::seen(&self.log, peer.id.as_str(), &accepted.header.message_id).await?;
        if !seen {
            let decision = self.route(lead)?;
            if active_kind(&self.registry, &decision.handler) == Some(PartnerKind::PeerGateway) {
                return Err(Status::failed_precondition(format!(
                    "region {} is not served here but by peer gateway {}; a relayed lead is not relayed again",
                    lead.region_code, decision.handler
                )));
            }
            accepted.routed_to = routing(&decision);
            accepted.effects = vec![
                opening(&decision, lead),
                Effect::MapCase {
                    peer: peer.id.to_string(),
                    remote_case_id: remote_case_id.to_owned(),
                },
            ];
        }
        Ok(super::record(&self.log, accepted)
            .await?
            .into_inner()
            .receipt
            .unwrap_or_default())
    }

    /// Mirrors a step a peer gateway relayed on the case `local_case_id` linked to its own: the
    /// peer acts as the role it has here (the holder of a case relayed to it, the source of a
    /// case it relayed here).
    pub async fn relayed_step(
        &self,
        peer: VerifiedPartner,
        mut accepted: crate::ledger::log::Accepted,
        mut action: pb::CaseAction,
        local_case_id: String,
    ) -> Result<pb::SignedEnvelope, Status> {
        // Linked for good, so later steps find the case without the peer naming it.
        accepted.effects.push(Effect::MapCase {
            peer: peer.id.to_string(),
            remote_case_id: std::mem::replace(&mut action.case_id, local_case_id.clone()),
        });
        accepted.header.subject = local_case_id.clone();
        let response = self
            .step(peer, accepted, local_case_id, Input::Action(action))
            .await?;
        Ok(response.into_inner().receipt.unwrap_or_default())
    }
}

/// Where `lead` would go under rules `version` (0 = the active one); nothing is stored.
pub(crate) async fn dry_run(
    active: &ActiveRules,
    registry: &Registry,
    lead: Option<pb::Lead>,
    version: u32,
) -> Result<pb::DryRunRouteResponse, Status> {
    let rules = active;
    let Some(rules) = rules.version(version).await.map_err(|e| {
        tracing::error!(error = %e, "reading a rules version failed");
        Status::unavailable("the gateway's storage is unavailable; retry shortly")
    })?
    else {
        return Err(Status::not_found(format!(
            "there is no rules version {version}; the active version is {} (ask for 0 to use it)",
            rules.current().version
        )));
    };
    let lead = lead.ok_or_else(|| Status::invalid_argument("give the lead to route in `lead`"))?;
    let d = route_lead(&rules, &active.federation(), registry, &lead)?;
    Ok(pb::DryRunRouteResponse {
        handler: d.handler.clone(),
        co_handlers: d.with_role(Role::CoHandler),
        copies: d.with_role(Role::Copy),
        supervisors: d.with_role(Role::Supervisor),
        clocks: machine::clock_specs(&d.clocks, &d.handler),
        rule_id: d.rule_id.clone(),
        rule_version: d.version,
        routing: routing(&d),
        explanation: d.explanation.join("\n"),
    })
}

/// Checks a lead and decides where it goes by the rules.
#[tracing::instrument(name = "route", skip_all, fields(rules_version = rules.version, region = %lead.region_code))]
pub(crate) fn route_lead(
    rules: &RuleSet,
    federation: &Federation,
    registry: &Registry,
    lead: &pb::Lead,
) -> Result<Decision, Status> {
    crate::cases::lead::validate_in(lead, crate::cases::china_today(), &|r| {
        federation.accepts(r.as_str())
    })
    .map_err(|e| Status::invalid_argument(e.to_string()))?;
    // A lead in a region another gateway owns goes to that peer, which routes it there.
    if let Some(peer) = federation.owner(&lead.region_code) {
        let rule_id = format!("federation:{}", peer.id);
        return Ok(Decision {
            version: rules.version,
            rule_id: rule_id.clone(),
            handler: peer.id.to_string(),
            recipients: vec![crate::routing::Recipient {
                partner: peer.id.to_string(),
                role: Role::Handler,
                rule_id,
            }],
            clocks: rules.default_clocks(),
            explanation: vec![format!(
                "region {} is owned by peer gateway {} ({}): relayed there",
                lead.region_code, peer.id, peer.config.trust_domain
            )],
        });
    }
    rules
        .route(&Lead::from_proto(lead), |id| {
            active_kind(registry, id).is_some()
        })
        .map_err(|e| Status::failed_precondition(e.to_string()))
}

/// The case a routed lead opens.
pub(crate) fn opening(decision: &Decision, lead: &pb::Lead) -> Effect {
    Effect::OpenCase(Box::new(Opening {
        lead: without_personal_data(lead),
        holder: decision.handler.clone(),
        routing: routing(decision),
        clocks: decision.clocks,
        rule_id: decision.rule_id.clone(),
        rule_version: decision.version,
        lead_key: machine::lead_key(lead),
    }))
}

/// The lead without the reporter's personal data, as cases keep it.
fn without_personal_data(lead: &pb::Lead) -> pb::Lead {
    pb::Lead {
        reporter_name: String::new(),
        reporter_id_number: String::new(),
        reporter_phone: String::new(),
        ..lead.clone()
    }
}

/// Escalates (督办) cases whose clocks ran out, every `every`, until shutdown. Each escalation
/// is an envelope the gateway signs itself, logged like any step.
pub async fn overdue_scan(
    registry: Arc<Registry>,
    log: Arc<EvidenceLog>,
    every: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::server::stopped(shutdown.clone()) => return,
        }
        let now = crate::store::now_unix();
        let due = match log.store().due_cases(now, 200).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "the overdue scan could not read cases; retrying next tick");
                continue;
            }
        };
        for case_id in due {
            if let Err(e) = escalate(&registry, &log, &case_id, now).await {
                tracing::warn!(case_id = %case_id, error = %e, "escalating an overdue case failed; retrying next tick");
            }
        }
    }
}

#[tracing::instrument(name = "case.escalate", skip(registry, log))]
async fn escalate(
    registry: &Registry,
    log: &EvidenceLog,
    case_id: &str,
    now: i64,
) -> Result<(), String> {
    let Some(case) = log.store().case(case_id).await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let Some(overdue) = case.view.deadlines.iter().find(|d| {
        d.met_at.is_none()
            && !d.overdue
            && machine::escalates(d.kind)
            && d.due_at.as_ref().is_some_and(|t| t.seconds <= now)
    }) else {
        return Ok(());
    };
    let offices = leading_offices(registry, &case.view.region_code);
    let action = pb::CaseAction {
        case_id: case_id.to_owned(),
        action: Some(pb::case_action::Action::Escalate(
            pb::case_action::Escalate {
                overdue_clock: overdue.kind,
                overdue_partner: overdue.partner_id.clone(),
                supervisor: offices.first().cloned().unwrap_or_default(),
            },
        )),
    };
    let input = StepInput {
        case_id: case_id.to_owned(),
        actor: Actor {
            id: crate::server::GATEWAY_ID.to_owned(),
            kind: None,
            jurisdiction: Default::default(),
        },
        input: Input::Action(action.clone()),
        message_id: String::new(),
        in_reply_to: String::new(),
        facts: Facts {
            leading_offices: offices,
            ..Facts::default()
        },
    };
    let accepted = log
        .own(&action, case_id, vec![Effect::Case(Box::new(input))])
        .map_err(|e| e.to_string())?;
    match log.append(accepted).await {
        Ok(_) => {
            tracing::info!(case_id = %case_id, "case escalated to the leading office: a clock ran out");
            Ok(())
        }
        // Another step met the clock first: nothing to escalate.
        Err(AppendError::Case(_)) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// `ListCases` page tokens: the last (updated_at, id) of a page, bound to the filters.
fn page_token(updated_at: i64, id: &str, filters: &[u8]) -> String {
    let digest = hex::encode(&sha256(filters)[..8]);
    B64.encode(format!("{updated_at}|{id}|{digest}"))
}

fn parse_page_token(token: &str, filters: &[u8]) -> Option<(i64, String)> {
    let text = String::from_utf8(B64.decode(token).ok()?).ok()?;
    let mut parts = text.splitn(3, '|');
    let at = parts.next()?.parse().ok()?;
    let id = parts.next()?.to_owned();
    (parts.next()? == hex::encode(&sha256(filters)[..8])).then_some((at, id))
}

fn summary(view: &pb::CaseView, who: &Actor) -> pb::CaseSummary {
    let lead = view.lead.clone().unwrap_or_default();
    pb::CaseSummary {
        case_id: view.case_id.clone(),
        state: view.state,
        holder: view.holder.clone(),
        region_code: view.region_code.clone(),
        lead_type: lead.lead_type,
        channel: lead.channel,
        project_name: lead.project_name,
        employer_name: lead.employer_name,
        amount_fen: lead.amount_fen,
        worker_count: lead.worker_count,
        created_at: view.created_at,
        updated_at: view.updated_at,
        next_due_at: machine::next_due(view).map(super::convert::timestamp),
        overdue: machine::any_overdue(view),
        supervised: view.supervised,
        my_roles: machine::roles(view, who)
            .into_iter()
            .map(|r| r as i32)
            .collect(),
    }
}

fn role(role: Role) -> pb::RoutingRole {
    match role {
        Role::Handler => pb::RoutingRole::Handler,
        Role::CoHandler => pb::RoutingRole::CoHandler,
        Role::Copy => pb::RoutingRole::Copy,
        Role::Supervisor => pb::RoutingRole::Supervisor,
    }
}

/// The routing of a decision, as receipts and log entries record it.
pub(crate) fn routing(decision: &Decision) -> Vec<pb::Routing> {
    decision
        .recipients
        .iter()
        .map(|r| pb::Routing {
            partner_id: r.partner.clone(),
            role: role(r.role) as i32,
            rule_id: r.rule_id.clone(),
            rule_version: decision.version,
        })
        .collect()
}

#[tonic::async_trait]
impl pb::cases_server::Cases for CasesService {
    async fn submit_lead(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let (me, mut verified) = envelope::verify_request::<pb::Lead>(&self.registry, request)?;
        // A resubmission is answered by the log with the original receipt (or ALREADY_EXISTS),
        // whatever the effects it carries: today's rules or registry must not change that
        // answer. So the store is asked whether the envelope was seen only when today's rules
        // refuse it, and then a seen one goes straight to the log.
        match self.route(&verified.payload) {
            Ok(decision) => {
                let lead = &verified.payload;
                verified.accepted.routed_to = routing(&decision);
                verified.accepted.effects = vec![opening(&decision, lead)];
            }
            Err(refused) => {
                let seen = super::seen(
                    &self.log,
                    me.id.as_str(),
                    &verified.accepted.header.message_id,
                )
                .await?;
                if !seen {
                    return Err(refused);
                }
            }
        }
        super::record(&self.log, verified.accepted).await
    }

    async fn dry_run_route(
        &self,
        request: Request<pb::DryRunRouteRequest>,
    ) -> Result<Response<pb::DryRunRouteResponse>, Status> {
        let r = request.into_inner();
        dry_run(&self.rules, &self.registry, r.lead, r.rules_version)
            .await
            .map(Response::new)
    }

    async fn act_on_case(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let (me, verified) = envelope::verify_request::<pb::CaseAction>(&self.registry, request)?;
        let case_id = verified.payload.case_id.clone();
        if verified.payload.action.is_none() {
            return Err(Status::invalid_argument(
                "CaseAction has no action: set exactly one (sign_for, progress, return_case, forward, resolve, feedback, close, filing_decision, supervise, sanction, transfer)",
            ));
        }
        self.step(
            me,
            verified.accepted,
            case_id,
            Input::Action(verified.payload),
        )
        .await
    }

    async fn send_letter(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let (me, verified) = envelope::verify_request::<pb::Letter>(&self.registry, request)?;
        let letter = verified.payload;
        if letter.to_partner.is_empty() {
            return Err(Status::invalid_argument("Letter.to_partner is required"));
        }
        if verified.accepted.header.recipients != [letter.to_partner.clone()] {
            return Err(Status::invalid_argument(format!(
                "Header.recipients must be exactly [{:?}] (Letter.to_partner); it is {:?}",
                letter.to_partner, verified.accepted.header.recipients
            )));
        }
        let case_id = letter.case_id.clone();
        self.step(me, verified.accepted, case_id, Input::Letter(letter))
            .await
    }

    async fn get_case(
        &self,
        request: Request<pb::GetCaseRequest>,
    ) -> Result<Response<pb::CaseView>, Status> {
        let me = crate::layers::authenticate::partner(&request)?.clone();
        let case = self.load(&request.into_inner().case_id).await?;
        if !self.visible(&case, &me).await? {
            return Err(Status::permission_denied(format!(
                "case {} exists but {} has no role on it and does not oversee its region",
                case.view.case_id, me.id
            )));
        }
        Ok(Response::new(self.view_for(case, &me).await?))
    }

    async fn list_cases(
        &self,
        request: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesResponse>, Status> {
        let me = crate::layers::authenticate::partner(&request)?.clone();
        let r = request.into_inner();
        if r.page_size > 1000 {
            return Err(Status::invalid_argument(format!(
                "page_size {} is over 1000",
                r.page_size
            )));
        }
        let limit = if r.page_size == 0 { 100 } else { r.page_size };
        let region = match r.region_code.as_str() {
            "" => None,
            code => {
                let code: RegionCode = code
                    .parse()
                    .map_err(|e| Status::invalid_argument(format!("region_code: {e}")))?;
                (!code.is_city()).then(|| code.as_str().to_owned())
            }
        };
        let mut states = Vec::new();
        for s in &r.states {
            match pb::CaseState::try_from(*s) {
                Ok(state) if state != pb::CaseState::Unspecified => {
                    let name = machine::state_name(state).to_owned();
                    if !states.contains(&name) {
                        states.push(name);
                    }
                }
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "states: {s} is not a case state"
                    )));
                }
            }
        }
        let role = match pb::CaseRole::try_from(r.role).unwrap_or_default() {
            pb::CaseRole::Unspecified => None,
            pb::CaseRole::Holder => Some("holder"),
            pb::CaseRole::CoHandler => Some("co-handler"),
            pb::CaseRole::Copy => Some("copy"),
            pb::CaseRole::Source => Some("source"),
            pb::CaseRole::ForwardTarget => Some("forward-target"),
            pb::CaseRole::Supervisor => Some("supervisor"),
            pb::CaseRole::Oversight => Some("oversight"),
        };
        let filters = pb::ListCasesRequest {
            page_size: 0,
            page_token: String::new(),
            ..r.clone()
        }
        .encode_to_vec();
        let after = if r.page_token.is_empty() {
            None
        } else {
            Some(parse_page_token(&r.page_token, &filters).ok_or_else(|| {
                Status::invalid_argument(
                    "page_token was not returned by a previous ListCases call with these filters; start again with an empty page_token",
                )
            })?)
        };
        let oversight = me.kind == PartnerKind::LeadingOffice;
        let filter = CaseFilter {
            partner: me.id.to_string(),
            oversight_all: oversight && me.jurisdiction.regions.iter().any(|r| r.is_city()),
            oversight: if oversight {
                me.jurisdiction
                    .regions
                    .iter()
                    .map(|r| r.as_str().to_owned())
                    .collect()
            } else {
                Vec::new()
            },
            role,
            states,
            region,
            overdue_only: r.overdue_only,
            supervised_only: r.supervised_only,
            updated_since: r.updated_since.map(|t| t.seconds),
            after,
            limit: limit + 1,
        };
        let mut found = self
            .log
            .store()
            .list_cases(&filter)
            .await
            .map_err(store_unavailable)?;
        let more = found.len() > limit as usize;
        found.truncate(limit as usize);
        let who = actor(&me);
        let next_page_token = match (more, found.last()) {
            (true, Some(last)) => page_token(
                last.view.updated_at.map_or(0, |t| t.seconds),
                &last.view.case_id,
                &filters,
            ),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListCasesResponse {
            cases: found.iter().map(|c| summary(&c.view, &who)).collect(),
            next_page_token,
        }))
    }
}
