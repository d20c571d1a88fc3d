//! `wagelink.v1.Banks`: `PushEvents` takes a bank's signed account events (one per envelope, or
//! a batch under one signature whose digest is the Merkle tree hash of its events), checks each,
//! logs the envelope with the events stored once and the account registry updated in the same
//! transaction, delivers it to the project's district labour-inspection office and industry
//! authority, and answers each envelope on the stream with its receipt or a per-envelope
//! rejection. `Link` is the bank's query link: queries go down it and the bank's signed answers
//! come up. The warning scan raises warning leads from silence on accounts.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};
use wagelink_proto::envelope::EVENT_BATCH_TYPE;
use wagelink_proto::v1 as pb;

use super::status::store_unavailable;
use crate::banks::event::{CheckedEvent, check_all};
use crate::banks::link::BankLinks;
use crate::banks::warnings::{self, Warning, WarningRules};
use crate::envelope::{self, SubmitError};
use crate::identity::{PartnerId, PartnerStatus, Registry, VerifiedPartner};
use crate::layers::authenticate::partner;
use crate::ledger::log::{AccountReport, AppendError, Effect, EvidenceLog};
use crate::refusal::Refused;
use crate::routing::{ActiveRules, RuleSet};

/// Envelopes of one stream handled at once, ahead of their receipts.
const STREAM_WINDOW: usize = 64;

/// Queries a link takes at once when its hello names no capacity.
const DEFAULT_LINK_CAPACITY: u32 = 16;

#[derive(Clone)]
pub struct BanksService {
    registry: Arc<Registry>,
    log: Arc<EvidenceLog>,
    links: Arc<BankLinks>,
    max_batch: usize,
    link_ping: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl BanksService {
    pub fn new(
        registry: Arc<Registry>,
        log: Arc<EvidenceLog>,
        links: Arc<BankLinks>,
        max_batch: usize,
        link_ping: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            registry,
            log,
            links,
            max_batch,
            link_ping,
            shutdown,
        }
    }

    /// A bank's signed answer to a query it was sent: checked, logged, handed to the asker;
    /// answered on the link with the gateway's receipt or a rejection.
    async fn answer(&self, me: &VerifiedPartner, a: pb::LinkAnswer) -> pb::LinkAnswerReceipt {
        let reject = |code: tonic::Code, message: String| pb::LinkAnswerReceipt {
            correlation_id: a.correlation_id.clone(),
            result: Some(pb::link_answer_receipt::Result::Rejected(pb::Rejection {
                code: code as i32,
                message,
            })),
        };
        let Some(waiting) = self.links.take(me.id.as_str(), &a.correlation_id) else {
            return reject(
                tonic::Code::NotFound,
                format!(
                    "no query with correlation id {:?} awaits your answer (unknown, answered, or given up by its asker)",
                    a.correlation_id.chars().take(40).collect::<String>()
                ),
            );
        };
        let now = crate::store::now_unix();
        if now > waiting.deadline {
            waiting.finish(Err(Refused::DeadlineExceeded(
                "the bank answered after the query's deadline".into(),
            )));
            return reject(
                tonic::Code::FailedPrecondition,
                "the query's deadline has passed; the answer was discarded".into(),
            );
        }
        let Some(env) = a.answer.clone() else {
            waiting.finish(Err(Refused::Unavailable(
                "the bank sent an empty answer".into(),
            )));
            return reject(
                tonic::Code::InvalidArgument,
                "LinkAnswer.answer is empty".into(),
            );
        };
        let verified = match envelope::verify::<pb::AccountQueryAnswer>(
            &self.registry,
            me,
            env.clone(),
            now,
        ) {
            Ok(v) => v,
            Err(e) => {
                let status = Status::from(e);
                waiting.finish(Err(Refused::Unavailable(format!(
                    "the bank's answer was refused: {}",
                    status.message()
                ))));
                return reject(status.code(), status.message().to_owned());
            }
        };
        let answer = &verified.payload;
        let mismatch = if answer.query_message_id != waiting.query_message_id {
            Some(format!(
                "query_message_id must be {}",
                waiting.query_message_id
            ))
        } else if verified.accepted.header.in_reply_to != waiting.query_message_id {
            Some(format!(
                "Header.in_reply_to must be {}",
                waiting.query_message_id
            ))
        } else if answer.account_number != waiting.account_number {
            Some(format!("account_number must be {}", waiting.account_number))
        } else if answer.kind != waiting.kind {
            Some("kind must be the query's".to_owned())
        } else if answer.result.is_none() {
            Some("set the result matching the query's kind".to_owned())
        } else {
            None
        };
        if let Some(why) = mismatch {
            waiting.finish(Err(Refused::Unavailable(format!(
                "the bank's answer did not match the query: {why}"
            ))));
            return reject(
                tonic::Code::InvalidArgument,
                format!("the answer does not match its query: {why}"),
            );
        }
        let mut accepted = verified.accepted;
        accepted.routed_to = vec![pb::Routing {
            partner_id: waiting.asker.clone(),
            role: pb::RoutingRole::Recipient as i32,
            rule_id: String::new(),
            rule_version: 0,
        }];
        accepted.effects = vec![Effect::Answers {
            query_index: waiting.query_index,
        }];
        match self.log.append(accepted).await {
            Ok(receipt) => {
                waiting.finish(Ok(env));
                pb::LinkAnswerReceipt {
                    correlation_id: a.correlation_id,
                    result: Some(pb::link_answer_receipt::Result::Receipt(receipt)),
                }
            }
            Err(e) => {
                let status = Status::from(SubmitError::from(e));
                waiting.finish(Err(Refused::Unavailable(status.message().to_owned())));
                reject(status.code(), status.message().to_owned())
            }
        }
    }

    fn active(&self, id: &str) -> bool {
        id.parse::<PartnerId>()
            .ok()
            .and_then(|id| self.registry.partner(&id))
            .is_some_and(|p| p.status == PartnerStatus::Active)
    }

    /// `a-{region}|a-500000`: the district's partner where registered, else the city's.
    fn local(&self, prefix: &str, region: &str) -> Option<String> {
        [format!("{prefix}-{region}"), format!("{prefix}-500000")]
            .into_iter()
            .find(|id| self.active(id))
    }

    /// Who receives a bank's envelope: for each event, the labour-inspection office of the
    /// project's district and the authority of the project's industry, when known.
    async fn recipients(&self, events: &[CheckedEvent]) -> Result<Vec<pb::Routing>, Status> {
        let mut out: Vec<pb::Routing> = Vec::new();
        let mut add = |p: Option<String>, role: pb::RoutingRole, rule: &str| {
            if let Some(p) = p
                && !out.iter().any(|r| r.partner_id == p)
            {
                out.push(pb::Routing {
                    partner_id: p,
                    role: role as i32,
                    rule_id: rule.to_owned(),
                    rule_version: 0,
                });
            }
        };
        // Every project the batch names, read in one statement rather than once per event.
        let codes: Vec<&str> = events
            .iter()
            .map(|e| e.account.project_code.as_str())
            .filter(|c| !c.is_empty())
            .collect();
        let projects = self
            .log
            .store()
            .projects(&codes)
            .await
            .map_err(store_unavailable)?;
        for e in events {
            let region = e.account.region.as_str();
            add(
                self.local("hrss", region),
                pb::RoutingRole::Handler,
                "account-events: district labour inspection",
            );
            if e.account.project_code.is_empty() {
                continue;
            }
            let project = projects.get(&e.account.project_code);
            let authority = match project.map(|(_, i)| i.as_str()) {
                Some("housing-municipal") => Some("housing"),
                Some("transport") => Some("transport"),
                Some("water") => Some("water"),
                _ => None,
            };
            if let Some(prefix) = authority {
                add(
                    self.local(prefix, region),
                    pb::RoutingRole::CoHandler,
                    "account-events: industry authority",
                );
            }
        }
        Ok(out)
    }

    /// One pushed envelope checked and made ready for the log.
    async fn prepare(
        &self,
        me: &VerifiedPartner,
        env: pb::SignedEnvelope,
    ) -> Result<crate::ledger::log::Accepted, Status> {
        let now = crate::store::now_unix();
        let batch = pb::Header::decode(env.header.as_slice())
            .map(|h| h.payload_type == EVENT_BATCH_TYPE)
            .unwrap_or(false);
        let (mut accepted, events) = if batch {
            let v = envelope::verify::<pb::AccountEventBatch>(&self.registry, me, env, now)
                .map_err(Status::from)?;
            (v.accepted, v.payload.events)
        } else {
            let v = envelope::verify::<pb::AccountEvent>(&self.registry, me, env, now)
                .map_err(Status::from)?;
            let bytes = v.accepted.payload.clone();
            (v.accepted, vec![bytes])
        };
        // A resent envelope is answered by the log with the original receipt, whatever effects
        // it carries; so the store is asked whether it was seen only when its events are
        // refused today (a smaller batch limit, say), and then a seen one goes straight there.
        let checked = match check_all(&events, batch, me, self.max_batch) {
            Ok(checked) => Some(checked),
            Err(e) => {
                let seen =
                    super::seen(&self.log, me.id.as_str(), &accepted.header.message_id).await?;
                if !seen {
                    return Err(Status::from(SubmitError::Append(AppendError::Case(e))));
                }
                None
            }
        };
        if let Some(checked) = checked {
            let routed = self.recipients(&checked).await?;
            accepted.effects = routed
                .iter()
                .map(|r| Effect::Deliver(r.partner_id.clone()))
                .collect();
            accepted.routed_to = routed;
            accepted
                .effects
                .push(Effect::Accounts(Box::new(AccountReport {
                    bank: me.id.to_string(),
                    events: checked,
                })));
        }
        Ok(accepted)
    }
}

/// The answer to one pushed envelope.
fn answer(
    message_id: String,
    result: Result<pb::SignedEnvelope, Status>,
) -> pb::PushEventsResponse {
    let result = match result {
        Ok(receipt) => pb::push_events_response::Result::Receipt(receipt),
        Err(status) => pb::push_events_response::Result::Rejected(pb::Rejection {
            code: status.code() as i32,
            message: status.message().to_owned(),
        }),
    };
    pb::PushEventsResponse {
        message_id,
        result: Some(result),
    }
}

/// Serves one PushEvents stream: envelopes are checked concurrently (up to the window), queued
/// to the log in the order they were sent, and answered in that order as they become durable.
async fn serve_stream(
    this: BanksService,
    me: VerifiedPartner,
    mut inbound: Streaming<pb::SignedEnvelope>,
    out: tokio::sync::mpsc::Sender<Result<pb::PushEventsResponse, Status>>,
) {
    use futures::stream::FuturesOrdered;
    type Answer = futures::future::BoxFuture<'static, pb::PushEventsResponse>;
    let mut preparing = FuturesOrdered::new();
    let mut appending: FuturesOrdered<Answer> = FuturesOrdered::new();
    let mut inbound_open = true;
    loop {
        if !inbound_open && preparing.is_empty() && appending.is_empty() {
            return;
        }
        let room = preparing.len() + appending.len() < STREAM_WINDOW;
        tokio::select! {
            item = inbound.message(), if inbound_open && room => match item {
                Ok(Some(env)) => {
                    let this = this.clone();
                    let me = me.clone();
                    preparing.push_back(async move {
                        let message_id = pb::Header::decode(env.header.as_slice())
                            .map(|h| h.message_id)
                            .unwrap_or_default();
                        (message_id, this.prepare(&me, env).await)
                    });
                }
                _ => inbound_open = false,
            },
            Some((message_id, prepared)) = preparing.next(), if !preparing.is_empty() => {
                let answer: Answer = match prepared {
                    Ok(accepted) => match this.log.enqueue(accepted).await {
                        Ok(pending) => Box::pin(async move {
                            let result = pending
                                .receipt()
                                .await
                                .map_err(|e| Status::from(SubmitError::from(e)));
                            answer(message_id, result)
                        }),
                        Err(e) => {
                            let status = Status::from(SubmitError::from(e));
                            Box::pin(async move { answer(message_id, Err(status)) })
                        }
                    },
                    Err(status) => Box::pin(async move { answer(message_id, Err(status)) }),
                };
                appending.push_back(answer);
            }
            Some(response) = appending.next(), if !appending.is_empty() => {
                if out.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[tonic::async_trait]
impl pb::banks_server::Banks for BanksService {
    async fn push_events(
        &self,
        request: Request<Streaming<pb::SignedEnvelope>>,
    ) -> Result<Response<tonic::codegen::BoxStream<pb::PushEventsResponse>>, Status> {
        let me = partner(&request)?.clone();
        let (out, answers) = tokio::sync::mpsc::channel(STREAM_WINDOW);
        tokio::spawn(serve_stream(self.clone(), me, request.into_inner(), out));
        let answers = tokio_stream::wrappers::ReceiverStream::new(answers);
        Ok(Response::new(Box::pin(answers)))
    }

    async fn link(
        &self,
        request: Request<Streaming<pb::BankLinkUp>>,
    ) -> Result<Response<tonic::codegen::BoxStream<pb::BankLinkDown>>, Status> {
        let me = partner(&request)?.clone();
        let mut up = request.into_inner();
        let hello = match up.message().await? {
            Some(pb::BankLinkUp {
                msg: Some(pb::bank_link_up::Msg::Hello(h)),
            }) => h,
            _ => {
                return Err(Status::failed_precondition(
                    "the first message on a Link stream must be a hello",
                ));
            }
        };
        let capacity = match hello.capacity {
            0 => DEFAULT_LINK_CAPACITY,
            c => c.min(1000),
        };
        let (id, mut queries) = self.links.attach(me.id.as_str(), capacity);
        tracing::info!(bank = %me.id, link = id, capacity, "bank link opened");
        let (out, down) =
            tokio::sync::mpsc::channel::<Result<pb::BankLinkDown, Status>>(capacity as usize + 16);
        let this = self.clone();
        let every = this.link_ping;
        tokio::spawn(async move {
            // A ping every `every`; a link that leaves three unanswered is dead.
            let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            let mut nonce: u64 = 0;
            let mut unanswered = 0u32;
            // Answers being checked and logged, side by side, each in a task of its own: their
            // appends share the log's groups instead of taking one group each, one after
            // another, and each asker has its answer as soon as it is logged, even while this
            // loop waits for a bank that reads slowly. At most `capacity` (the link's own bound
            // on queries in flight); the link is not read beyond it.
            let mut answering = tokio::task::JoinSet::new();
            let receipt_down = |receipt| pb::BankLinkDown {
                msg: Some(pb::bank_link_down::Msg::AnswerReceipt(receipt)),
            };
            let end = loop {
                tokio::select! {
                    Some(done) = answering.join_next(), if !answering.is_empty() => {
                        if let Ok(receipt) = done
                            && out.send(Ok(receipt_down(receipt))).await.is_err()
                        {
                            break None;
                        }
                    }
                    _ = ping.tick() => {
                        if unanswered >= 3 {
                            break Some(Status::unavailable(format!(
                                "the link answered none of the last 3 pings (every {} ms): closed; its queries go to your other links",
                                every.as_millis()
                            )));
                        }
                        nonce += 1;
                        // While reading is paused at capacity, pongs wait unread: the gateway's
                        // own backlog must not close a live link.
                        if answering.len() < capacity as usize {
                            unanswered += 1;
                        }
                        let down = pb::BankLinkDown {
                            msg: Some(pb::bank_link_down::Msg::Ping(pb::LinkPing {
                                nonce,
                                sent_at: Some(crate::ledger::log::now_timestamp()),
                            })),
                        };
                        if out.send(Ok(down)).await.is_err() { break None }
                    }
                    q = queries.recv() => match q {
                        Some(q) => if out.send(Ok(q)).await.is_err() { break None },
                        None => break None,
                    },
                    msg = up.message(), if answering.len() < capacity as usize => match msg {
                        Ok(Some(pb::BankLinkUp { msg: Some(pb::bank_link_up::Msg::Answer(a)) })) => {
                            let (this, me) = (this.clone(), me.clone());
                            answering.spawn(async move { this.answer(&me, a).await });
                        }
                        Ok(Some(pb::BankLinkUp { msg: Some(pb::bank_link_up::Msg::Refusal(r)) })) => {
                            if let Some(w) = this.links.take(me.id.as_str(), &r.correlation_id) {
                                w.finish(Err(refusal(&me, &r)));
                            }
                        }
                        Ok(Some(pb::BankLinkUp { msg: Some(pb::bank_link_up::Msg::Pong(p)) })) => {
                            if p.nonce == nonce {
                                unanswered = 0;
                            }
                        }
                        Ok(Some(_)) => break Some(Status::failed_precondition(
                            "a Link stream takes one hello, first; then answers, refusals and pongs",
                        )),
                        Ok(None) | Err(_) => break None,
                    },
                    _ = crate::server::stopped(this.shutdown.clone()) => break Some(Status::unavailable(
                        "the gateway is shutting down; reconnect the link with backoff",
                    )),
                }
            };
            // No new query is sent this link's way while it closes.
            queries.close();
            // Answers already read are logged and handed to their askers even so, and their
            // receipts sent while the bank still reads (a bank that stopped reading is given
            // up on after a second, so closing never hangs on it).
            let mut sending = !out.is_closed();
            while let Some(done) = answering.join_next().await {
                if let Ok(receipt) = done
                    && sending
                {
                    let sent = out.send(Ok(receipt_down(receipt)));
                    sending = matches!(
                        tokio::time::timeout(Duration::from_secs(1), sent).await,
                        Ok(Ok(()))
                    );
                }
            }
            // Detached only now: an answer read before the loop ended takes its query off the
            // link when its task starts.
            this.links.detach(me.id.as_str(), id);
            tracing::info!(bank = %me.id, link = id, "bank link closed");
            if let Some(status) = end {
                let _ = out.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(down),
        )))
    }
}

/// Runs the early-warning rules every `every` until shutdown; each warning is a lead the
/// gateway signs itself and routes like any other, at most once per rule, subject and period.
pub async fn warning_scan(
    registry: Arc<Registry>,
    log: Arc<EvidenceLog>,
    rules: Arc<ActiveRules>,
    thresholds: WarningRules,
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
        let found = match warnings::due(log.store(), crate::cases::china_today(), &thresholds).await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "the warning scan could not read accounts; retrying next tick");
                continue;
            }
        };
        for w in found {
            if let Err(e) = raise(&registry, &log, &rules.current(), &w).await {
                tracing::warn!(rule = w.rule, subject = %w.subject, error = %e, "raising a warning lead failed; retrying next tick");
            }
        }
    }
}

/// A bank's refusal of a query, as the asker receives it.
fn refusal(bank: &VerifiedPartner, r: &pb::LinkRefusal) -> Refused {
    let text: String = r.message.chars().take(200).collect();
    let said = format!("{} refused the query: {text}", bank.id);
    match pb::RefusalReason::try_from(r.reason).unwrap_or_default() {
        pb::RefusalReason::UnknownAccount => Refused::NotFound(said),
        pb::RefusalReason::NotAuthorised => Refused::PermissionDenied(said),
        pb::RefusalReason::InvalidQuery => Refused::InvalidArgument(said),
        pb::RefusalReason::OverCapacity => Refused::ResourceExhausted(said),
        pb::RefusalReason::InternalError | pb::RefusalReason::Unspecified => {
            Refused::Unavailable(said)
        }
    }
}

#[tracing::instrument(name = "warning.raise", skip_all, fields(rule = w.rule, period = %w.period))]
async fn raise(
    registry: &Registry,
    log: &EvidenceLog,
    rules: &RuleSet,
    w: &Warning,
) -> Result<(), String> {
    let decision = super::cases::route_lead(rules, &Default::default(), registry, &w.lead)
        .map_err(|s| s.message().to_owned())?;
    let effects = vec![
        super::cases::opening(&decision, &w.lead),
        Effect::Warning {
            rule: w.rule.to_owned(),
            subject: w.subject.clone(),
            period: w.period.clone(),
        },
    ];
    let mut accepted = log.own(&w.lead, "", effects).map_err(|e| e.to_string())?;
    accepted.routed_to = super::cases::routing(&decision);
    match log.append(accepted).await {
        Ok(_) => {
            tracing::info!(rule = w.rule, subject = %w.subject, period = %w.period, "warning lead raised");
            Ok(())
        }
        // Raised before (by this or another replica): one warning per period.
        Err(AppendError::Case(Refused::AlreadyExists(_))) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}
