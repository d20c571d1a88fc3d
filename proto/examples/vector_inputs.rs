//! Writes the signing inputs of a test vector into a folder that holds `cert.pem`:
//! `payload.bin` (a wagelink.v1.Lead), `header.bin` (the Header committing to it, with the
//! certificate's keyid-independent fields fixed so vectors are reproducible), `pae.bin` (what the
//! signature covers) and `keyid.txt`. `testdata/vectors/generate.sh` runs this, then signs
//! `pae.bin` with the openssl command line.

use prost::{Message, Name};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use wagelink_proto::envelope::{header_pae, keyid, sha256};
use wagelink_proto::v1 as pb;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: vector_inputs DIR")?);
    let cert = CertificateDer::from_pem_file(dir.join("cert.pem"))?;
    let lead = pb::Lead {
        channel: pb::LeadChannel::NationalPlatform as i32,
        source_reference: "GJPT-2023-11-000123".into(),
        occurred_on: "2023-11-20".into(),
        lead_type: pb::LeadType::Arrears as i32,
        region_code: "500112".into(),
        project_name: "渝北区某安置房项目".into(),
        employer_name: "重庆某建筑劳务有限公司".into(),
        amount_fen: 12_345_600,
        worker_count: 17,
        description: "17 workers unpaid since September".into(),
        ..Default::default()
    };
    let payload = lead.encode_to_vec();
    let header = pb::Header {
        message_id: "0193a3f2-7c1e-7c3a-9b5e-2f4d6a8b0c11".into(),
        sender: "hrss-500112".into(),
        payload_type: pb::Lead::full_name(),
        payload_sha256: sha256(&payload).to_vec(),
        created_at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        subject: String::new(),
        in_reply_to: String::new(),
        recipients: vec![],
    }
    .encode_to_vec();
    std::fs::write(dir.join("payload.bin"), &payload)?;
    std::fs::write(dir.join("header.bin"), &header)?;
    std::fs::write(dir.join("pae.bin"), header_pae(&header))?;
    std::fs::write(dir.join("keyid.txt"), format!("{}\n", keyid(cert.as_ref())))?;
    Ok(())
}
