//! Federation with peer gateways: the certificates of other federations' partners whose
//! envelopes a peer relayed here, and the mapping between a peer's case ids and ours.

use sqlx::Row;

use super::{LedgerTx, Store, StoreError, now_unix};

/// A certificate of another federation, checked against its peer's CA when first seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignCertificate {
    pub sha256: String,
    pub partner_id: String,
    pub trust_domain: String,
    pub peer: String,
    pub der: Vec<u8>,
}

impl Store {
    /// Keeps a foreign certificate (the first record of a SHA-256 stays).
    pub async fn insert_foreign_certificate(
        &self,
        c: &ForeignCertificate,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO foreign_certificates (sha256, partner_id, trust_domain, peer, der, first_seen) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(&c.sha256)
        .bind(&c.partner_id)
        .bind(&c.trust_domain)
        .bind(&c.peer)
        .bind(&c.der)
        .bind(now_unix())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every foreign certificate, by SHA-256.
    pub async fn foreign_certificates(&self) -> Result<Vec<ForeignCertificate>, StoreError> {
        let rows = sqlx::query(
            "SELECT sha256, partner_id, trust_domain, peer, der FROM foreign_certificates ORDER BY sha256",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ForeignCertificate {
                    sha256: r.try_get("sha256")?,
                    partner_id: r.try_get("partner_id")?,
                    trust_domain: r.try_get("trust_domain")?,
                    peer: r.try_get("peer")?,
                    der: r.try_get("der")?,
                })
            })
            .collect()
    }

    /// Our case for the peer's case `remote_case_id`, if a lead relayed either way linked them.
    pub async fn local_case(
        &self,
        peer: &str,
        remote_case_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT local_case_id FROM federated_cases WHERE peer = $1 AND remote_case_id = $2",
        )
        .bind(peer)
        .bind(remote_case_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("local_case_id")).transpose()?)
    }

    /// The peer's case linked to our case `local_case_id`, if any.
    pub async fn remote_case(
        &self,
        peer: &str,
        local_case_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT remote_case_id FROM federated_cases WHERE peer = $1 AND local_case_id = $2 ORDER BY remote_case_id LIMIT 1",
        )
        .bind(peer)
        .bind(local_case_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("remote_case_id")).transpose()?)
    }

    /// The peer gateway our case `local_case_id` is linked to, if a relayed lead linked it.
    pub async fn case_peer(&self, local_case_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT peer FROM federated_cases WHERE local_case_id = $1 ORDER BY peer LIMIT 1",
        )
        .bind(local_case_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("peer")).transpose()?)
    }
}

impl LedgerTx {
    /// Links the peer's case `remote_case_id` to our `local_case_id` (the first link stays).
    pub async fn map_case(
        &mut self,
        peer: &str,
        remote_case_id: &str,
        local_case_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO federated_cases (peer, remote_case_id, local_case_id) VALUES ($1, $2, $3) \
             ON CONFLICT (peer, remote_case_id) DO NOTHING",
        )
        .bind(peer)
        .bind(remote_case_id)
        .bind(local_case_id)
        .execute(&mut self.tx)
        .await?;
        Ok(())
    }
}
