//! `wagelink.v1.Identity`: tells a partner who the gateway takes it for — the connectivity
//! check an integrator runs first.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use wagelink_proto::v1 as pb;

use super::convert;
use crate::identity::{Partner, PartnerStatus, Registry, partner_uri_prefix};
use crate::layers::authenticate::partner;

pub struct IdentityService {
    registry: Arc<Registry>,
    gateway_id: String,
}

impl IdentityService {
    pub fn new(registry: Arc<Registry>, gateway_id: String) -> Self {
        Self {
            registry,
            gateway_id,
        }
    }
}

#[tonic::async_trait]
impl pb::identity_server::Identity for IdentityService {
    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let me = partner(&request)?;
        let trust_domain = self.registry.trust_domain();
        let as_partner = Partner {
            id: me.id.clone(),
            kind: me.kind,
            name: me.name.clone(),
            jurisdiction: me.jurisdiction.clone(),
            status: PartnerStatus::Active,
        };
        Ok(Response::new(pb::WhoAmIResponse {
            partner: Some(convert::partner(&as_partner)),
            certificate_sha256: me.certificate_sha256.clone(),
            certificate_not_after: Some(convert::timestamp(me.certificate_not_after)),
            trust_domain: trust_domain.to_owned(),
            spiffe_id: format!("{}{}", partner_uri_prefix(trust_domain), me.id),
            server_time: Some(convert::timestamp(crate::store::now_unix())),
            gateway_id: self.gateway_id.clone(),
        }))
    }
}
