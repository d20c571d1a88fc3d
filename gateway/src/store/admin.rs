//! What administration stores beside the registry: routing-rules versions and which one is
//! active, the certificate-expiry warnings already given, and mailbox statistics. Admin changes
//! are written in the log's append transaction ([`LedgerTx`]), next to their admin entry.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::ledger::index;
use super::partners::write;
use super::{CertificateRecord, LedgerTx, Store, StoreError};
use crate::identity::{CertificateFacts, Partner, PartnerId};

/// One uploaded routing-rules version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesVersionRow {
    pub version: u32,
    pub sha256: String,
    pub text: String,
    pub comment: String,
    pub uploaded_by: String,
    pub uploaded_at: i64,
    pub rule_count: u32,
    /// None for the version seeded from the configuration.
    pub log_index: Option<u64>,
}

/// A new rules version, checked, as the log writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRules<'a> {
    pub sha256: &'a str,
    pub text: &'a str,
    pub comment: &'a str,
    pub uploaded_by: &'a str,
    pub rule_count: u32,
}

/// The state of one partner's mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxCounts {
    pub pending: u64,
    /// Pending messages a stream holds now: sent, awaiting acknowledgement.
    pub in_flight: u64,
    pub dead_lettered: u64,
    pub last_cursor: u64,
    pub oldest_pending_at: Option<i64>,
}

fn version_from_row(row: &AnyRow) -> Result<RulesVersionRow, StoreError> {
    let count = |name: &str| -> Result<u32, StoreError> {
        Ok(row.try_get::<i64, _>(name)?.clamp(0, i64::from(u32::MAX)) as u32)
    };
    Ok(RulesVersionRow {
        version: count("version")?,
        sha256: row.try_get("sha256")?,
        text: row.try_get("rules_text")?,
        comment: row.try_get("comment")?,
        uploaded_by: row.try_get("uploaded_by")?,
        uploaded_at: row.try_get("uploaded_at")?,
        rule_count: count("rule_count")?,
        log_index: row.try_get::<Option<i64>, _>("log_index")?.map(index),
    })
}

async fn insert_version(
    conn: &mut sqlx::AnyConnection,
    version: u32,
    new: &NewRules<'_>,
    log_index: u64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO rules_versions (version, sha256, rules_text, comment, uploaded_by, \
         uploaded_at, rule_count, log_index) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(i64::from(version))
    .bind(new.sha256)
    .bind(new.text)
    .bind(new.comment)
    .bind(new.uploaded_by)
    .bind(now)
    .bind(i64::from(new.rule_count))
    .bind(log_index as i64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn set_active(conn: &mut sqlx::AnyConnection, version: u32) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO rules_active (id, version) VALUES (1, $1) \
         ON CONFLICT (id) DO UPDATE SET version = excluded.version",
    )
    .bind(i64::from(version))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl LedgerTx {
    pub async fn insert_partner(&mut self, partner: &Partner, now: i64) -> Result<(), StoreError> {
        write::insert_partner(self.tx.connection().await?, partner, now).await
    }

    pub async fn update_partner(&mut self, partner: &Partner, now: i64) -> Result<(), StoreError> {
        write::update_partner(self.tx.connection().await?, partner, now).await
    }

    pub async fn partner(&mut self, id: &PartnerId) -> Result<Option<Partner>, StoreError> {
        sqlx::query("SELECT * FROM partners WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut self.tx)
            .await?
            .as_ref()
            .map(super::partners::partner_from_row)
            .transpose()
    }

    /// Active admin partners other than `except`.
    pub async fn other_active_admins(&mut self, except: &str) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM partners WHERE kind = 'admin' AND status = 'active' AND id <> $1",
        )
        .bind(except)
        .fetch_one(&mut self.tx)
        .await?;
        Ok(index(row.try_get("n")?))
    }

    pub async fn insert_certificate(
        &mut self,
        facts: &CertificateFacts,
        der: &[u8],
        now: i64,
    ) -> Result<(), StoreError> {
        write::insert_certificate(self.tx.connection().await?, facts, der, now).await
    }

    pub async fn certificate(
        &mut self,
        sha256: &str,
    ) -> Result<Option<CertificateRecord>, StoreError> {
        sqlx::query("SELECT * FROM certificates WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&mut self.tx)
            .await?
            .as_ref()
            .map(super::partners::certificate_from_row)
            .transpose()
    }

    /// Revokes an active certificate; false when it is not active.
    pub async fn revoke_certificate(
        &mut self,
        sha256: &str,
        code: Option<u8>,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        write::revoke_certificate(self.tx.connection().await?, sha256, code, reason, now).await
    }

    pub async fn rules_version_with_sha256(
        &mut self,
        sha256: &str,
    ) -> Result<Option<u32>, StoreError> {
        let row = sqlx::query("SELECT version FROM rules_versions WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&mut self.tx)
            .await?;
        row.map(|r| Ok(index(r.try_get("version")?) as u32))
            .transpose()
    }

    /// The number the next uploaded rules version gets.
    pub async fn next_rules_version(&mut self) -> Result<u32, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS last FROM rules_versions")
            .fetch_one(&mut self.tx)
            .await?;
        Ok(index(row.try_get("last")?) as u32 + 1)
    }

    /// Stores a new rules version.
    pub async fn insert_rules(
        &mut self,
        version: u32,
        new: &NewRules<'_>,
        log_index: u64,
        now: i64,
    ) -> Result<(), StoreError> {
        insert_version(self.tx.connection().await?, version, new, log_index, now).await
    }

    pub async fn rules_version_exists(&mut self, version: u32) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT version FROM rules_versions WHERE version = $1")
            .bind(i64::from(version))
            .fetch_optional(&mut self.tx)
            .await?;
        Ok(row.is_some())
    }

    pub async fn active_rules_version(&mut self) -> Result<Option<u32>, StoreError> {
        let row = sqlx::query("SELECT version FROM rules_active WHERE id = 1")
            .fetch_optional(&mut self.tx)
            .await?;
        row.map(|r| Ok(index(r.try_get("version")?) as u32))
            .transpose()
    }

    pub async fn activate_rules(&mut self, version: u32) -> Result<(), StoreError> {
        set_active(self.tx.connection().await?, version).await
    }
}

/// The statement of [`Store::mailbox_depths`].
const MAILBOX_DEPTHS_SQL: &str = "SELECT partner_id, 'pending' AS state, COUNT(*) AS n FROM mailbox \
     WHERE state = 'pending' GROUP BY partner_id \
     UNION ALL SELECT partner_id, 'dead' AS state, COUNT(*) AS n FROM mailbox \
     WHERE state = 'dead' GROUP BY partner_id";

impl Store {
    /// Every rules version, newest first.
    pub async fn rules_versions(&self) -> Result<Vec<RulesVersionRow>, StoreError> {
        sqlx::query("SELECT * FROM rules_versions ORDER BY version DESC")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(version_from_row)
            .collect()
    }

    pub async fn rules_version(&self, version: u32) -> Result<Option<RulesVersionRow>, StoreError> {
        sqlx::query("SELECT * FROM rules_versions WHERE version = $1")
            .bind(i64::from(version))
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(version_from_row)
            .transpose()
    }

    /// The active rules version, if any was stored.
    pub async fn active_rules(&self) -> Result<Option<RulesVersionRow>, StoreError> {
        sqlx::query(
            "SELECT v.* FROM rules_versions v JOIN rules_active a ON a.version = v.version \
             WHERE a.id = 1",
        )
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(version_from_row)
        .transpose()
    }

    /// Stores `new` as `version` and activates it, unless a version exists already (then
    /// nothing changes). Used once, for the rules of the configuration file.
    pub async fn seed_rules(
        &self,
        new: &NewRules<'_>,
        version: u32,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT COUNT(*) AS n FROM rules_versions")
            .fetch_one(&mut *tx)
            .await?;
        if index(row.try_get("n")?) == 0 {
            // Replicas starting together may both get here: the first insert wins, the
            // others change nothing.
            sqlx::query(
                "INSERT INTO rules_versions (version, sha256, rules_text, comment, uploaded_by, \
                 uploaded_at, rule_count, log_index) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(i64::from(version))
            .bind(new.sha256)
            .bind(new.text)
            .bind(new.comment)
            .bind(new.uploaded_by)
            .bind(now)
            .bind(i64::from(new.rule_count))
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO rules_active (id, version) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
            )
            .bind(i64::from(version))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records that the warning `threshold_days` before certificate `sha256` expires was given;
    /// false when it had been given before (by this or another replica).
    pub async fn note_expiry_warning(
        &self,
        sha256: &str,
        threshold_days: u32,
        now: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO certificate_expiry_warnings (sha256, threshold_days, warned_at) \
             VALUES ($1, $2, $3) ON CONFLICT (sha256, threshold_days) DO NOTHING",
        )
        .bind(sha256)
        .bind(i64::from(threshold_days))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// The mailbox depth of every partner with pending or dead-lettered messages: (partner,
    /// pending, dead-lettered), by partner, for the metrics. Counted through the indexes of
    /// pending and of dead-lettered messages ([`MAILBOX_DEPTHS_SQL`]), not over every message
    /// ever delivered.
    pub async fn mailbox_depths(&self) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let rows = sqlx::query(MAILBOX_DEPTHS_SQL)
            .fetch_all(&self.pool)
            .await?;
        let mut depths = std::collections::BTreeMap::<String, (u64, u64)>::new();
        for r in &rows {
            let depth = depths.entry(r.try_get("partner_id")?).or_default();
            let n = index(r.try_get("n")?);
            if r.try_get::<String, _>("state")? == "dead" {
                depth.1 = n;
            } else {
                depth.0 = n;
            }
        }
        Ok(depths
            .into_iter()
            .map(|(partner, (pending, dead))| (partner, pending, dead))
            .collect())
    }

    /// Open cases with a clock that ran out, by region code, for the metrics.
    pub async fn overdue_by_region(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT region, COUNT(*) AS n FROM cases WHERE overdue = 1 AND state <> 'CLOSED' \
             GROUP BY region ORDER BY region",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("region")?, index(r.try_get("n")?))))
            .collect()
    }

    /// A partner's mailbox counts.
    pub async fn mailbox_counts(&self, partner: &str) -> Result<MailboxCounts, StoreError> {
        let row = sqlx::query(
            "SELECT \
               COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0) AS pending, \
               COALESCE(SUM(CASE WHEN state = 'pending' AND claimed_until > $2 THEN 1 ELSE 0 END), 0) AS in_flight, \
               COALESCE(SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), 0) AS dead, \
               COALESCE(MAX(cursor), 0) AS last, \
               MIN(CASE WHEN state = 'pending' THEN enqueued_at END) AS oldest \
             FROM mailbox WHERE partner_id = $1",
        )
        .bind(partner)
        .bind(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or_default(),
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(MailboxCounts {
            pending: index(row.try_get("pending")?),
            in_flight: index(row.try_get("in_flight")?),
            dead_lettered: index(row.try_get("dead")?),
            last_cursor: index(row.try_get("last")?),
            oldest_pending_at: row.try_get("oldest")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::{each_backend, sqlite_plan};

    /// Each mailbox holding something is counted (pending and dead-lettered messages, not
    /// acknowledged ones), and on SQLite through indexes: the statement runs at every metrics
    /// scrape and must not read every message ever delivered.
    #[tokio::test]
    async fn mailbox_depths_count_what_mailboxes_hold_through_indexes() {
        for db in each_backend().await {
            let store = db.store();
            let mut tx = store.begin_ledger().await.unwrap();
            for i in 0..6 {
                tx.insert_entry(i, vec![1], &[0; 32], 1).await.unwrap();
            }
            tx.settle().await.unwrap();
            let mut cursors = Vec::new();
            for (partner, i) in [("hrss-500112", 0), ("hrss-500112", 1), ("hrss-500112", 2)]
                .into_iter()
                .chain([("bank-102", 3), ("bank-102", 4), ("court-500103", 5)])
            {
                cursors.push((partner, tx.enqueue(partner, i, 1).await.unwrap()));
            }
            tx.commit().await.unwrap();
            let mut tx = store.begin_ledger().await.unwrap();
            tx.acknowledge("hrss-500112", cursors[1].1).await.unwrap();
            tx.acknowledge("court-500103", cursors[5].1).await.unwrap();
            tx.commit().await.unwrap();
            assert_eq!(
                store
                    .count_attempt("bank-102", cursors[3].1, 0)
                    .await
                    .unwrap(),
                None,
                "past 0 attempts, dead-lettered"
            );
            assert_eq!(
                store.mailbox_depths().await.unwrap(),
                [
                    ("bank-102".to_owned(), 1, 1),
                    ("hrss-500112".to_owned(), 2, 0)
                ],
                "{}",
                db.name
            );
            if store.backend() == crate::store::Backend::Sqlite {
                let plan = sqlite_plan(store, super::MAILBOX_DEPTHS_SQL, 0).await;
                let scans: Vec<&String> = plan.iter().filter(|s| s.contains("mailbox")).collect();
                assert_eq!(scans.len(), 2, "{plan:?}");
                assert!(
                    scans[0].contains("mailbox_pending_by_cursor")
                        && scans[1].contains("mailbox_dead"),
                    "{plan:?}"
                );
            }
        }
    }
}
