//! Turns the connection's verified certificate into the [`VerifiedPartner`] handlers receive,
//! re-checking the registry on every request so that a suspension or revocation also stops
//! calls on connections opened before it.

use std::sync::Arc;

use tonic::Status;

use super::HttpRequest;
use super::admission::Policy;
use crate::identity::{Refusal, Registry, VerifiedPartner};
use crate::tls::PeerInfo;

#[derive(Clone)]
pub struct Authenticate {
    registry: Arc<Registry>,
}

impl Authenticate {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }
}

impl Policy for Authenticate {
    type Permit = ();

    fn admit(&self, request: &mut HttpRequest) -> Result<(), Status> {
        let Some(peer) = request.extensions().get::<PeerInfo>() else {
            return Err(Status::unauthenticated(
                "this connection carries no verified client certificate; connect with mutual TLS using your partner certificate",
            ));
        };
        let now = crate::store::now_unix();
        match self.registry.check_pin(&peer.certificate_sha256, now) {
            Ok(partner) => {
                request.extensions_mut().insert::<VerifiedPartner>(partner);
                Ok(())
            }
            Err(refusal) => {
                let status = match &refusal {
                    Refusal::Suspended { .. } => Status::permission_denied(format!(
                        "{refusal}; calls are refused until then"
                    )),
                    _ => Status::unauthenticated(format!(
                        "{refusal}; reconnect with a valid registered certificate"
                    )),
                };
                self.registry.record_refusal(refusal);
                Err(status)
            }
        }
    }
}

/// The partner a request was authenticated as; handlers call this first.
pub fn partner<T>(request: &tonic::Request<T>) -> Result<&VerifiedPartner, Status> {
    request
        .extensions()
        .get::<VerifiedPartner>()
        .ok_or_else(|| {
            Status::unauthenticated("no verified partner on this call; connect with mutual TLS")
        })
}
