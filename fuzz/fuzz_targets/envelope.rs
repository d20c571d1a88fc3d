//! Envelope decoding and verification (DESIGN §5) on arbitrary bytes: a `SignedEnvelope` as it
//! arrives from the wire, checked as the national platform's SubmitLead would check it, and the
//! payload digests of batches. Every input is refused with a reason or accepted; nothing panics.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use prost::Message;
use wagelink_gateway::identity::{Registry, VerifiedPartner};
use wagelink_proto::envelope::payload_digest;
use wagelink_proto::v1 as pb;

struct Fixture {
    registry: Arc<Registry>,
    partner: VerifiedPartner,
    now: i64,
    _dir: tempfile::TempDir,
}

/// A registry holding the dev roster, built once.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let (config, _) = wagelink_gateway::pki::dev::prepare(dir.path()).unwrap();
            let (_, registry) = wagelink_gateway::server::open(&config).await.unwrap();
            wagelink_gateway::pki::dev::register_roster(&registry, &config.data_dir)
                .await
                .unwrap();
            let der = std::fs::read(
                config
                    .data_dir
                    .join("partners/source-national-platform/cert.pem"),
            )
            .unwrap();
            let der = wagelink_gateway::tls::pem_certificates(&der)
                .unwrap()
                .remove(0);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            let partner = registry.check(&der, now).unwrap();
            Fixture {
                registry,
                partner,
                now,
                _dir: dir,
            }
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    if let Ok(envelope) = pb::SignedEnvelope::decode(data) {
        let _ = wagelink_gateway::envelope::verify::<pb::Lead>(
            &f.registry,
            &f.partner,
            envelope.clone(),
            f.now,
        );
        if let Ok(header) = pb::Header::decode(envelope.header.as_slice()) {
            let _ = payload_digest(&header.payload_type, &envelope.payload);
        }
    }
    let _ = payload_digest("wagelink.v1.AccountEventBatch", data);
});
