//! Requests per second per partner, as a token bucket: `requests_per_second` sustained,
//! `burst` at once. A refusal is RESOURCE_EXHAUSTED and says when to retry, in the message and
//! in the `retry-after-ms` response metadata.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::Status;

use super::HttpRequest;
use super::admission::Policy;
use crate::identity::{PartnerId, VerifiedPartner};

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

#[derive(Clone)]
pub struct RateLimit {
    per_second: f64,
    burst: f64,
    buckets: Arc<Mutex<HashMap<PartnerId, Bucket>>>,
}

impl RateLimit {
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Arc::default(),
        }
    }

    /// Takes one token for `partner` at `now`, or says how long until one is available.
    pub fn take(&self, partner: &PartnerId, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(partner.clone()).or_insert(Bucket {
            tokens: self.burst,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }
}

impl Policy for RateLimit {
    type Permit = ();

    fn admit(&self, request: &mut HttpRequest) -> Result<(), Status> {
        let Some(partner) = request.extensions().get::<VerifiedPartner>() else {
            return Ok(());
        };
        self.take(&partner.id, Instant::now()).map_err(|wait| {
            let ms = wait.as_millis().max(1);
            let mut status = Status::resource_exhausted(format!(
                "partner {} sent more than {} requests per second (burst {}); retry after {ms} ms",
                partner.id, self.per_second, self.burst
            ));
            if let Ok(value) = ms.to_string().parse() {
                status.metadata_mut().insert("retry-after-ms", value);
            }
            status
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate_holds() {
        let limit = RateLimit::new(10, 3);
        let a: PartnerId = "bank-102".parse().unwrap();
        let b: PartnerId = "bank-105".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limit.take(&a, t0).is_ok());
        }
        let wait = limit.take(&a, t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Partners do not share a bucket.
        assert!(limit.take(&b, t0).is_ok());
        // After 100 ms at 10/s one token is back, and only one.
        let t1 = t0 + Duration::from_millis(100);
        assert!(limit.take(&a, t1).is_ok());
        assert!(limit.take(&a, t1).is_err());
    }
}
