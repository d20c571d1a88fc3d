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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Jurisdiction, Partner, PartnerKind};
    use crate::pki::{FederationCa, LeafSpec};
    use crate::store::testing::each_backend;

    #[tokio::test]
    async fn each_threshold_warns_once_and_only_for_live_certificates() {
        for db in each_backend().await {
            let store = db.store().clone();
            let registry = Registry::load(store.clone(), "test.wagelink")
                .await
                .unwrap();
            let ca = FederationCa::generate("test.wagelink").unwrap();
            for (id, status) in [
                ("bank-102", PartnerStatus::Active),
                ("bank-105", PartnerStatus::Suspended),
            ] {
                registry
                    .register_partner(&Partner {
                        id: id.parse().unwrap(),
                        kind: PartnerKind::Bank,
                        name: id.into(),
                        jurisdiction: Jurisdiction {
                            regions: ["500000".parse().unwrap()].into(),
                            industry: None,
                        },
                        status,
                    })
                    .await
                    .unwrap();
            }
            let issue = |id: &str, days: i64| {
                ca.issue_partner(
                    "test.wagelink",
                    &LeafSpec::valid_for_days(id.parse().unwrap(), id, days),
                )
                .unwrap()
                .der
            };
            let mut pinned = Vec::new();
            for (id, days) in [("bank-102", 5), ("bank-102", 365), ("bank-105", 5)] {
                let der = issue(id, days);
                pinned.push(registry.register_certificate(&der).await.unwrap().sha256);
            }
            let [in_five_days, in_a_year, suspended] = pinned.try_into().unwrap();
            let now = crate::store::now_unix();

            let due = due_warnings(&store, &registry, &[30, 7, 1], now)
                .await
                .unwrap();
            let warned: Vec<(&str, u32)> = due
                .iter()
                .map(|e| (e.sha256.as_str(), e.threshold_days))
                .collect();
            assert_eq!(warned, vec![(in_five_days.as_str(), 7)], "{}", db.name);
            assert!(
                !warned
                    .iter()
                    .any(|(s, _)| *s == in_a_year || *s == suspended)
            );
            // Given once: the next scan (here or on another replica) is silent.
            assert!(
                due_warnings(&store, &registry, &[30, 7, 1], now)
                    .await
                    .unwrap()
                    .is_empty()
            );
            // Four days later the 1-day threshold is crossed.
            let later = now + 4 * 86_400 + 3600;
            let due = due_warnings(&store, &registry, &[30, 7, 1], later)
                .await
                .unwrap();
            assert_eq!(due.len(), 1, "{}", db.name);
            assert_eq!(due[0].threshold_days, 1);
            // A revoked certificate is not warned about.
            registry
                .revoke_certificate(&in_a_year, "superseded")
                .await
                .unwrap();
            let near_end = now + 364 * 86_400;
            assert!(
                due_warnings(&store, &registry, &[30, 7, 1], near_end)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
    }
}
