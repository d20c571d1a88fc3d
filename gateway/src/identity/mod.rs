//! Identity and trust (DESIGN §4): who a connection belongs to.
//!
//! The rest of the gateway sees a [`VerifiedPartner`] — id, kind, jurisdiction — and never a
//! certificate. A connection is accepted only when its certificate chains to the federation CA,
//! is pinned in the registry by its SHA-256, is not revoked, is inside its validity, and belongs
//! to an active partner; the partner id comes from the SAN URI
//! `spiffe://<trust-domain>/partner/<id>`.

mod certificate;
mod partner;
mod registry;
mod verifier;

pub use certificate::{
    CertificateError, CertificateFacts, fingerprint, inspect as inspect_certificate,
    partner_uri_prefix,
};
pub use partner::{
    Industry, Jurisdiction, Partner, PartnerError, PartnerId, PartnerKind, PartnerStatus, Region,
    RegionCode, VerifiedPartner, regions,
};
pub use registry::{KeyRefusal, Refusal, RefusalRecord, Registry, RegistryError};
pub use verifier::{PartnerVerifier, PeerChains};
