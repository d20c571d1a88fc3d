//! Assembles and runs the gateway: storage, registry, the TLS endpoint, the layers and the
//! services, on one listening socket.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tower::ServiceBuilder;
use wagelink_proto::v1 as pb;

use crate::config::Config;
use crate::identity::Registry;
use crate::layers::admission::AdmissionLayer;
use crate::layers::authenticate::Authenticate;
use crate::layers::authorize::Authorize;
use crate::layers::calls::ConcurrentCalls;
use crate::layers::deadline::DeadlineLayer;
use crate::layers::message_size::MessageSizeLayer;
use crate::layers::rate::RateLimit;
use crate::layers::trace::TraceLayer;
use crate::layers::unbuilt::Unbuilt;
use crate::ledger::checkpoint::LogKey;
use crate::ledger::log::{EvidenceLog, LogKeys};
use crate::pki::FederationCa;
use crate::routing::{ActiveRules, DEFAULT_RULES, RuleSet};
use crate::services::accounts::AccountQueriesService;
use crate::services::admin::AdminService;
use crate::services::audit::AuditService;
use crate::services::banks::BanksService;
use crate::services::cases::CasesService;
use crate::services::delivery::{DeliveryPolicy, DeliveryService, Subscribers};
use crate::services::identity::IdentityService;
use crate::store::{Store, StoreError};
use crate::telemetry::metrics::Metrics;
use crate::tls::{PartnerConn, TlsError, install_crypto_provider, server_config};
use rustls::pki_types::pem::PemObject;
use wagelink_proto::envelope::Signer;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(
        "cannot listen on {addr}: {source}; is another process using the port? choose another with --listen"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("gRPC reflection could not load the contract: {0}")]
    Reflection(String),
    #[error("the gateway's signing keys are not usable: {0}")]
    Keys(String),
    #[error("the routing rules are not usable: {0}")]
    Rules(String),
}

/// A gateway that is serving.
pub struct Running {
    pub local_addr: SocketAddr,
    pub registry: Arc<Registry>,
    pub log: Arc<EvidenceLog>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Where the Prometheus endpoint listens, when configured.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<Result<(), ServeError>>,
}

impl Running {
    /// Stops gracefully: stops accepting connections, ends the streams, lets the calls in
    /// flight finish (up to `shutdown_grace_secs`) with their commits, signs a last checkpoint,
    /// and returns when the server has ended.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        let _ = self.shutdown.send(true);
        self.wait().await
    }

    /// Waits until the server ends (it ends only on shutdown or a fatal error), then publishes
    /// the log's last checkpoint and flushes the metrics.
    pub async fn wait(self) -> Result<(), ServeError> {
        let result = match self.server.await {
            Ok(result) => result,
            Err(join) => Err(ServeError::Reflection(format!("server task ended: {join}"))),
        };
        // Every call has been answered: its entry is committed. Publish the head they reached.
        self.log.checkpoint_now().await;
        self.metrics.shutdown();
        tracing::info!(entries = self.log.size(), "the gateway has stopped");
        result
    }

    /// A sender that stops the server when `true` is sent (for signal handlers).
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// The paths of every streaming method in the contract (deadlines do not cut them).
pub fn streaming_methods() -> HashSet<String> {
    let Ok(fds) = prost_types::FileDescriptorSet::decode(wagelink_proto::FILE_DESCRIPTOR_SET)
    else {
        return HashSet::new();
    };
    let mut paths = HashSet::new();
    for file in &fds.file {
        for service in &file.service {
            for method in &service.method {
                if method.client_streaming() || method.server_streaming() {
                    paths.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    paths.insert("/grpc.health.v1.Health/Watch".into());
    paths.insert("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo".into());
    paths
}

/// Opens the store named by the configuration and loads the registry from it.
pub async fn open(config: &Config) -> Result<(Store, Arc<Registry>), ServeError> {
    let store = Store::open(&config.effective_database_url()).await?;
    let registry = Registry::load(store.clone(), &config.trust_domain).await?;
    Ok((store, registry))
}

/// The identity under which the gateway signs receipts and other envelopes of its own.
pub const GATEWAY_ID: &str = "gateway";

/// Loads the log key and the gateway's signing identity named by the configuration.
pub fn log_keys(config: &Config) -> Result<LogKeys, ServeError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| ServeError::Keys(format!("cannot read {}: {e}", path.display())))
    };
    let log_pem = read(&config.log.key)?;
    let log_der = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(&log_pem).map_err(|e| {
        ServeError::Keys(format!(
            "{} is not a PKCS#8 PEM private key ({e}); make one with `openssl genpkey -algorithm ed25519 -out {}`",
            config.log.key.display(),
            config.log.key.display()
        ))
    })?;
    let origin = config.log_origin();
    let log_key = LogKey::from_pkcs8(&origin, log_der.secret_pkcs8_der())
        .map_err(|e| ServeError::Keys(format!("{}: {e}", config.log.key.display())))?;
    let cert_pem = read(&config.tls.certificate)?;
    let gateway = Signer::from_pem(&cert_pem, &read(&config.tls.key)?).map_err(|e| {
        ServeError::Keys(format!(
            "the gateway certificate {} cannot sign receipts: {e}",
            config.tls.certificate.display()
        ))
    })?;
    Ok(LogKeys {
        origin,
        log_key,
        gateway,
        gateway_id: GATEWAY_ID.into(),
        gateway_certificate_pem: String::from_utf8_lossy(&cert_pem).into_owned(),
    })
}

/// The routing rules named by the configuration, or the built-in defaults.
pub fn routing_rules(config: &Config) -> Result<RuleSet, ServeError> {
    configured_rules(config).map(|(_, rules)| rules)
}

/// The text and the checked rules of the configuration's rules file (or the built-in
/// defaults): the first version of a new database.
fn configured_rules(config: &Config) -> Result<(String, RuleSet), ServeError> {
    match &config.routing.rules {
        None => RuleSet::parse(DEFAULT_RULES)
            .map(|r| (DEFAULT_RULES.to_owned(), r))
            .map_err(|e| ServeError::Rules(format!("built-in defaults: {e}"))),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ServeError::Rules(format!("cannot read {}: {e}", path.display())))?;
            let rules = RuleSet::parse(&text)
                .map_err(|e| ServeError::Rules(format!("{}: {e}", path.display())))?;
            Ok((text, rules))
        }
    }
}

/// The federation CA, when the configuration gives its key.
fn federation_ca(config: &Config) -> Result<Option<Arc<FederationCa>>, ServeError> {
    let Some(key_path) = &config.tls.ca_key else {
        return Ok(None);
    };
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map_err(|e| ServeError::Keys(format!("cannot read {}: {e}", path.display())))
    };
    let ca = FederationCa::load(&read(&config.tls.ca)?, &read(key_path)?)
        .map_err(|e| ServeError::Keys(format!("[tls] ca_key {}: {e}", key_path.display())))?;
    Ok(Some(Arc::new(ca)))
}

/// Starts serving with an opened store and registry.
pub async fn start(
    config: &Config,
    store: Store,
    registry: Arc<Registry>,
) -> Result<Running, ServeError> {
    install_crypto_provider();
    // Working-day clocks need next year's official holidays by the time they cross into it.
    let next_year = crate::cases::china_today().year() + 1;
    if !crate::cases::calendar::Calendar::official().covers(next_year) {
        tracing::warn!(
            year = next_year,
            "the official holidays of {next_year} are not in gateway/data/holidays-cn: working-day clocks running into {next_year} count only weekends as days off; add {next_year}.json once the State Council publishes the schedule"
        );
    }
    let federation = Arc::new(
        crate::federation::Federation::load(&config.federation, &config.trust_domain)
            .map_err(|e| ServeError::Keys(e.to_string()))?,
    );
    federation
        .register(&registry)
        .await
        .map_err(|e| ServeError::Keys(e.to_string()))?;
    let tls = Arc::new(server_config(
        &config.tls,
        registry.clone(),
        federation.chain_verifiers()?,
    )?);
    let log = EvidenceLog::open(
        store.clone(),
        log_keys(config)?,
        Duration::from_secs(config.log.replay_window_secs),
        Duration::from_millis(config.log.checkpoint_interval_ms),
    )
    .await?;
    let (rules_text, configured) = configured_rules(config)?;
    let rules = ActiveRules::load(store.clone(), &rules_text, &configured)
        .await
        .map_err(|e| ServeError::Rules(e.to_string()))?;
    rules.set_federation(federation.clone());
    let ca = federation_ca(config)?;
    let chain = crate::tls::chain_verifier(&config.tls.ca)?;
    let federation_ca_pem = std::fs::read_to_string(&config.tls.ca)
        .map_err(|e| ServeError::Keys(format!("cannot read {}: {e}", config.tls.ca.display())))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let (shutdown, shutdown_rx) = watch::channel(false);

    let (conn_tx, conn_rx) = mpsc::channel::<Result<PartnerConn, std::io::Error>>(128);
    tokio::spawn(accept_loop(
        listener,
        tls,
        registry.clone(),
        conn_tx,
        shutdown_rx.clone(),
    ));
    let links = Arc::new(crate::banks::link::BankLinks::default());
    if store.backend() == crate::store::Backend::Postgres {
        tokio::spawn(listen_to_replicas(
            store.clone(),
            registry.clone(),
            rules.clone(),
            log.clone(),
            links.clone(),
            shutdown_rx.clone(),
        ));
        tokio::spawn(crate::services::accounts::relay_queries(
            log.clone(),
            links.clone(),
            shutdown_rx.clone(),
        ));
    }
    tokio::spawn(reload_loop(
        registry.clone(),
        rules.clone(),
        Duration::from_secs(config.registry_reload_secs.max(1)),
        shutdown_rx.clone(),
    ));

    let limits = &config.limits;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::identity_server::IdentityServer<IdentityService>>()
        .await;
    health
        .set_serving::<pb::cases_server::CasesServer<CasesService>>()
        .await;
    health
        .set_serving::<pb::audit_server::AuditServer<AuditService>>()
        .await;
    health
        .set_serving::<pb::delivery_server::DeliveryServer<DeliveryService>>()
        .await;
    health
        .set_serving::<pb::banks_server::BanksServer<BanksService>>()
        .await;
    health
        .set_serving::<pb::account_queries_server::AccountQueriesServer<AccountQueriesService>>()
        .await;
    health
        .set_serving::<pb::admin_server::AdminServer<AdminService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(wagelink_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let identity = pb::identity_server::IdentityServer::new(IdentityService::new(
        registry.clone(),
        GATEWAY_ID.to_owned(),
    ))
    .max_decoding_message_size(limits.max_message_bytes);
    tokio::spawn(crate::services::cases::overdue_scan(
        registry.clone(),
        log.clone(),
        Duration::from_millis(config.cases.overdue_scan_ms.max(10)),
        shutdown_rx.clone(),
    ));
    tokio::spawn(crate::services::banks::warning_scan(
        registry.clone(),
        log.clone(),
        rules.clone(),
        config.banks.warnings.clone(),
        Duration::from_millis(config.banks.warning_scan_ms.max(10)),
        shutdown_rx.clone(),
    ));
    let banks = pb::banks_server::BanksServer::new(BanksService::new(
        registry.clone(),
        log.clone(),
        links.clone(),
        config.banks.max_batch.max(1),
        Duration::from_millis(config.banks.link_ping_ms.max(10)),
        shutdown_rx.clone(),
    ))
    .max_decoding_message_size(limits.max_message_bytes);
    let account_queries =
        pb::account_queries_server::AccountQueriesServer::new(AccountQueriesService::new(
            registry.clone(),
            log.clone(),
            links,
            Duration::from_millis(config.banks.query_timeout_ms.max(100)),
            config.banks.max_query_days.clamp(1, 3660) as i32,
        ))
        .max_decoding_message_size(limits.max_message_bytes);
    let cases_service = Arc::new(CasesService::new(
        registry.clone(),
        log.clone(),
        rules.clone(),
    ));
    for index in 0..federation.peers.len() {
        if federation.peers[index].config.address.is_some() {
            tokio::spawn(crate::federation::link::witness(
                federation.clone(),
                index,
                config.data_dir.clone(),
                Duration::from_secs(config.federation.witness_every_secs.max(1)),
                shutdown_rx.clone(),
            ));
            tokio::spawn(crate::federation::link::run(
                crate::federation::link::Context {
                    federation: federation.clone(),
                    registry: registry.clone(),
                    log: log.clone(),
                    cases: cases_service.clone(),
                },
                index,
                shutdown_rx.clone(),
            ));
        }
    }
    let cases = pb::cases_server::CasesServer::from_arc(cases_service)
        .max_decoding_message_size(limits.max_message_bytes);
    let subscribers = Subscribers::default();
    let admin = pb::admin_server::AdminServer::new(AdminService::new(
        registry.clone(),
        log.clone(),
        rules,
        ca,
        chain,
        subscribers.clone(),
        config.admin.crl_validity_hours,
    ))
    .max_decoding_message_size(limits.max_message_bytes);
    tokio::spawn(crate::admin::expiry::expiry_scan(
        store.clone(),
        registry.clone(),
        config.admin.expiry_warning_days.clone(),
        Duration::from_secs(config.admin.expiry_scan_secs.max(1)),
        shutdown_rx.clone(),
    ));
    let delivery = pb::delivery_server::DeliveryServer::new(
        DeliveryService::new(
            registry.clone(),
            log.clone(),
            DeliveryPolicy {
                redeliver_after: Duration::from_millis(config.delivery.redeliver_after_ms.max(1)),
                max_attempts: config.delivery.max_attempts.max(1),
            },
            subscribers,
            shutdown_rx.clone(),
        )
        .with_federation(federation.clone()),
    )
    .max_decoding_message_size(limits.max_message_bytes);
    let mut witness_keys = std::collections::HashMap::new();
    for w in &config.audit.witnesses {
        let key = crate::ledger::witness::CosignerVerifier::parse(&w.key).map_err(|e| {
            ServeError::Keys(format!("[[audit.witnesses]] key of {}: {e}", w.partner))
        })?;
        witness_keys.insert(w.partner.clone(), key);
    }
    let audit = pb::audit_server::AuditServer::new(AuditService::new(
        log.clone(),
        registry.clone(),
        config.trust_domain.clone(),
        federation_ca_pem,
        witness_keys,
    ))
    .max_decoding_message_size(limits.max_message_bytes);

    let metrics = Metrics::new(&config.telemetry).map_err(ServeError::Keys)?;
    let metrics_addr = match config.telemetry.metrics_listen {
        None => None,
        Some(addr) => {
            let listener = crate::telemetry::metrics::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })?;
            let bound = listener.local_addr().ok();
            let size_of = log.clone();
            tokio::spawn(crate::telemetry::metrics::serve(
                listener,
                metrics.clone(),
                store.clone(),
                registry.clone(),
                move || size_of.size(),
                shutdown_rx.clone(),
            ));
            bound
        }
    };
    if config.telemetry.otlp_endpoint.is_some() {
        let size_of = log.clone();
        tokio::spawn(crate::telemetry::metrics::sample_loop(
            metrics.clone(),
            store.clone(),
            registry.clone(),
            move || size_of.size(),
            Duration::from_secs(config.telemetry.metrics_interval_secs.max(1)),
            shutdown_rx.clone(),
        ));
    }

    let layers = ServiceBuilder::new()
        .layer(TraceLayer::new(registry.clone(), metrics.clone()))
        .layer(AdmissionLayer(Authenticate::new(registry.clone())))
        .layer(AdmissionLayer(RateLimit::new(
            limits.requests_per_second,
            limits.burst,
        )))
        .layer(AdmissionLayer(ConcurrentCalls::new(
            limits.max_concurrent_calls,
        )))
        .layer(DeadlineLayer::new(
            Duration::from_millis(limits.request_deadline_ms),
            streaming_methods(),
        ))
        .layer(MessageSizeLayer::new(limits.max_message_bytes))
        .layer(AdmissionLayer(Unbuilt))
        .layer(AdmissionLayer(Authorize))
        .into_inner();

    let stop = shutdown_rx.clone();
    let router = Server::builder()
        .layer(layers)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(identity)
        .add_service(cases)
        .add_service(banks)
        .add_service(account_queries)
        .add_service(delivery)
        .add_service(audit)
        .add_service(admin);
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let server = tokio::spawn(async move {
        let serve = router
            .serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), stopped(stop.clone()));
        tokio::pin!(serve);
        tokio::select! {
            result = &mut serve => result.map_err(ServeError::from),
            _ = async { stopped(stop).await; tokio::time::sleep(grace).await } => {
                tracing::warn!(
                    grace_secs = grace.as_secs(),
                    "calls were still open when the shutdown grace period ended; closing them"
                );
                Ok(())
            }
        }
    });
    Ok(Running {
        local_addr,
        registry,
        log,
        store,
        metrics,
        metrics_addr,
        shutdown,
        server,
    })
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    registry: Arc<Registry>,
    conns: mpsc::Sender<Result<PartnerConn, std::io::Error>>,
    shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(shutdown.clone()) => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let conns = conns.clone();
        let registry = registry.clone();
        // Each handshake runs on its own task so a slow client cannot hold up the others.
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => match PartnerConn::new(stream, &registry) {
                    Some(conn) => {
                        let _ = conns.send(Ok(conn)).await;
                    }
                    None => {
                        tracing::warn!(%remote, "TLS session without a client certificate dropped")
                    }
                },
                // A TCP probe (load balancer, health check) closes before any hello: not news.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    tracing::debug!(%remote, "connection closed before the TLS handshake")
                }
                Ok(Err(e)) => tracing::info!(%remote, error = %e, "TLS handshake refused"),
                Err(_) => tracing::info!(%remote, "TLS handshake timed out"),
            }
        });
    }
}

async fn reload_loop(
    registry: Arc<Registry>,
    rules: Arc<ActiveRules>,
    every: Duration,
    shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = registry.reload().await {
                    tracing::warn!(error = %e, "reloading the partner registry failed; keeping the last one");
                }
                if let Err(e) = rules.reload().await {
                    tracing::warn!(error = %e, "reloading the routing rules failed; keeping the last ones");
                }
            }
            _ = stopped(shutdown.clone()) => return,
        }
    }
}

/// Listens (PostgreSQL) for what other replicas commit: new mailbox messages wake this
/// replica's feeds, and registry or rules changes are reloaded at once — so a revocation made on
/// one replica closes the certificate's streams on every replica within a second. Reconnects
/// when the listening connection drops; the periodic reload remains as a fallback.
async fn listen_to_replicas(
    store: Store,
    registry: Arc<Registry>,
    rules: Arc<ActiveRules>,
    log: Arc<EvidenceLog>,
    links: Arc<crate::banks::link::BankLinks>,
    shutdown: watch::Receiver<bool>,
) {
    use crate::store::Notice;
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect(store.url()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other replicas' changes; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stopped(shutdown.clone()) => return,
                }
            }
        };
        if let Err(e) = listener
            .listen_all(Notice::ALL.iter().map(|n| n.channel()))
            .await
        {
            tracing::warn!(error = %e, "cannot listen for other replicas' changes; retrying");
            continue;
        }
        // Anything committed while no one listened is picked up by a reload now.
        log.poke_deliveries();
        let _ = registry.reload().await;
        let _ = rules.reload().await;
        loop {
            let notice = tokio::select! {
                n = listener.recv() => n,
                _ = stopped(shutdown.clone()) => return,
            };
            match notice {
                Ok(n) if n.channel() == Notice::Mailboxes.channel() => log.poke_deliveries(),
                Ok(n) if n.channel() == Notice::Queries.channel() => links.wake_relays(),
                Ok(_) => {
                    if let Err(e) = registry.reload().await {
                        tracing::warn!(error = %e, "reloading the registry after another replica's change failed");
                    }
                    if let Err(e) = rules.reload().await {
                        tracing::warn!(error = %e, "reloading the rules after another replica's change failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the notification connection dropped; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Resolves once shutdown has been asked for (or its sender is gone).
pub(crate) async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await.is_ok();
}
