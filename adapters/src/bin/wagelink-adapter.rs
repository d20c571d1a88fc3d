//! `wagelink-adapter <config.toml>`: runs the adapters a configuration file names (today: the
//! bank adapter, `[bank]`). See adapters/src/bank/README.md for the file.

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: wagelink-adapter <config.toml>");
        std::process::exit(2);
    };
    let config = match wagelink_adapters::bank::runner::AdapterConfig::load(path.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wagelink-adapter: {e}");
            std::process::exit(2);
        }
    };
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop_tx.send(true);
    });
    let Some(bank) = config.bank else {
        eprintln!("wagelink-adapter: {path} names no adapter (add a [bank] section)");
        std::process::exit(2);
    };
    if let Err(e) = wagelink_adapters::bank::runner::run_bank(config.gateway, bank, stop).await {
        eprintln!("wagelink-adapter: {e}");
        std::process::exit(1);
    }
}
