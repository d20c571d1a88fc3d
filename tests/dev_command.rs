//! The README's first command, `wagelink dev`: on an empty directory it creates the dev
//! federation and serves; a second run reuses the directory.

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use wagelink_adapters::client::{self, Credentials, GatewayAddress};
use wagelink_gateway::cli::start_dev;

async fn health_as(addr: std::net::SocketAddr, partner_dir: &std::path::Path) -> ServingStatus {
    let address = GatewayAddress {
        uri: format!("https://{addr}"),
        server_name: "localhost".into(),
    };
    let channel = client::connect(&address, &Credentials::from_dir(partner_dir).unwrap())
        .await
        .unwrap();
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

#[tokio::test]
async fn dev_creates_a_federation_then_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("wagelink-dev");
    let listen = Some("127.0.0.1:0".parse().unwrap());

    let first = start_dev(&data, listen, None).await.expect("first run");
    for file in [
        "wagelink.toml",
        "wagelink.db",
        "roster.csv",
        "pki/federation-ca.pem",
        "pki/gateway.pem",
    ] {
        assert!(data.join(file).exists(), "{file} missing");
    }
    let partners = first.registry.partners();
    assert!(
        partners.len() >= 39 + 3 + 4 + 2 + 3,
        "{} partners",
        partners.len()
    );
    for p in &partners {
        let folder = data.join("partners").join(p.id.as_str());
        for file in ["cert.pem", "key.pem", "ca.pem"] {
            assert!(folder.join(file).exists(), "{}/{file} missing", p.id);
        }
    }
    assert_eq!(
        health_as(first.local_addr, &data.join("partners/hrss-500112")).await,
        ServingStatus::Serving
    );
    let ca_before = std::fs::read(data.join("pki/federation-ca.pem")).unwrap();
    first.shutdown().await.unwrap();

    let second = start_dev(&data, listen, None).await.expect("second run");
    assert_eq!(
        std::fs::read(data.join("pki/federation-ca.pem")).unwrap(),
        ca_before,
        "the CA was regenerated"
    );
    assert_eq!(second.registry.partners().len(), partners.len());
    // Certificates issued by the first run still work.
    assert_eq!(
        health_as(second.local_addr, &data.join("partners/bank-102")).await,
        ServingStatus::Serving
    );
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_broken_configuration_is_named_not_panicked_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("wagelink-dev");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("wagelink.toml"), "listen = \"not an address\"\n").unwrap();
    let err = match start_dev(&data, None, None).await {
        Ok(_) => panic!("a broken configuration was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("wagelink.toml") && err.contains("listen"),
        "{err}"
    );
}
