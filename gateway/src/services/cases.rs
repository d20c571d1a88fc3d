//! `wagelink.v1.Cases`. Built so far: `SubmitLead` through the signed submit path — the lead
//! is verified, its fields checked, routed by the rules, logged with its routing and answered
//! with a receipt that says where it went — and `DryRunRoute`. Cases and their actions come
//! with the cases capability (the `unbuilt` layer answers them UNIMPLEMENTED until then).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use wagelink_proto::v1 as pb;

use crate::envelope;
use crate::identity::{PartnerStatus, Registry};
use crate::ledger::log::{CaseOpening, Effect, EvidenceLog};
use crate::routing::{Decision, Lead, Role, RuleSet};

pub struct CasesService {
    registry: Arc<Registry>,
    log: Arc<EvidenceLog>,
    rules: Arc<RuleSet>,
}

impl CasesService {
    pub fn new(registry: Arc<Registry>, log: Arc<EvidenceLog>, rules: Arc<RuleSet>) -> Self {
        Self {
            registry,
            log,
            rules,
        }
    }

    /// Checks a lead and decides where it goes.
    fn route(&self, lead: &pb::Lead) -> Result<Decision, Status> {
        crate::cases::lead::validate(lead, crate::cases::china_today())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let registry = &self.registry;
        self.rules
            .route(&Lead::from_proto(lead), |id| {
                id.parse()
                    .ok()
                    .and_then(|id| registry.partner(&id))
                    .is_some_and(|p| p.status == PartnerStatus::Active)
            })
            .map_err(|e| Status::failed_precondition(e.to_string()))
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
fn routing(decision: &Decision) -> Vec<pb::Routing> {
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

/// A routed lead opens a case held by its handler and reaches every recipient's mailbox.
fn effects(decision: &Decision, region: &str) -> Vec<Effect> {
    let role_name = |r: Role| match r {
        Role::Handler => "handler",
        Role::CoHandler => "co-handler",
        Role::Copy => "copy",
        Role::Supervisor => "supervisor",
    };
    let mut effects = vec![Effect::OpenCase(CaseOpening {
        region: region.to_owned(),
        holder: decision.handler.clone(),
        rule_id: decision.rule_id.clone(),
        rule_version: decision.version,
        parties: decision
            .recipients
            .iter()
            .map(|r| (r.partner.clone(), role_name(r.role)))
            .collect(),
        clocks: (
            decision.clocks.sign_for,
            decision.clocks.handle,
            decision.clocks.feed_back,
        ),
    })];
    effects.extend(
        decision
            .recipients
            .iter()
            .map(|r| Effect::Deliver(r.partner.clone())),
    );
    effects
}

#[tonic::async_trait]
impl pb::cases_server::Cases for CasesService {
    async fn submit_lead(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let (me, mut verified) = envelope::verify_request::<pb::Lead>(&self.registry, request)?;
        // A resubmission goes straight to the log, which answers with the original receipt
        // (or ALREADY_EXISTS): today's rules or registry must not change that answer.
        let seen = self
            .log
            .store()
            .envelope_seen(me.id.as_str(), &verified.accepted.header.message_id)
            .await
            .map_err(super::status::store_unavailable)?;
        if !seen {
            let decision = self.route(&verified.payload)?;
            verified.accepted.routed_to = routing(&decision);
            verified.accepted.effects = effects(&decision, &verified.payload.region_code);
        }
        super::record(&self.log, verified.accepted).await
    }

    async fn dry_run_route(
        &self,
        request: Request<pb::DryRunRouteRequest>,
    ) -> Result<Response<pb::DryRunRouteResponse>, Status> {
        let r = request.into_inner();
        if r.rules_version != 0 && r.rules_version != self.rules.version {
            return Err(Status::not_found(format!(
                "rules version {} is not loaded; the active version is {} (ask for 0 to use it)",
                r.rules_version, self.rules.version
            )));
        }
        let lead = r
            .lead
            .ok_or_else(|| Status::invalid_argument("give the lead to route in `lead`"))?;
        let d = self.route(&lead)?;
        let clock = |kind: pb::ClockKind, working_days: u32| pb::ClockSpec {
            kind: kind as i32,
            working_days,
            hours: 0,
            partner_id: d.handler.clone(),
        };
        Ok(Response::new(pb::DryRunRouteResponse {
            handler: d.handler.clone(),
            co_handlers: d.with_role(Role::CoHandler),
            copies: d.with_role(Role::Copy),
            supervisors: d.with_role(Role::Supervisor),
            clocks: vec![
                clock(pb::ClockKind::SignFor, d.clocks.sign_for),
                clock(pb::ClockKind::Handle, d.clocks.handle),
                clock(pb::ClockKind::FeedBack, d.clocks.feed_back),
            ],
            rule_id: d.rule_id.clone(),
            rule_version: d.version,
            routing: routing(&d),
            explanation: d.explanation.join("\n"),
        }))
    }
}
