//! A leading office: lists the overdue cases of its regions.
//!
//! `cargo run -p wagelink-adapters --example leading_office -- https://127.0.0.1:7443 wagelink-dev/partners/leading-office-500000`

use wagelink_adapters::client::{Credentials, GatewayAddress, connect};
use wagelink_proto::v1 as pb;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (uri, dir) = (
        args.next().ok_or("gateway URI")?,
        args.next().ok_or("partner folder")?,
    );
    let credentials = Credentials::from_dir(dir.as_ref())?;
    let channel = connect(
        &GatewayAddress {
            uri,
            server_name: "localhost".into(),
        },
        &credentials,
    )
    .await?;
    let mut cases = pb::cases_client::CasesClient::new(channel);
    let mut token = String::new();
    loop {
        let page = cases
            .list_cases(pb::ListCasesRequest {
                overdue_only: true,
                page_token: token,
                ..Default::default()
            })
            .await?
            .into_inner();
        for c in &page.cases {
            println!(
                "{} {:?} held by {} in {} ({} workers)",
                c.case_id,
                c.state(),
                c.holder,
                c.region_code,
                c.worker_count
            );
        }
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        token = page.next_page_token;
    }
}
