//! The gRPC services: thin adapters that decode a request, take the [`VerifiedPartner`] the
//! layers attached, call the domain and encode the answer. Conversions between domain types and
//! wagelink.v1 messages live in [`convert`].
//!
//! [`VerifiedPartner`]: crate::identity::VerifiedPartner

pub mod audit;
pub mod cases;
pub mod convert;
pub mod delivery;
pub mod identity;
pub mod status;
