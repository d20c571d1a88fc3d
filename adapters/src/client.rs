//! Connecting to the gateway as a partner: mutual TLS with the partner's certificate, the
//! gateway verified against the federation CA.

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("gateway address {0:?} is not a valid URI (use https://host:port)")]
    BadAddress(String),
    #[error("cannot connect to the gateway at {address}: {source}")]
    Connect {
        address: String,
        source: tonic::transport::Error,
    },
}

/// A partner's TLS material: its certificate and key, and the federation CA that issued the
/// gateway's certificate.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

fn read(path: PathBuf) -> Result<Vec<u8>, ClientError> {
    std::fs::read(&path).map_err(|source| ClientError::Read { path, source })
}

impl Credentials {
    /// Reads `cert.pem`, `key.pem` and `ca.pem` from a partner folder (the layout
    /// `wagelink dev` writes under `partners/<id>/`).
    pub fn from_dir(dir: &Path) -> Result<Self, ClientError> {
        Ok(Self {
            ca_pem: read(dir.join("ca.pem"))?,
            cert_pem: read(dir.join("cert.pem"))?,
            key_pem: read(dir.join("key.pem"))?,
        })
    }
}

/// Where and how to reach the gateway.
#[derive(Debug, Clone)]
pub struct GatewayAddress {
    /// `https://host:port`.
    pub uri: String,
    /// The name the gateway's certificate is checked against (`localhost` in dev).
    pub server_name: String,
}

fn endpoint(address: &GatewayAddress, tls: ClientTlsConfig) -> Result<Endpoint, ClientError> {
    let bad = || ClientError::BadAddress(address.uri.clone());
    Ok(Channel::from_shared(address.uri.clone())
        .map_err(|_| bad())?
        .tls_config(tls.domain_name(address.server_name.clone()))
        .map_err(|source| ClientError::Connect {
            address: address.uri.clone(),
            source,
        })?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true))
}

/// Opens a mutual-TLS channel to the gateway as the partner `credentials` belong to.
pub async fn connect(
    address: &GatewayAddress,
    credentials: &Credentials,
) -> Result<Channel, ClientError> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&credentials.ca_pem))
        .identity(Identity::from_pem(
            &credentials.cert_pem,
            &credentials.key_pem,
        ));
    open(address, tls).await
}

async fn open(address: &GatewayAddress, tls: ClientTlsConfig) -> Result<Channel, ClientError> {
    endpoint(address, tls)?
        .connect()
        .await
        .map_err(|source| ClientError::Connect {
            address: address.uri.clone(),
            source,
        })
}

/// Opens a TLS channel that presents no client certificate. The gateway refuses every call
/// on it; this exists so tests and diagnostics can show exactly that.
pub async fn connect_anonymous(
    address: &GatewayAddress,
    ca_pem: &[u8],
) -> Result<Channel, ClientError> {
    open(
        address,
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)),
    )
    .await
}
