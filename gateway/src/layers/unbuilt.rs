//! The contract declares every service now; those whose capability is not built yet answer
//! UNIMPLEMENTED with the capability's name, so an integrator knows the call is right and
//! what it is waiting for.

use tonic::Status;

use super::HttpRequest;
use super::admission::Policy;

/// Services (or single methods, `Service/Method`) of wagelink.v1 not built yet, and the
/// capability each belongs to.
pub const UNBUILT: &[(&str, &str)] = &[];

/// The capability a path (`/Service/Method`) is waiting for, if it is not built.
pub fn capability(path: &str) -> Option<&'static str> {
    let path = path.trim_start_matches('/');
    let service = path.split('/').next().unwrap_or_default();
    UNBUILT
        .iter()
        .find(|(entry, _)| *entry == path || *entry == service)
        .map(|(_, capability)| *capability)
}

#[derive(Clone, Default)]
pub struct Unbuilt;

impl Policy for Unbuilt {
    type Permit = ();

    fn admit(&self, request: &mut HttpRequest) -> Result<(), Status> {
        let path = request.uri().path();
        match capability(path) {
            Some(capability) => Err(Status::unimplemented(format!(
                "{path} is part of the wagelink/v1 contract but not built yet on this gateway: capability \"{capability}\""
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::capability;

    #[test]
    fn whole_services_and_single_methods_are_matched() {
        assert_eq!(capability("/wagelink.v1.Admin/OnboardPartner"), None);
        assert_eq!(capability("/wagelink.v1.Banks/PushEvents"), None);
        assert_eq!(capability("/wagelink.v1.Audit/AddWitnessSignature"), None);
        assert_eq!(capability("/wagelink.v1.Cases/ActOnCase"), None);
        assert_eq!(capability("/wagelink.v1.Audit/GetCheckpoint"), None);
        assert_eq!(capability("/wagelink.v1.BanksX/Link"), None);
    }
}
