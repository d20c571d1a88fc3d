//! A bank: pushes a batch of two account events under one signature and prints the receipt.
//!
//! `cargo run -p wagelink-adapters --example bank_events -- https://127.0.0.1:7443 wagelink-dev/partners/bank-102`

use prost::Message;
use wagelink_adapters::client::{Credentials, GatewayAddress, connect};
use wagelink_proto::envelope::Signer;
use wagelink_proto::v1 as pb;
use wagelink_proto::v1::account_event::Kind;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (uri, dir) = (
        args.next().ok_or("gateway URI")?,
        args.next().ok_or("partner folder")?,
    );
    let credentials = Credentials::from_dir(dir.as_ref())?;
    let signer = Signer::from_pem(&credentials.cert_pem, &credentials.key_pem)?;
    let bank = std::path::Path::new(&dir)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let now = jiff::Timestamp::now().as_second();
    let event = |id: &str, kind: Kind| pb::AccountEvent {
        event_id: id.into(),
        account_number: "3100021109024888888".into(),
        account_kind: pb::AccountKind::WageAccount as i32,
        bank_id: bank.clone(),
        project_code: "500105-2026-0042".into(),
        region_code: "500105".into(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: now,
            nanos: 0,
        }),
        kind: Some(kind),
        ..Default::default()
    };
    let batch = pb::AccountEventBatch {
        events: vec![
            event(
                "EX-1",
                Kind::LabourCostCredited(pb::account_event::LabourCostCredited {
                    amount_fen: 120_000_000,
                    payer_name: "重庆某置业有限公司".into(),
                    ..Default::default()
                }),
            )
            .encode_to_vec(),
            event(
                "EX-2",
                Kind::PayrollPaid(pb::account_event::PayrollPaid {
                    payroll_month: "2026-10".into(),
                    count: 86,
                    total_fen: 51_600_000,
                    batch_reference: "B1".into(),
                }),
            )
            .encode_to_vec(),
        ],
    };
    let header = pb::Header {
        message_id: uuid::Uuid::new_v4().to_string(),
        sender: bank.clone(),
        created_at: Some(prost_types::Timestamp {
            seconds: now,
            nanos: 0,
        }),
        ..Default::default()
    };
    // For a batch, seal() puts the Merkle tree hash of the events in payload_sha256.
    let envelope = signer.seal(header, &batch)?;
    let channel = connect(
        &GatewayAddress {
            uri,
            server_name: "localhost".into(),
        },
        &credentials,
    )
    .await?;
    let mut answers = pb::banks_client::BanksClient::new(channel)
        .push_events(tokio_stream::iter(vec![envelope]))
        .await?
        .into_inner();
    let answer = answers.message().await?.ok_or("no answer")?;
    match answer.result {
        Some(pb::push_events_response::Result::Receipt(r)) => {
            let r = pb::Receipt::decode(r.payload.as_slice())?;
            println!(
                "logged at {}, delivered to {:?}",
                r.log_index,
                r.routed_to
                    .iter()
                    .map(|x| &x.partner_id)
                    .collect::<Vec<_>>()
            );
        }
        other => println!("refused: {other:?}"),
    }
    Ok(())
}
