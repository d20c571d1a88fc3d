//! An agency (labour inspection, an industry authority, police…): reads its mailbox, prints each
//! message once (a record in `./seen.txt` survives restarts) and acknowledges it.
//!
//! `cargo run -p wagelink-adapters --example agency_mailbox -- https://127.0.0.1:7443 wagelink-dev/partners/hrss-500112`

use prost::Message;
use wagelink_adapters::client::{Credentials, GatewayAddress, connect};
use wagelink_adapters::kit::{MailboxEnd, Seen, run_mailbox};
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
    let me = std::path::Path::new(&dir)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut seen = Seen::open("seen.txt".as_ref())?;
    let address = GatewayAddress {
        uri,
        server_name: "localhost".into(),
    };
    loop {
        let channel = connect(&address, &credentials).await?;
        let end = run_mailbox(channel, &signer, &me, &mut seen, |d| async move {
            let env = d.envelope.unwrap_or_default();
            let h = pb::Header::decode(env.header.as_slice()).map_err(|e| e.to_string())?;
            println!(
                "#{} {} from {} ({})",
                d.cursor, h.payload_type, h.sender, h.message_id
            );
            Ok(())
        })
        .await;
        match end {
            MailboxEnd::Stream(s) => eprintln!("stream ended: {s}; reconnecting"),
            other => return Err(format!("{other:?}").into()),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
