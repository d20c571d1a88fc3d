//! The running evidence log: one sequencer task appends entries in index order, grouping the
//! requests that arrive together into one durable transaction (so durability does not cap
//! throughput), and answers each with a receipt signed by the gateway only after the commit;
//! a checkpoint task signs the tree head at least once a second while entries arrive.
//!
//! Guarantees: an entry is durable before its receipt exists; a failed commit leaves nothing
//! behind (the whole group is rolled back and every caller told to retry, which is safe because
//! submission is idempotent); the tree rebuilt at start must match the last stored checkpoint,
//! or the gateway refuses to start.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prost::Message;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use wagelink_proto::envelope::{Signer, sha256};
use wagelink_proto::v1 as pb;

use super::checkpoint::{Checkpoint, LogKey};
use super::merkle::{Hash, ProofError, Tree, leaf_hash};
use crate::admin::AdminChange;
use crate::banks::event::CheckedEvent;
use crate::cases::machine::{self, Opening, StepInput};
use crate::identity::PartnerId;
use crate::refusal::Refused;
use crate::store::{Backend, CaseRecord, LedgerTx, Notice, Store, StoreError, StoredCheckpoint};

/// Most appends grouped into one transaction.
const MAX_GROUP: usize = 512;

/// The keys and names the log signs with.
pub struct LogKeys {
    /// The checkpoint origin line, e.g. `wagelink.dev/log`.
    pub origin: String,
    pub log_key: LogKey,
    /// Signs receipts: the gateway's certificate and key.
    pub gateway: Signer,
    /// `sender` of every envelope the gateway signs.
    pub gateway_id: String,
    pub gateway_certificate_pem: String,
}

/// An envelope that passed verification, with the facts the gateway adds to its entry.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub header_bytes: Vec<u8>,
    pub header: pb::Header,
    pub payload: Vec<u8>,
    pub signatures: Vec<pb::Signature>,
    pub submitted_by: PartnerId,
    /// The header's `created_at`, Unix seconds.
    pub created_at: i64,
    pub routed_to: Vec<pb::Routing>,
    pub case_id: String,
    /// What the envelope changes beside the log, written in the same transaction.
    pub effects: Vec<Effect>,
    pub kind: EntryKind,
    /// The W3C `traceparent` of the call that submitted it, handed on with its deliveries.
    pub traceparent: Option<String>,
}

/// What kind of log entry an envelope makes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EntryKind {
    /// An envelope accepted from its sender.
    #[default]
    Accepted,
    /// A recipient's signed acknowledgement of a delivery: the proof of delivery.
    Acknowledged {
        delivered_message_id: String,
        delivered_sender: String,
        delivered_header_sha256: Vec<u8>,
        delivered_log_index: u64,
        cursor: u64,
    },
    /// An admin action: the entry keeps the payload in full and names what it changed.
    Admin,
}

/// A change an accepted envelope makes beside the log, durable together with its entry.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Opens a case for a routed lead (its id is given in the receipt and the entry), or links
    /// the lead to the open case of the same matter.
    OpenCase(Box<Opening>),
    /// A step on a case, checked against the case as it stands when logged; its routing
    /// decides the entry's recipients.
    Case(Box<StepInput>),
    /// Puts the envelope in this partner's mailbox.
    Deliver(String),
    /// Marks a mailbox message acknowledged.
    Acknowledge { partner: String, cursor: u64 },
    /// Account events a bank reported: each stored once per (bank, event id), the account
    /// registry updated; refused whole if an event id was used for another event or an account
    /// is held by another bank.
    Accounts(Box<AccountReport>),
    /// Records that this envelope (a bank's signed answer) answers the query logged at
    /// `query_index`.
    Answers { query_index: u64 },
    /// The warning a gateway-made lead raises: at most one per rule, subject and period.
    Warning {
        rule: String,
        subject: String,
        period: String,
    },
    /// An admin action on the registry or the routing rules, checked against the store as the
    /// transaction sees it.
    Admin(Box<AdminChange>),
    /// A witness's cosignature of the checkpoint of `tree_size` (its note line, or empty).
    Cosign { tree_size: u64, line: String },
    /// Links peer gateway `peer`'s case `remote_case_id` to the entry's case.
    MapCase {
        peer: String,
        remote_case_id: String,
    },
}

/// What a bank's envelope reports.
#[derive(Debug, Clone)]
pub struct AccountReport {
    pub bank: String,
    pub events: Vec<CheckedEvent>,
}

/// Why an append was refused; nothing was written.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AppendError {
    #[error(
        "message_id {message_id:?} of {sender} was already accepted with different header bytes; choose a new message_id for a new message, or resend the original bytes to get the original receipt"
    )]
    Conflict { sender: String, message_id: String },
    #[error(
        "created_at is {skew} seconds away from the gateway's clock (now {now}); it must be within ±{window} seconds — check the sending system's clock (NTP)"
    )]
    OutsideWindow { skew: i64, now: i64, window: i64 },
    #[error(
        "the evidence log could not record the message durably ({0}); nothing was recorded, retry the same bytes"
    )]
    Unavailable(String),
    /// The case step was refused as the case stands.
    #[error("{0}")]
    Case(Refused),
}

struct Append {
    accepted: Accepted,
    reply: oneshot::Sender<Outcome>,
}

struct Shared {
    /// Bumped after every commit that put messages in mailboxes.
    deliveries: tokio::sync::watch::Sender<u64>,
    keys: LogKeys,
    store: Store,
    tree: RwLock<Tree>,
    latest: RwLock<StoredCheckpoint>,
    window_secs: i64,
    /// Whether this gateway signs checkpoints: always on SQLite (one process); on PostgreSQL,
    /// the replica holding the checkpoint advisory lock. The others read the checkpoints it
    /// signs.
    leader: std::sync::atomic::AtomicBool,
}

/// A queued append, awaiting its receipt.
pub struct Pending(oneshot::Receiver<Outcome>);

impl Pending {
    pub async fn receipt(self) -> Result<pb::SignedEnvelope, AppendError> {
        self.appended().await.map(|a| a.receipt)
    }

    /// The receipt, and whether the envelope was appended now (not accepted earlier).
    pub async fn appended(self) -> Outcome {
        self.0
            .await
            .map_err(|_| AppendError::Unavailable("the log stopped before answering".into()))?
    }
}

/// What an append came to.
pub struct Appended {
    pub receipt: pb::SignedEnvelope,
    /// False when the envelope had been accepted before and this is its stored receipt.
    pub new: bool,
}

/// The evidence log of one gateway.
pub struct EvidenceLog {
    shared: Arc<Shared>,
    queue: mpsc::Sender<Append>,
}

/// Now as a protobuf timestamp.
pub fn now_timestamp() -> prost_types::Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

impl EvidenceLog {
    /// Rebuilds the tree from the store, checks it against the last checkpoint, and starts the
    /// sequencer and checkpoint tasks.
    pub async fn open(
        store: Store,
        keys: LogKeys,
        window: Duration,
        checkpoint_every: Duration,
    ) -> Result<Arc<Self>, StoreError> {
        // The tree is rebuilt from the entry bytes themselves, not from stored hashes, so an entry
        // altered in the database fails the checkpoint check below.
        let mut tree = Tree::new();
        loop {
            let page = store
                .entries(tree.size(), tree.size() + 5000, false)
                .await?;
            if page.is_empty() {
                break;
            }
            for e in page {
                if e.index != tree.size() {
                    return Err(StoreError::Corrupt(format!(
                        "the log has no entry {}",
                        tree.size()
                    )));
                }
                tree.push(leaf_hash(&e.entry));
            }
        }
        if tree.size() > 0 && store.latest_checkpoint().await?.is_none() {
            return Err(StoreError::Corrupt(
                "the log has entries but no signed checkpoint: it was not written by a gateway"
                    .into(),
            ));
        }
        let stored = store.latest_checkpoint().await?;
        if let Some(c) = &stored {
            let root = tree.root_at(c.tree_size).map_err(|e| {
                StoreError::Corrupt(format!(
                    "the last checkpoint (size {}) is beyond the log: {e}",
                    c.tree_size
                ))
            })?;
            if root.as_slice() != c.root_hash.as_slice() {
                return Err(StoreError::Corrupt(format!(
                    "the log's entries do not hash to the root signed in checkpoint {}: the log was altered",
                    c.tree_size
                )));
            }
        }
        let latest = match stored {
            Some(c) if c.tree_size == tree.size() => c,
            _ => {
                let c = sign_checkpoint(&keys, tree.size(), tree.root());
                store.insert_checkpoint(&c).await?;
                c
            }
        };
        let store_backend = store.backend();
        let shared = Arc::new(Shared {
            deliveries: tokio::sync::watch::channel(0).0,
            keys,
            store,
            tree: RwLock::new(tree),
            latest: RwLock::new(latest),
            window_secs: window.as_secs() as i64,
            leader: std::sync::atomic::AtomicBool::new(store_backend == Backend::Sqlite),
        });
        if store_backend == Backend::Postgres {
            tokio::spawn(lead_checkpoints(Arc::downgrade(&shared)));
        }
        let (queue, rx) = mpsc::channel(4 * MAX_GROUP);
        match store_backend {
            // On PostgreSQL the sequencer runs on a thread and runtime of its own: on a busy main
            // runtime every answer of the database waited behind the other tasks, and a group's
            // statements run one after another. SQLite's writer answers from a thread of its
            // own already and gained nothing from it (BENCHMARKS.md, session 7), so there the
            // sequencer stays among the other tasks.
            Backend::Postgres => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StoreError::Query(sqlx::Error::Io(e)))?;
                let sequencer = shared.clone();
                std::thread::Builder::new()
                    .name("wagelink-log".into())
                    .spawn(move || runtime.block_on(sequence(sequencer, rx, checkpoint_every)))
                    .map_err(|e| StoreError::Query(sqlx::Error::Io(e)))?;
            }
            Backend::Sqlite => {
                tokio::spawn(sequence(shared.clone(), rx, checkpoint_every));
            }
        }
        Ok(Arc::new(Self { shared, queue }))
    }

    /// Appends an accepted envelope: idempotency, replay window, durable append, receipt.
    #[tracing::instrument(name = "log.append", skip_all, fields(payload_type = %accepted.header.payload_type))]
    pub async fn append(&self, accepted: Accepted) -> Result<pb::SignedEnvelope, AppendError> {
        self.enqueue(accepted).await?.receipt().await
    }

    /// Appends like [`EvidenceLog::append`]; also says whether the envelope was appended now.
    #[tracing::instrument(name = "log.append", skip_all, fields(payload_type = %accepted.header.payload_type))]
    pub async fn append_new(&self, accepted: Accepted) -> Outcome {
        self.enqueue(accepted).await?.appended().await
    }

    /// Queues an append and returns at once with a handle to its receipt: appends queued one
    /// after another are sequenced in that order (a stream's envelopes keep their order).
    pub async fn enqueue(&self, accepted: Accepted) -> Result<Pending, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Append { accepted, reply })
            .await
            .map_err(|_| AppendError::Unavailable("the log is shutting down".into()))?;
        Ok(Pending(answer))
    }

    /// An envelope of the gateway's own (an escalation when a clock runs out), signed with the
    /// gateway's key under its id, ready to append like any partner's.
    pub fn own<M: prost::Name>(
        &self,
        payload: &M,
        subject: &str,
        effects: Vec<Effect>,
    ) -> Result<Accepted, AppendError> {
        let keys = &self.shared.keys;
        let now = now_timestamp();
        let header = pb::Header {
            message_id: uuid::Uuid::new_v4().to_string(),
            sender: keys.gateway_id.clone(),
            created_at: Some(now),
            subject: subject.to_owned(),
            ..Default::default()
        };
        let sealed = keys
            .gateway
            .seal(header, payload)
            .map_err(|e| AppendError::Unavailable(format!("cannot sign: {e}")))?;
        let header = pb::Header::decode(sealed.header.as_slice())
            .map_err(|e| AppendError::Unavailable(format!("own header: {e}")))?;
        let submitted_by = keys
            .gateway_id
            .parse()
            .map_err(|e| AppendError::Unavailable(format!("gateway id: {e}")))?;
        Ok(Accepted {
            header_bytes: sealed.header,
            header,
            payload: sealed.payload,
            signatures: sealed.signatures,
            submitted_by,
            created_at: now.seconds,
            routed_to: Vec::new(),
            case_id: subject.to_owned(),
            effects,
            kind: EntryKind::Accepted,
            traceparent: crate::telemetry::tracecontext::traceparent(&tracing::Span::current()),
        })
    }

    /// Signs and stores a checkpoint of the tree as it stands, if it grew since the last one
    /// (at shutdown, so the last entries do not wait for the next start to be covered).
    pub async fn checkpoint_now(&self) {
        checkpoint(&self.shared).await;
    }

    pub fn size(&self) -> u64 {
        read(&self.shared.tree).size()
    }

    pub fn keys(&self) -> &LogKeys {
        &self.shared.keys
    }

    pub fn latest_checkpoint(&self) -> StoredCheckpoint {
        read(&self.shared.latest).clone()
    }

    /// The checkpoint of a given size (0: the latest), if one was signed.
    pub async fn checkpoint(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        if size == 0 {
            return Ok(Some(self.latest_checkpoint()));
        }
        self.shared.store.checkpoint_at(size).await
    }

    /// Leaf hash and inclusion proof of entry `index` in the tree of `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<(Hash, Vec<Hash>), ProofError> {
        let tree = read(&self.shared.tree);
        let proof = tree.inclusion_proof(index, size)?;
        let leaf = tree
            .leaf(index)
            .ok_or(ProofError::IndexOutOfRange { index, size })?;
        Ok((leaf, proof))
    }

    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError> {
        read(&self.shared.tree).consistency_proof(first, second)
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Changes whenever new messages were committed to mailboxes.
    pub fn deliveries(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.deliveries.subscribe()
    }

    /// Wakes this gateway's mailbox feeds: another replica committed messages.
    pub fn poke_deliveries(&self) {
        self.shared.deliveries.send_modify(|n| *n += 1);
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn sign_checkpoint(keys: &LogKeys, size: u64, root: Hash) -> StoredCheckpoint {
    let checkpoint = Checkpoint {
        origin: keys.origin.clone(),
        size,
        root,
    };
    StoredCheckpoint {
        tree_size: size,
        root_hash: root.to_vec(),
        note: keys.log_key.sign(&checkpoint),
        signed_at: crate::store::now_unix(),
    }
}

/// Competes for the checkpoint advisory lock (PostgreSQL) for as long as the log exists: the
/// replica holding it signs checkpoints; when it dies, its session ends, the lock is free, and
/// another replica takes over within a second.
async fn lead_checkpoints(shared: std::sync::Weak<Shared>) {
    use std::sync::atomic::Ordering;
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let store = strong.store.clone();
        drop(strong);
        match store.try_lead().await {
            Ok(Some(mut lead)) => {
                tracing::info!("this replica now signs the log's checkpoints");
                loop {
                    let Some(strong) = shared.upgrade() else {
                        return;
                    };
                    strong.leader.store(true, Ordering::Release);
                    drop(strong);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if let Err(e) = lead.alive().await {
                        tracing::warn!(error = %e, "lost the checkpoint lock's connection; competing again");
                        break;
                    }
                }
                if let Some(strong) = shared.upgrade() {
                    strong.leader.store(false, Ordering::Release);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "competing for the checkpoint lock failed"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Brings the in-memory tree up to `stored` entries from the store's entry bytes.
async fn catch_up(shared: &Shared, stored: u64) -> Result<(), StoreError> {
    let have = read(&shared.tree).size();
    if stored < have {
        return Err(StoreError::Corrupt(format!(
            "the log holds {stored} entries but {have} were appended: entries were removed"
        )));
    }
    if stored > have {
        tracing::warn!(
            have,
            stored,
            "the log grew outside this sequencer; catching up"
        );
        let entries = shared.store.entries(have, stored, false).await?;
        let mut tree = shared.tree.write().unwrap_or_else(|e| e.into_inner());
        for e in entries {
            tree.push(leaf_hash(&e.entry));
        }
    }
    Ok(())
}

/// Signs and stores a checkpoint of the log as stored, if it grew since the last one — when
/// this gateway leads; otherwise takes in the latest checkpoint the leader signed (and the
/// entries it covers, for proofs).
async fn checkpoint(shared: &Shared) {
    if !shared.leader.load(std::sync::atomic::Ordering::Acquire) {
        match shared.store.latest_checkpoint().await {
            Ok(Some(latest)) if latest.tree_size > read(&shared.latest).tree_size => {
                match catch_up(shared, latest.tree_size).await {
                    Ok(()) => *shared.latest.write().unwrap_or_else(|e| e.into_inner()) = latest,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading entries for the latest checkpoint failed")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading the latest checkpoint failed"),
        }
        return;
    }
    // Other replicas may have appended since this one last did.
    match shared.store.log_size().await {
        Ok(stored) => {
            if let Err(e) = catch_up(shared, stored).await {
                tracing::warn!(error = %e, "taking in entries before a checkpoint failed");
                return;
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the log size failed; retrying next tick");
            return;
        }
    }
    let (size, root) = {
        let tree = read(&shared.tree);
        (tree.size(), tree.root())
    };
    if size == read(&shared.latest).tree_size {
        return;
    }
    let checkpoint = sign_checkpoint(&shared.keys, size, root);
    match shared.store.insert_checkpoint(&checkpoint).await {
        Ok(()) => *shared.latest.write().unwrap_or_else(|e| e.into_inner()) = checkpoint,
        Err(e) => tracing::warn!(error = %e, "storing a checkpoint failed; retrying next tick"),
    }
}

/// The single writer of the log: groups appends into transactions and signs checkpoints in
/// between, so no two log writes of this gateway ever contend. Ends when the log is dropped.
async fn sequence(shared: Arc<Shared>, mut rx: mpsc::Receiver<Append>, every: Duration) {
    let store = match shared.store.for_log_writer().await {
        Ok(store) => store,
        Err(e) => {
            tracing::warn!(error = %e, "the log's own database connection could not be opened; appending over the shared pool");
            shared.store.clone()
        }
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            next = rx.recv() => {
                let Some(first) = next else { return };
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(more) => group.push(more),
                        Err(_) => break,
                    }
                }
                write_group(&shared, &store, group).await;
            }
            _ = tick.tick() => {}
        }
        // Under constant load the queue is always ready: checkpoints are taken between groups.
        if last.elapsed() >= every {
            checkpoint(&shared).await;
            last = tokio::time::Instant::now();
        }
    }
}

/// Header SHA-256 and encoded receipt of an append earlier in the same group.
type PriorInGroup = (Vec<u8>, Vec<u8>);

/// What one append in a group came to, before the commit.
pub type Outcome = Result<Appended, AppendError>;

async fn write_group(shared: &Shared, store: &Store, group: Vec<Append>) {
    let mut replies = Vec::with_capacity(group.len());
    let mut appends = Vec::with_capacity(group.len());
    for Append { accepted, reply } in group {
        replies.push(reply);
        appends.push(accepted);
    }
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        let result = async {
            let mut tx = store.begin_ledger().await?;
            // The stored log is the truth: if entries were committed that the tree does not
            // hold (a commit whose outcome was lost, another writer), take them in first.
            let start = tx.next_index().await?;
            catch_up(shared, start).await?;
            let decided = decide(shared, &mut tx, start, &appends).await?;
            // The other replicas hear of it when it commits.
            if decided.2 {
                tx.notify(Notice::Mailboxes);
            }
            let changed_registry = appends
                .iter()
                .zip(&decided.0)
                .any(|(a, outcome)| a.kind == EntryKind::Admin && outcome.is_ok());
            if changed_registry {
                tx.notify(Notice::Registry);
            }
            tx.commit().await?;
            Ok::<_, StoreError>(decided)
        }
        .await;
        // A failed group left nothing behind, so a transient database error (a lock held by
        // another process, a dropped connection) is retried before callers are told.
        match result {
            Err(StoreError::Query(e)) if attempt < 3 => {
                tracing::warn!(error = %e, attempt, "retrying a group of log appends");
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            other => break other,
        }
    };
    match result {
        Ok((outcomes, leaves, delivered)) => {
            if delivered {
                shared.deliveries.send_modify(|n| *n += 1);
            }
            {
                let mut tree = shared.tree.write().unwrap_or_else(|e| e.into_inner());
                for leaf in leaves {
                    tree.push(leaf);
                }
            }
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "a group of log appends failed and was rolled back");
            for reply in replies {
                let _ = reply.send(Err(AppendError::Unavailable(e.to_string())));
            }
        }
    }
}

/// What a group came to: each append's outcome, the new leaves, and whether any mailbox got a
/// message.
type Decided = (Vec<Outcome>, Vec<Hash>, bool);

/// Whose `source_reference` namespace a lead's reference is in: its sender's, or for a lead a
/// peer gateway relayed, its sender's at that peer.
fn reference_owner(a: &Accepted) -> String {
    if a.submitted_by.as_str() == a.header.sender {
        a.header.sender.clone()
    } else {
        format!("{}/{}", a.submitted_by, a.header.sender)
    }
}

/// The case an append changes, and how.
struct CaseChange {
    record: CaseRecord,
    new: bool,
    step: machine::Step,
}

/// Applies an append's case effect (if it has one) to the case as the transaction sees it.
async fn case_change(
    tx: &mut LedgerTx,
    a: &Accepted,
    index: u64,
    now: i64,
) -> Result<Option<Result<CaseChange, Refused>>, StoreError> {
    let sender = a.submitted_by.as_str();
    for effect in &a.effects {
        match effect {
            Effect::OpenCase(o) => {
                let reference = o.lead.source_reference.as_str();
                if !reference.is_empty()
                    && let Some((existing, digest)) =
                        tx.lead_ref(&reference_owner(a), reference).await?
                {
                    if digest != a.header.payload_sha256 {
                        return Ok(Some(Err(Refused::AlreadyExists(format!(
                            "you already submitted a different lead with source_reference {:?}: it is in case {existing}; give each lead its own reference, or resend the original bytes to get the original receipt",
                            reference.chars().take(40).collect::<String>()
                        )))));
                    }
                    // The same lead again under a new message_id (a retry): linked to its case.
                    if let Some(mut record) = tx.load_case(&existing).await? {
                        let step = machine::link(&mut record.view, sender, &o.routing);
                        record.view.updated_at = Some(prost_types::Timestamp {
                            seconds: now,
                            nanos: 0,
                        });
                        return Ok(Some(Ok(CaseChange {
                            record,
                            new: false,
                            step,
                        })));
                    }
                }
                if let Some(key) = &o.lead_key
                    && let Some(mut record) = tx.open_case_with_key(key).await?
                {
                    let step = machine::link(&mut record.view, sender, &o.routing);
                    record.view.updated_at = Some(prost_types::Timestamp {
                        seconds: now,
                        nanos: 0,
                    });
                    return Ok(Some(Ok(CaseChange {
                        record,
                        new: false,
                        step,
                    })));
                }
                let (view, step) = machine::open(o, &case_id(index), sender, now);
                return Ok(Some(Ok(CaseChange {
                    record: CaseRecord {
                        view,
                        opened_index: index,
                        lead_key: o.lead_key.clone(),
                    },
                    new: true,
                    step,
                })));
            }
            Effect::Case(input) => {
                let Some(mut record) = tx.load_case(&input.case_id).await? else {
                    return Ok(Some(Err(Refused::NotFound(format!(
                        "there is no case {}",
                        input.case_id
                    )))));
                };
                return Ok(Some(machine::act(&mut record.view, input, now).map(
                    |mut step| {
                        if let Some(peer) = &input.facts.mirror
                            && peer != &input.actor.id
                            && !step.routed_to.iter().any(|r| &r.partner_id == peer)
                        {
                            step.routed_to.push(pb::Routing {
                                partner_id: peer.clone(),
                                role: pb::RoutingRole::Recipient as i32,
                                ..Default::default()
                            });
                        }
                        CaseChange {
                            record,
                            new: false,
                            step,
                        }
                    },
                )));
            }
            Effect::Deliver(_)
            | Effect::Acknowledge { .. }
            | Effect::Accounts(_)
            | Effect::Answers { .. }
            | Effect::Warning { .. }
            | Effect::Admin(_)
            | Effect::Cosign { .. }
            | Effect::MapCase { .. } => {}
        }
    }
    Ok(None)
}

/// Checks an append's account events and warning against the store; returns, per reported
/// event, whether it is new (a resent event is logged again but stored once).
async fn accounts_check(
    tx: &mut LedgerTx,
    a: &Accepted,
) -> Result<Result<Vec<bool>, Refused>, StoreError> {
    let mut fresh = Vec::new();
    for effect in &a.effects {
        match effect {
            Effect::Warning {
                rule,
                subject,
                period,
            } => {
                if let Some(case) = tx.warning(rule, subject, period).await? {
                    return Ok(Err(Refused::AlreadyExists(format!(
                        "warning {rule} for {subject} in {period} was already raised: case {case}"
                    ))));
                }
            }
            Effect::Accounts(report) => {
                let ids: Vec<&str> = report.events.iter().map(|e| e.event_id.as_str()).collect();
                let known = tx.event_digests(&report.bank, &ids).await?;
                for e in &report.events {
                    match known.get(&e.event_id).cloned() {
                        Some(d) if d != e.sha256 => {
                            return Ok(Err(Refused::AlreadyExists(format!(
                                "events[{}]: event_id {:?} was already used by {} for a different event; give each event its own id, or resend the same bytes",
                                e.batch_index,
                                e.event_id.chars().take(40).collect::<String>(),
                                report.bank
                            ))));
                        }
                        Some(_) => fresh.push(false),
                        None => fresh.push(true),
                    }
                    if let Some(held) = tx.account(&e.account.account_number).await?
                        && held.bank != report.bank
                    {
                        return Ok(Err(Refused::PermissionDenied(format!(
                            "events[{}]: account {} is held by {}; only the bank holding an account reports on it",
                            e.batch_index, e.account.account_number, held.bank
                        ))));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Ok(fresh))
}

/// Applies an append's admin change, if it has one; returns what it changed (the entry's
/// `target`), or why it was refused (then nothing was written).
async fn admin_change(
    tx: &mut LedgerTx,
    a: &Accepted,
    index: u64,
    now: i64,
) -> Result<Option<Result<String, Refused>>, StoreError> {
    for effect in &a.effects {
        if let Effect::Admin(change) = effect {
            return crate::admin::apply(tx, change, a.submitted_by.as_str(), index, now)
                .await
                .map(Some);
        }
    }
    Ok(None)
}

/// Stores an append's new account events and its warning, after its entry.
async fn accounts_write(
    tx: &mut LedgerTx,
    a: &Accepted,
    fresh: &[bool],
    case_id: &str,
    index: u64,
    now: i64,
) -> Result<(), StoreError> {
    for effect in &a.effects {
        match effect {
            Effect::Warning {
                rule,
                subject,
                period,
            } => {
                tx.insert_warning(rule, subject, period, case_id, now)
                    .await?
            }
            Effect::Accounts(report) => {
                for (e, new) in report.events.iter().zip(fresh) {
                    if !new {
                        continue;
                    }
                    let mut account = e.account.clone();
                    if let Some(held) = tx.account(&account.account_number).await? {
                        if account.opened_on.is_empty() {
                            account.opened_on = held.opened_on;
                        }
                        if account.project_code.is_empty() {
                            account.project_code = held.project_code;
                        }
                        if account.contractor_uscc.is_empty() {
                            account.contractor_uscc = held.contractor_uscc;
                        }
                        if held.status == "closed" && e.kind != "account-opened" {
                            account.status = held.status;
                        }
                    } else if account.opened_on.is_empty() {
                        account.opened_on =
                            crate::cases::clock::china_date(e.occurred_at).to_string();
                    }
                    tx.upsert_account(&account, index, now).await?;
                    tx.insert_event(&crate::store::EventRow {
                        bank: &report.bank,
                        event_id: &e.event_id,
                        event_sha256: &e.sha256,
                        log_index: index,
                        batch_index: e.batch_index,
                        batch_size: e.batch_size,
                        audit_path: &e.audit_path,
                        account_number: &account.account_number,
                        kind: e.kind,
                        occurred_at: e.occurred_at,
                        amount_fen: e.amount_fen,
                        payroll_month: &e.payroll_month,
                        event: &e.bytes,
                    })
                    .await?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

async fn decide(
    shared: &Shared,
    tx: &mut LedgerTx,
    start: u64,
    appends: &[Accepted],
) -> Result<Decided, StoreError> {
    let now = now_timestamp();
    let mut next = start;
    let mut leaves = Vec::new();
    let mut outcomes = Vec::with_capacity(appends.len());
    let mut delivered = false;
    // (sender, message_id) → (header SHA-256, encoded receipt) of appends earlier in the group.
    let mut in_group: HashMap<(&str, &str), PriorInGroup> = HashMap::new();
    // Every append's earlier acceptance, looked up for the whole group at once.
    let keys: Vec<(&str, &str)> = appends
        .iter()
        .map(|a| (a.submitted_by.as_str(), a.header.message_id.as_str()))
        .collect();
    let mut known = tx.prior_envelopes(&keys).await?;
    // The cases, lead keys, references, accounts and event ids the group will look at.
    let mut case_ids = Vec::new();
    let mut lead_keys = Vec::new();
    let mut references = Vec::new();
    let mut accounts = Vec::new();
    let mut events = Vec::new();
    for a in appends {
        for effect in &a.effects {
            match effect {
                Effect::Accounts(report) => {
                    for e in &report.events {
                        accounts.push(e.account.account_number.as_str());
                        events.push((report.bank.as_str(), e.event_id.as_str()));
                    }
                }
                Effect::OpenCase(o) => {
                    if let Some(key) = &o.lead_key {
                        lead_keys.push(key.as_str());
                    }
                    if !o.lead.source_reference.is_empty() {
                        references.push((reference_owner(a), o.lead.source_reference.as_str()));
                    }
                }
                Effect::Case(input) => case_ids.push(input.case_id.as_str()),
                _ => {}
            }
        }
    }
    tx.prefetch_cases(&case_ids, &lead_keys, &references)
        .await?;
    tx.prefetch_accounts(&accounts, &events).await?;
    for a in appends {
        let header_sha256 = sha256(&a.header_bytes).to_vec();
        let key = (a.submitted_by.as_str(), a.header.message_id.as_str());
        let prior = match in_group.get(&key) {
            Some((sha, receipt)) => Some((sha.clone(), receipt.clone())),
            None => known
                .remove(&(key.0.to_owned(), key.1.to_owned()))
                .map(|p| (p.header_sha256, p.receipt)),
        };
        if let Some((sha, receipt)) = prior {
            outcomes.push(if sha == header_sha256 {
                pb::SignedEnvelope::decode(receipt.as_slice())
                    .map(|receipt| Appended {
                        receipt,
                        new: false,
                    })
                    .map_err(|e| {
                        AppendError::Unavailable(format!("stored receipt unreadable: {e}"))
                    })
            } else {
                Err(AppendError::Conflict {
                    sender: key.0.to_owned(),
                    message_id: key.1.to_owned(),
                })
            });
            continue;
        }
        // Saturating: a created_at at the ends of the i64 range must neither overflow nor wrap
        // into the window.
        let skew = a.created_at.saturating_sub(now.seconds);
        if skew.unsigned_abs() > shared.window_secs.unsigned_abs() {
            outcomes.push(Err(AppendError::OutsideWindow {
                skew,
                now: now.seconds,
                window: shared.window_secs,
            }));
            continue;
        }
        let index = next;
        let fresh = match accounts_check(tx, a).await? {
            Ok(fresh) => fresh,
            Err(e) => {
                outcomes.push(Err(AppendError::Case(e)));
                continue;
            }
        };
        // A case step is checked first: it may be refused, and it decides the routing.
        let mut change = match case_change(tx, a, index, now.seconds).await? {
            Some(Err(e)) => {
                outcomes.push(Err(AppendError::Case(e)));
                continue;
            }
            Some(Ok(change)) => Some(change),
            None => None,
        };
        // An admin action is checked and applied last: nothing after it can refuse the append.
        let target = match admin_change(tx, a, index, now.seconds).await? {
            Some(Err(e)) => {
                outcomes.push(Err(AppendError::Case(e)));
                continue;
            }
            Some(Ok(target)) => target,
            None => String::new(),
        };
        let (case_id, routed_to) = match &change {
            Some(c) => (c.record.view.case_id.clone(), c.step.routed_to.clone()),
            None => (a.case_id.clone(), a.routed_to.clone()),
        };
        let body = match &a.kind {
            EntryKind::Accepted => pb::entry_body::Kind::Accepted(pb::AcceptedEntry {
                header: a.header_bytes.clone(),
                signatures: a.signatures.clone(),
                submitted_by: a.submitted_by.to_string(),
                accepted_at: Some(now),
                routed_to: routed_to.clone(),
                payload_sha256: a.header.payload_sha256.clone(),
                case_id: case_id.clone(),
            }),
            EntryKind::Acknowledged {
                delivered_message_id,
                delivered_sender,
                delivered_header_sha256,
                delivered_log_index,
                cursor,
            } => pb::entry_body::Kind::Acknowledged(pb::AcknowledgedEntry {
                header: a.header_bytes.clone(),
                signatures: a.signatures.clone(),
                recipient: a.submitted_by.to_string(),
                acknowledged_at: Some(now),
                payload_sha256: a.header.payload_sha256.clone(),
                delivered_message_id: delivered_message_id.clone(),
                delivered_sender: delivered_sender.clone(),
                delivered_header_sha256: delivered_header_sha256.clone(),
                delivered_log_index: Some(*delivered_log_index),
                cursor: *cursor,
            }),
            EntryKind::Admin => pb::entry_body::Kind::Admin(pb::AdminEntry {
                header: a.header_bytes.clone(),
                signatures: a.signatures.clone(),
                admin: a.submitted_by.to_string(),
                accepted_at: Some(now),
                payload_sha256: a.header.payload_sha256.clone(),
                payload: a.payload.clone(),
                target,
            }),
        };
        let entry = pb::EntryBody { kind: Some(body) }.encode_to_vec();
        let leaf = leaf_hash(&entry);
        let receipt = receipt(
            &shared.keys,
            a,
            &case_id,
            &routed_to,
            &header_sha256,
            index,
            now,
        )
        .map_err(|e| StoreError::Corrupt(format!("cannot sign a receipt: {e}")))?;
        let receipt_bytes = receipt.encode_to_vec();
        tx.insert_entry(index, entry, &leaf, now.seconds).await?;
        tx.insert_payload(index, &a.header.payload_sha256, &a.payload)
            .await?;
        tx.insert_envelope(
            key.0,
            key.1,
            &header_sha256,
            &a.header.payload_type,
            index,
            &receipt_bytes,
            now.seconds,
            a.traceparent.as_deref(),
        )
        .await?;
        if let Some(c) = change.as_mut() {
            c.record.view.history.push(pb::CaseEvent {
                message_id: a.header.message_id.clone(),
                log_index: index,
                actor: a.submitted_by.to_string(),
                kind: c.step.kind as i32,
                state_before: c.step.state_before as i32,
                state_after: c.step.state_after as i32,
                accepted_at: Some(now),
                header_sha256: header_sha256.clone(),
                routed_to: routed_to.clone(),
                summary: c.step.summary.clone(),
            });
            let view = &c.record.view;
            let reference = a.effects.iter().find_map(|e| match e {
                Effect::OpenCase(o) if !o.lead.source_reference.is_empty() => {
                    Some(o.lead.source_reference.as_str())
                }
                _ => None,
            });
            tx.save_case(
                &c.record,
                c.new,
                &c.step.parties,
                machine::next_due(view),
                machine::any_overdue(view),
            )
            .await?;
            if c.new
                && let Some(lead) = view.lead.as_ref()
                && !lead.project_code.is_empty()
                && let Some(industry) = crate::routing::Lead::from_proto(lead).industry
            {
                tx.upsert_project(
                    &lead.project_code,
                    &lead.project_name,
                    &industry,
                    &lead.region_code,
                    now.seconds,
                )
                .await?;
            }
            if let Some(reference) = reference {
                tx.insert_lead_ref(
                    &reference_owner(a),
                    reference,
                    &view.case_id,
                    &a.header.payload_sha256,
                    index,
                )
                .await?;
            }
            let mut told: Vec<&str> = Vec::new();
            for r in &routed_to {
                if !told.contains(&r.partner_id.as_str()) {
                    told.push(&r.partner_id);
                    tx.enqueue(&r.partner_id, index, now.seconds).await?;
                    delivered = true;
                }
            }
        }
        for effect in &a.effects {
            match effect {
                Effect::Deliver(partner) => {
                    tx.enqueue(partner, index, now.seconds).await?;
                    delivered = true;
                }
                Effect::Acknowledge { partner, cursor } => tx.acknowledge(partner, *cursor).await?,
                Effect::Answers { query_index } => {
                    tx.insert_query_answer(*query_index, index).await?
                }
                Effect::Cosign { tree_size, line } => {
                    tx.insert_cosignature(*tree_size, key.0, line, index)
                        .await?
                }
                Effect::MapCase {
                    peer,
                    remote_case_id,
                } if !remote_case_id.is_empty() && !case_id.is_empty() => {
                    tx.map_case(peer, remote_case_id, &case_id).await?
                }
                Effect::MapCase { .. } => {}
                Effect::OpenCase(_)
                | Effect::Case(_)
                | Effect::Accounts(_)
                | Effect::Warning { .. }
                | Effect::Admin(_) => {}
            }
        }
        accounts_write(tx, a, &fresh, &case_id, index, now.seconds).await?;
        in_group.insert(key, (header_sha256, receipt_bytes));
        leaves.push(leaf);
        next += 1;
        outcomes.push(Ok(Appended { receipt, new: true }));
    }
    Ok((outcomes, leaves, delivered))
}

/// The id of the case opened by the entry at `index`: `WL-<China date>-<index>`.
fn case_id(index: u64) -> String {
    format!(
        "WL-{}-{index:06}",
        crate::cases::china_today().strftime("%Y%m%d")
    )
}

/// The gateway's signed receipt for an accepted envelope.
fn receipt(
    keys: &LogKeys,
    a: &Accepted,
    case_id: &str,
    routed_to: &[pb::Routing],
    header_sha256: &[u8],
    index: u64,
    at: prost_types::Timestamp,
) -> Result<pb::SignedEnvelope, wagelink_proto::envelope::EnvelopeError> {
    let kind = match a.kind {
        EntryKind::Accepted | EntryKind::Admin => pb::ReceiptKind::Accepted,
        EntryKind::Acknowledged { .. } => pb::ReceiptKind::Acknowledged,
    };
    let body = pb::Receipt {
        kind: kind as i32,
        header_sha256: header_sha256.to_vec(),
        message_id: a.header.message_id.clone(),
        sender: a.submitted_by.to_string(),
        log_index: index,
        accepted_at: Some(at),
        case_id: case_id.to_owned(),
        routed_to: routed_to.to_vec(),
        payload_type: a.header.payload_type.clone(),
        ..Default::default()
    };
    let header = pb::Header {
        message_id: uuid::Uuid::new_v4().to_string(),
        sender: keys.gateway_id.clone(),
        created_at: Some(at),
        subject: case_id.to_owned(),
        in_reply_to: a.header.message_id.clone(),
        recipients: vec![a.submitted_by.to_string()],
        ..Default::default()
    };
    keys.gateway.seal(header, &body)
}
