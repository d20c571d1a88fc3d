//! The TLS 1.3 endpoint (no session resumption, so every connection is checked in full): loads the gateway's certificate and the federation CA, verifies every
//! client with [`PartnerVerifier`], and hands tonic connections that know which certificate
//! they were made with. tonic's own TLS config has no hook for a custom verifier, so TLS is
//! terminated here and the streams are fed to `serve_with_incoming`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::config::TlsConfig;
use crate::identity::{PartnerVerifier, Registry};

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no usable {what}: {why}")]
    Pem {
        path: String,
        what: &'static str,
        why: String,
    },
    #[error("the TLS configuration is not usable: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the federation CA is not usable to verify partners: {0}")]
    Verifier(String),
}

/// The ring provider, installed as the process default once: a dependency that enables
/// rustls's default provider would otherwise leave two and panic the first handshake.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Every certificate in a PEM buffer, as DER.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.as_ref().to_vec()).map_err(|e| e.to_string()))
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = pem_certificates(&pem).map_err(|why| TlsError::Pem {
        path: path.display().to_string(),
        what: "certificate",
        why,
    })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.display().to_string(),
            what: "certificate",
            why: "the file has no BEGIN CERTIFICATE block".into(),
        });
    }
    Ok(certs.into_iter().map(CertificateDer::from).collect())
}

/// The chain check of partner certificates: valid, client-auth, issued under the federation
/// CA(s) in `ca` (PEM).
pub fn chain_verifier(ca: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: ca.display().to_string(),
            what: "CA certificate",
            why: e.to_string(),
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))
}

/// The rustls server configuration: TLS 1.3 only, h2, client certificates mandatory and
/// checked against the federation CA (or, for a peer gateway, its own CA) and the registry.
pub fn server_config(
    tls: &TlsConfig,
    registry: Arc<Registry>,
    peers: crate::identity::PeerChains,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = chain_verifier(&tls.ca)?;
    let verifier = Arc::new(PartnerVerifier::new(chain, registry).with_peers(peers));
    let key_pem = read(&tls.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        path: tls.key.display().to_string(),
        what: "private key",
        why: e.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(&tls.certificate)?, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    // No session resumption: a resumed session skips the client-certificate check, and every
    // connection must meet the registry of the moment (revocation, suspension).
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// What every request on a connection knows about it; tonic puts it in request extensions.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub remote_addr: Option<SocketAddr>,
    /// SHA-256 (hex) of the client certificate the handshake verified.
    pub certificate_sha256: String,
}

/// A verified TLS connection from a partner. It ends by itself, streams and all, when the
/// registry stops accepting its certificate (revoked, expired, partner suspended).
pub struct PartnerConn {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl PartnerConn {
    /// Wraps a completed handshake; `None` when the session has no client certificate (which
    /// the mandatory verifier makes impossible, so such a connection is dropped).
    pub fn new(
        inner: tokio_rustls::server::TlsStream<TcpStream>,
        registry: &Registry,
    ) -> Option<Self> {
        let (tcp, session) = inner.get_ref();
        let leaf = session.peer_certificates()?.first()?;
        let info = PeerInfo {
            remote_addr: tcp.peer_addr().ok(),
            certificate_sha256: crate::identity::fingerprint(leaf.as_ref()),
        };
        let closed = Box::pin(
            registry
                .connection_token(&info.certificate_sha256)
                .cancelled_owned(),
        );
        Some(Self {
            inner,
            info,
            closed,
        })
    }

    /// An error once the registry has withdrawn this connection's certificate.
    fn check_open(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.closed.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the partner certificate of this connection is no longer accepted",
            ));
        }
        Ok(())
    }
}

impl tonic::transport::server::Connected for PartnerConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for PartnerConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check_open(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PartnerConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check_open(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check_open(cx)?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
