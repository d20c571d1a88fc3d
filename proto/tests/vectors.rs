//! The envelope test vectors in testdata/vectors/<alg>/: keys and certificates made by openssl,
//! signatures over pae.bin made by openssl. Our code must verify openssl's signatures and reject
//! tampered ones, and openssl must verify ours, for ECDSA P-256, Ed25519 and SM2 — the format is
//! interoperable, not just self-consistent.

use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use wagelink_proto::envelope::{Algorithm, PublicKey, Signer, header_pae, keyid, sha256};
use wagelink_proto::v1 as pb;

const ALGORITHMS: [(&str, Algorithm); 3] = [
    ("p256", Algorithm::EcdsaP256Sha256),
    ("ed25519", Algorithm::Ed25519),
    ("sm2", Algorithm::Sm2Sm3),
];

fn dir(alg: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/vectors")
        .join(alg)
}

fn read(alg: &str, file: &str) -> Vec<u8> {
    std::fs::read(dir(alg).join(file)).unwrap_or_else(|e| panic!("{alg}/{file}: {e}"))
}

fn cert_der(alg: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(&read(alg, "cert.pem"))
        .unwrap()
        .as_ref()
        .to_vec()
}

#[test]
fn the_files_of_each_vector_agree_with_each_other() {
    for (alg, expected) in ALGORITHMS {
        let header_bytes = read(alg, "header.bin");
        let header = pb::Header::decode(header_bytes.as_slice()).unwrap();
        assert_eq!(
            header.payload_sha256,
            sha256(&read(alg, "payload.bin")),
            "{alg}"
        );
        assert_eq!(header.payload_type, "wagelink.v1.Lead");
        assert_eq!(header_pae(&header_bytes), read(alg, "pae.bin"), "{alg}");
        let pae_text = read(alg, "pae.bin");
        assert!(
            pae_text.starts_with(b"DSSEv1 43 application/vnd.wagelink.header.v1+protobuf 111 ")
        );
        let id = String::from_utf8(read(alg, "keyid.txt")).unwrap();
        assert_eq!(id.trim(), keyid(&cert_der(alg)), "{alg}");
        assert_eq!(
            PublicKey::from_certificate(&cert_der(alg))
                .unwrap()
                .algorithm(),
            expected
        );
    }
}

#[test]
fn openssl_signatures_verify_and_tampering_is_caught() {
    for (alg, _) in ALGORITHMS {
        let key = PublicKey::from_certificate(&cert_der(alg)).unwrap();
        let pae = read(alg, "pae.bin");
        let sig = read(alg, "sig.bin");
        key.verify(&pae, &sig, alg)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));

        let mut header = read(alg, "header.bin");
        header[20] ^= 1;
        assert!(
            key.verify(&header_pae(&header), &sig, alg).is_err(),
            "{alg}: tampered header accepted"
        );
        let mut bad_sig = sig.clone();
        let last = bad_sig.len() - 1;
        bad_sig[last] ^= 1;
        assert!(
            key.verify(&pae, &bad_sig, alg).is_err(),
            "{alg}: tampered signature accepted"
        );
        // A signature from another algorithm's vector never verifies.
        let other = if alg == "p256" { "sm2" } else { "p256" };
        assert!(
            key.verify(&pae, &read(other, "sig.bin"), alg).is_err(),
            "{alg}"
        );
    }
}

fn openssl_available() -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must cross-check signatures with the openssl command line, which is missing"
        );
        eprintln!("openssl not found: skipping the cross-check with openssl");
    }
    found
}

/// Verifies `sig` over `message` with the openssl command line and the certificate's key.
fn openssl_verifies(alg: &str, message: &[u8], sig: &[u8]) -> bool {
    let tmp = tempfile::tempdir().unwrap();
    let (msg_path, sig_path, pub_path) = (
        tmp.path().join("m"),
        tmp.path().join("s"),
        tmp.path().join("pub.pem"),
    );
    std::fs::write(&msg_path, message).unwrap();
    std::fs::write(&sig_path, sig).unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(dir(alg).join("cert.pem"))
        .output()
        .unwrap();
    std::fs::write(&pub_path, out.stdout).unwrap();
    let mut cmd = Command::new("openssl");
    match alg {
        "p256" => cmd
            .args(["dgst", "-sha256", "-verify"])
            .arg(&pub_path)
            .arg("-signature")
            .arg(&sig_path)
            .arg(&msg_path),
        "ed25519" => cmd
            .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
            .arg(&pub_path)
            .args(["-rawin", "-in"])
            .arg(&msg_path)
            .arg("-sigfile")
            .arg(&sig_path),
        "sm2" => cmd
            .args([
                "dgst",
                "-sm3",
                "-sigopt",
                "distid:1234567812345678",
                "-verify",
            ])
            .arg(&pub_path)
            .arg("-signature")
            .arg(&sig_path)
            .arg(&msg_path),
        _ => unreachable!(),
    };
    cmd.output().unwrap().status.success()
}

#[test]
fn openssl_verifies_our_signatures() {
    if !openssl_available() {
        return;
    }
    for (alg, _) in ALGORITHMS {
        let signer = Signer::from_pem(&read(alg, "cert.pem"), &read(alg, "key.pem"))
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(signer.keyid(), keyid(&cert_der(alg)));
        let pae = read(alg, "pae.bin");
        let ours = signer.sign(&pae).unwrap();
        assert!(
            openssl_verifies(alg, &pae, &ours),
            "{alg}: openssl rejected our signature"
        );
        // And the check is real: openssl rejects our signature over different bytes.
        let mut other = pae.clone();
        other.push(b'!');
        assert!(
            !openssl_verifies(alg, &other, &ours),
            "{alg}: openssl accepted a wrong message"
        );
        // openssl's own signature passes the same helper.
        assert!(openssl_verifies(alg, &pae, &read(alg, "sig.bin")), "{alg}");
    }
}

#[test]
fn a_sealed_envelope_verifies_with_the_certificate_alone() {
    for (alg, _) in ALGORITHMS {
        let signer = Signer::from_pem(&read(alg, "cert.pem"), &read(alg, "key.pem")).unwrap();
        let lead = pb::Lead {
            region_code: "500103".into(),
            worker_count: 3,
            ..Default::default()
        };
        let header = pb::Header {
            message_id: "m-1".into(),
            sender: "hrss-500112".into(),
            ..Default::default()
        };
        let env = signer.seal(header, &lead).unwrap();
        let header = pb::Header::decode(env.header.as_slice()).unwrap();
        assert_eq!(header.payload_type, "wagelink.v1.Lead");
        assert_eq!(header.payload_sha256, sha256(&env.payload));
        let sig = &env.signatures[0];
        assert_eq!(sig.keyid, keyid(&cert_der(alg)));
        PublicKey::from_certificate(&cert_der(alg))
            .unwrap()
            .verify(&header_pae(&env.header), &sig.sig, &sig.keyid)
            .unwrap();
    }
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let err = Signer::from_pem(&read("p256", "cert.pem"), &read("sm2", "key.pem")).unwrap_err();
    assert!(err.to_string().contains("key"), "{err}");
    let other = rcgen::KeyPair::generate().unwrap();
    let err =
        Signer::from_pem(&read("p256", "cert.pem"), other.serialize_pem().as_bytes()).unwrap_err();
    assert_eq!(err, wagelink_proto::envelope::EnvelopeError::KeyMismatch);
}
