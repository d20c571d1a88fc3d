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
                // Every refusal here is about the caller's credentials (revoked, expired,
                // suspended): UNAUTHENTICATED, as the contract documents.
                let status = Status::unauthenticated(match &refusal {
                    Refusal::Suspended { .. } => format!("{refusal}; calls are refused until then"),
                    _ => format!("{refusal}; reconnect with a valid registered certificate"),
                });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Jurisdiction, Partner, PartnerKind, PartnerStatus};
    use crate::pki::{FederationCa, LeafSpec};
    use crate::store::testing::TestDb;

    fn request(peer: Option<&str>) -> HttpRequest {
        let mut request = http::Request::new(tonic::body::Body::empty());
        if let Some(sha256) = peer {
            request.extensions_mut().insert(PeerInfo {
                remote_addr: None,
                certificate_sha256: sha256.to_owned(),
            });
        }
        request
    }

    /// Between a handshake and a later call the partner may be suspended or its certificate
    /// revoked; each call is checked again.
    #[tokio::test]
    async fn every_call_is_checked_against_the_registry_of_now() {
        let db = TestDb::sqlite().await;
        let registry = Registry::load(db.store().clone(), "t.example")
            .await
            .unwrap();
        let partner = Partner {
            id: "court-500103".parse().unwrap(),
            kind: PartnerKind::Court,
            name: "Yuzhong court".into(),
            jurisdiction: Jurisdiction {
                regions: ["500103".parse().unwrap()].into(),
                industry: None,
            },
            status: PartnerStatus::Active,
        };
        registry.register_partner(&partner).await.unwrap();
        let ca = FederationCa::generate("t.example").unwrap();
        let spec = LeafSpec::valid_for_days(partner.id.clone(), "court", 10);
        let issued = ca.issue_partner("t.example", &spec).unwrap();
        let facts = registry.register_certificate(&issued.der).await.unwrap();
        let policy = Authenticate::new(registry.clone());

        let mut ok = request(Some(&facts.sha256));
        policy.admit(&mut ok).unwrap();
        let seen = ok.extensions().get::<VerifiedPartner>().unwrap();
        assert_eq!(
            (seen.id.as_str(), seen.kind),
            ("court-500103", PartnerKind::Court)
        );

        let status = policy.admit(&mut request(None)).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);

        registry
            .set_partner_status(&partner.id, PartnerStatus::Suspended)
            .await
            .unwrap();
        let status = policy.admit(&mut request(Some(&facts.sha256))).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(
            status.message().contains("suspended"),
            "{}",
            status.message()
        );

        registry
            .set_partner_status(&partner.id, PartnerStatus::Active)
            .await
            .unwrap();
        registry
            .revoke_certificate(&facts.sha256, "superseded")
            .await
            .unwrap();
        let status = policy.admit(&mut request(Some(&facts.sha256))).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(
            status.message().contains("revoked: superseded"),
            "{}",
            status.message()
        );
    }
}
