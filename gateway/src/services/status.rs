//! The one place domain errors become gRPC statuses.

use tonic::Status;

use crate::envelope::SubmitError;
use crate::ledger::log::AppendError;
use crate::ledger::merkle::ProofError;
use crate::refusal::Refused;
use crate::store::StoreError;

impl From<SubmitError> for Status {
    fn from(e: SubmitError) -> Self {
        let message = e.to_string();
        match e {
            SubmitError::MalformedHeader(_)
            | SubmitError::MissingField(_)
            | SubmitError::BadMessageId(_)
            | SubmitError::PayloadDigest { .. }
            | SubmitError::WrongPayloadType { .. }
            | SubmitError::UndecodablePayload { .. }
            | SubmitError::TooManySignatures { .. } => Status::invalid_argument(message),
            SubmitError::SenderMismatch { .. } => Status::permission_denied(message),
            SubmitError::Unsigned | SubmitError::Key(_) | SubmitError::BadSignature { .. } => {
                Status::unauthenticated(message)
            }
            SubmitError::Append(AppendError::Conflict { .. }) => Status::already_exists(message),
            SubmitError::Append(AppendError::OutsideWindow { .. }) => {
                Status::invalid_argument(message)
            }
            SubmitError::Append(AppendError::Unavailable(_)) => Status::unavailable(message),
            SubmitError::Append(AppendError::Case(e)) => e.into(),
        }
    }
}

impl From<Refused> for Status {
    fn from(e: Refused) -> Self {
        let message = e.to_string();
        match e {
            Refused::NotFound(_) => Status::not_found(message),
            Refused::PermissionDenied(_) => Status::permission_denied(message),
            Refused::FailedPrecondition(_) => Status::failed_precondition(message),
            Refused::InvalidArgument(_) => Status::invalid_argument(message),
            Refused::AlreadyExists(_) => Status::already_exists(message),
            Refused::Unavailable(_) => Status::unavailable(message),
            Refused::DeadlineExceeded(_) => Status::deadline_exceeded(message),
            Refused::ResourceExhausted(_) => Status::resource_exhausted(message),
        }
    }
}

impl From<ProofError> for Status {
    fn from(e: ProofError) -> Self {
        let message = e.to_string();
        match e {
            ProofError::IndexOutOfRange { .. } | ProofError::BadRange { .. } => {
                Status::invalid_argument(message)
            }
            ProofError::SizeTooLarge { .. } => Status::failed_precondition(message),
            ProofError::WrongLength | ProofError::RootMismatch => Status::internal(message),
        }
    }
}

/// Storage failures reach callers as UNAVAILABLE (retry) without internal detail.
pub fn store_unavailable(e: StoreError) -> Status {
    tracing::error!(error = %e, "storage failure");
    Status::unavailable("the gateway's storage is unavailable; retry shortly")
}
