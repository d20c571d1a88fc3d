//! The routing rules in force: the active version stored beside the log (uploaded by admins,
//! or seeded from the configuration on first start), held in memory and re-read when an admin
//! changes it here or, on another replica, at the next reload.

use std::sync::{Arc, RwLock};

use wagelink_proto::envelope::sha256;

use super::RuleSet;
use crate::store::{NewRules, Store, StoreError};

/// Why the active rules could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ActiveRulesError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rules version {version} in the database does not parse any more: {reason}")]
    Stored { version: u32, reason: String },
}

/// The active rules, shared by everything that routes.
pub struct ActiveRules {
    store: Store,
    current: RwLock<Arc<RuleSet>>,
    /// The peer gateways owning the regions this gateway does not serve (set once at start).
    federation: std::sync::OnceLock<Arc<crate::federation::Federation>>,
}

/// Lowercase hex SHA-256 of a rules text: its identity among versions.
pub fn rules_sha256(text: &str) -> String {
    hex::encode(sha256(text.as_bytes()))
}

fn parse_stored(version: u32, text: &str) -> Result<RuleSet, ActiveRulesError> {
    let mut rules = RuleSet::parse(text).map_err(|e| ActiveRulesError::Stored {
        version,
        reason: e.to_string(),
    })?;
    rules.version = version;
    Ok(rules)
}

impl ActiveRules {
    /// Loads the active version; on a database with no versions yet, first stores
    /// `configured` (the configuration's rules file, already checked) as its version.
    pub async fn load(
        store: Store,
        configured: &str,
        checked: &RuleSet,
    ) -> Result<Arc<Self>, ActiveRulesError> {
        let seeded_sha = rules_sha256(configured);
        store
            .seed_rules(
                &NewRules {
                    sha256: &seeded_sha,
                    text: configured,
                    comment: "the rules of the configuration at first start",
                    uploaded_by: "configuration",
                    rule_count: checked.rules.len() as u32,
                },
                checked.version.max(1),
                crate::store::now_unix(),
            )
            .await?;
        let row = store
            .active_rules()
            .await?
            .ok_or_else(|| ActiveRulesError::Stored {
                version: 0,
                reason: "no version is marked active".into(),
            })?;
        if row.sha256 != seeded_sha {
            tracing::warn!(
                active = row.version,
                "the configured routing rules differ from the active version {}, which stays in force: rules change through `wagelink admin rules upload`",
                row.version
            );
        }
        let rules = parse_stored(row.version, &row.text)?;
        Ok(Arc::new(Self {
            store,
            current: RwLock::new(Arc::new(rules)),
            federation: std::sync::OnceLock::new(),
        }))
    }

    /// Sets the peer gateways leads outside this gateway's regions go to (once, at start).
    pub fn set_federation(&self, federation: Arc<crate::federation::Federation>) {
        let _ = self.federation.set(federation);
    }

    /// The peer gateways; none (and Chongqing served here) when not set.
    pub fn federation(&self) -> Arc<crate::federation::Federation> {
        self.federation.get().cloned().unwrap_or_default()
    }

    /// The rules in force now.
    pub fn current(&self) -> Arc<RuleSet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the active version if it changed.
    pub async fn reload(&self) -> Result<(), ActiveRulesError> {
        let Some(row) = self.store.active_rules().await? else {
            return Ok(());
        };
        if row.version == self.current().version {
            return Ok(());
        }
        let rules = parse_stored(row.version, &row.text)?;
        tracing::info!(version = row.version, "routing rules version now in force");
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
        Ok(())
    }

    /// Any stored version (0 = the active one), for dry runs.
    pub async fn version(&self, version: u32) -> Result<Option<Arc<RuleSet>>, ActiveRulesError> {
        let current = self.current();
        if version == 0 || version == current.version {
            return Ok(Some(current));
        }
        match self.store.rules_version(version).await? {
            Some(row) => Ok(Some(Arc::new(parse_stored(row.version, &row.text)?))),
            None => Ok(None),
        }
    }
}
