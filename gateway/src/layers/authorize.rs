//! Which partner kinds may call which RPC: a declarative table, deny by default (DESIGN §4).
//! Scope within an RPC (a region, an industry, a case the partner holds) is checked by the
//! domain, which knows what the request is about; this table only decides who may knock.

use tonic::Status;

use super::HttpRequest;
use super::admission::Policy;
use crate::identity::{PartnerKind, VerifiedPartner};

/// Who may call an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callers {
    /// Every verified partner.
    Any,
    /// Every verified partner except these kinds.
    AllBut(&'static [PartnerKind]),
    /// Only these kinds.
    Only(&'static [PartnerKind]),
}

impl Callers {
    pub fn allows(self, kind: PartnerKind) -> bool {
        match self {
            Callers::Any => true,
            Callers::AllBut(kinds) => !kinds.contains(&kind),
            Callers::Only(kinds) => kinds.contains(&kind),
        }
    }
}

use PartnerKind as K;

/// Partner kinds that take steps on cases.
const CASE_ACTORS: &[PartnerKind] = &[
    K::Hrss,
    K::Housing,
    K::Transport,
    K::Water,
    K::Finance,
    K::DevelopmentReform,
    K::StateAssets,
    K::Police,
    K::Procuratorate,
    K::Court,
    K::Arbitration,
    K::LeadingOffice,
];

/// The table: `/package.Service/Method` → who may call it. An RPC missing here is refused to
/// everyone; RPCs not built yet are answered by the `unbuilt` layer before this one.
pub const TABLE: &[(&str, Callers)] = &[
    ("/grpc.health.v1.Health/Check", Callers::Any),
    ("/grpc.health.v1.Health/Watch", Callers::Any),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Callers::Any,
    ),
    ("/wagelink.v1.Identity/WhoAmI", Callers::Any),
    // Leads come from every kind of agency and source; banks raise warnings through events
    // and operators do not report arrears.
    (
        "/wagelink.v1.Cases/SubmitLead",
        Callers::AllBut(&[K::Bank, K::Admin]),
    ),
    // Where a lead would go: for those who send or dispatch leads.
    (
        "/wagelink.v1.Cases/DryRunRoute",
        Callers::Only(&[
            K::LeadSource,
            K::Hrss,
            K::LeadingOffice,
            K::PeerGateway,
            K::Admin,
        ]),
    ),
    // Steps on cases and letters: the agencies that hold, co-handle, receive forwards of or
    // supervise cases. Which step on which case is decided by the case's roles.
    ("/wagelink.v1.Cases/ActOnCase", Callers::Only(CASE_ACTORS)),
    ("/wagelink.v1.Cases/SendLetter", Callers::Only(CASE_ACTORS)),
    // Case views: for everyone with a role on a case, sources included (the view decides
    // which cases).
    (
        "/wagelink.v1.Cases/GetCase",
        Callers::AllBut(&[K::Bank, K::Admin, K::PeerGateway]),
    ),
    (
        "/wagelink.v1.Cases/ListCases",
        Callers::AllBut(&[K::Bank, K::Admin, K::PeerGateway]),
    ),
    // Banks push events on the accounts they hold, and keep their query link open.
    ("/wagelink.v1.Banks/PushEvents", Callers::Only(&[K::Bank])),
    ("/wagelink.v1.Banks/Link", Callers::Only(&[K::Bank])),
    // Account queries: labour inspection, the industry authorities and the leading offices
    // (Decree 724 art. 40); the account's region and industry are checked by the service.
    (
        "/wagelink.v1.AccountQueries/Query",
        Callers::Only(&[
            K::Hrss,
            K::Housing,
            K::Transport,
            K::Water,
            K::LeadingOffice,
        ]),
    ),
    // Every partner has a mailbox; the mailbox is always the caller's own.
    ("/wagelink.v1.Delivery/Subscribe", Callers::Any),
    ("/wagelink.v1.Delivery/Acknowledge", Callers::Any),
    // Anyone holding a receipt may check it against the log.
    ("/wagelink.v1.Audit/GetCheckpoint", Callers::Any),
    ("/wagelink.v1.Audit/GetInclusionProof", Callers::Any),
    ("/wagelink.v1.Audit/GetConsistencyProof", Callers::Any),
    ("/wagelink.v1.Audit/GetLogKeys", Callers::Any),
    // Whole-log exports are for oversight (payloads: admins only, checked by the service).
    (
        "/wagelink.v1.Audit/GetEntries",
        Callers::Only(&[K::LeadingOffice, K::Admin]),
    ),
    // Witnesses: oversight partners and peer gateways cosign this log's checkpoints.
    (
        "/wagelink.v1.Audit/AddWitnessSignature",
        Callers::Only(&[K::LeadingOffice, K::Procuratorate, K::PeerGateway]),
    ),
    // Administration: operators only.
    ("/wagelink.v1.Admin/OnboardPartner", ADMINS),
    ("/wagelink.v1.Admin/ChangeJurisdiction", ADMINS),
    ("/wagelink.v1.Admin/SuspendPartner", ADMINS),
    ("/wagelink.v1.Admin/ReinstatePartner", ADMINS),
    ("/wagelink.v1.Admin/IssueCertificate", ADMINS),
    ("/wagelink.v1.Admin/ImportCertificate", ADMINS),
    ("/wagelink.v1.Admin/RevokeCertificate", ADMINS),
    ("/wagelink.v1.Admin/UploadRules", ADMINS),
    ("/wagelink.v1.Admin/RollbackRules", ADMINS),
    ("/wagelink.v1.Admin/ListPartners", ADMINS),
    ("/wagelink.v1.Admin/GetPartner", ADMINS),
    ("/wagelink.v1.Admin/ListCertificates", ADMINS),
    ("/wagelink.v1.Admin/ExportCrl", ADMINS),
    ("/wagelink.v1.Admin/ListRuleVersions", ADMINS),
    ("/wagelink.v1.Admin/DryRunRules", ADMINS),
];

/// The Admin service's callers.
const ADMINS: Callers = Callers::Only(&[K::Admin]);

pub fn callers(path: &str) -> Option<Callers> {
    TABLE.iter().find(|(p, _)| *p == path).map(|(_, c)| *c)
}

/// Whether `path` is an RPC of the wagelink/v1 contract. Paths that are not (a misspelt
/// method, another API) are left to the router, which answers UNIMPLEMENTED.
fn in_contract(path: &str) -> bool {
    static PATHS: std::sync::OnceLock<std::collections::HashSet<String>> =
        std::sync::OnceLock::new();
    PATHS
        .get_or_init(|| {
            use prost::Message;
            let mut paths = std::collections::HashSet::new();
            if let Ok(fds) =
                prost_types::FileDescriptorSet::decode(wagelink_proto::FILE_DESCRIPTOR_SET)
            {
                for file in &fds.file {
                    for service in &file.service {
                        for method in &service.method {
                            paths.insert(format!(
                                "/{}.{}/{}",
                                file.package(),
                                service.name(),
                                method.name()
                            ));
                        }
                    }
                }
            }
            paths
        })
        .contains(path)
}

#[derive(Clone, Copy, Default)]
pub struct Authorize;

impl Policy for Authorize {
    type Permit = ();

    fn admit(&self, request: &mut HttpRequest) -> Result<(), Status> {
        let path = request.uri().path();
        let Some(partner) = request.extensions().get::<VerifiedPartner>() else {
            return Err(Status::unauthenticated("no verified partner on this call"));
        };
        match callers(path) {
            Some(c) if c.allows(partner.kind) => Ok(()),
            Some(_) => Err(Status::permission_denied(format!(
                "{path} is not open to {} partners ({} is one); ask the operator if your organisation needs it",
                partner.kind, partner.id
            ))),
            None if in_contract(path) => Err(Status::permission_denied(format!(
                "{path} is not open to any partner"
            ))),
            // Not in the contract at all: nothing here may be reached, whatever is mounted.
            None => Err(Status::unimplemented(format!(
                "{path} is not a method of this gateway; see proto/wagelink/v1 or ask the server's reflection service"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, kind: PartnerKind) -> HttpRequest {
        let mut r = http::Request::builder()
            .uri(path)
            .body(tonic::body::Body::empty())
            .unwrap();
        r.extensions_mut().insert(VerifiedPartner {
            id: "x-1".parse().unwrap(),
            kind,
            name: "x".into(),
            jurisdiction: Default::default(),
            certificate_sha256: String::new(),
            certificate_not_after: 0,
        });
        r
    }

    /// Every cell of kind × built RPC, against the expectations written out here.
    #[test]
    fn every_cell_of_the_table() {
        let submit_lead_refused = [K::Bank, K::Admin];
        let get_entries_allowed = [K::LeadingOffice, K::Admin];
        let case_views_refused = [K::Bank, K::Admin, K::PeerGateway];
        let case_actors = [
            K::Hrss,
            K::Housing,
            K::Transport,
            K::Water,
            K::Finance,
            K::DevelopmentReform,
            K::StateAssets,
            K::Police,
            K::Procuratorate,
            K::Court,
            K::Arbitration,
            K::LeadingOffice,
        ];
        let dry_run_allowed = [
            K::LeadSource,
            K::Hrss,
            K::LeadingOffice,
            K::PeerGateway,
            K::Admin,
        ];
        for &kind in PartnerKind::ALL {
            for (path, expected) in [
                ("/grpc.health.v1.Health/Check", true),
                ("/grpc.health.v1.Health/Watch", true),
                (
                    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                    true,
                ),
                ("/wagelink.v1.Identity/WhoAmI", true),
                (
                    "/wagelink.v1.Cases/SubmitLead",
                    !submit_lead_refused.contains(&kind),
                ),
                (
                    "/wagelink.v1.Cases/DryRunRoute",
                    dry_run_allowed.contains(&kind),
                ),
                ("/wagelink.v1.Cases/ActOnCase", case_actors.contains(&kind)),
                ("/wagelink.v1.Cases/SendLetter", case_actors.contains(&kind)),
                (
                    "/wagelink.v1.Cases/GetCase",
                    !case_views_refused.contains(&kind),
                ),
                (
                    "/wagelink.v1.Cases/ListCases",
                    !case_views_refused.contains(&kind),
                ),
                ("/wagelink.v1.Banks/PushEvents", kind == K::Bank),
                ("/wagelink.v1.Banks/Link", kind == K::Bank),
                (
                    "/wagelink.v1.AccountQueries/Query",
                    [
                        K::Hrss,
                        K::Housing,
                        K::Transport,
                        K::Water,
                        K::LeadingOffice,
                    ]
                    .contains(&kind),
                ),
                ("/wagelink.v1.Delivery/Subscribe", true),
                ("/wagelink.v1.Delivery/Acknowledge", true),
                ("/wagelink.v1.Audit/GetCheckpoint", true),
                ("/wagelink.v1.Audit/GetInclusionProof", true),
                ("/wagelink.v1.Audit/GetConsistencyProof", true),
                ("/wagelink.v1.Audit/GetLogKeys", true),
                (
                    "/wagelink.v1.Audit/GetEntries",
                    get_entries_allowed.contains(&kind),
                ),
                (
                    "/wagelink.v1.Audit/AddWitnessSignature",
                    [K::LeadingOffice, K::Procuratorate, K::PeerGateway].contains(&kind),
                ),
                // Not in the contract: refused as UNIMPLEMENTED.
                ("/wagelink.v1.Cases/NoSuchMethod", false),
                (
                    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                    false,
                ),
            ] {
                let result = Authorize.admit(&mut request(path, kind));
                assert_eq!(result.is_ok(), expected, "{kind} → {path}");
                if let Err(status) = result {
                    let expected = if path.contains("NoSuchMethod") || path.contains("v1alpha") {
                        tonic::Code::Unimplemented
                    } else {
                        tonic::Code::PermissionDenied
                    };
                    assert_eq!(status.code(), expected, "{path}");
                }
            }
            // Administration: operators only, whatever else the caller may do.
            for method in [
                "OnboardPartner",
                "ChangeJurisdiction",
                "SuspendPartner",
                "ReinstatePartner",
                "IssueCertificate",
                "ImportCertificate",
                "RevokeCertificate",
                "UploadRules",
                "RollbackRules",
                "ListPartners",
                "GetPartner",
                "ListCertificates",
                "ExportCrl",
                "ListRuleVersions",
                "DryRunRules",
            ] {
                let path = format!("/wagelink.v1.Admin/{method}");
                let result = Authorize.admit(&mut request(&path, kind));
                assert_eq!(result.is_ok(), kind == K::Admin, "{kind} → {path}");
                if let Err(status) = result {
                    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{path}");
                }
            }
        }
    }

    /// Every RPC of the contract is either not built yet or has a row: nothing is open by
    /// accident, and nothing built is forgotten.
    #[test]
    fn every_built_rpc_has_a_row() {
        use prost::Message;
        let fds =
            prost_types::FileDescriptorSet::decode(wagelink_proto::FILE_DESCRIPTOR_SET).unwrap();
        for file in &fds.file {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                    assert!(
                        super::super::unbuilt::capability(&path).is_some()
                            || callers(&path).is_some(),
                        "{path} is built but has no row in the authorization table"
                    );
                }
            }
        }
    }
}
