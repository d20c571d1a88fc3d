//! `wagelink.v1.Cases`. Built so far: `SubmitLead` through the signed submit path — the lead
//! is verified, its fields checked, logged and answered with a receipt. Routing, cases and the other RPCs come with
//! the cases capability (the `unbuilt` layer answers them UNIMPLEMENTED until then).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use wagelink_proto::v1 as pb;

use crate::envelope::{self, SubmitError};
use crate::identity::Registry;
use crate::layers::authenticate::partner;
use crate::ledger::log::EvidenceLog;

pub struct CasesService {
    registry: Arc<Registry>,
    log: Arc<EvidenceLog>,
}

impl CasesService {
    pub fn new(registry: Arc<Registry>, log: Arc<EvidenceLog>) -> Self {
        Self { registry, log }
    }
}

#[tonic::async_trait]
impl pb::cases_server::Cases for CasesService {
    async fn submit_lead(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let me = partner(&request)?.clone();
        let verified = envelope::verify::<pb::Lead>(
            &self.registry,
            &me,
            request.into_inner(),
            crate::store::now_unix(),
        )?;
        crate::cases::lead::validate(&verified.payload, crate::cases::china_today())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let receipt = self
            .log
            .append(verified.accepted)
            .await
            .map_err(SubmitError::from)?;
        Ok(Response::new(pb::SubmitResponse {
            receipt: Some(receipt),
        }))
    }
}
