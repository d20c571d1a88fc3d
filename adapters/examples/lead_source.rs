//! A lead source (national platform connector, city app, hotline…): submits one lead and checks
//! the gateway's receipt.
//!
//! `cargo run -p wagelink-adapters --example lead_source -- https://127.0.0.1:7443 wagelink-dev/partners/source-national-platform`

use prost::Message;
use wagelink_adapters::client::{Credentials, GatewayAddress, connect};
use wagelink_proto::envelope::Signer;
use wagelink_proto::v1 as pb;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (uri, dir) = (
        args.next().ok_or("gateway URI")?,
        args.next().ok_or("partner folder")?,
    );
    let credentials = Credentials::from_dir(dir.as_ref())?;
    let signer = Signer::from_pem(&credentials.cert_pem, &credentials.key_pem)?;
    let me = signer_id(&dir);
    let channel = connect(
        &GatewayAddress {
            uri,
            server_name: "localhost".into(),
        },
        &credentials,
    )
    .await?;
    let lead = pb::Lead {
        channel: pb::LeadChannel::NationalPlatform as i32,
        lead_type: pb::LeadType::Arrears as i32,
        region_code: "500112".into(),
        sector: pb::Sector::Construction as i32,
        project_industry: pb::Industry::HousingMunicipal as i32,
        project_name: "渝北区某安置房项目".into(),
        employer_name: "重庆某建筑工程有限公司".into(),
        worker_count: 12,
        amount_fen: 36_000_000,
        ..Default::default()
    };
    let header = pb::Header {
        message_id: uuid::Uuid::new_v4().to_string(),
        sender: me,
        created_at: Some(prost_types::Timestamp {
            seconds: jiff::Timestamp::now().as_second(),
            nanos: 0,
        }),
        ..Default::default()
    };
    let envelope = signer.seal(header, &lead)?;
    let receipt = pb::cases_client::CasesClient::new(channel)
        .submit_lead(envelope)
        .await?
        .into_inner()
        .receipt
        .ok_or("no receipt")?;
    let r = pb::Receipt::decode(receipt.payload.as_slice())?;
    println!(
        "case {} at log index {}, routed to:",
        r.case_id, r.log_index
    );
    for to in r.routed_to {
        println!("  {} ({:?}, rule {})", to.partner_id, to.role(), to.rule_id);
    }
    Ok(())
}

/// The partner id is the folder's name in the dev roster layout.
fn signer_id(dir: &str) -> String {
    std::path::Path::new(dir)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
