//! Domain types to and from wagelink.v1 messages, in one place.

use wagelink_proto::v1 as pb;

use crate::identity::{Industry, Jurisdiction, Partner, PartnerKind, PartnerStatus};

pub fn timestamp(unix_seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: unix_seconds,
        nanos: 0,
    }
}

pub fn partner_kind(kind: PartnerKind) -> pb::PartnerKind {
    match kind {
        PartnerKind::LeadSource => pb::PartnerKind::LeadSource,
        PartnerKind::Hrss => pb::PartnerKind::Hrss,
        PartnerKind::Housing => pb::PartnerKind::Housing,
        PartnerKind::Transport => pb::PartnerKind::Transport,
        PartnerKind::Water => pb::PartnerKind::Water,
        PartnerKind::Finance => pb::PartnerKind::Finance,
        PartnerKind::DevelopmentReform => pb::PartnerKind::DevelopmentReform,
        PartnerKind::StateAssets => pb::PartnerKind::StateAssets,
        PartnerKind::Police => pb::PartnerKind::Police,
        PartnerKind::Procuratorate => pb::PartnerKind::Procuratorate,
        PartnerKind::Court => pb::PartnerKind::Court,
        PartnerKind::Arbitration => pb::PartnerKind::Arbitration,
        PartnerKind::Bank => pb::PartnerKind::Bank,
        PartnerKind::LeadingOffice => pb::PartnerKind::LeadingOffice,
        PartnerKind::PeerGateway => pb::PartnerKind::PeerGateway,
        PartnerKind::Admin => pb::PartnerKind::Admin,
    }
}

pub fn industry(industry: Option<Industry>) -> pb::Industry {
    match industry {
        None => pb::Industry::Unspecified,
        Some(Industry::HousingMunicipal) => pb::Industry::HousingMunicipal,
        Some(Industry::Transport) => pb::Industry::Transport,
        Some(Industry::Water) => pb::Industry::Water,
        Some(Industry::Other) => pb::Industry::Other,
        Some(Industry::Railway) => pb::Industry::Railway,
        Some(Industry::CivilAviation) => pb::Industry::CivilAviation,
    }
}

pub fn jurisdiction(j: &Jurisdiction) -> pb::Jurisdiction {
    pb::Jurisdiction {
        region_codes: j.regions.iter().map(|r| r.as_str().to_owned()).collect(),
        industry: industry(j.industry) as i32,
    }
}

pub fn partner_status(status: PartnerStatus) -> pb::PartnerStatus {
    match status {
        PartnerStatus::Active => pb::PartnerStatus::Active,
        PartnerStatus::Suspended => pb::PartnerStatus::Suspended,
    }
}

pub fn partner(p: &Partner) -> pb::Partner {
    pb::Partner {
        id: p.id.to_string(),
        kind: partner_kind(p.kind) as i32,
        name: p.name.clone(),
        jurisdiction: Some(jurisdiction(&p.jurisdiction)),
        status: partner_status(p.status) as i32,
    }
}
