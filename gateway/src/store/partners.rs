//! The partner registry's tables: partners and their pinned certificates.

use std::collections::BTreeSet;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, now_unix};
use crate::identity::{CertificateFacts, Jurisdiction, Partner, PartnerId};

/// Whether a registered certificate may still be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateStatus {
    Active,
    /// Revoked: why (free text), when (Unix seconds) and the RFC 5280 CRLReason code, if any.
    Revoked {
        reason: String,
        at: i64,
        code: Option<u8>,
    },
}

/// A certificate as the registry pins it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    pub facts: CertificateFacts,
    pub der: Vec<u8>,
    pub status: CertificateStatus,
}

fn corrupt(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {err}"))
}

pub(super) fn partner_from_row(row: &AnyRow) -> Result<Partner, StoreError> {
    let id: String = row.try_get("id")?;
    let regions: String = row.try_get("regions")?;
    let industry: Option<String> = row.try_get("industry")?;
    let regions = regions
        .split(',')
        .filter(|r| !r.is_empty())
        .map(|r| r.parse())
        .collect::<Result<BTreeSet<_>, _>>()
        .map_err(|e| corrupt(&id, e))?;
    Ok(Partner {
        id: id.parse().map_err(|e| corrupt(&id, e))?,
        kind: row
            .try_get::<String, _>("kind")?
            .parse()
            .map_err(|e| corrupt(&id, e))?,
        name: row.try_get("name")?,
        jurisdiction: Jurisdiction {
            regions,
            industry: industry
                .map(|i| i.parse())
                .transpose()
                .map_err(|e| corrupt(&id, e))?,
        },
        status: row
            .try_get::<String, _>("status")?
            .parse()
            .map_err(|e| corrupt(&id, e))?,
    })
}

pub(super) fn certificate_from_row(row: &AnyRow) -> Result<CertificateRecord, StoreError> {
    let sha256: String = row.try_get("sha256")?;
    let partner: String = row.try_get("partner_id")?;
    let status: String = row.try_get("status")?;
    let status = match status.as_str() {
        "active" => CertificateStatus::Active,
        "revoked" => CertificateStatus::Revoked {
            reason: row
                .try_get::<Option<String>, _>("revocation_reason")?
                .unwrap_or_default(),
            at: row
                .try_get::<Option<i64>, _>("revoked_at")?
                .unwrap_or_default(),
            code: row
                .try_get::<Option<i64>, _>("revocation_code")?
                .and_then(|c| u8::try_from(c).ok()),
        },
        other => return Err(corrupt(&sha256, format!("certificate status {other:?}"))),
    };
    Ok(CertificateRecord {
        facts: CertificateFacts {
            partner_id: partner.parse().map_err(|e| corrupt(&sha256, e))?,
            serial: row.try_get("serial")?,
            not_before: row.try_get("not_before")?,
            not_after: row.try_get("not_after")?,
            key_algorithm: row.try_get("key_algorithm")?,
            sha256,
        },
        der: row.try_get("der")?,
        status,
    })
}

fn regions_text(jurisdiction: &Jurisdiction) -> String {
    jurisdiction
        .regions
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The registry's writes, on a connection: the store's own pool for registry changes made
/// outside the log (the dev roster, tests) and the log's append transaction for admin actions,
/// so an admin entry and its change are durable together.
pub(super) mod write {
    use sqlx::AnyConnection;

    use super::{CertificateFacts, Partner, StoreError, regions_text};

    /// Adds a partner; ALREADY_EXISTS if the id is taken.
    pub async fn insert_partner(
        conn: &mut AnyConnection,
        partner: &Partner,
        now: i64,
    ) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO partners (id, kind, name, regions, industry, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(partner.id.as_str())
        .bind(partner.kind.as_str())
        .bind(&partner.name)
        .bind(regions_text(&partner.jurisdiction))
        .bind(partner.jurisdiction.industry.map(|i| i.as_str()))
        .bind(partner.status.as_str())
        .bind(now)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists {
                what: format!("partner {}", partner.id),
            });
        }
        Ok(())
    }

    /// Replaces a partner's kind, name, jurisdiction and status; NOT_FOUND if unknown.
    pub async fn update_partner(
        conn: &mut AnyConnection,
        partner: &Partner,
        now: i64,
    ) -> Result<(), StoreError> {
        let result = sqlx::query(
            "UPDATE partners SET kind = $1, name = $2, regions = $3, industry = $4, status = $5, \
             updated_at = $6 WHERE id = $7",
        )
        .bind(partner.kind.as_str())
        .bind(&partner.name)
        .bind(regions_text(&partner.jurisdiction))
        .bind(partner.jurisdiction.industry.map(|i| i.as_str()))
        .bind(partner.status.as_str())
        .bind(now)
        .bind(partner.id.as_str())
        .execute(&mut *conn)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: format!("partner {}", partner.id),
            });
        }
        Ok(())
    }

    /// Pins a certificate to its partner; ALREADY_EXISTS if that exact certificate is pinned.
    pub async fn insert_certificate(
        conn: &mut AnyConnection,
        facts: &CertificateFacts,
        der: &[u8],
        now: i64,
    ) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO certificates (sha256, partner_id, der, serial, not_before, not_after, \
             key_algorithm, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(&facts.sha256)
        .bind(facts.partner_id.as_str())
        .bind(der)
        .bind(&facts.serial)
        .bind(facts.not_before)
        .bind(facts.not_after)
        .bind(&facts.key_algorithm)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists {
                what: format!("certificate {}", facts.sha256),
            });
        }
        Ok(())
    }

    /// Marks an active certificate revoked; returns false when there is no active certificate
    /// with that SHA-256 (unknown, or revoked before: the first reason and time stay).
    pub async fn revoke_certificate(
        conn: &mut AnyConnection,
        sha256: &str,
        code: Option<u8>,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE certificates SET status = 'revoked', revoked_at = $1, revocation_reason = $2, \
             revocation_code = $3 WHERE sha256 = $4 AND status = 'active'",
        )
        .bind(now)
        .bind(reason)
        .bind(code.map(i64::from))
        .bind(sha256)
        .execute(&mut *conn)
        .await?;
        Ok(result.rows_affected() == 1)
    }
}

impl Store {
    /// Adds a partner; ALREADY_EXISTS if the id is taken.
    pub async fn insert_partner(&self, partner: &Partner) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        write::insert_partner(&mut conn, partner, now_unix()).await
    }

    /// Replaces a partner's kind, name, jurisdiction and status.
    pub async fn update_partner(&self, partner: &Partner) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        write::update_partner(&mut conn, partner, now_unix()).await
    }

    pub async fn partner(&self, id: &PartnerId) -> Result<Option<Partner>, StoreError> {
        sqlx::query("SELECT * FROM partners WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(partner_from_row)
            .transpose()
    }

    pub async fn partners(&self) -> Result<Vec<Partner>, StoreError> {
        sqlx::query("SELECT * FROM partners ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(partner_from_row)
            .collect()
    }

    /// Pins a certificate to its partner; ALREADY_EXISTS if that exact certificate is pinned.
    pub async fn insert_certificate(
        &self,
        facts: &CertificateFacts,
        der: &[u8],
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        write::insert_certificate(&mut conn, facts, der, now_unix()).await
    }

    /// Marks a certificate revoked. Revoking twice keeps the first reason and time.
    pub async fn revoke_certificate(&self, sha256: &str, reason: &str) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let revoked =
            write::revoke_certificate(&mut conn, sha256, None, reason, now_unix()).await?;
        if !revoked && self.certificate(sha256).await?.is_none() {
            return Err(StoreError::NotFound {
                what: format!("certificate {sha256}"),
            });
        }
        Ok(())
    }

    pub async fn certificate(&self, sha256: &str) -> Result<Option<CertificateRecord>, StoreError> {
        sqlx::query("SELECT * FROM certificates WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(certificate_from_row)
            .transpose()
    }

    pub async fn certificates(&self) -> Result<Vec<CertificateRecord>, StoreError> {
        sqlx::query("SELECT * FROM certificates ORDER BY partner_id, not_before, sha256")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(certificate_from_row)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{PartnerKind, PartnerStatus};
    use crate::store::testing::each_backend;

    fn bank() -> Partner {
        Partner {
            id: "bank-102".parse().unwrap(),
            kind: PartnerKind::Bank,
            name: "ICBC Chongqing".into(),
            jurisdiction: Jurisdiction {
                regions: ["500000".parse().unwrap()].into(),
                industry: None,
            },
            status: PartnerStatus::Active,
        }
    }

    fn facts(sha: &str) -> CertificateFacts {
        CertificateFacts {
            sha256: sha.into(),
            partner_id: "bank-102".parse().unwrap(),
            serial: "01".into(),
            not_before: 1,
            not_after: 2,
            key_algorithm: "ecdsa-p256".into(),
        }
    }

    #[tokio::test]
    async fn partners_round_trip_and_ids_are_unique() {
        for db in each_backend().await {
            let store = db.store();
            let mut p = bank();
            store.insert_partner(&p).await.unwrap();
            let again = store.insert_partner(&p).await.unwrap_err();
            assert!(
                matches!(again, StoreError::AlreadyExists { .. }),
                "{}",
                db.name
            );
            assert_eq!(store.partner(&p.id).await.unwrap(), Some(p.clone()));

            p.status = PartnerStatus::Suspended;
            p.jurisdiction.regions.insert("500112".parse().unwrap());
            p.jurisdiction.industry = Some(crate::identity::Industry::HousingMunicipal);
            store.update_partner(&p).await.unwrap();
            assert_eq!(
                store.partners().await.unwrap(),
                vec![p.clone()],
                "{}",
                db.name
            );

            let ghost = Partner {
                id: "bank-999".parse().unwrap(),
                ..p
            };
            assert!(matches!(
                store.update_partner(&ghost).await.unwrap_err(),
                StoreError::NotFound { .. }
            ));
        }
    }

    #[tokio::test]
    async fn certificates_are_pinned_once_and_revocation_sticks() {
        for db in each_backend().await {
            let store = db.store();
            store.insert_partner(&bank()).await.unwrap();
            store
                .insert_certificate(&facts("aa"), b"der-a")
                .await
                .unwrap();
            assert!(matches!(
                store
                    .insert_certificate(&facts("aa"), b"der-a")
                    .await
                    .unwrap_err(),
                StoreError::AlreadyExists { .. }
            ));
            store
                .insert_certificate(&facts("bb"), b"der-b")
                .await
                .unwrap();

            store
                .revoke_certificate("aa", "key compromise")
                .await
                .unwrap();
            store
                .revoke_certificate("aa", "second reason")
                .await
                .unwrap();
            let a = store.certificate("aa").await.unwrap().unwrap();
            match a.status {
                CertificateStatus::Revoked { reason, at, .. } => {
                    assert_eq!(reason, "key compromise", "{}", db.name);
                    assert!(at > 0);
                }
                other => panic!("{}: {other:?}", db.name),
            }
            assert_eq!(a.der, b"der-a");
            let all = store.certificates().await.unwrap();
            assert_eq!(all.len(), 2);
            assert_eq!(all[1].status, CertificateStatus::Active);
            assert!(matches!(
                store.revoke_certificate("cc", "x").await.unwrap_err(),
                StoreError::NotFound { .. }
            ));
        }
    }

    #[tokio::test]
    async fn a_certificate_needs_its_partner() {
        for db in each_backend().await {
            let err = db
                .store()
                .insert_certificate(&facts("aa"), b"der")
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Query(_)), "{}: {err}", db.name);
        }
    }
}
