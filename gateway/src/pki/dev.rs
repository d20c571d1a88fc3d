//! `wagelink dev`: a complete federation on one machine — a dev federation CA, the gateway's
//! server certificate and a demo roster of partners, each with certificate and key files — in
//! a data directory that later runs reuse.
//!
//! Layout of the data directory:
//! ```text
//! wagelink.toml               the configuration `wagelink serve --config` takes
//! wagelink.db                 the SQLite database (unless --database-url is given)
//! roster.csv                  id,kind,name,regions,industry of every demo partner
//! pki/federation-ca.pem/.key  the dev federation CA (the key exists only in dev)
//! pki/gateway.pem/.key        the gateway's server certificate (it also signs receipts)
//! pki/log.key                 the Ed25519 key that signs the evidence log's checkpoints
//! partners/<id>/cert.pem      each partner's client certificate,
//! partners/<id>/key.pem       its private key,
//! partners/<id>/ca.pem        and the CA to verify the gateway with
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{FederationCa, LeafSpec, PkiError};
use crate::config::Config;
use crate::identity::{
    Industry, Jurisdiction, Partner, PartnerKind, PartnerStatus, RegionCode, Registry,
    RegistryError, regions,
};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {why}")]
    Roster {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("registering the demo roster: {0}")]
    Registry(#[from] RegistryError),
}

fn partner(
    id: &str,
    kind: PartnerKind,
    name: &str,
    regions: &[&str],
    industry: Option<Industry>,
) -> Partner {
    Partner {
        id: id.parse().expect("demo ids are valid"),
        kind,
        name: name.to_owned(),
        jurisdiction: Jurisdiction {
            regions: regions
                .iter()
                .map(|r| r.parse().expect("demo regions are in the list"))
                .collect(),
            industry,
        },
        status: PartnerStatus::Active,
    }
}

/// The demo roster: labour inspection for the city and every district and county, the city
/// housing / transport / water authorities, police and courts for two districts, two banks,
/// the national-platform lead source, the city leading office and an operator.
pub fn demo_roster() -> Vec<Partner> {
    let mut roster = vec![partner(
        "hrss-500000",
        PartnerKind::Hrss,
        "重庆市人力资源和社会保障局（劳动保障监察）",
        &[RegionCode::CITY],
        None,
    )];
    for region in regions().iter().filter(|r| !r.code.is_city()) {
        roster.push(Partner {
            id: format!("hrss-{}", region.code).parse().expect("valid id"),
            kind: PartnerKind::Hrss,
            name: format!("{}人力资源和社会保障局（劳动保障监察）", region.name),
            jurisdiction: Jurisdiction {
                regions: BTreeSet::from([region.code.clone()]),
                industry: None,
            },
            status: PartnerStatus::Active,
        });
    }
    let city = RegionCode::CITY;
    roster.extend([
        partner(
            "housing-500000",
            PartnerKind::Housing,
            "重庆市住房和城乡建设委员会",
            &[city],
            Some(Industry::HousingMunicipal),
        ),
        partner(
            "transport-500000",
            PartnerKind::Transport,
            "重庆市交通运输委员会",
            &[city],
            Some(Industry::Transport),
        ),
        partner(
            "water-500000",
            PartnerKind::Water,
            "重庆市水利局",
            &[city],
            Some(Industry::Water),
        ),
        partner(
            "police-500103",
            PartnerKind::Police,
            "重庆市公安局渝中区分局",
            &["500103"],
            None,
        ),
        partner(
            "police-500112",
            PartnerKind::Police,
            "重庆市公安局渝北区分局",
            &["500112"],
            None,
        ),
        partner(
            "court-500103",
            PartnerKind::Court,
            "重庆市渝中区人民法院",
            &["500103"],
            None,
        ),
        partner(
            "court-500112",
            PartnerKind::Court,
            "重庆市渝北区人民法院",
            &["500112"],
            None,
        ),
        partner(
            "bank-102",
            PartnerKind::Bank,
            "中国工商银行重庆市分行",
            &[city],
            None,
        ),
        partner(
            "bank-105",
            PartnerKind::Bank,
            "中国建设银行重庆市分行",
            &[city],
            None,
        ),
        partner(
            "source-national-platform",
            PartnerKind::LeadSource,
            "全国根治欠薪线索反映平台",
            &[],
            None,
        ),
        partner(
            "leading-office-500000",
            PartnerKind::LeadingOffice,
            "重庆市根治拖欠农民工工资工作领导小组办公室",
            &[city],
            None,
        ),
        partner(
            "admin-ops",
            PartnerKind::Admin,
            "wagelink operator",
            &[],
            None,
        ),
    ]);
    debug_assert!(roster.iter().all(|p| p.validate().is_ok()));
    roster
}

fn write(path: &Path, contents: &str, secret: bool) -> Result<(), DevError> {
    let err = |source| DevError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    std::fs::write(path, contents).map_err(err)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    Ok(())
}

fn roster_csv(roster: &[Partner]) -> String {
    let mut out = String::from("id,kind,name,regions,industry\n");
    for p in roster {
        let regions: Vec<&str> = p.jurisdiction.regions.iter().map(|r| r.as_str()).collect();
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            p.id,
            p.kind,
            p.name,
            regions.join(" "),
            p.jurisdiction.industry.map(|i| i.as_str()).unwrap_or("")
        ));
    }
    out
}

/// Reads `roster.csv` of a data directory.
pub fn read_roster(data_dir: &Path) -> Result<Vec<Partner>, DevError> {
    let path = data_dir.join("roster.csv");
    let text = std::fs::read_to_string(&path).map_err(|source| DevError::Read {
        path: path.clone(),
        source,
    })?;
    let mut roster = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| DevError::Roster {
            path: path.clone(),
            line: i + 1,
            why,
        };
        let cols: Vec<&str> = line.split(',').collect();
        let [id, kind, name, regions, industry] = cols[..] else {
            return Err(bad(
                "expected 5 columns: id,kind,name,regions,industry".into()
            ));
        };
        let p = Partner {
            id: id
                .parse()
                .map_err(|e: crate::identity::PartnerError| bad(e.to_string()))?,
            kind: kind
                .parse()
                .map_err(|e: crate::identity::PartnerError| bad(e.to_string()))?,
            name: name.to_owned(),
            jurisdiction: Jurisdiction {
                regions: regions
                    .split_whitespace()
                    .map(|r| r.parse())
                    .collect::<Result<_, _>>()
                    .map_err(|e: crate::identity::PartnerError| bad(e.to_string()))?,
                industry: if industry.is_empty() {
                    None
                } else {
                    Some(
                        industry
                            .parse()
                            .map_err(|e: crate::identity::PartnerError| bad(e.to_string()))?,
                    )
                },
            },
            status: PartnerStatus::Active,
        };
        p.validate().map_err(|e| bad(e.to_string()))?;
        roster.push(p);
    }
    Ok(roster)
}

/// The folder holding a partner's certificate, key and CA.
pub fn partner_dir(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("partners").join(id)
}

/// Creates the dev data directory if it has no configuration yet; returns its configuration
/// and whether it was created now.
pub fn prepare(data_dir: &Path) -> Result<(Config, bool), DevError> {
    prepare_with(data_dir, &Config::default().trust_domain)
}

/// [`prepare`] for a federation of another trust domain (a peer gateway's, in tests and
/// drills).
pub fn prepare_with(data_dir: &Path, trust_domain: &str) -> Result<(Config, bool), DevError> {
    let config_path = data_dir.join("wagelink.toml");
    if config_path.exists() {
        let config = Config::load(&config_path)?;
        ensure_log_key(&config)?;
        return Ok((config, false));
    }
    let mut config = Config {
        trust_domain: trust_domain.to_owned(),
        ..Config::default()
    };
    // The dev CA's key is on disk anyway: let the gateway issue from CSRs and sign CRLs.
    config.tls.ca_key = Some(PathBuf::from("pki/federation-ca.key"));
    let trust_domain = config.trust_domain.clone();
    let ca = FederationCa::generate(&trust_domain)?;
    write(
        &data_dir.join("pki/federation-ca.pem"),
        ca.cert_pem(),
        false,
    )?;
    write(&data_dir.join("pki/federation-ca.key"), ca.key_pem(), true)?;
    let server = ca.issue_server(
        &trust_domain,
        &["localhost".into(), "127.0.0.1".into(), "::1".into()],
    )?;
    write(&data_dir.join("pki/gateway.pem"), &server.cert_pem, false)?;
    write(&data_dir.join("pki/gateway.key"), &server.key_pem, true)?;
    let roster = demo_roster();
    for p in &roster {
        let dir = partner_dir(data_dir, p.id.as_str());
        let issued = ca.issue_partner(
            &trust_domain,
            &LeafSpec::valid_for_days(p.id.clone(), &p.name, 365),
        )?;
        write(&dir.join("cert.pem"), &issued.cert_pem, false)?;
        write(&dir.join("key.pem"), &issued.key_pem, true)?;
        write(&dir.join("ca.pem"), ca.cert_pem(), false)?;
    }
    write(&data_dir.join("roster.csv"), &roster_csv(&roster), false)?;
    // Written last: its presence means the directory is complete.
    let mut text = String::from(
        "# wagelink configuration written by `wagelink dev`; every key is documented in\n\
         # `wagelink config --help` and gateway/src/config.rs. Paths are relative to this file.\n",
    );
    text.push_str(&config.to_toml());
    write(&config_path, &text, false)?;
    let config = Config::load(&config_path)?;
    ensure_log_key(&config)?;
    Ok((config, true))
}

/// Creates the log's Ed25519 key if the directory has none (directories made before the
/// evidence log existed get one on their next run).
fn ensure_log_key(config: &Config) -> Result<(), DevError> {
    if !config.log.key.exists() {
        let pkcs8 = crate::ledger::checkpoint::LogKey::generate_pkcs8();
        write(
            &config.log.key,
            &super::pem_encode("PRIVATE KEY", &pkcs8),
            true,
        )?;
    }
    Ok(())
}

/// Registers every roster partner and its certificate that the database does not hold yet,
/// so a data directory works against a fresh database too. Returns how many were added.
pub async fn register_roster(registry: &Registry, data_dir: &Path) -> Result<usize, DevError> {
    let mut added = 0;
    for p in read_roster(data_dir)? {
        if registry.partner(&p.id).is_none() {
            registry.register_partner(&p).await?;
            added += 1;
        }
        let cert_path = partner_dir(data_dir, p.id.as_str()).join("cert.pem");
        let pem = std::fs::read(&cert_path).map_err(|source| DevError::Read {
            path: cert_path.clone(),
            source,
        })?;
        let der = crate::tls::pem_certificates(&pem)
            .map_err(|why| DevError::Roster {
                path: cert_path.clone(),
                line: 1,
                why,
            })?
            .into_iter()
            .next()
            .ok_or_else(|| DevError::Roster {
                path: cert_path.clone(),
                line: 1,
                why: "no certificate in the file".into(),
            })?;
        match registry.register_certificate(&der).await {
            Ok(_) | Err(RegistryError::Store(StoreError::AlreadyExists { .. })) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roster_covers_every_district_and_the_named_partners() {
        let roster = demo_roster();
        let hrss = roster
            .iter()
            .filter(|p| p.kind == PartnerKind::Hrss)
            .count();
        assert_eq!(hrss, regions().len());
        for kind in [
            PartnerKind::Housing,
            PartnerKind::Transport,
            PartnerKind::Water,
            PartnerKind::LeadingOffice,
            PartnerKind::LeadSource,
            PartnerKind::Admin,
        ] {
            assert!(roster.iter().any(|p| p.kind == kind), "{kind}");
        }
        for (kind, at_least) in [
            (PartnerKind::Police, 2),
            (PartnerKind::Court, 2),
            (PartnerKind::Bank, 2),
        ] {
            assert!(
                roster.iter().filter(|p| p.kind == kind).count() >= at_least,
                "{kind}"
            );
        }
        let ids: BTreeSet<_> = roster.iter().map(|p| &p.id).collect();
        assert_eq!(ids.len(), roster.len(), "ids are unique");
    }

    #[test]
    fn the_roster_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("roster.csv"), roster_csv(&demo_roster())).unwrap();
        assert_eq!(read_roster(dir.path()).unwrap(), demo_roster());
    }

    #[test]
    fn a_bad_roster_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("roster.csv"),
            "id,kind,name,regions,industry\nhrss-1,hrss,X,599999,\n",
        )
        .unwrap();
        let err = read_roster(dir.path()).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("599999"), "{err}");
    }
}
