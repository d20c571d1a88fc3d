//! Partner identity over real mTLS: who is accepted, who is refused and how, and that registry
//! changes take effect at the next handshake without a restart.

use std::time::Duration;

use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use wagelink_adapters::client;
use wagelink_gateway::identity::{PartnerStatus, Refusal};
use wagelink_gateway::pki::LeafSpec;
use wagelink_proto::v1 as pb;
use wagelink_tests::{TestGateway, assert_ends_within_a_second, each_backend, who_am_i};

/// The full text of a failed call, including its transport error chain (where TLS alerts show).
fn describe(status: &tonic::Status) -> String {
    let mut text = format!("{status:?}");
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        text.push_str(&format!(" / {s}"));
        source = s.source();
    }
    text
}

/// Calls WhoAmI with `credentials` and returns the refusal the client saw.
async fn refused_call(gw: &TestGateway, credentials: &client::Credentials) -> String {
    let result = match client::connect(&gw.address(), credentials).await {
        Err(e) => return format!("{e:?}"),
        Ok(channel) => who_am_i(channel).await,
    };
    match result {
        Ok(me) => panic!("expected a refusal, the gateway accepted {:?}", me.partner),
        Err(status) => {
            assert_ne!(status.code(), Code::Ok);
            describe(&status)
        }
    }
}

/// A long-lived server stream (health Watch), with its first message read.
async fn open_stream(
    channel: tonic::transport::Channel,
) -> tonic::Streaming<tonic_health::pb::HealthCheckResponse> {
    let mut stream = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch opens")
        .into_inner();
    stream
        .message()
        .await
        .expect("first status")
        .expect("a status");
    stream
}

fn last_refusal(gw: &TestGateway) -> Refusal {
    gw.running
        .registry
        .recent_refusals()
        .last()
        .expect("a refusal was recorded")
        .refusal
        .clone()
}

#[tokio::test]
async fn a_registered_partner_is_accepted_and_its_handler_sees_its_identity() {
    for db in each_backend().await {
        let gw = TestGateway::start(db).await;
        let me = who_am_i(gw.channel_as("hrss-500112").await)
            .await
            .expect("WhoAmI");
        let partner = me.partner.expect("partner");
        assert_eq!(partner.id, "hrss-500112", "{}", gw.db_name);
        assert_eq!(partner.kind(), pb::PartnerKind::Hrss);
        assert_eq!(partner.jurisdiction.unwrap().region_codes, vec!["500112"]);
        assert_eq!(me.spiffe_id, "spiffe://wagelink.dev/partner/hrss-500112");
        let pem = std::fs::read(gw.partner_dir("hrss-500112").join("cert.pem")).unwrap();
        let der = wagelink_gateway::tls::pem_certificates(&pem)
            .unwrap()
            .remove(0);
        assert_eq!(
            me.certificate_sha256,
            wagelink_gateway::identity::fingerprint(&der)
        );

        let bank = who_am_i(gw.channel_as("bank-105").await)
            .await
            .unwrap()
            .partner
            .unwrap();
        assert_eq!(
            (bank.id.as_str(), bank.kind()),
            ("bank-105", pb::PartnerKind::Bank)
        );
        let housing = who_am_i(gw.channel_as("housing-500000").await)
            .await
            .unwrap()
            .partner
            .unwrap();
        assert_eq!(
            housing.jurisdiction.unwrap().industry(),
            pb::Industry::HousingMunicipal
        );
        gw.stop().await;
    }
}

#[tokio::test]
async fn health_answers_serving_over_mtls() {
    let gw = TestGateway::start(wagelink_tests::TestDb::sqlite().await).await;
    let mut health = HealthClient::new(gw.channel_as("source-national-platform").await);
    for service in ["", "wagelink.v1.Identity"] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|s| panic!("health of {service:?}: {s:?}"))
            .into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "{service:?}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let gw = TestGateway::start(wagelink_tests::TestDb::sqlite().await).await;
    let ca = gw.credentials("hrss-500112").ca_pem;
    let refusal = match client::connect_anonymous(&gw.address(), &ca).await {
        Err(e) => format!("{e:?}"),
        Ok(channel) => {
            let mut health = HealthClient::new(channel);
            let status = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .unwrap_err();
            describe(&status)
        }
    };
    assert!(refusal.contains("CertificateRequired"), "{refusal}");
    gw.stop().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let gw = TestGateway::start(wagelink_tests::TestDb::sqlite().await).await;
    let spec = LeafSpec::valid_for_days("hrss-500112".parse().unwrap(), "impostor", 30);

    // A CA the gateway has never heard of.
    let other_ca = wagelink_gateway::pki::FederationCa::generate("other.example").unwrap();
    let foreign = other_ca.issue_partner("wagelink.dev", &spec).unwrap();
    let seen = refused_call(&gw, &gw.credentials_for(&foreign)).await;
    assert!(seen.contains("UnknownCA"), "{seen}");
    match last_refusal(&gw) {
        Refusal::Chain(why) => assert!(why.contains("UnknownIssuer"), "{why}"),
        other => panic!("{other:?}"),
    }

    // A CA that copies the federation CA's name: its signature does not verify.
    let lookalike = wagelink_gateway::pki::FederationCa::generate("wagelink.dev").unwrap();
    let forged = lookalike.issue_partner("wagelink.dev", &spec).unwrap();
    let seen = refused_call(&gw, &gw.credentials_for(&forged)).await;
    assert!(seen.contains("DecryptError"), "{seen}");
    match last_refusal(&gw) {
        Refusal::Chain(why) => assert!(why.contains("BadSignature"), "{why}"),
        other => panic!("{other:?}"),
    }
    gw.stop().await;
}

#[tokio::test]
async fn an_unregistered_certificate_is_refused_then_accepted_once_registered() {
    for db in each_backend().await {
        let gw = TestGateway::start(db).await;
        let spec = LeafSpec::valid_for_days("bank-102".parse().unwrap(), "ICBC second key", 30);
        let issued = gw.issue(&spec);
        let creds = gw.credentials_for(&issued);
        let seen = refused_call(&gw, &creds).await;
        assert!(seen.contains("AccessDenied"), "{seen}");
        assert!(
            matches!(last_refusal(&gw), Refusal::Unregistered { .. }),
            "{}",
            gw.db_name
        );

        // Registering takes effect at the next handshake, without a restart.
        gw.running
            .registry
            .register_certificate(&issued.der)
            .await
            .unwrap();
        let me = who_am_i(gw.channel(&creds).await)
            .await
            .expect("accepted after registration");
        assert_eq!(me.partner.unwrap().id, "bank-102");
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_at_the_next_handshake_and_on_open_connections() {
    for db in each_backend().await {
        let gw = TestGateway::start(db).await;
        let open = gw.channel_as("bank-105").await;
        let me = who_am_i(open.clone()).await.unwrap();
        let mut stream = open_stream(gw.channel_as("bank-105").await).await;

        gw.running
            .registry
            .revoke_certificate(&me.certificate_sha256, "key compromise")
            .await
            .unwrap();

        let seen = refused_call(&gw, &gw.credentials("bank-105")).await;
        assert!(seen.contains("CertificateRevoked"), "{seen}");
        match last_refusal(&gw) {
            Refusal::Revoked {
                partner, reason, ..
            } => {
                assert_eq!(partner.as_str(), "bank-105");
                assert_eq!(reason, "key compromise");
            }
            other => panic!("{}: {other:?}", gw.db_name),
        }
        // A stream open on the revoked certificate ends within a second.
        assert_ends_within_a_second(&mut stream).await;
        // A connection opened before the revocation was closed: no further call gets through.
        who_am_i(open.clone())
            .await
            .expect_err("a call on a revoked certificate's connection");
        // The channel reconnects with the same TLS client (which would resume its session if
        // the gateway allowed it); the full handshake sees the revocation again.
        let revocations = || {
            gw.running
                .registry
                .recent_refusals()
                .iter()
                .filter(|r| matches!(r.refusal, Refusal::Revoked { .. }))
                .count()
        };
        let before = revocations();
        who_am_i(open)
            .await
            .expect_err("a reconnect on a revoked certificate");
        assert_eq!(
            revocations(),
            before + 1,
            "the reconnect skipped the certificate check"
        );
        gw.stop().await;
    }
}

#[tokio::test]
async fn an_expired_certificate_is_refused_as_expired() {
    let gw = TestGateway::start(wagelink_tests::TestDb::sqlite().await).await;
    let now = time::OffsetDateTime::now_utc();
    let spec = LeafSpec {
        partner: "court-500103".parse().unwrap(),
        common_name: "expired".into(),
        not_before: now - time::Duration::days(60),
        not_after: now - time::Duration::days(1),
    };
    let issued = gw.issue(&spec);
    // Pinned in the registry: only its validity is wrong.
    gw.running
        .registry
        .register_certificate(&issued.der)
        .await
        .unwrap();
    let seen = refused_call(&gw, &gw.credentials_for(&issued)).await;
    assert!(seen.contains("CertificateExpired"), "{seen}");
    assert!(
        matches!(last_refusal(&gw), Refusal::Expired { .. }),
        "{:?}",
        last_refusal(&gw)
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_suspended_partner_is_refused_and_reinstated_without_a_restart() {
    for db in each_backend().await {
        let gw = TestGateway::start(db).await;
        let id = "police-500103".parse().unwrap();
        let open = gw.channel_as("police-500103").await;
        who_am_i(open.clone()).await.unwrap();
        let mut stream = open_stream(open.clone()).await;

        gw.running
            .registry
            .set_partner_status(&id, PartnerStatus::Suspended)
            .await
            .unwrap();
        let seen = refused_call(&gw, &gw.credentials("police-500103")).await;
        assert!(seen.contains("AccessDenied"), "{seen}");
        assert!(
            matches!(last_refusal(&gw), Refusal::Suspended { .. }),
            "{}",
            gw.db_name
        );
        assert_ends_within_a_second(&mut stream).await;
        who_am_i(open.clone())
            .await
            .expect_err("a call on a suspended partner's connection");
        // Other partners are untouched.
        who_am_i(gw.channel_as("police-500112").await)
            .await
            .unwrap();

        gw.running
            .registry
            .set_partner_status(&id, PartnerStatus::Active)
            .await
            .unwrap();
        let me = who_am_i(gw.channel_as("police-500103").await)
            .await
            .unwrap();
        assert_eq!(me.partner.unwrap().id, "police-500103");
        gw.stop().await;
    }
}

#[tokio::test]
async fn changes_made_by_another_replica_arrive_with_the_periodic_reload() {
    let Some(db) = each_backend().await.pop() else {
        unreachable!()
    };
    let url = db.url.clone();
    let gw = TestGateway::start_with(db, |c| c.registry_reload_secs = 1).await;
    who_am_i(gw.channel_as("court-500112").await).await.unwrap();
    // Another process suspends the partner directly in the shared database.
    let other = wagelink_gateway::store::Store::open(&url).await.unwrap();
    let mut partner = other
        .partner(&"court-500112".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    partner.status = PartnerStatus::Suspended;
    other.update_partner(&partner).await.unwrap();
    let mut refused = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(channel) = client::connect(&gw.address(), &gw.credentials("court-500112")).await
            && who_am_i(channel).await.is_err()
        {
            refused = true;
            break;
        }
    }
    assert!(refused, "the suspension made elsewhere never took effect");
    gw.stop().await;
}
