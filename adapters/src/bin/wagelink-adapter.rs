//! `wagelink-adapter <config.toml>`: runs the adapter a configuration file names: the bank
//! adapter (`[bank]`, adapters/src/bank/README.md) or the agency adapter (`[agency]`,
//! adapters/src/agency/README.md).

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
    let result = match (config.bank, config.agency) {
        (Some(bank), None) => {
            wagelink_adapters::bank::runner::run_bank(config.gateway, bank, stop).await
        }
        (None, Some(agency)) => {
            wagelink_adapters::agency::run_agency(config.gateway, agency, stop).await
        }
        _ => Err(format!(
            "{path} must name exactly one adapter: a [bank] or an [agency] section"
        )),
    };
    if let Err(e) = result {
        eprintln!("wagelink-adapter: {e}");
        std::process::exit(1);
    }
}
