//! The banks' query links: each bank keeps one or more `Banks.Link` streams open; a query goes
//! down the open stream of its bank with the most free capacity, and the bank's answer (or
//! refusal) comes back up, matched by correlation id to the waiting asker.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};
use wagelink_proto::v1 as pb;

use crate::refusal::Refused;

/// What the asker is waiting for: the bank's signed answer, or why there is none.
pub type Outcome = Result<pb::SignedEnvelope, Refused>;

/// Why a query could not be sent to its bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchError {
    /// The bank has no link open.
    NoLink,
    /// Every link of the bank is at capacity.
    Busy,
}

struct Link {
    id: u64,
    down: mpsc::Sender<pb::BankLinkDown>,
    capacity: u32,
    in_flight: u32,
    /// When it was last given a query (a counter): equally loaded links take turns.
    last_used: u64,
}

/// A query sent down a link and not answered yet.
pub struct Waiting {
    pub bank: String,
    link: u64,
    /// message_id of the query envelope.
    pub query_message_id: String,
    /// Log index of the query, to record which answer answers it.
    pub query_index: u64,
    /// The asker, to whom the answer is routed.
    pub asker: String,
    pub account_number: String,
    pub kind: i32,
    /// Unix seconds after which an answer is refused as late.
    pub deadline: i64,
    reply: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    links: HashMap<String, Vec<Link>>,
    waiting: HashMap<String, Waiting>,
}

/// Every open link of every bank.
#[derive(Default)]
pub struct BankLinks {
    inner: Mutex<Inner>,
    /// Woken when another replica asks for a query to be relayed.
    relays: tokio::sync::Notify,
}

/// A query to dispatch.
pub struct Query {
    pub bank: String,
    pub envelope: pb::SignedEnvelope,
    pub receipt: pb::SignedEnvelope,
    pub query_message_id: String,
    pub query_index: u64,
    pub asker: String,
    pub account_number: String,
    pub kind: i32,
    pub deadline: i64,
}

impl BankLinks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The banks with at least one link open here.
    pub fn banks(&self) -> Vec<String> {
        self.lock()
            .links
            .iter()
            .filter(|(_, links)| !links.is_empty())
            .map(|(bank, _)| bank.clone())
            .collect()
    }

    /// Tells the relay task another replica is waiting for a bank's link.
    pub fn wake_relays(&self) {
        self.relays.notify_one();
    }

    /// Resolves when [`BankLinks::wake_relays`] was called.
    pub async fn relays_wanted(&self) {
        self.relays.notified().await
    }

    /// A new link of `bank` with room for `capacity` queries at once; queries for it come out of
    /// the returned receiver.
    pub fn attach(&self, bank: &str, capacity: u32) -> (u64, mpsc::Receiver<pb::BankLinkDown>) {
        let (down, rx) = mpsc::channel(capacity.max(1) as usize + 4);
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.links.entry(bank.to_owned()).or_default().push(Link {
            id,
            down,
            capacity: capacity.max(1),
            in_flight: 0,
            last_used: 0,
        });
        (id, rx)
    }

    /// Removes a link; its unanswered queries go back to their askers as UNAVAILABLE.
    pub fn detach(&self, bank: &str, id: u64) {
        let mut inner = self.lock();
        if let Some(links) = inner.links.get_mut(bank) {
            links.retain(|l| l.id != id);
        }
        let lost: Vec<String> = inner
            .waiting
            .iter()
            .filter(|(_, w)| w.bank == bank && w.link == id)
            .map(|(k, _)| k.clone())
            .collect();
        for k in lost {
            if let Some(w) = inner.waiting.remove(&k) {
                let _ = w.reply.send(Err(Refused::Unavailable(format!(
                    "{bank}'s link closed before it answered; retry with the same envelope"
                ))));
            }
        }
    }

    /// Sends a query down the least loaded link of its bank.
    pub fn dispatch(&self, q: Query) -> Result<oneshot::Receiver<Outcome>, DispatchError> {
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let mut inner = self.lock();
        inner.next_id += 1;
        let turn = inner.next_id;
        let links = inner.links.get_mut(&q.bank).ok_or(DispatchError::NoLink)?;
        if links.is_empty() {
            return Err(DispatchError::NoLink);
        }
        let link = links
            .iter_mut()
            .filter(|l| l.in_flight < l.capacity && !l.down.is_closed())
            .min_by_key(|l| ((l.in_flight * 1000) / l.capacity, l.last_used))
            .ok_or(DispatchError::Busy)?;
        let message = pb::BankLinkDown {
            msg: Some(pb::bank_link_down::Msg::Query(pb::LinkQuery {
                correlation_id: correlation_id.clone(),
                query: Some(q.envelope),
                receipt: Some(q.receipt),
                deadline: Some(prost_types::Timestamp {
                    seconds: q.deadline,
                    nanos: 0,
                }),
            })),
        };
        link.down
            .try_send(message)
            .map_err(|_| DispatchError::Busy)?;
        link.in_flight += 1;
        link.last_used = turn;
        let link_id = link.id;
        let (reply, answer) = oneshot::channel();
        inner.waiting.insert(
            correlation_id,
            Waiting {
                bank: q.bank,
                link: link_id,
                query_message_id: q.query_message_id,
                query_index: q.query_index,
                asker: q.asker,
                account_number: q.account_number,
                kind: q.kind,
                deadline: q.deadline,
                reply,
            },
        );
        Ok(answer)
    }

    /// Takes the waiting query a bank answers; None when unknown, answered, or another bank's.
    pub fn take(&self, bank: &str, correlation_id: &str) -> Option<Waiting> {
        let mut inner = self.lock();
        if inner.waiting.get(correlation_id)?.bank != bank {
            return None;
        }
        let w = inner.waiting.remove(correlation_id)?;
        if let Some(link) = inner
            .links
            .get_mut(bank)
            .and_then(|ls| ls.iter_mut().find(|l| l.id == w.link))
        {
            link.in_flight = link.in_flight.saturating_sub(1);
        }
        Some(w)
    }

    /// Drops the wait of an asker that gave up (deadline); a late answer is then refused.
    pub fn forget(&self, query_message_id: &str, asker: &str) {
        let mut inner = self.lock();
        let key = inner
            .waiting
            .iter()
            .find(|(_, w)| w.query_message_id == query_message_id && w.asker == asker)
            .map(|(k, _)| k.clone());
        if let Some(k) = key
            && let Some(w) = inner.waiting.remove(&k)
            && let Some(link) = inner
                .links
                .get_mut(&w.bank)
                .and_then(|ls| ls.iter_mut().find(|l| l.id == w.link))
        {
            link.in_flight = link.in_flight.saturating_sub(1);
        }
    }
}

impl Waiting {
    /// Hands the outcome to the waiting asker (if it still waits).
    pub fn finish(self, outcome: Outcome) {
        let _ = self.reply.send(outcome);
    }
}
