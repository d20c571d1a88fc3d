//! Behaviour that wraps every call, as tower layers over the gRPC HTTP/2 service (outermost
//! first): [`trace`] gives each call its span and metrics; [`authenticate`] turns the connection's certificate into a [`VerifiedPartner`];
//! [`rate`] and [`calls`] enforce the per-partner request rate and concurrent calls;
//! [`deadline`] bounds unary calls; [`message_size`] refuses oversized messages; [`unbuilt`]
//! answers the contract's not-yet-built RPCs; [`authorize`] applies the kind × RPC table.
//! Each refusal is a precise gRPC status.
//!
//! [`VerifiedPartner`]: crate::identity::VerifiedPartner

pub mod admission;
pub mod authenticate;
pub mod authorize;
pub mod calls;
pub mod deadline;
pub mod message_size;
pub mod rate;
pub mod trace;
pub mod unbuilt;

/// The request type every layer sees.
pub type HttpRequest = http::Request<tonic::body::Body>;
/// The response type every layer returns.
pub type HttpResponse = http::Response<tonic::body::Body>;

/// A gRPC error response carrying `status`.
pub fn refuse(status: tonic::Status) -> HttpResponse {
    status.into_http()
}
