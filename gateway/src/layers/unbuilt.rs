//! The contract declares every service now; those whose capability is not built yet answer
//! UNIMPLEMENTED with the capability's name, so an integrator knows the call is right and
//! what it is waiting for.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::Status;

use super::HttpRequest;
use super::admission::Policy;

/// Services of wagelink.v1 not built yet, and the capability each belongs to.
pub const UNBUILT: &[(&str, &str)] = &[
    (
        "wagelink.v1.Cases",
        "lead intake, routing and case actions (转办 closed loop)",
    ),
    (
        "wagelink.v1.Delivery",
        "delivery to partner mailboxes (subscribe / acknowledge)",
    ),
    ("wagelink.v1.Banks", "bank account events and the bank link"),
    (
        "wagelink.v1.AccountQueries",
        "account queries relayed to the holding bank",
    ),
    (
        "wagelink.v1.Audit",
        "the evidence log: checkpoints, proofs and entries",
    ),
    (
        "wagelink.v1.Admin",
        "administration of partners, certificates and routing rules",
    ),
];

#[derive(Clone)]
pub struct Unbuilt {
    services: Arc<HashMap<&'static str, &'static str>>,
}

impl Default for Unbuilt {
    fn default() -> Self {
        Self {
            services: Arc::new(UNBUILT.iter().copied().collect()),
        }
    }
}

impl Policy for Unbuilt {
    type Permit = ();

    fn admit(&self, request: &mut HttpRequest) -> Result<(), Status> {
        let path = request.uri().path();
        let service = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        match self.services.get(service) {
            Some(capability) => Err(Status::unimplemented(format!(
                "{path} is part of the wagelink/v1 contract but not built yet on this gateway: capability \"{capability}\""
            ))),
            None => Ok(()),
        }
    }
}
