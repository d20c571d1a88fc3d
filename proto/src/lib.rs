//! The wagelink contract, generated from `proto/wagelink/v1/*.proto`.
//!
//! The `.proto` files are the public interface agency and bank systems code against; this crate
//! only makes them usable from Rust (messages, clients, servers) and carries the encoded file
//! descriptor set for gRPC reflection.

/// Package `wagelink.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("wagelink.v1");
}

/// The encoded `FileDescriptorSet` of every wagelink/v1 file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/wagelink_descriptor.bin"));

pub mod envelope;

impl v1::case_action::Action {
    /// The step's field name in `CaseAction` (`sign_for`, `resolve`, …), as messages and
    /// adapters name it.
    pub fn name(&self) -> &'static str {
        use v1::case_action::Action as A;
        match self {
            A::SignFor(_) => "sign_for",
            A::Progress(_) => "progress",
            A::ReturnCase(_) => "return_case",
            A::Forward(_) => "forward",
            A::Resolve(_) => "resolve",
            A::Feedback(_) => "feedback",
            A::Close(_) => "close",
            A::FilingDecision(_) => "filing_decision",
            A::Supervise(_) => "supervise",
            A::Sanction(_) => "sanction",
            A::Transfer(_) => "transfer",
            A::Escalate(_) => "escalate",
            A::CourtResult(_) => "court_result",
        }
    }
}
