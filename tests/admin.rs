//! Administration end to end over real mTLS: an operator onboards a bank, issues its
//! certificate from a CSR, rotates and revokes it while a stream is open on it; imported
//! certificates are inspected and each bad one is refused with its own reason; routing rules are
//! uploaded, staged, tried, activated and rolled back; and every admin action is in the log.

use prost::Message;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType, SignatureAlgorithm,
};
use tonic::Code;
use tonic::transport::Channel;
use wagelink_adapters::client::{self, Credentials};
use wagelink_gateway::pki::{FederationCa, LeafSpec};
use wagelink_proto::v1 as pb;
use wagelink_proto::v1::admin_client::AdminClient;
use wagelink_tests::{
    Signer, TestDb, TestGateway, assert_ends_within_a_second, each_backend, header, now, who_am_i,
};
use x509_parser::prelude::FromDer;

const ADMIN: &str = "admin-ops";

/// An operator's console: the Admin client and the admin's signer.
struct Console {
    client: AdminClient<Channel>,
    signer: Signer,
}

impl Console {
    async fn open(gw: &TestGateway) -> Self {
        Self {
            client: AdminClient::new(gw.channel_as(ADMIN).await),
            signer: gw.signer(ADMIN),
        }
    }

    fn seal<M: prost::Name>(&self, payload: &M) -> pb::SignedEnvelope {
        self.signer
            .seal(header(ADMIN), payload)
            .expect("sealing an admin payload")
    }
}

/// A fresh ECDSA P-256 key and a PEM CSR for it, as a partner makes them.
fn csr() -> (KeyPair, String) {
    let key = KeyPair::generate().expect("a key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "whatever the partner writes here");
    let csr = params.serialize_request(&key).expect("a CSR");
    (key, csr.pem().expect("PEM"))
}

/// Whether a connection with `credentials` is refused (at the handshake or at the first call).
async fn refused(gw: &TestGateway, credentials: &Credentials) -> bool {
    match client::connect(&gw.address(), credentials).await {
        Err(_) => true,
        Ok(channel) => who_am_i(channel).await.is_err(),
    }
}

fn credentials(gw: &TestGateway, cert_pem: &str, key: &KeyPair) -> Credentials {
    Credentials {
        ca_pem: gw.ca().cert_pem().as_bytes().to_vec(),
        cert_pem: cert_pem.as_bytes().to_vec(),
        key_pem: key.serialize_pem().into_bytes(),
    }
}

fn bank(id: &str) -> pb::OnboardPartner {
    pb::OnboardPartner {
        partner_id: id.into(),
        kind: pb::PartnerKind::Bank as i32,
        name: "重庆农村商业银行".into(),
        jurisdiction: Some(pb::Jurisdiction {
            region_codes: vec!["500000".into()],
            industry: 0,
        }),
        reason: "new wage-account bank".into(),
    }
}

fn receipt_body(envelope: &pb::SignedEnvelope) -> pb::Receipt {
    pb::Receipt::decode(envelope.payload.as_slice()).expect("a receipt body")
}

/// The admin entries of the log: (admin, target, payload type).
async fn admin_entries(gw: &TestGateway) -> Vec<(String, String, String)> {
    let log = &gw.running.log;
    let entries = log.store().entries(0, log.size(), false).await.unwrap();
    entries
        .iter()
        .filter_map(
            |e| match pb::EntryBody::decode(e.entry.as_slice()).ok()?.kind? {
                pb::entry_body::Kind::Admin(a) => {
                    let header = pb::Header::decode(a.header.as_slice()).ok()?;
                    assert_eq!(
                        wagelink_proto::envelope::sha256(&a.payload).to_vec(),
                        a.payload_sha256,
                        "an admin entry keeps its payload in full"
                    );
                    Some((a.admin, a.target, header.payload_type))
                }
                _ => None,
            },
        )
        .collect()
}

#[tokio::test]
async fn a_bank_is_onboarded_issued_from_its_csr_rotated_and_revoked_on_both_backends() {
    for db in each_backend().await {
        let gw = TestGateway::start(db).await;
        let name = gw.db_name;
        let mut console = Console::open(&gw).await;

        // Onboarding: once; the same envelope again gets the same receipt.
        let onboard = console.seal(&bank("bank-301"));
        let first = console
            .client
            .onboard_partner(onboard.clone())
            .await
            .unwrap()
            .into_inner()
            .receipt
            .unwrap();
        let again = console
            .client
            .onboard_partner(onboard)
            .await
            .unwrap()
            .into_inner()
            .receipt
            .unwrap();
        assert_eq!(
            receipt_body(&first).log_index,
            receipt_body(&again).log_index
        );
        let taken = console
            .client
            .onboard_partner(console.seal(&bank("bank-301")))
            .await
            .unwrap_err();
        assert_eq!(taken.code(), Code::AlreadyExists, "{name}: {taken:?}");

        // Its first certificate, issued from the bank's own CSR; the bank connects with it.
        let (old_key, old_csr) = csr();
        let issue = console.seal(&pb::IssueCertificate {
            partner_id: "bank-301".into(),
            csr_pem: old_csr,
            profile: "partner".into(),
            validity_days: 90,
        });
        let old = console
            .client
            .issue_certificate(issue.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(old.chain_pem, gw.ca().cert_pem());
        // Resending the request returns the certificate issued the first time, not another.
        let resent = console
            .client
            .issue_certificate(issue)
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resent.sha256, old.sha256, "{name}");
        assert_eq!(resent.certificate_pem, old.certificate_pem, "{name}");
        let old_credentials = credentials(&gw, &old.certificate_pem, &old_key);
        let me = who_am_i(gw.channel(&old_credentials).await).await.unwrap();
        assert_eq!(me.partner.unwrap().id, "bank-301");
        assert_eq!(me.certificate_sha256, old.sha256);
        let not_after = me.certificate_not_after.unwrap().seconds;
        assert!(
            (not_after - now() - 90 * 86_400).abs() < 7200,
            "{name}: 90 days"
        );

        // Rotation: a second certificate; during the overlap both work.
        let (new_key, new_csr) = csr();
        let new = console
            .client
            .issue_certificate(console.seal(&pb::IssueCertificate {
                partner_id: "bank-301".into(),
                csr_pem: new_csr,
                profile: String::new(),
                validity_days: 0,
            }))
            .await
            .unwrap()
            .into_inner();
        assert_ne!(new.sha256, old.sha256);
        let new_credentials = credentials(&gw, &new.certificate_pem, &new_key);
        assert_eq!(
            who_am_i(gw.channel(&new_credentials).await)
                .await
                .unwrap()
                .certificate_sha256,
            new.sha256
        );
        let old_channel = gw.channel(&old_credentials).await;
        assert!(who_am_i(old_channel.clone()).await.is_ok(), "{name}");
        let details = console
            .client
            .get_partner(pb::GetPartnerRequest {
                partner_id: "bank-301".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(details.certificates.len(), 2, "{name}");
        assert!(
            details
                .certificates
                .iter()
                .all(|c| c.status == pb::CertificateStatus::Active as i32)
        );

        // A stream open on the old certificate when it is revoked ends within a second.
        let mut stream = pb::delivery_client::DeliveryClient::new(old_channel)
            .subscribe(pb::SubscribeRequest {
                from_cursor: 0,
                window: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let open = console
            .client
            .get_partner(pb::GetPartnerRequest {
                partner_id: "bank-301".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(open.mailbox.unwrap().open_streams, 1, "{name}");
        console
            .client
            .revoke_certificate(console.seal(&pb::RevokeCertificate {
                sha256: old.sha256.clone(),
                reason: pb::RevocationReason::Superseded as i32,
                comment: "rotated to the new key".into(),
            }))
            .await
            .unwrap();
        assert_ends_within_a_second(&mut stream).await;
        assert!(
            refused(&gw, &old_credentials).await,
            "{name}: the revoked certificate is refused"
        );
        // The new certificate keeps working.
        assert_eq!(
            who_am_i(gw.channel(&new_credentials).await)
                .await
                .unwrap()
                .certificate_sha256,
            new.sha256
        );
        let twice = console
            .client
            .revoke_certificate(console.seal(&pb::RevokeCertificate {
                sha256: old.sha256.clone(),
                reason: pb::RevocationReason::Superseded as i32,
                comment: String::new(),
            }))
            .await
            .unwrap_err();
        assert_eq!(twice.code(), Code::FailedPrecondition, "{name}: {twice:?}");

        // The certificates as listed, and the CRL the CA signs.
        let listed = console
            .client
            .list_certificates(pb::ListCertificatesRequest {
                partner_id: "bank-301".into(),
                expiring_within_days: 0,
                include_revoked: true,
            })
            .await
            .unwrap()
            .into_inner()
            .certificates;
        let revoked = listed.iter().find(|c| c.sha256 == old.sha256).unwrap();
        assert_eq!(revoked.status, pb::CertificateStatus::Revoked as i32);
        assert_eq!(
            revoked.revocation_reason,
            pb::RevocationReason::Superseded as i32
        );
        let crl = console
            .client
            .export_crl(pb::ExportCrlRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(crl.pem.starts_with("-----BEGIN X509 CRL-----"));
        let (_, parsed) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(&crl.der)
                .expect("a DER CRL");
        let serials: Vec<String> = parsed
            .iter_revoked_certificates()
            .map(|r| hex::encode(r.raw_serial()))
            .collect();
        assert_eq!(serials, vec![revoked.serial.clone()], "{name}");
        let ca_der = x509_parser::pem::parse_x509_pem(gw.ca().cert_pem().as_bytes())
            .unwrap()
            .1
            .contents;
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        parsed
            .verify_signature(ca.public_key())
            .expect("the CRL is signed by the federation CA");

        // Every change is an admin entry naming the admin and what it changed.
        let entries = admin_entries(&gw).await;
        let targets: Vec<(&str, &str)> = entries
            .iter()
            .map(|(_, t, ty)| (t.as_str(), ty.as_str()))
            .collect();
        assert_eq!(
            targets,
            vec![
                ("bank-301", "wagelink.v1.OnboardPartner"),
                (old.sha256.as_str(), "wagelink.v1.IssueCertificate"),
                (new.sha256.as_str(), "wagelink.v1.IssueCertificate"),
                (old.sha256.as_str(), "wagelink.v1.RevokeCertificate"),
            ],
            "{name}"
        );
        assert!(entries.iter().all(|(admin, _, _)| admin == ADMIN));
        gw.stop().await;
    }
}

/// An RSA public key of `bits` bits (a modulus with its top bit set, exponent 65537): enough
/// for a CA to sign a certificate around it, which is all the inspection needs.
struct RsaPublicKey(Vec<u8>);

impl RsaPublicKey {
    fn new(bits: usize) -> Self {
        let mut modulus = vec![0u8];
        modulus.push(0xc5);
        modulus.extend(std::iter::repeat_n(0x5a, bits / 8 - 2));
        modulus.push(0x01);
        let mut n = vec![0x02, 0x81, modulus.len() as u8];
        n.extend(&modulus);
        let e = [0x02, 0x03, 0x01, 0x00, 0x01];
        let mut der = vec![0x30, 0x81, (n.len() + e.len()) as u8];
        der.extend(&n);
        der.extend(e);
        Self(der)
    }
}

impl PublicKeyData for RsaPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

/// Certificate parameters for `partner` as the `partner` profile has them.
fn partner_params(gw: &TestGateway, partner: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, partner);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(
        format!("spiffe://{}/partner/{partner}", gw.config.trust_domain)
            .try_into()
            .unwrap(),
    )];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(30);
    params
}

#[tokio::test]
async fn each_bad_certificate_is_refused_with_its_own_reason() {
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let mut console = Console::open(&gw).await;
    console
        .client
        .onboard_partner(console.seal(&bank("bank-302")))
        .await
        .unwrap();
    let pki = gw.config.data_dir.join("pki");
    let issuer = Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(pki.join("federation-ca.pem")).unwrap(),
        KeyPair::from_pem(&std::fs::read_to_string(pki.join("federation-ca.key")).unwrap())
            .unwrap(),
    )
    .unwrap();
    let sign = |params: &CertificateParams| {
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &issuer).unwrap().pem()
    };

    let mut wrong_san = partner_params(&gw, "bank-302");
    wrong_san.subject_alt_names = vec![SanType::URI(
        "spiffe://wagelink.dev/partner/bank-999".try_into().unwrap(),
    )];
    let mut expired = partner_params(&gw, "bank-302");
    expired.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(60);
    expired.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let mut wrong_usage = partner_params(&gw, "bank-302");
    wrong_usage.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    let other_ca = FederationCa::generate(&gw.config.trust_domain)
        .unwrap()
        .issue_partner(
            &gw.config.trust_domain,
            &LeafSpec::valid_for_days("bank-302".parse().unwrap(), "bank", 30),
        )
        .unwrap()
        .cert_pem;
    let rsa_1024 = partner_params(&gw, "bank-302")
        .signed_by(&RsaPublicKey::new(1024), &issuer)
        .unwrap()
        .pem();

    let cases = [
        (
            "wrong SAN",
            sign(&wrong_san),
            "SAN URI is spiffe://wagelink.dev/partner/bank-999",
        ),
        ("expired", sign(&expired), "expired at"),
        (
            "wrong key usage",
            sign(&wrong_usage),
            "keyUsage is [keyEncipherment]",
        ),
        (
            "another CA",
            other_ca,
            "does not chain to this federation's CA",
        ),
        ("RSA-1024", rsa_1024, "RSA 1024-bit key"),
    ];
    let size_before = gw.running.log.size();
    let mut messages = Vec::new();
    for (what, pem, reason) in cases {
        let status = console
            .client
            .import_certificate(console.seal(&pb::ImportCertificate {
                partner_id: "bank-302".into(),
                certificate_pem: pem,
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status.message().contains(reason),
            "{what}: {:?} does not say {reason:?}",
            status.message()
        );
        messages.push(status.message().to_owned());
    }
    for (i, a) in messages.iter().enumerate() {
        for b in &messages[i + 1..] {
            assert_ne!(a, b, "two bad certificates got the same reason");
        }
    }
    assert_eq!(
        gw.running.log.size(),
        size_before,
        "a refused import writes nothing"
    );

    // A good certificate from the federation CA imports once, and then connects.
    let key = KeyPair::generate().unwrap();
    let good = partner_params(&gw, "bank-302")
        .signed_by(&key, &issuer)
        .unwrap();
    let import = pb::ImportCertificate {
        partner_id: "bank-302".into(),
        certificate_pem: good.pem(),
    };
    console
        .client
        .import_certificate(console.seal(&import))
        .await
        .unwrap();
    let twice = console
        .client
        .import_certificate(console.seal(&import))
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::AlreadyExists, "{twice:?}");
    let me = who_am_i(gw.channel(&credentials(&gw, &good.pem(), &key)).await)
        .await
        .unwrap();
    assert_eq!(me.partner.unwrap().id, "bank-302");

    // A CSR the profile does not allow, and a profile that does not exist.
    let (_, csr_pem) = csr();
    for (profile, days, needle) in [
        (
            "server",
            0,
            "profile \"server\" is unknown: use one of partner",
        ),
        (
            "partner",
            5000,
            "beyond profile partner's maximum of 825 days",
        ),
    ] {
        let status = console
            .client
            .issue_certificate(console.seal(&pb::IssueCertificate {
                partner_id: "bank-302".into(),
                csr_pem: csr_pem.clone(),
                profile: profile.into(),
                validity_days: days,
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(needle), "{status:?}");
    }
    let status = console
        .client
        .issue_certificate(
            console.seal(&pb::IssueCertificate {
                partner_id: "bank-302".into(),
                csr_pem:
                    "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                        .into(),
                profile: String::new(),
                validity_days: 0,
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("csr_pem"), "{status:?}");
    gw.stop().await;
}

fn lead_in(region: &str) -> pb::Lead {
    pb::Lead {
        channel: pb::LeadChannel::NationalPlatform as i32,
        lead_type: pb::LeadType::Arrears as i32,
        region_code: region.into(),
        sector: pb::Sector::Manufacturing as i32,
        employer_name: format!("某机械厂 {}", uuid::Uuid::new_v4()),
        amount_fen: 1_200_000,
        worker_count: 3,
        ..Default::default()
    }
}

const CITY_RULES: &str = "[[rule]]\nid = \"city\"\ndescription = \"everything to the city office\"\nhandler = \"hrss-500000\"\n\n[defaults]\nclocks = { sign_for = 1, handle = 10, feed_back = 3 }\n";

#[tokio::test]
async fn routing_rules_are_uploaded_staged_tried_activated_and_rolled_back() {
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let mut console = Console::open(&gw).await;
    let versions = console
        .client
        .list_rule_versions(pb::ListRuleVersionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(versions.len(), 1);
    assert!(versions[0].active && versions[0].uploaded_by == "configuration");

    // Refused uploads: the line and the reason.
    for (text, needle) in [
        (
            &CITY_RULES.replace("handler =", "when.sectors = [\"mining\"]\nhandler =") as &str,
            "line 2: rule \"city\": sector \"mining\" is unknown",
        ),
        (
            &CITY_RULES.replace("hrss-500000", "hrss-500199") as &str,
            "line 2",
        ),
        (
            &format!("version = 7\n{CITY_RULES}") as &str,
            "becomes version 2",
        ),
    ] {
        let status = console
            .client
            .upload_rules(console.seal(&pb::UploadRules {
                rules_text: text.into(),
                comment: "try".into(),
                stage_only: false,
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(needle), "{status:?}");
    }

    // Staged: stored, not active; a dry run can use it.
    let staged = console
        .client
        .upload_rules(console.seal(&pb::UploadRules {
            rules_text: CITY_RULES.into(),
            comment: "drill: everything to the city".into(),
            stage_only: true,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((staged.version, staged.active), (2, false));
    let dry = |version: u32| pb::DryRunRulesRequest {
        lead: Some(lead_in("500112")),
        version,
    };
    let on_staged = console
        .client
        .dry_run_rules(dry(2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (on_staged.handler.as_str(), on_staged.rule_version),
        ("hrss-500000", 2)
    );
    let on_active = console
        .client
        .dry_run_rules(dry(0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (on_active.handler.as_str(), on_active.rule_version),
        ("hrss-500112", 1)
    );
    let missing = console.client.dry_run_rules(dry(9)).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let duplicate = console
        .client
        .upload_rules(console.seal(&pb::UploadRules {
            rules_text: CITY_RULES.into(),
            comment: String::new(),
            stage_only: false,
        }))
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    assert!(duplicate.message().contains("version 2"), "{duplicate:?}");

    // Activated: new leads follow it at once.
    let rollback = |version: u32| pb::RollbackRules {
        version,
        reason: "drill".into(),
    };
    console
        .client
        .rollback_rules(console.seal(&rollback(2)))
        .await
        .unwrap();
    let receipt =
        wagelink_tests::submit_lead(&gw, "source-national-platform", &lead_in("500112")).await;
    assert_eq!(
        receipt.routed_to[0].partner_id, "hrss-500000",
        "{receipt:?}"
    );
    let already = console
        .client
        .rollback_rules(console.seal(&rollback(2)))
        .await
        .unwrap_err();
    assert_eq!(already.code(), Code::FailedPrecondition, "{already:?}");
    let nowhere = console
        .client
        .rollback_rules(console.seal(&rollback(99)))
        .await
        .unwrap_err();
    assert_eq!(nowhere.code(), Code::NotFound, "{nowhere:?}");

    // Rolled back to version 1; that survives a restart.
    console
        .client
        .rollback_rules(console.seal(&rollback(1)))
        .await
        .unwrap();
    let gw = gw.restart().await;
    let mut console = Console::open(&gw).await;
    let versions = console
        .client
        .list_rule_versions(pb::ListRuleVersionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .versions;
    let shown: Vec<(u32, bool, &str)> = versions
        .iter()
        .map(|v| (v.version, v.active, v.uploaded_by.as_str()))
        .collect();
    assert_eq!(shown, vec![(2, false, ADMIN), (1, true, "configuration")]);
    assert_eq!(
        (versions[0].log_index, versions[0].rule_count),
        (receipt_body(staged.receipt.as_ref().unwrap()).log_index, 1)
    );
    let receipt =
        wagelink_tests::submit_lead(&gw, "source-national-platform", &lead_in("500112")).await;
    assert_eq!(receipt.routed_to[0].partner_id, "hrss-500112");
    gw.stop().await;
}

#[tokio::test]
async fn only_admins_reach_the_admin_service_and_its_safeguards_hold() {
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let mut console = Console::open(&gw).await;

    let denied = AdminClient::new(gw.channel_as("hrss-500112").await)
        .list_partners(pb::ListPartnersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // Pages of 10 cover every partner once, in id order.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = console
            .client
            .list_partners(pb::ListPartnersRequest {
                page_size: 10,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.partners.into_iter().map(|p| p.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted);
    assert_eq!(seen.len(), gw.running.registry.partners().len());
    let bad_token = console
        .client
        .list_partners(pb::ListPartnersRequest {
            page_token: "bm90IG91cnM".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_token.code(), Code::InvalidArgument);
    let yubei: Vec<String> = console
        .client
        .list_partners(pb::ListPartnersRequest {
            kind: pb::PartnerKind::Hrss as i32,
            region_code: "500112".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .partners
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(yubei, vec!["hrss-500000", "hrss-500112"]);

    // Bad onboarding requests say what to fix.
    for (request, needle) in [
        (
            pb::OnboardPartner {
                kind: 0,
                ..bank("bank-303")
            },
            "kind is required",
        ),
        (
            pb::OnboardPartner {
                jurisdiction: Some(pb::Jurisdiction {
                    region_codes: vec!["509999".into()],
                    industry: 0,
                }),
                ..bank("bank-303")
            },
            "509999",
        ),
        (
            pb::OnboardPartner {
                kind: pb::PartnerKind::Housing as i32,
                ..bank("housing-500112")
            },
            "set jurisdiction.industry",
        ),
        (
            pb::OnboardPartner {
                kind: pb::PartnerKind::Housing as i32,
                jurisdiction: Some(pb::Jurisdiction {
                    region_codes: vec!["500112".into()],
                    industry: pb::Industry::Water as i32,
                }),
                ..bank("housing-500112")
            },
            "a housing authority does not supervise water",
        ),
        (
            pb::OnboardPartner {
                partner_id: "Bank_303".into(),
                ..bank("x")
            },
            "partner_id",
        ),
    ] {
        let status = console
            .client
            .onboard_partner(console.seal(&request))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(needle), "{status:?}");
    }

    // An admin can neither suspend itself nor revoke the certificate it calls with.
    let me = who_am_i(gw.channel_as(ADMIN).await).await.unwrap();
    let status = console
        .client
        .suspend_partner(console.seal(&pb::SuspendPartner {
            partner_id: ADMIN.into(),
            reason: "oops".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let status = console
        .client
        .revoke_certificate(console.seal(&pb::RevokeCertificate {
            sha256: me.certificate_sha256.clone(),
            reason: 0,
            comment: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

    // Suspension closes the partner's streams at once; reinstatement lets it back in.
    let channel = gw.channel_as("bank-105").await;
    let mut stream = pb::delivery_client::DeliveryClient::new(channel)
        .subscribe(pb::SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let suspend = pb::SuspendPartner {
        partner_id: "bank-105".into(),
        reason: "audit of its wage-account practice".into(),
    };
    console
        .client
        .suspend_partner(console.seal(&suspend))
        .await
        .unwrap();
    assert_ends_within_a_second(&mut stream).await;
    assert!(refused(&gw, &gw.credentials("bank-105")).await);
    let again = console
        .client
        .suspend_partner(console.seal(&suspend))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    console
        .client
        .reinstate_partner(console.seal(&pb::ReinstatePartner {
            partner_id: "bank-105".into(),
            reason: "audit closed".into(),
        }))
        .await
        .unwrap();
    assert!(who_am_i(gw.channel_as("bank-105").await).await.is_ok());

    // A jurisdiction change applies at once.
    console
        .client
        .change_jurisdiction(console.seal(&pb::ChangeJurisdiction {
            partner_id: "police-500112".into(),
            jurisdiction: Some(pb::Jurisdiction {
                region_codes: vec!["500112".into(), "500113".into()],
                industry: 0,
            }),
            reason: "merged bureaus".into(),
        }))
        .await
        .unwrap();
    let police = who_am_i(gw.channel_as("police-500112").await)
        .await
        .unwrap();
    assert_eq!(
        police.partner.unwrap().jurisdiction.unwrap().region_codes,
        vec!["500112", "500113"]
    );
    let unknown = console
        .client
        .change_jurisdiction(console.seal(&pb::ChangeJurisdiction {
            partner_id: "police-500999".into(),
            jurisdiction: None,
            reason: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    // Certificates expiring soon: the roster's are a year out.
    let soon = console
        .client
        .list_certificates(pb::ListCertificatesRequest {
            expiring_within_days: 30,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .certificates;
    assert!(soon.is_empty(), "{soon:?}");
    let year = console
        .client
        .list_certificates(pb::ListCertificatesRequest {
            expiring_within_days: 400,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .certificates;
    assert_eq!(year.len(), gw.running.registry.partners().len());
    gw.stop().await;
}

/// Runs `wagelink admin …` as admin-ops against `gw`; returns what it printed.
async fn admin_command(gw: &TestGateway, args: &[&str]) -> Result<String, String> {
    use clap::Parser;
    let credentials = gw.partner_dir(ADMIN);
    let gateway = gw.address().uri;
    let mut argv = vec![
        "wagelink",
        "admin",
        "--gateway",
        &gateway,
        "--credentials",
        credentials.to_str().unwrap(),
    ];
    argv.extend_from_slice(args);
    let cli = wagelink_gateway::cli::Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    let wagelink_gateway::cli::Command::Admin(args) = cli.command else {
        panic!("not an admin command")
    };
    let mut out = Vec::new();
    wagelink_gateway::admin_cli::run(args, &mut out)
        .await
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn the_admin_command_line_drives_the_service() {
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();

    // Rotation from a CSR file: the certificate and its chain are written out, and the
    // output names the certificate still active and how to revoke it.
    let (key, csr_pem) = csr();
    std::fs::write(path("bank.csr"), csr_pem).unwrap();
    let out = admin_command(
        &gw,
        &[
            "certificate",
            "rotate",
            "--partner",
            "bank-105",
            "--csr",
            &path("bank.csr"),
            "--out",
            &path("bank.pem"),
        ],
    )
    .await
    .unwrap();
    let roster = who_am_i(gw.channel_as("bank-105").await).await.unwrap();
    assert!(
        out.contains(&format!(
            "wagelink admin certificate revoke {} --reason superseded",
            roster.certificate_sha256
        )),
        "{out}"
    );
    let pem = std::fs::read_to_string(path("bank.pem")).unwrap();
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2, "{pem}");
    let me = who_am_i(gw.channel(&credentials(&gw, &pem, &key)).await)
        .await
        .unwrap();
    assert_eq!(me.partner.unwrap().id, "bank-105");

    // JSON output parses, one object per certificate.
    let out = admin_command(
        &gw,
        &["--json", "certificate", "list", "--partner", "bank-105"],
    )
    .await
    .unwrap();
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.len(), 2, "{out}");
    assert!(listed.iter().any(|c| c["sha256"] == me.certificate_sha256));

    let out = admin_command(&gw, &["partner", "list", "--kind", "bank"])
        .await
        .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("id"), "{out}");
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[1].starts_with("bank-102") && lines[2].starts_with("bank-105"));

    // Rules through the command line: staged, tried.
    std::fs::write(path("rules.toml"), CITY_RULES).unwrap();
    let out = admin_command(
        &gw,
        &["--json", "rules", "upload", &path("rules.toml"), "--stage"],
    )
    .await
    .unwrap();
    let uploaded: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(uploaded[0]["version"], "2");
    assert_eq!(uploaded[0]["active"], "false");
    let out = admin_command(
        &gw,
        &["rules", "dry-run", "--version", "2", "--region", "500112"],
    )
    .await
    .unwrap();
    assert!(
        out.contains("hrss-500000") && out.contains("handler"),
        "{out}"
    );

    // A refusal reaches the operator with its reason.
    let err = admin_command(
        &gw,
        &["partner", "suspend", "--id", ADMIN, "--reason", "test"],
    )
    .await
    .unwrap_err();
    assert!(err.contains("cannot suspend itself"), "{err}");
    let err = admin_command(&gw, &["partner", "list", "--kind", "wizard"])
        .await
        .unwrap_err();
    assert!(err.contains("partner kind \"wizard\" is unknown"), "{err}");
    gw.stop().await;
}

#[tokio::test]
async fn the_first_admin_of_a_new_database_is_bootstrapped_once() {
    use wagelink_gateway::admin_cli::{BootstrapArgs, bootstrap};
    let dir = tempfile::tempdir().unwrap();
    let (mut config, _) = wagelink_gateway::pki::dev::prepare(dir.path()).unwrap();
    let db = TestDb::sqlite().await;
    config.database_url = Some(db.url.clone());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let pki = config.data_dir.join("pki");
    let ca = FederationCa::load(
        &std::fs::read_to_string(pki.join("federation-ca.pem")).unwrap(),
        &std::fs::read_to_string(pki.join("federation-ca.key")).unwrap(),
    )
    .unwrap();
    let issued = ca
        .issue_partner(
            &config.trust_domain,
            &LeafSpec::valid_for_days("admin-city".parse().unwrap(), "运维组", 90),
        )
        .unwrap();
    let cert = dir.path().join("admin-city.pem");
    std::fs::write(&cert, &issued.cert_pem).unwrap();
    let args = || BootstrapArgs {
        config: dir.path().join("wagelink.toml"),
        database_url: Some(db.url.clone()),
        id: "admin-city".into(),
        name: "运维组".into(),
        cert: cert.clone(),
    };
    let mut out = Vec::new();
    bootstrap(args(), &mut out).await.unwrap();
    let printed = String::from_utf8(out).unwrap();
    assert!(printed.contains("onboarded admin-city"), "{printed}");
    let again = bootstrap(args(), &mut Vec::new()).await.unwrap_err();
    assert!(
        again
            .to_string()
            .contains("admin-city is already an active admin"),
        "{again}"
    );

    // The gateway starts on that database and the new admin administers it.
    let (store, registry) = wagelink_gateway::server::open(&config).await.unwrap();
    let running = wagelink_gateway::server::start(&config, store, registry)
        .await
        .unwrap();
    let credentials = Credentials {
        ca_pem: ca.cert_pem().as_bytes().to_vec(),
        cert_pem: issued.cert_pem.into_bytes(),
        key_pem: issued.key_pem.into_bytes(),
    };
    let address = client::GatewayAddress {
        uri: format!("https://{}", running.local_addr),
        server_name: "localhost".into(),
    };
    let channel = client::connect(&address, &credentials).await.unwrap();
    let partners = AdminClient::new(channel)
        .list_partners(pb::ListPartnersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .partners;
    assert_eq!(
        partners.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        vec!["admin-city"]
    );
    // Both changes are in the log, as admin entries the gateway signed.
    let entries = running
        .log
        .store()
        .entries(0, running.log.size(), false)
        .await
        .unwrap();
    let admins: Vec<(String, String)> = entries
        .iter()
        .filter_map(
            |e| match pb::EntryBody::decode(e.entry.as_slice()).ok()?.kind? {
                pb::entry_body::Kind::Admin(a) => Some((a.admin, a.target)),
                _ => None,
            },
        )
        .collect();
    assert_eq!(admins.len(), 2);
    assert!(admins.iter().all(|(admin, _)| admin == "gateway"));
    assert_eq!(admins[0].1, "admin-city");
    running.shutdown().await.unwrap();
}

/// A lead accepted once keeps its receipt when it is sent again after the registry changed so
/// that today's rules no longer route it (its handler suspended); a new lead is refused.
#[tokio::test]
async fn a_resubmitted_lead_gets_its_receipt_though_todays_rules_refuse_it() {
    for db in each_backend().await {
        let gw = TestGateway::start(db).await;
        let mut console = Console::open(&gw).await;
        console
            .client
            .upload_rules(console.seal(&pb::UploadRules {
                rules_text: CITY_RULES.into(),
                comment: "everything to the city".into(),
                stage_only: false,
            }))
            .await
            .unwrap();
        let me = "source-national-platform";
        let signer = gw.signer(me);
        let submit = |env: pb::SignedEnvelope| {
            let channel = gw.channel_as(me);
            async move {
                pb::cases_client::CasesClient::new(channel.await)
                    .submit_lead(env)
                    .await
            }
        };
        let env = signer.seal(header(me), &lead_in("500112")).unwrap();
        let first = submit(env.clone()).await.unwrap().into_inner();
        let size = gw.running.log.size();
        console
            .client
            .suspend_partner(console.seal(&pb::SuspendPartner {
                partner_id: "hrss-500000".into(),
                reason: "drill".into(),
            }))
            .await
            .unwrap();
        let again = submit(env).await.unwrap().into_inner();
        assert_eq!(again.receipt, first.receipt, "{}", gw.db_name);
        let other = signer.seal(header(me), &lead_in("500112")).unwrap();
        let e = submit(other).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("no routing rule"), "{e:?}");
        // The suspension is the only entry since the lead.
        assert_eq!(gw.running.log.size(), size + 1, "{}", gw.db_name);
        gw.stop().await;
    }
}
