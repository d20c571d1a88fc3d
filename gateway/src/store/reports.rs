//! The reads reports need: stored case views over a span of time, and earlier cases about the
//! same projects or employers. Read-only, and only the `view` column, which holds no reporter's
//! personal data; payloads are never read.

use prost::Message;
use sqlx::Row;
use sqlx::any::AnyRow;
use wagelink_proto::v1 as pb;

use super::{Store, StoreError};

/// At most this many values in one `IN (…)` list.
const CHUNK: usize = 200;

fn view(row: &AnyRow) -> Result<pb::CaseView, StoreError> {
    let bytes: Vec<u8> = row.try_get("view")?;
    pb::CaseView::decode(bytes.as_slice())
        .map_err(|e| StoreError::Corrupt(format!("a stored case does not decode: {e}")))
}

impl Store {
    /// The cases a report over `[start, end)` can need: opened before `end`, and either touched
    /// since `start` (a step in the span) or not closed (still open, or with clocks running,
    /// at the end of the span). With `region`, only the cases now in that region. Oldest first.
    pub async fn report_cases(
        &self,
        start: i64,
        end: i64,
        region: Option<&str>,
    ) -> Result<Vec<pb::CaseView>, StoreError> {
        let base = "SELECT c.id, c.view FROM cases c WHERE c.created_at < $1 \
                    AND (c.updated_at >= $2 OR c.state <> 'CLOSED')";
        let rows = match region {
            Some(region) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{base} AND c.region = $3 ORDER BY c.created_at, c.id"
                )))
                .bind(end)
                .bind(start)
                .bind(region)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{base} ORDER BY c.created_at, c.id"
                )))
                .bind(end)
                .bind(start)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(view).collect()
    }

    /// Cases opened before `before` whose lead names one of these project codes or has one of
    /// these lead keys (region, employer and project), oldest first, each once.
    pub async fn cases_about(
        &self,
        project_codes: &[String],
        lead_keys: &[String],
        before: i64,
    ) -> Result<Vec<pb::CaseView>, StoreError> {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for (column, values) in [("project_code", project_codes), ("lead_key", lead_keys)] {
            for chunk in values.chunks(CHUNK) {
                let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
                // Only the fixed column name and placeholders are spliced in; values are bound.
                let sql = format!(
                    "SELECT c.id, c.view FROM cases c WHERE c.created_at < $1 AND c.{column} IN ({}) \
                     ORDER BY c.created_at, c.id",
                    list.join(", ")
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(before);
                for v in chunk {
                    q = q.bind(v.as_str());
                }
                for row in q.fetch_all(&self.pool).await? {
                    let id: String = row.try_get("id")?;
                    if seen.insert(id) {
                        out.push(view(&row)?);
                    }
                }
            }
        }
        out.sort_by_key(|v| v.created_at.as_ref().map(|t| t.seconds));
        Ok(out)
    }
}
