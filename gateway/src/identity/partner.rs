//! Who a partner is: its id, kind, jurisdiction and status, as newtypes parsed once at the edge.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// A mistake in a partner's description, with what to fix.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PartnerError {
    #[error(
        "partner id {0:?} is not valid: use 3 to 64 characters of a-z, 0-9 and '-', starting with a letter (for example hrss-500112)"
    )]
    BadId(String),
    #[error("partner kind {0:?} is unknown: use one of {known}", known = PartnerKind::NAMES.join(", "))]
    BadKind(String),
    #[error("industry {0:?} is unknown: use one of {known}", known = Industry::NAMES.join(", "))]
    BadIndustry(String),
    #[error(
        "region code {0:?} is not in the official list of Chongqing region codes (6 digits, for example 500112)"
    )]
    BadRegion(String),
    #[error("partner status {0:?} is unknown: use active or suspended")]
    BadStatus(String),
    #[error("a {kind} partner needs at least one region code in its jurisdiction")]
    NoRegion { kind: PartnerKind },
}

/// A partner's identifier, as it appears in its certificate's SAN URI
/// `spiffe://<trust-domain>/partner/<id>` and as `sender` in every envelope it signs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartnerId(String);

impl PartnerId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PartnerId {
    type Err = PartnerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (3..=64).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.ends_with('-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(PartnerError::BadId(s.to_owned()))
        }
    }
}

impl fmt::Display for PartnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $err:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant,)* }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            /// Every value's name, as written in configuration, storage and messages.
            pub const NAMES: &'static [&'static str] = &[$($text,)*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }
        }

        impl FromStr for $name {
            type Err = PartnerError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($text => Ok($name::$variant),)* other => Err(PartnerError::$err(other.to_owned())) }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

named_enum!(
    /// What kind of organisation a partner is; it decides what the partner may do (DESIGN §2).
    PartnerKind, BadKind {
        /// National platform connector, city app, hotlines, petition bureau, public-opinion monitor, inspectors.
        LeadSource = "lead-source",
        /// A labour inspection office (人社): the main case handler.
        Hrss = "hrss",
        /// Housing and urban-rural development (住建).
        Housing = "housing",
        /// Transport (交通).
        Transport = "transport",
        /// Water conservancy (水利).
        Water = "water",
        /// Finance (财政).
        Finance = "finance",
        /// Development and reform (发改).
        DevelopmentReform = "development-reform",
        /// State-owned assets supervision (国资).
        StateAssets = "state-assets",
        /// A public security bureau (公安).
        Police = "police",
        /// A procuratorate (检察院).
        Procuratorate = "procuratorate",
        /// A court (法院).
        Court = "court",
        /// A labour dispute arbitration commission (仲裁).
        Arbitration = "arbitration",
        /// A bank holding dedicated wage accounts and guarantee deposits.
        Bank = "bank",
        /// A leading office against wage arrears (根治欠薪领导小组办公室).
        LeadingOffice = "leading-office",
        /// Another province's or the national gateway.
        PeerGateway = "peer-gateway",
        /// An operator of this gateway.
        Admin = "admin",
    }
);

impl PartnerKind {
    /// Whether partners of this kind act within a set of regions (and so need at least one).
    pub fn needs_regions(self) -> bool {
        !matches!(
            self,
            PartnerKind::LeadSource | PartnerKind::PeerGateway | PartnerKind::Admin
        )
    }
}

named_enum!(
    /// The industry an industry authority supervises, or a project belongs to.
    Industry, BadIndustry {
        /// Housing construction and municipal works (房屋建筑和市政).
        HousingMunicipal = "housing-municipal",
        /// Transport construction (交通).
        Transport = "transport",
        /// Water conservancy works (水利).
        Water = "water",
        /// Anything else (manufacturing, services, platform work…).
        Other = "other",
        /// Railway construction (铁路).
        Railway = "railway",
        /// Civil aviation construction (民航).
        CivilAviation = "civil-aviation",
    }
);

named_enum!(
    /// Whether a partner may connect at all.
    PartnerStatus, BadStatus {
        Active = "active",
        Suspended = "suspended",
    }
);

/// One entry of the official list of Chongqing region codes (GB/T 2260).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub code: RegionCode,
    pub name: String,
    /// `municipality`, `district` or `county`.
    pub kind: String,
}

const REGIONS_CSV: &str = include_str!("../../data/regions-chongqing.csv");

/// The official region list, parsed once.
pub fn regions() -> &'static [Region] {
    static REGIONS: std::sync::OnceLock<Vec<Region>> = std::sync::OnceLock::new();
    REGIONS.get_or_init(|| {
        REGIONS_CSV
            .lines()
            .skip(1)
            .filter_map(|line| {
                let mut cols = line.split(',');
                let code = cols.next()?.trim().to_owned();
                let name = cols.next()?.trim().to_owned();
                let kind = cols.next()?.trim().to_owned();
                Some(Region {
                    code: RegionCode(code),
                    name,
                    kind,
                })
            })
            .collect()
    })
}

/// A six-digit region code from the official list (`500000` is the whole city).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionCode(String);

impl RegionCode {
    /// The whole municipality of Chongqing.
    pub const CITY: &'static str = "500000";

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this code stands for the whole city rather than one district or county.
    pub fn is_city(&self) -> bool {
        self.0 == Self::CITY
    }

    /// Whether the code is inside Chongqing (the official list this gateway ships).
    pub fn is_local(&self) -> bool {
        self.0[..2] == Self::CITY[..2]
    }
}

/// The two-digit province-level codes of GB/T 2260 (provinces, autonomous regions,
/// municipalities, Taiwan, Hong Kong and Macao).
const PROVINCES: [&str; 34] = [
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41",
    "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71",
    "81", "82",
];

impl FromStr for RegionCode {
    type Err = PartnerError;

    /// A Chongqing code must be on the official list; a code of another province (a peer
    /// gateway's region) must have the GB/T 2260 form: six digits under a province-level code.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(r) = regions().iter().find(|r| r.code.0 == s) {
            return Ok(r.code.clone());
        }
        let other_province = s.len() == 6
            && s.bytes().all(|b| b.is_ascii_digit())
            && !s.starts_with(&Self::CITY[..2])
            && PROVINCES.contains(&&s[..2]);
        if other_province {
            Ok(RegionCode(s.to_owned()))
        } else {
            Err(PartnerError::BadRegion(s.to_owned()))
        }
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a partner acts: a set of regions and, for an industry authority, its industry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Jurisdiction {
    pub regions: BTreeSet<RegionCode>,
    pub industry: Option<Industry>,
}

impl Jurisdiction {
    /// Whether the jurisdiction covers a region: the city code covers every district and county
    /// of Chongqing (and nothing of another province).
    pub fn covers(&self, region: &RegionCode) -> bool {
        self.regions
            .iter()
            .any(|r| r == region || (r.is_city() && region.is_local()))
    }
}

/// A partner as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partner {
    pub id: PartnerId,
    pub kind: PartnerKind,
    pub name: String,
    pub jurisdiction: Jurisdiction,
    pub status: PartnerStatus,
}

impl Partner {
    /// Checks the rules a partner record must satisfy whoever made it.
    pub fn validate(&self) -> Result<(), PartnerError> {
        if self.kind.needs_regions() && self.jurisdiction.regions.is_empty() {
            return Err(PartnerError::NoRegion { kind: self.kind });
        }
        Ok(())
    }
}

/// The identity a handler receives: a partner whose certificate the TLS layer verified against
/// the federation CA and the registry. Handlers never see certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPartner {
    pub id: PartnerId,
    pub kind: PartnerKind,
    pub name: String,
    pub jurisdiction: Jurisdiction,
    /// SHA-256 of the certificate the connection was made with (lowercase hex).
    pub certificate_sha256: String,
    /// When that certificate expires (Unix seconds).
    pub certificate_not_after: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_codes_of_chongqing_come_from_the_list_and_others_by_form() {
        assert!("500112".parse::<RegionCode>().is_ok());
        // Chongqing codes must be on the official list.
        assert!("509999".parse::<RegionCode>().is_err());
        // Another province's code (a peer gateway's region) is checked by form.
        let chengdu: RegionCode = "510104".parse().unwrap();
        assert!(!chengdu.is_local() && !chengdu.is_city());
        assert!(!"510000".parse::<RegionCode>().unwrap().is_city());
        for bad in ["990101", "51010", "5101041", "51a104", ""] {
            assert!(bad.parse::<RegionCode>().is_err(), "{bad}");
        }
        // The city code covers Chongqing only.
        let city = Jurisdiction {
            regions: [RegionCode::CITY.parse().unwrap()].into(),
            industry: None,
        };
        assert!(city.covers(&"500112".parse().unwrap()));
        assert!(!city.covers(&chengdu));
        let jinjiang = Jurisdiction {
            regions: [chengdu.clone()].into(),
            industry: None,
        };
        assert!(jinjiang.covers(&chengdu));
        assert!(!jinjiang.covers(&"500112".parse().unwrap()));
    }

    #[test]
    fn partner_ids_are_checked() {
        assert!("hrss-500112".parse::<PartnerId>().is_ok());
        assert!("source-national-platform".parse::<PartnerId>().is_ok());
        for bad in [
            "",
            "ab",
            "Hrss-1",
            "1abc",
            "hrss_500112",
            "hrss-",
            &"a".repeat(65),
        ] {
            assert!(bad.parse::<PartnerId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn region_codes_come_from_the_official_list() {
        assert_eq!(regions().len(), 39);
        assert!("500112".parse::<RegionCode>().is_ok());
        assert!("500243".parse::<RegionCode>().is_ok());
        let err = "500199".parse::<RegionCode>().unwrap_err();
        assert!(err.to_string().contains("500199"));
    }

    #[test]
    fn the_city_covers_every_district() {
        let city = Jurisdiction {
            regions: ["500000".parse().unwrap()].into(),
            industry: None,
        };
        let yubei = Jurisdiction {
            regions: ["500112".parse().unwrap()].into(),
            industry: None,
        };
        let shapingba: RegionCode = "500106".parse().unwrap();
        assert!(city.covers(&shapingba));
        assert!(!yubei.covers(&shapingba));
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in PartnerKind::ALL {
            assert_eq!(kind.as_str().parse::<PartnerKind>().unwrap(), *kind);
        }
        assert!("bank ".parse::<PartnerKind>().is_err());
    }

    #[test]
    fn an_agency_without_regions_is_refused() {
        let p = Partner {
            id: "hrss-500112".parse().unwrap(),
            kind: PartnerKind::Hrss,
            name: "x".into(),
            jurisdiction: Jurisdiction::default(),
            status: PartnerStatus::Active,
        };
        assert_eq!(
            p.validate(),
            Err(PartnerError::NoRegion {
                kind: PartnerKind::Hrss
            })
        );
    }
}
