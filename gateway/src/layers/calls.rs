//! Concurrent calls per partner. A call holds its permit until its response body ends, so a
//! long-lived stream counts for as long as it is open. A refusal is RESOURCE_EXHAUSTED.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use super::HttpRequest;
use super::admission::Policy;
use crate::identity::{PartnerId, VerifiedPartner};

#[derive(Clone)]
pub struct ConcurrentCalls {
    max: u32,
    open: Arc<Mutex<HashMap<PartnerId, Arc<Semaphore>>>>,
}

impl ConcurrentCalls {
    pub fn new(max: u32) -> Self {
        Self {
            max: max.max(1),
            open: Arc::default(),
        }
    }

    /// A permit for one more call of `partner`, if it is under the limit.
    pub fn try_open(&self, partner: &PartnerId) -> Option<OwnedSemaphorePermit> {
        let semaphore = self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(partner.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.max as usize)))
            .clone();
        semaphore.try_acquire_owned().ok()
    }
}

impl Policy for ConcurrentCalls {
    type Permit = Option<OwnedSemaphorePermit>;

    fn admit(&self, request: &mut HttpRequest) -> Result<Self::Permit, Status> {
        let Some(partner) = request.extensions().get::<VerifiedPartner>() else {
            return Ok(None);
        };
        match self.try_open(&partner.id) {
            Some(permit) => Ok(Some(permit)),
            None => Err(Status::resource_exhausted(format!(
                "partner {} already has {} calls open, the most allowed; close a stream or wait for a call to finish",
                partner.id, self.max
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_come_back_when_calls_end() {
        let calls = ConcurrentCalls::new(2);
        let p: PartnerId = "police-500103".parse().unwrap();
        let a = calls.try_open(&p).unwrap();
        let _b = calls.try_open(&p).unwrap();
        assert!(calls.try_open(&p).is_none());
        assert!(calls.try_open(&"court-500103".parse().unwrap()).is_some());
        drop(a);
        assert!(calls.try_open(&p).is_some());
    }
}
