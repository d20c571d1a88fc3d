//! `wagelink bench`: load against a real gateway started in this process (real mTLS, real
//! signatures, a real database), always beside a baseline measured in the same run — a bare
//! mTLS unary echo served by this binary (gRPC health Check over the same TLS configuration and
//! certificate checks, without the gateway's layers, log or database).
//!
//! Scenarios:
//! - `echo`: the baseline;
//! - `lead`: SubmitLead — a lead source signs each lead; the gateway verifies, routes, appends
//!   durably and signs a receipt;
//! - `events`: Banks.PushEvents — a bank streams signed batches of account events;
//! - `direct`: the query relay's own baseline — the asker calls a bank adapter directly
//!   (AccountQueries.Query over the same mTLS, served by this binary without the gateway): it
//!   checks the asker's signature and digest and answers with a signed balance;
//! - `query`: AccountQueries.Query relayed to a bank link answering at once (in process); when
//!   `direct` ran before it, the line after it gives what the relay adds at p50;
//! - `fanout`: housing leads from a district of their own (500113), each delivered to its
//!   handler and its co-handler, who read their mailboxes and acknowledge every message
//!   (itself a signed, logged envelope); the rate counts deliveries that arrived in the
//!   window, the latency runs from submission to arrival;
//! - `drain`: a handler offline while `--backlog` leads are queued for it (district 500114),
//!   then connecting: how fast its mailbox empties, every message delivered in cursor order and
//!   acknowledged; the latency runs from its connection to each message's arrival.
//!
//! The load generator shares the machine with the gateway (as the issue asks): CPU per
//! exchange is the whole process's CPU time, client and server together.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use prost::Message;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, Server};
use wagelink_proto::envelope::Signer;
use wagelink_proto::v1 as pb;

use crate::config::Config;
use crate::pki::dev;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Echo,
    Lead,
    Events,
    Direct,
    Query,
    Fanout,
    Drain,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Scenarios to run after the echo baseline (repeat the flag); default: all of them.
    #[arg(long = "scenario", value_enum)]
    pub scenarios: Vec<Scenario>,
    /// PostgreSQL URL; unset: a fresh SQLite file in a temporary directory.
    #[arg(long, env = "WAGELINK_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Seconds each scenario runs (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// TLS connections the requests share.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Events per batch envelope in the `events` scenario.
    #[arg(long, default_value_t = 50)]
    pub batch: usize,
    /// Leads queued for the `drain` scenario's handler while it is offline.
    #[arg(long, default_value_t = 20_000)]
    pub backlog: u64,
}

/// What one scenario measured.
#[derive(Debug, Clone)]
pub struct Measured {
    pub name: String,
    /// Exchanges completed (for `events`: events).
    pub count: u64,
    pub errors: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Process CPU milliseconds per exchange.
    pub cpu_ms: f64,
    /// Share of the machine's CPU time the hypervisor took for other guests meanwhile (steal),
    /// in percent: figures of runs with much of it are not comparable.
    pub steal_pct: f64,
    /// The first error's status, when there were errors: what to look at first.
    pub first_error: Option<String>,
    /// A line more about the run, printed after its figures.
    pub note: Option<String>,
}

/// Errors counted by the tasks of a scenario, and the first one's message.
#[derive(Debug, Default)]
struct Errors(std::sync::Mutex<(u64, Option<String>)>);

impl Errors {
    fn add(&self, what: impl std::fmt::Display) {
        let mut errors = self.0.lock().unwrap_or_else(|e| e.into_inner());
        errors.0 += 1;
        errors.1.get_or_insert_with(|| what.to_string());
    }

    fn get(&self) -> (u64, Option<String>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Measured {
    /// A scenario's figures from its latencies (µs) and the process CPU seconds it took.
    fn of(
        name: &str,
        count: u64,
        errors: &Errors,
        seconds: u64,
        mut latencies: Vec<u64>,
        (cpu, steal_pct): (f64, f64),
    ) -> Self {
        latencies.sort_unstable();
        let (errors, first_error) = errors.get();
        Measured {
            name: name.to_owned(),
            count,
            errors,
            seconds: seconds as f64,
            p50_ms: percentile(&latencies, 0.50),
            p99_ms: percentile(&latencies, 0.99),
            max_ms: latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
            cpu_ms: if count > 0 {
                cpu * 1000.0 / count as f64
            } else {
                0.0
            },
            steal_pct,
            first_error,
            note: None,
        }
    }

    pub fn rate(&self) -> f64 {
        self.count as f64 / self.seconds
    }
}

/// Where the process's and the machine's CPU time stood at the start of a measurement.
struct Usage {
    cpu: f64,
    machine: (u64, u64),
}

impl Usage {
    fn now() -> Self {
        Usage {
            cpu: cpu_seconds(),
            machine: machine_ticks(),
        }
    }

    /// Process CPU seconds since, and the machine's steal in percent of its CPU time since.
    fn since(&self) -> (f64, f64) {
        let (steal, total) = machine_ticks();
        let (steal, total) = (
            steal.saturating_sub(self.machine.0),
            total.saturating_sub(self.machine.1),
        );
        let pct = if total > 0 {
            steal as f64 * 100.0 / total as f64
        } else {
            0.0
        };
        (cpu_seconds() - self.cpu, pct)
    }
}

/// The machine's stolen and total CPU ticks, from the `cpu` line of /proc/stat (Linux).
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …
    (
        ticks.get(7).copied().unwrap_or(0),
        ticks.iter().take(8).sum(),
    )
}

/// Process CPU time (user + system), from /proc/self/stat (Linux), in seconds.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line; 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Runs `call` from `concurrency` tasks over `channels` for `seconds` (after a second of
/// warm-up); each call returns how many exchanges it completed.
async fn load<F, Fut>(
    name: &str,
    channels: &[Channel],
    concurrency: usize,
    seconds: u64,
    call: F,
) -> Measured
where
    F: Fn(Channel, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u64, tonic::Status>> + Send,
{
    let call = Arc::new(call);
    let errors = Arc::new(Errors::default());
    let warm_until = Instant::now() + Duration::from_secs(1);
    let end = warm_until + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let (channel, call, errors) = (
            channels[t % channels.len()].clone(),
            call.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut count = 0u64;
            let mut n = (t as u64) << 32;
            loop {
                let started = Instant::now();
                if started >= end {
                    break;
                }
                n += 1;
                let result = call(channel.clone(), n).await;
                if started < warm_until {
                    continue;
                }
                match result {
                    Ok(done) => {
                        count += done;
                        latencies.push(started.elapsed().as_micros() as u64);
                    }
                    Err(e) => errors.add(e),
                }
            }
            (latencies, count)
        }));
    }
    tokio::time::sleep_until(warm_until.into()).await;
    let usage = Usage::now();
    let mut latencies = Vec::new();
    let mut count = 0;
    for t in tasks {
        match t.await {
            Ok((l, c)) => {
                latencies.extend(l);
                count += c;
            }
            Err(e) => errors.add(format!("a load task failed: {e}")),
        }
    }
    Measured::of(name, count, &errors, seconds, latencies, usage.since())
}

async fn channel(address: &str, dir: &Path) -> Result<Channel, Error> {
    let read = |f: &str| std::fs::read(dir.join(f));
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")?))
        .identity(Identity::from_pem(read("cert.pem")?, read("key.pem")?))
        .domain_name("localhost");
    Ok(Channel::from_shared(address.to_owned())?
        .tls_config(tls)?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

async fn channels(address: &str, dir: &Path, n: usize) -> Result<Vec<Channel>, Error> {
    let mut out = Vec::new();
    for _ in 0..n.max(1) {
        out.push(channel(address, dir).await?);
    }
    Ok(out)
}

fn signer(dir: &Path) -> Result<Arc<Signer>, Error> {
    Ok(Arc::new(Signer::from_pem(
        &std::fs::read(dir.join("cert.pem"))?,
        &std::fs::read(dir.join("key.pem"))?,
    )?))
}

fn header(sender: &str) -> pb::Header {
    pb::Header {
        message_id: uuid::Uuid::new_v4().to_string(),
        sender: sender.to_owned(),
        created_at: Some(crate::ledger::log::now_timestamp()),
        ..Default::default()
    }
}

/// The bare mTLS echo: gRPC health Check over the gateway's own TLS configuration; beside it, the
/// bank adapter the `direct` scenario calls.
async fn start_echo(
    config: &Config,
    registry: Arc<crate::identity::Registry>,
    direct: DirectBank,
) -> Result<String, Error> {
    let tls = Arc::new(crate::tls::server_config(
        &config.tls,
        registry.clone(),
        Vec::new(),
    )?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("https://{}", listener.local_addr()?);
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<crate::tls::PartnerConn, std::io::Error>>(64);
    tokio::spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx, registry) = (acceptor.clone(), tx.clone(), registry.clone());
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(tcp).await
                    && let Some(conn) = crate::tls::PartnerConn::new(stream, &registry)
                {
                    let _ = tx.send(Ok(conn)).await;
                }
            });
        }
    });
    let (_, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        Server::builder()
            .add_service(health)
            .add_service(pb::account_queries_server::AccountQueriesServer::new(
                direct,
            ))
            .serve_with_incoming(tokio_stream::wrappers::ReceiverStream::new(rx)),
    );
    Ok(address)
}

const BENCH_ACCOUNT: &str = "3100021009200009999";

/// The query every asker sends: the balance of the bench account, under an inspection order.
fn account_query() -> pb::AccountQuery {
    pb::AccountQuery {
        account_number: BENCH_ACCOUNT.into(),
        kind: pb::AccountQueryKind::Balance as i32,
        purpose: Some(pb::account_query::Purpose::InspectionOrderNumber(
            "江北人社监查〔2026〕9号".into(),
        )),
        ..Default::default()
    }
}

/// One account query by hrss-500105 over `channel`, to the gateway or to the bank directly.
fn ask(
    signer: &Signer,
    channel: Channel,
) -> impl std::future::Future<Output = Result<u64, tonic::Status>> + Send + use<> {
    let env = signer.seal(header("hrss-500105"), &account_query());
    async move {
        let env = env.map_err(|e| tonic::Status::internal(e.to_string()))?;
        pb::account_queries_client::AccountQueriesClient::new(channel)
            .query(env)
            .await
            .map(|_| 1)
    }
}

/// The bank's signed answer to the query `query_message_id`: the bench account's balance.
fn balance_answer(
    signer: &Signer,
    query_message_id: String,
) -> Result<pb::SignedEnvelope, wagelink_proto::envelope::EnvelopeError> {
    let mut reply = header("bank-102");
    reply.in_reply_to = query_message_id.clone();
    reply.subject = BENCH_ACCOUNT.into();
    let answer = pb::AccountQueryAnswer {
        query_message_id,
        account_number: BENCH_ACCOUNT.into(),
        kind: pb::AccountQueryKind::Balance as i32,
        answered_at: None,
        result: Some(pb::account_query_answer::Result::Balance(
            pb::AccountBalance {
                balance_fen: 68_400_000,
                available_fen: 68_400_000,
                as_of: None,
            },
        )),
    };
    signer.seal(reply, &answer)
}

/// A bank adapter called directly, without the gateway: it checks the asker's signature and the
/// payload digest, reads the query and answers with the bank's signature. What the relay adds
/// is measured against it.
#[derive(Clone)]
struct DirectBank {
    signer: Arc<Signer>,
    asker: Arc<wagelink_proto::envelope::PublicKey>,
}

#[tonic::async_trait]
impl pb::account_queries_server::AccountQueries for DirectBank {
    async fn query(
        &self,
        request: tonic::Request<pb::SignedEnvelope>,
    ) -> Result<tonic::Response<pb::AccountQueryResult>, tonic::Status> {
        use wagelink_proto::envelope::{header_pae, payload_digest};
        let env = request.into_inner();
        let bad = |m: String| tonic::Status::invalid_argument(m);
        let signature = env
            .signatures
            .first()
            .ok_or_else(|| bad("the query is not signed".into()))?;
        self.asker
            .verify(&header_pae(&env.header), &signature.sig, &signature.keyid)
            .map_err(|e| tonic::Status::unauthenticated(e.to_string()))?;
        let h = pb::Header::decode(env.header.as_slice()).map_err(|e| bad(e.to_string()))?;
        if payload_digest(&h.payload_type, &env.payload).map(|d| d.to_vec())
            != Some(h.payload_sha256.clone())
        {
            return Err(bad("the payload does not match the header's digest".into()));
        }
        let q = pb::AccountQuery::decode(env.payload.as_slice()).map_err(|e| bad(e.to_string()))?;
        if q.account_number != BENCH_ACCOUNT {
            return Err(tonic::Status::not_found("no such account"));
        }
        let answer = balance_answer(&self.signer, h.message_id)
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(tonic::Response::new(pb::AccountQueryResult {
            answer: Some(answer),
            receipt: None,
        }))
    }
}

/// The disk's flush latency, the floor of one durable append: p50 of 4 KiB written and
/// `fdatasync`ed, `n` times, in `dir` (ms).
fn flush_p50(dir: &Path, n: usize) -> std::io::Result<f64> {
    use std::io::{Seek, Write};
    let mut f = std::fs::File::create(dir.join("flush-probe"))?;
    let page = [0x5au8; 4096];
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        f.seek(std::io::SeekFrom::Start((i % 16) as u64 * 4096))?;
        f.write_all(&page)?;
        f.sync_data()?;
        times.push(started.elapsed().as_micros() as u64);
    }
    times.sort_unstable();
    Ok(percentile(&times, 0.5))
}

/// The district of the `fanout` scenario's leads, and its labour-inspection office (the handler).
const FANOUT_REGION: &str = "500113";
const FANOUT_HANDLER: &str = "hrss-500113";

/// A recipient's mailbox stream from its first pending message.
async fn subscribe(c: &Channel) -> Result<tonic::Streaming<pb::MailboxDelivery>, tonic::Status> {
    Ok(pb::delivery_client::DeliveryClient::new(c.clone())
        .subscribe(pb::SubscribeRequest {
            from_cursor: 0,
            window: 512,
        })
        .await?
        .into_inner())
}

/// `recipient`'s signed acknowledgement of the delivery at `cursor` (header bytes and message id
/// of the envelope delivered).
fn acknowledgement(
    signer: &Signer,
    recipient: &str,
    cursor: u64,
    delivered_header: &[u8],
    message_id: String,
) -> Result<pb::SignedEnvelope, wagelink_proto::envelope::EnvelopeError> {
    let ack = pb::Acknowledgement {
        message_id,
        cursor,
        header_sha256: wagelink_proto::envelope::sha256(delivered_header).to_vec(),
        case_id: String::new(),
    };
    signer.seal(header(recipient), &ack)
}

/// The `fanout` scenario: leads submitted at full rate while both recipients consume.
async fn fanout(gateway: &str, partners: &Path, args: &BenchArgs) -> Result<Measured, Error> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Errors::default());
    let mut readers = Vec::new();
    let mut feeds = Vec::new();
    // A district no other scenario sends leads to: its labour-inspection office's mailbox holds
    // only this scenario's leads, not the `lead` scenario's backlog (which the recipient would
    // read first, each message not counted, and which held every counted one out of a
    // two-second window on a slow machine). The city's housing authority gets nothing else.
    for recipient in [FANOUT_HANDLER, "housing-500000"] {
        let dir = partners.join(recipient);
        let c = channel(gateway, &dir).await?;
        let feed = subscribe(&c).await?;
        feeds.push((recipient, c, signer(&dir)?, feed));
    }
    let source_dir = partners.join("source-national-platform");
    let conns = channels(gateway, &source_dir, args.connections).await?;
    let source = signer(&source_dir)?;
    // Everything is connected: the clock starts now.
    let warm_until = Instant::now() + Duration::from_secs(1);
    let end = warm_until + Duration::from_secs(args.seconds);
    for (recipient, c, signer, feed) in feeds {
        let (sent, stop, errors) = (sent.clone(), stop.clone(), errors.clone());
        readers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut feed = Some(feed);
            while !stop.load(Ordering::Relaxed) {
                let Some(stream) = feed.as_mut() else {
                    // The stream ended (counted below): subscribe again, as a recipient would.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    match subscribe(&c).await {
                        Ok(f) => feed = Some(f),
                        Err(e) => errors.add(format!("{recipient} cannot subscribe: {e}")),
                    }
                    continue;
                };
                let d = match tokio::time::timeout(Duration::from_millis(200), stream.message())
                    .await
                {
                    Err(_) => continue,
                    Ok(Ok(Some(d))) => d,
                    Ok(Ok(None)) => {
                        errors.add(format!("{recipient}'s stream ended"));
                        feed = None;
                        continue;
                    }
                    Ok(Err(e)) => {
                        errors.add(format!("{recipient}'s stream failed: {e}"));
                        feed = None;
                        continue;
                    }
                };
                let arrived = Instant::now();
                let env = d.envelope.unwrap_or_default();
                let h = pb::Header::decode(env.header.as_slice()).unwrap_or_default();
                let submitted = sent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&h.message_id)
                    .copied();
                if arrived >= warm_until
                    && arrived < end
                    && let Some(at) = submitted
                {
                    latencies.push(arrived.saturating_duration_since(at).as_micros() as u64);
                }
                // Acknowledged concurrently, as a recipient with work to do would.
                match acknowledgement(&signer, recipient, d.cursor, &env.header, h.message_id) {
                    Ok(sealed) => {
                        let (c, errors) = (c.clone(), errors.clone());
                        tokio::spawn(async move {
                            if let Err(e) = pb::delivery_client::DeliveryClient::new(c)
                                .acknowledge(sealed)
                                .await
                            {
                                errors.add(format!("{recipient}'s acknowledgement: {e}"));
                            }
                        });
                    }
                    Err(e) => errors.add(format!("{recipient} cannot sign: {e}")),
                }
            }
            latencies
        }));
    }
    let mut writers = Vec::new();
    for t in 0..(args.concurrency / 2).max(1) {
        let (c, source, sent, errors) = (
            conns[t % conns.len()].clone(),
            source.clone(),
            sent.clone(),
            errors.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut n = (t as u64) << 32;
            let mut submitted = 0u64;
            loop {
                let started = Instant::now();
                if started >= end {
                    break;
                }
                n += 1;
                let lead = pb::Lead {
                    channel: pb::LeadChannel::NationalPlatform as i32,
                    lead_type: pb::LeadType::Arrears as i32,
                    region_code: FANOUT_REGION.into(),
                    sector: pb::Sector::Construction as i32,
                    project_industry: pb::Industry::HousingMunicipal as i32,
                    project_name: format!("巴南区安置房 {n}"),
                    employer_name: format!("重庆某建筑劳务公司 {n}"),
                    worker_count: 8,
                    amount_fen: 32_000_000,
                    ..Default::default()
                };
                let env = match source.seal(header("source-national-platform"), &lead) {
                    Ok(env) => env,
                    Err(e) => {
                        errors.add(format!("cannot sign a lead: {e}"));
                        continue;
                    }
                };
                let id = pb::Header::decode(env.header.as_slice())
                    .unwrap_or_default()
                    .message_id;
                sent.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, Instant::now());
                match pb::cases_client::CasesClient::new(c.clone())
                    .submit_lead(env)
                    .await
                {
                    Ok(_) if started >= warm_until => submitted += 1,
                    Ok(_) => {}
                    Err(e) => errors.add(format!("SubmitLead: {e}")),
                }
            }
            submitted
        }));
    }
    tokio::time::sleep_until(warm_until.into()).await;
    let usage = Usage::now();
    let mut submitted = 0;
    for w in writers {
        match w.await {
            Ok(n) => submitted += n,
            Err(e) => errors.add(format!("a submitting task failed: {e}")),
        }
    }
    let used = usage.since();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for r in readers {
        latencies.extend(r.await.unwrap_or_default());
    }
    let count = latencies.len() as u64;
    let mut measured = Measured::of("fanout", count, &errors, args.seconds, latencies, used);
    // Two deliveries per lead: fewer arriving means the mailboxes grew during the run, and the
    // latency then measures that backlog.
    let leads = submitted as f64 / args.seconds as f64;
    measured.note = Some(format!(
        "{leads:.0} leads/s submitted in the window: {:.0} deliveries/s to keep up, {:.0}/s arrived",
        2.0 * leads,
        measured.rate()
    ));
    Ok(measured)
}

/// The district of the `drain` scenario's leads, and its labour-inspection office: the partner
/// that is offline while they are queued.
const DRAIN_REGION: &str = "500114";
const DRAIN_HANDLER: &str = "hrss-500114";

/// The `drain` scenario: `backlog` leads queued for a handler that is offline, then the handler
/// connects and reads its mailbox to the end, acknowledging every message (each acknowledgement
/// a signed, logged envelope), as a partner back from a long outage does. Measured from its
/// connection until every message arrived and every acknowledgement was answered.
async fn drain(
    gateway: &str,
    partners: &Path,
    args: &BenchArgs,
    store: &crate::store::Store,
) -> Result<Measured, Error> {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicU64, Ordering};
    let backlog = args.backlog.max(1);
    let errors = Arc::new(Errors::default());
    let source_dir = partners.join("source-national-platform");
    let conns = channels(gateway, &source_dir, args.connections).await?;
    let source = signer(&source_dir)?;
    let filling = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for t in 0..args.concurrency.max(1) {
        let (c, source, next, errors) = (
            conns[t % conns.len()].clone(),
            source.clone(),
            next.clone(),
            errors.clone(),
        );
        writers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= backlog {
                    break;
                }
                let lead = pb::Lead {
                    channel: pb::LeadChannel::NationalPlatform as i32,
                    lead_type: pb::LeadType::Arrears as i32,
                    region_code: DRAIN_REGION.into(),
                    sector: pb::Sector::Manufacturing as i32,
                    employer_name: format!("重庆某制衣厂 {n}"),
                    worker_count: 5,
                    amount_fen: 2_500_000,
                    ..Default::default()
                };
                let result = match source.seal(header("source-national-platform"), &lead) {
                    Ok(env) => pb::cases_client::CasesClient::new(c.clone())
                        .submit_lead(env)
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("SubmitLead: {e}")),
                    Err(e) => Err(format!("cannot sign a lead: {e}")),
                };
                if let Err(e) = result {
                    errors.add(e);
                }
            }
        }));
    }
    for w in writers {
        if let Err(e) = w.await {
            errors.add(format!("a submitting task failed: {e}"));
        }
    }
    let filled_in = filling.elapsed().as_secs_f64();
    // A running gateway's database has statistics of a mailbox this size (PostgreSQL).
    store.analyze().await?;
    let queued = backlog - errors.get().0.min(backlog);

    let dir = partners.join(DRAIN_HANDLER);
    let c = channel(gateway, &dir).await?;
    let signer = signer(&dir)?;
    let usage = Usage::now();
    let started = Instant::now();
    // Generous: a drain this slow is a finding, and it is reported with what arrived by then.
    let give_up = started + Duration::from_secs(600);
    let mut seen = HashSet::new();
    let mut latencies = Vec::new();
    let mut acks = tokio::task::JoinSet::new();
    'streams: while (seen.len() as u64) < queued {
        let mut stream = match subscribe(&c).await {
            Ok(s) => s,
            Err(e) => {
                errors.add(format!("{DRAIN_HANDLER} cannot subscribe: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Within one stream, cursors only rise: the mailbox's order, which is each case's.
        let mut last = 0;
        while (seen.len() as u64) < queued {
            if Instant::now() >= give_up {
                errors.add(format!(
                    "gave up after 600 s with {} of {queued} messages delivered",
                    seen.len()
                ));
                break 'streams;
            }
            let d = match tokio::time::timeout(Duration::from_secs(1), stream.message()).await {
                Err(_) => continue,
                Ok(Ok(Some(d))) => d,
                Ok(Ok(None)) => {
                    errors.add(format!("{DRAIN_HANDLER}'s stream ended"));
                    continue 'streams;
                }
                Ok(Err(e)) => {
                    errors.add(format!("{DRAIN_HANDLER}'s stream failed: {e}"));
                    continue 'streams;
                }
            };
            if d.cursor <= last {
                errors.add(format!(
                    "cursor {} delivered after cursor {last} in one stream",
                    d.cursor
                ));
            }
            last = d.cursor;
            if seen.insert(d.cursor) {
                latencies.push(started.elapsed().as_micros() as u64);
            }
            let env = d.envelope.unwrap_or_default();
            let h = pb::Header::decode(env.header.as_slice()).unwrap_or_default();
            match acknowledgement(&signer, DRAIN_HANDLER, d.cursor, &env.header, h.message_id) {
                Ok(sealed) => {
                    let c = c.clone();
                    acks.spawn(async move {
                        pb::delivery_client::DeliveryClient::new(c)
                            .acknowledge(sealed)
                            .await
                            .map(|_| ())
                    });
                }
                Err(e) => errors.add(format!("{DRAIN_HANDLER} cannot sign: {e}")),
            }
            while let Some(done) = acks.try_join_next() {
                record_ack(&errors, done);
            }
        }
    }
    while let Some(done) = acks.join_next().await {
        record_ack(&errors, done);
    }
    let seconds = started.elapsed().as_secs_f64();
    let count = seen.len() as u64;
    let mut measured = Measured::of("drain", count, &errors, 1, latencies, usage.since());
    measured.seconds = seconds.max(f64::MIN_POSITIVE);
    measured.note = Some(format!(
        "{count} of {queued} queued leads delivered and acknowledged in {seconds:.1} s (queued in {filled_in:.1} s, {:.0}/s); latency from connecting to arrival",
        queued as f64 / filled_in.max(f64::MIN_POSITIVE)
    ));
    Ok(measured)
}

fn record_ack(errors: &Errors, done: Result<Result<(), tonic::Status>, tokio::task::JoinError>) {
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => errors.add(format!("{DRAIN_HANDLER}'s acknowledgement: {e}")),
        Err(e) => errors.add(format!("an acknowledging task failed: {e}")),
    }
}

/// Reports the benchmark account's opening as bank-102, then keeps a link open that answers
/// every query at once with a signed balance (the bank's core is not what is measured).
async fn open_bank_link(gateway: &str, bank_dir: &Path) -> Result<(), Error> {
    let c = channel(gateway, bank_dir).await?;
    let signer = signer(bank_dir)?;
    let opened = pb::AccountEvent {
        event_id: "BENCH-OPEN".into(),
        account_number: BENCH_ACCOUNT.into(),
        account_kind: pb::AccountKind::WageAccount as i32,
        bank_id: "bank-102".into(),
        project_code: "500105-2026-0042".into(),
        contractor_uscc: "91350100M000100Y43".into(),
        region_code: "500105".into(),
        occurred_at: Some(crate::ledger::log::now_timestamp()),
        kind: Some(pb::account_event::Kind::AccountOpened(
            pb::account_event::AccountOpened {
                account_name: "基准测试农民工工资专用账户".into(),
                opened_on: "2026-11-01".into(),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let mut answers = pb::banks_client::BanksClient::new(c.clone())
        .push_events(tokio_stream::iter(vec![
            signer.seal(header("bank-102"), &opened)?,
        ]))
        .await?
        .into_inner();
    answers.message().await?;
    let (up, rx) = tokio::sync::mpsc::unbounded_channel::<pb::BankLinkUp>();
    up.send(pb::BankLinkUp {
        msg: Some(pb::bank_link_up::Msg::Hello(pb::LinkHello {
            capacity: 1024,
            software: "wagelink bench".into(),
        })),
    })?;
    let mut down = pb::banks_client::BanksClient::new(c)
        .link(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await?
        .into_inner();
    tokio::spawn(async move {
        while let Ok(Some(m)) = down.message().await {
            match m.msg {
                Some(pb::bank_link_down::Msg::Query(q)) => {
                    let env = q.query.unwrap_or_default();
                    let h = pb::Header::decode(env.header.as_slice()).unwrap_or_default();
                    if let Ok(sealed) = balance_answer(&signer, h.message_id) {
                        let _ = up.send(pb::BankLinkUp {
                            msg: Some(pb::bank_link_up::Msg::Answer(pb::LinkAnswer {
                                correlation_id: q.correlation_id,
                                answer: Some(sealed),
                            })),
                        });
                    }
                }
                Some(pb::bank_link_down::Msg::Ping(p)) => {
                    let _ = up.send(pb::BankLinkUp {
                        msg: Some(pb::bank_link_up::Msg::Pong(pb::LinkPong { nonce: p.nonce })),
                    });
                }
                _ => {}
            }
        }
    });
    Ok(())
}

/// Runs the benchmark and prints one line per scenario.
pub async fn run(args: BenchArgs, out: &mut dyn std::io::Write) -> Result<Vec<Measured>, Error> {
    let dir = tempfile::tempdir()?;
    let (mut config, _) = dev::prepare(dir.path())?;
    config.listen = "127.0.0.1:0".parse()?;
    config.database_url = args.database_url.clone().filter(|u| !u.is_empty());
    // The benchmark measures the gateway, not its per-partner limits.
    config.limits.requests_per_second = 10_000_000;
    config.limits.burst = 10_000_000;
    config.limits.max_concurrent_calls = 100_000;
    let (store, registry) = crate::server::open(&config).await?;
    dev::register_roster(&registry, &config.data_dir).await?;
    // PostgreSQL plans from table statistics, which a fresh database lacks until autovacuum's
    // first pass (a minute after start by default): without them it scans a bank's events for
    // each id lookup. They are taken near the end of each scenario's warm-up (called as its
    // load starts), as a running gateway's database has them.
    let analyzer = store.clone();
    let drain_store = store.clone();
    let analyze_after_warm_up = move || {
        if analyzer.backend() == crate::store::Backend::Postgres {
            let store = analyzer.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(900)).await;
                if let Err(e) = store.analyze().await {
                    tracing::warn!(error = %e, "ANALYZE before measuring failed");
                }
            });
        }
    };
    let running = crate::server::start(&config, store, registry.clone()).await?;
    let gateway = format!("https://{}", running.local_addr);
    let partners = config.data_dir.join("partners");
    let direct = DirectBank {
        signer: signer(&partners.join("bank-102"))?,
        asker: Arc::new(wagelink_proto::envelope::PublicKey::from_certificate(
            &<rustls_pki_types::CertificateDer as rustls_pki_types::pem::PemObject>::from_pem_file(
                partners.join("hrss-500105").join("cert.pem"),
            )?,
        )?),
    };
    let echo = start_echo(&config, registry, direct).await?;
    let db = crate::store::redact_url(&config.effective_database_url());
    writeln!(
        out,
        "wagelink bench: {} s per scenario, {} in flight over {} connections, database {db}",
        args.seconds, args.concurrency, args.connections
    )?;
    writeln!(
        out,
        "flush    p50 {:.2} ms: 4 KiB written and fdatasync'ed in {} (a durable commit waits for at least one)",
        flush_p50(dir.path(), 200)?,
        dir.path().display()
    )?;
    let mut results = Vec::new();

    let source_dir = partners.join("source-national-platform");
    let conns = channels(&echo, &source_dir, args.connections).await?;
    let baseline = load(
        "echo",
        &conns,
        args.concurrency,
        args.seconds,
        |c, _| async move {
            tonic_health::pb::health_client::HealthClient::new(c)
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .map(|_| 1)
        },
    )
    .await;
    report(out, &baseline, &baseline)?;
    results.push(baseline.clone());

    let scenarios = if args.scenarios.is_empty() {
        vec![
            Scenario::Lead,
            Scenario::Events,
            Scenario::Direct,
            Scenario::Query,
            Scenario::Fanout,
            Scenario::Drain,
        ]
    } else {
        args.scenarios.clone()
    };
    for scenario in scenarios {
        let m = match scenario {
            Scenario::Echo => continue,
            Scenario::Lead => {
                let conns = channels(&gateway, &source_dir, args.connections).await?;
                let signer = signer(&source_dir)?;
                analyze_after_warm_up();
                load(
                    "lead",
                    &conns,
                    args.concurrency,
                    args.seconds,
                    move |c, n| {
                        let lead = pb::Lead {
                            channel: pb::LeadChannel::NationalPlatform as i32,
                            lead_type: pb::LeadType::Arrears as i32,
                            region_code: "500112".into(),
                            sector: pb::Sector::Manufacturing as i32,
                            employer_name: format!("重庆某机械厂 {n}"),
                            worker_count: 3,
                            amount_fen: 1_200_000,
                            ..Default::default()
                        };
                        let env = signer.seal(header("source-national-platform"), &lead);
                        async move {
                            let env = env.map_err(|e| tonic::Status::internal(e.to_string()))?;
                            pb::cases_client::CasesClient::new(c)
                                .submit_lead(env)
                                .await
                                .map(|_| 1)
                        }
                    },
                )
                .await
            }
            Scenario::Events => {
                let bank_dir = partners.join("bank-102");
                let conns = channels(&gateway, &bank_dir, args.connections).await?;
                let signer = signer(&bank_dir)?;
                let batch = args.batch.max(1);
                analyze_after_warm_up();
                load(
                    "events",
                    &conns,
                    args.concurrency,
                    args.seconds,
                    move |c, n| {
                        let events: Vec<Vec<u8>> = (0..batch)
                            .map(|i| {
                                pb::AccountEvent {
                                    event_id: format!("B-{n}-{i}"),
                                    account_number: format!("31000210{:011}", n % 1000),
                                    account_kind: pb::AccountKind::WageAccount as i32,
                                    bank_id: "bank-102".into(),
                                    project_code: "500105-2026-0042".into(),
                                    contractor_uscc: "91350100M000100Y43".into(),
                                    region_code: "500105".into(),
                                    occurred_at: Some(crate::ledger::log::now_timestamp()),
                                    kind: Some(pb::account_event::Kind::BalanceReported(
                                        pb::account_event::BalanceReported {
                                            amount_fen: 1_000_000 + i as i64,
                                            as_of_date: "2026-11-27".into(),
                                            ..Default::default()
                                        },
                                    )),
                                    ..Default::default()
                                }
                                .encode_to_vec()
                            })
                            .collect();
                        let env =
                            signer.seal(header("bank-102"), &pb::AccountEventBatch { events });
                        async move {
                            let env = env.map_err(|e| tonic::Status::internal(e.to_string()))?;
                            let mut answers = pb::banks_client::BanksClient::new(c)
                                .push_events(tokio_stream::iter(vec![env]))
                                .await?
                                .into_inner();
                            match answers.message().await? {
                                Some(pb::PushEventsResponse {
                                    result: Some(pb::push_events_response::Result::Receipt(_)),
                                    ..
                                }) => Ok(batch as u64),
                                other => Err(tonic::Status::internal(format!("{other:?}"))),
                            }
                        }
                    },
                )
                .await
            }
            Scenario::Fanout => {
                analyze_after_warm_up();
                fanout(&gateway, &partners, &args).await?
            }
            Scenario::Drain => drain(&gateway, &partners, &args, &drain_store).await?,
            Scenario::Direct => {
                let asker_dir = partners.join("hrss-500105");
                let conns = channels(&echo, &asker_dir, args.connections).await?;
                let signer = signer(&asker_dir)?;
                load(
                    "direct",
                    &conns,
                    args.concurrency,
                    args.seconds,
                    move |c, _| ask(&signer, c),
                )
                .await
            }
            Scenario::Query => {
                let bank_dir = partners.join("bank-102");
                open_bank_link(&gateway, &bank_dir).await?;
                let asker_dir = partners.join("hrss-500105");
                let conns = channels(&gateway, &asker_dir, args.connections).await?;
                let signer = signer(&asker_dir)?;
                analyze_after_warm_up();
                load(
                    "query",
                    &conns,
                    args.concurrency,
                    args.seconds,
                    move |c, _| ask(&signer, c),
                )
                .await
            }
        };
        report(out, &m, &results[0])?;
        if m.name == "query"
            && let Some(direct) = results.iter().find(|r| r.name == "direct")
        {
            writeln!(
                out,
                "query adds {:.2} ms at p50 over calling the bank adapter directly",
                m.p50_ms - direct.p50_ms
            )?;
        }
        results.push(m);
    }
    running.shutdown().await?;
    Ok(results)
}

fn report(out: &mut dyn std::io::Write, m: &Measured, baseline: &Measured) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<8} {:>10.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms  cpu {:>6.3} ms/op  {:>5.2}× echo  ({} errors, steal {:.0}%)",
        m.name,
        m.rate(),
        m.p50_ms,
        m.p99_ms,
        m.max_ms,
        m.cpu_ms,
        m.rate() / baseline.rate().max(f64::MIN_POSITIVE),
        m.errors,
        m.steal_pct
    )?;
    if let Some(e) = &m.first_error {
        writeln!(out, "{:<8} first error: {e}", "")?;
    }
    if let Some(note) = &m.note {
        writeln!(out, "{:<8} {note}", "")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every scenario completes exchanges without an error, and the relay's figure over the
    /// direct call is printed: a bench that no longer drives the gateway fails here, not in the
    /// next session's measurements. Nothing here is timed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_scenario_completes_exchanges_without_errors() {
        let args = BenchArgs {
            scenarios: Vec::new(),
            database_url: None,
            // Two seconds: the fan-out counts deliveries arriving within the window, which
            // lag the submitters when the machine is slow.
            seconds: 2,
            concurrency: 2,
            connections: 1,
            batch: 5,
            backlog: 300,
        };
        let mut out = Vec::new();
        let results = run(args, &mut out).await.expect("the bench runs");
        let printed = String::from_utf8(out).expect("utf-8");
        println!("{printed}");
        let names: Vec<&str> = results.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "echo", "lead", "events", "direct", "query", "fanout", "drain"
            ],
            "{printed}"
        );
        for m in &results {
            assert_eq!(m.errors, 0, "{} had errors:\n{printed}", m.name);
            assert!(m.count > 0, "{} completed nothing:\n{printed}", m.name);
        }
        assert!(printed.contains("flush    p50"), "{printed}");
        assert!(printed.contains("deliveries/s to keep up"), "{printed}");
        let drain = results.last().expect("the drain ran");
        assert_eq!(
            drain.count, 300,
            "every queued lead is delivered:\n{printed}"
        );
        assert!(
            printed.contains("query adds") && printed.contains("over calling the bank adapter"),
            "{printed}"
        );
    }
}
