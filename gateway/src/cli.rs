//! The `wagelink` command line: `dev`, `serve`, `config`, `audit` and `admin`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::pki::dev;
use crate::server::{self, Running};
use crate::store::redact_url;

#[derive(Debug, Parser)]
#[command(
    name = "wagelink",
    version,
    about = "wagelink: the signed, logged exchange gateway against wage arrears"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a complete dev federation: creates (or reuses) a data directory with a dev
    /// federation CA, the gateway's certificate and a demo roster of partners, then serves.
    Dev {
        /// The data directory; created on the first run, reused after.
        #[arg(long, default_value = "wagelink-dev")]
        data_dir: PathBuf,
        /// Listen address (overrides the configuration's `listen`).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Run on PostgreSQL instead of the directory's SQLite file.
        #[arg(long, env = "WAGELINK_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Serve with a configuration file.
    Serve {
        /// The TOML configuration (see `wagelink config`).
        #[arg(long, short)]
        config: PathBuf,
        /// Listen address (overrides the configuration's `listen`).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Database URL (overrides the configuration's `database_url`).
        #[arg(long, env = "WAGELINK_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Print the effective configuration (the defaults when no file is given) as TOML.
    Config {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Export and verify the evidence log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Administer a running gateway over mTLS with an admin certificate: partners,
    /// certificates, routing rules.
    Admin(crate::admin_cli::AdminArgs),
    /// Register the first admin of a new deployment in its database (with the gateway stopped);
    /// refused once an active admin exists.
    BootstrapAdmin(crate::admin_cli::BootstrapArgs),
    /// Measure the gateway (release build): lead submission, bank events and account queries
    /// against a bare mTLS echo measured in the same run.
    Bench(crate::bench::BenchArgs),
    /// Watch a gateway's evidence log as a witness: check each checkpoint is consistent with
    /// the last one seen and cosign it; exit with status 3 on a split view.
    Witness(crate::witness_cli::WitnessArgs),
    /// Write a campaign report from the database (annex, overdue, dispatch, bulletin,
    /// collaboration, lookback) as CSV, XLSX and a self-contained HTML page.
    Report(crate::reports::cli::ReportArgs),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Write everything up to the latest checkpoint as JSON Lines: entries, checkpoints and the
    /// certificates that verify them. Without --payloads the export holds no personal data.
    Export {
        /// The gateway's configuration (its database and log key).
        #[arg(long, short)]
        config: PathBuf,
        /// Database URL (overrides the configuration's `database_url`).
        #[arg(long, env = "WAGELINK_DATABASE_URL")]
        database_url: Option<String>,
        /// Include payloads (they hold personal data: handle the file accordingly).
        #[arg(long)]
        payloads: bool,
        /// Where to write; standard output when absent.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Verify an export offline: rebuild the tree, check every checkpoint, every header
    /// signature and every payload digest; report the first fault.
    Verify {
        /// The export file.
        file: PathBuf,
        /// The log verifier key you trust (`<name>+<hash>+<key>`, from Audit.GetLogKeys or
        /// the operator). Without it the key the export names is used, which proves only that
        /// the export is consistent with itself.
        #[arg(long)]
        log_key: Option<String>,
    },
}

/// A witness raised the alarm (it has said why on its output).
#[derive(Debug)]
struct AlarmRaised;

impl std::fmt::Display for AlarmRaised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the witness raised an alarm")
    }
}

impl std::error::Error for AlarmRaised {}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A serving gateway installs its telemetry (log format, traces) from its configuration.
    if !matches!(cli.command, Command::Dev { .. } | Command::Serve { .. }) {
        let filter = tracing_subscriber::EnvFilter::try_from_env("WAGELINK_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<AlarmRaised>() => ExitCode::from(crate::witness_cli::ALARM_EXIT),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command to its end.
pub async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    match cli.command {
        Command::Dev {
            data_dir,
            listen,
            database_url,
        } => {
            let (config, _) = dev::prepare(&data_dir)?;
            let _telemetry = crate::telemetry::install(&config.telemetry, std::io::stderr)?;
            let running = start_dev(&data_dir, listen, database_url).await?;
            serve_until_signal(running).await
        }
        Command::Serve {
            config,
            listen,
            database_url,
        } => {
            let mut config = Config::load(&config)?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if database_url.is_some() {
                config.database_url = database_url;
            }
            let _telemetry = crate::telemetry::install(&config.telemetry, std::io::stderr)?;
            let (store, registry) = server::open(&config).await?;
            let running = server::start(&config, store, registry).await?;
            println!(
                "wagelink {} serving on {} (trust domain {}, database {})",
                env!("CARGO_PKG_VERSION"),
                running.local_addr,
                config.trust_domain,
                redact_url(&config.effective_database_url())
            );
            serve_until_signal(running).await
        }
        Command::Audit(AuditCommand::Export {
            config,
            database_url,
            payloads,
            out,
        }) => {
            let mut config = Config::load(&config)?;
            if database_url.is_some() {
                config.database_url = database_url;
            }
            let keys = server::log_keys(&config)?;
            let (store, _) = server::open(&config).await?;
            // Written beside the target and renamed when complete: a failed export never
            // leaves a partial file under the requested name.
            let partial = out.as_ref().map(|p| p.with_extension("partial"));
            let mut sink: Box<dyn std::io::Write> = match &partial {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .map_err(|e| format!("cannot create {}: {e}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let size = crate::ledger::export::export(
                &store,
                &keys,
                &config.trust_domain,
                payloads,
                &mut sink,
            )
            .await?;
            drop(sink);
            if let (Some(partial), Some(out)) = (&partial, &out) {
                std::fs::rename(partial, out)
                    .map_err(|e| format!("cannot move the export to {}: {e}", out.display()))?;
            }
            eprintln!(
                "exported {size} entries{}{}",
                if payloads {
                    " with payloads"
                } else {
                    " without payloads"
                },
                out.map(|p| format!(" to {}", p.display()))
                    .unwrap_or_default()
            );
            Ok(())
        }
        Command::Admin(args) => crate::admin_cli::run(args, &mut std::io::stdout()).await,
        Command::Report(args) => crate::reports::cli::run(args).await,
        Command::Witness(args) => {
            if crate::witness_cli::run(args, &mut std::io::stdout()).await? {
                return Err(Box::new(AlarmRaised));
            }
            Ok(())
        }
        Command::Bench(args) => crate::bench::run(args, &mut std::io::stdout())
            .await
            .map(|_| ()),
        Command::BootstrapAdmin(args) => {
            crate::admin_cli::bootstrap(args, &mut std::io::stdout()).await
        }
        Command::Audit(AuditCommand::Verify { file, log_key }) => {
            verify_export(&file, log_key.as_deref())
        }
        Command::Config { config } => {
            let mut config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::default(),
            };
            config.database_url = config.database_url.as_deref().map(redact_url);
            print!("{}", config.to_toml());
            Ok(())
        }
    }
}

/// `wagelink dev` up to the point where it serves: prepares the data directory, opens the
/// database, registers the roster and starts the server; prints how a partner connects.
pub async fn start_dev(
    data_dir: &Path,
    listen: Option<SocketAddr>,
    database_url: Option<String>,
) -> Result<Running, Box<dyn std::error::Error + Send + Sync>> {
    let (mut config, created) = dev::prepare(data_dir)?;
    if let Some(listen) = listen {
        config.listen = listen;
    }
    if database_url.is_some() {
        config.database_url = database_url;
    }
    let (store, registry) = server::open(&config).await?;
    let added = dev::register_roster(&registry, &config.data_dir).await?;
    let running = server::start(&config, store, registry).await?;
    print_dev_banner(&config, &running, created, added);
    Ok(running)
}

fn print_dev_banner(config: &Config, running: &Running, created: bool, added: usize) {
    let dir = config.data_dir.display();
    let example = dev::partner_dir(&config.data_dir, "hrss-500112");
    let e = example.display();
    let partners = running.registry.partners().len();
    println!(
        "wagelink {version} (dev) serving on {addr}\n\
         \x20 trust domain   {td}\n\
         \x20 database       {db}\n\
         \x20 data directory {dir} ({state})\n\
         \x20 partners       {partners} registered{added_note}; each has {dir}/partners/<id>/cert.pem, key.pem and ca.pem\n\
         \n\
         Connect as a partner with mutual TLS 1.3: trust ca.pem, present cert.pem + key.pem, server name localhost.\n\
         For example, as the Yubei district labour inspection office (hrss-500112), with grpcurl:\n\
         \x20 grpcurl -cacert {e}/ca.pem -cert {e}/cert.pem -key {e}/key.pem \\\n\
         \x20   -authority localhost {addr} grpc.health.v1.Health/Check\n\
         \x20 grpcurl -cacert {e}/ca.pem -cert {e}/cert.pem -key {e}/key.pem \\\n\
         \x20   -authority localhost {addr} wagelink.v1.Identity/WhoAmI\n\
         The partner list is {dir}/roster.csv. Stop with Ctrl-C.",
        version = env!("CARGO_PKG_VERSION"),
        addr = running.local_addr,
        td = config.trust_domain,
        db = redact_url(&config.effective_database_url()),
        state = if created { "created now" } else { "reused" },
        added_note = if added > 0 {
            format!(", {added} added now")
        } else {
            String::new()
        },
    );
}

fn verify_export(
    file: &Path,
    log_key: Option<&str>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let input =
        std::fs::File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    let bar = indicatif::ProgressBar::hidden();
    let result =
        crate::ledger::export::verify(std::io::BufReader::new(input), log_key, |done, total| {
            if done == 1 && total > 10_000 {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.set_length(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:40} {pos}/{len} entries ({per_sec}, {eta} left)",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
            }
            bar.set_position(done);
        });
    bar.finish_and_clear();
    match result {
        Ok(v) => {
            if log_key.is_none() {
                eprintln!(
                    "note: checked against the log key the export names; pass --log-key with the key you trust to rule out a re-signed export"
                );
            }
            println!(
                "export verified: {} entries, {} signatures, {} payloads, {} checkpoints; root {}",
                v.entries,
                v.signatures,
                v.payloads,
                v.checkpoints,
                hex::encode(v.root)
            );
            Ok(())
        }
        Err(fault) => Err(format!("the export is NOT valid: {fault}").into()),
    }
}

async fn serve_until_signal(
    running: Running,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let stop = running.shutdown_handle();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    running.wait().await?;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
