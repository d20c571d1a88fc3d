//! Certificate expiry: a warning in the log at each threshold (by default 30, 7 and 1 days)
//! before a partner certificate expires, given once per certificate and threshold whichever
//! replica sees it first.

use std::sync::Arc;
use std::time::Duration;

use crate::identity::{PartnerStatus, Registry};
use crate::store::{CertificateStatus, Store, StoreError};

/// One certificate close to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiring {
    pub sha256: String,
    pub partner: String,
    pub not_after: i64,
    /// The threshold crossed (days).
    pub threshold_days: u32,
}

/// The active certificates of active partners that crossed a threshold and were not warned
/// about at that threshold before; records each warning as given.
pub async fn due_warnings(
    store: &Store,
    registry: &Registry,
    thresholds: &[u32],
    now: i64,
) -> Result<Vec<Expiring>, StoreError> {
    let mut due = Vec::new();
    for cert in store.certificates().await? {
        if cert.status != CertificateStatus::Active || cert.facts.not_after < now {
            continue;
        }
        let active = registry
            .partner(&cert.facts.partner_id)
            .is_some_and(|p| p.status == PartnerStatus::Active);
        if !active {
            continue;
        }
        let left = cert.facts.not_after - now;
        // The tightest threshold crossed: a certificate found with 5 days left is warned about
        // at 7, not also at 30.
        let Some(threshold) = thresholds
            .iter()
            .copied()
            .filter(|t| left <= i64::from(*t) * 86_400)
            .min()
        else {
            continue;
        };
        if store
            .note_expiry_warning(&cert.facts.sha256, threshold, now)
            .await?
        {
            due.push(Expiring {
                sha256: cert.facts.sha256.clone(),
                partner: cert.facts.partner_id.to_string(),
                not_after: cert.facts.not_after,
                threshold_days: threshold,
            });
        }
    }
    Ok(due)
}

/// Warns about expiring certificates every `every`, until shutdown.
pub async fn expiry_scan(
    store: Store,
    registry: Arc<Registry>,
    thresholds: Vec<u32>,
    every: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::server::stopped(shutdown.clone()) => return,
        }
        match due_warnings(&store, &registry, &thresholds, crate::store::now_unix()).await {
            Ok(due) => {
                for e in due {
                    let days_left = (e.not_after - crate::store::now_unix()).max(0) / 86_400;
                    tracing::warn!(
                        partner = %e.partner,
                        certificate = %e.sha256,
                        not_after = e.not_after,
                        days_left,
                        threshold_days = e.threshold_days,
                        "a partner certificate expires within {} days: issue its successor (wagelink admin certificate rotate) before it does",
                        e.threshold_days
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the certificate expiry scan failed; retrying next tick")
            }
        }
    }
}
