//! Routing of leads over the wire: the receipt of a submitted lead says where it went and by
//! which rule; DryRunRoute answers "where would this lead go, and why"; a rules file given in
//! the configuration replaces the defaults, and a broken one stops the gateway with its line.

use prost::Message;
use tonic::Code;
use wagelink_proto::v1 as pb;
use wagelink_proto::v1::cases_client::CasesClient;
use wagelink_tests::{TestDb, TestGateway};

fn housing_lead() -> pb::Lead {
    pb::Lead {
        channel: pb::LeadChannel::NationalPlatform as i32,
        lead_type: pb::LeadType::Arrears as i32,
        region_code: "500112".into(),
        sector: pb::Sector::Construction as i32,
        project_industry: pb::Industry::HousingMunicipal as i32,
        project_name: "渝北区某安置房项目".into(),
        amount_fen: 80_000_000,
        worker_count: 12,
        ..Default::default()
    }
}

fn roles(routing: &[pb::Routing]) -> Vec<(String, pb::RoutingRole, String)> {
    routing
        .iter()
        .map(|r| (r.partner_id.clone(), r.role(), r.rule_id.clone()))
        .collect()
}

#[tokio::test]
async fn a_receipt_says_where_the_lead_went_and_why() {
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let me = "source-national-platform";
    let header = wagelink_tests::header(me);
    let env = gw.signer(me).seal(header, &housing_lead()).unwrap();
    let receipt = CasesClient::new(gw.channel_as(me).await)
        .submit_lead(env)
        .await
        .unwrap()
        .into_inner()
        .receipt
        .unwrap();
    let body = pb::Receipt::decode(receipt.payload.as_slice()).unwrap();
    assert_eq!(
        roles(&body.routed_to),
        vec![
            (
                "hrss-500112".into(),
                pb::RoutingRole::Handler,
                "construction-housing".into()
            ),
            (
                "housing-500000".into(),
                pb::RoutingRole::CoHandler,
                "construction-housing".into()
            ),
        ]
    );
    assert!(body.routed_to.iter().all(|r| r.rule_version == 1));
    // The log entry records the same decision.
    let entry = gw
        .running
        .log
        .store()
        .entries(0, 1, false)
        .await
        .unwrap()
        .remove(0);
    let Some(pb::entry_body::Kind::Accepted(a)) =
        pb::EntryBody::decode(entry.entry.as_slice()).unwrap().kind
    else {
        panic!()
    };
    assert_eq!(a.routed_to, body.routed_to);
    gw.stop().await;
}

#[tokio::test]
async fn dry_run_explains_a_major_suspected_crime() {
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let lead = pb::Lead {
        lead_type: pb::LeadType::SuspectedCrime as i32,
        worker_count: 45,
        ..housing_lead()
    };
    let mut cases = CasesClient::new(gw.channel_as("hrss-500000").await);
    let r = cases
        .dry_run_route(pb::DryRunRouteRequest {
            lead: Some(lead.clone()),
            rules_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.handler.as_str(), r.rule_id.as_str(), r.rule_version),
        ("hrss-500112", "suspected-crime", 1)
    );
    assert_eq!(r.copies, vec!["police-500112"]);
    assert_eq!(r.supervisors, vec!["leading-office-500000"]);
    assert!(
        r.explanation.contains("major-case") && r.explanation.contains("suspected-crime"),
        "{}",
        r.explanation
    );
    let handle = r
        .clocks
        .iter()
        .find(|c| c.kind() == pb::ClockKind::Handle)
        .unwrap();
    assert_eq!(handle.working_days, 3);

    let status = cases
        .dry_run_route(pb::DryRunRouteRequest {
            lead: Some(lead.clone()),
            rules_version: 7,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let bad = pb::Lead {
        region_code: "110105".into(),
        ..lead.clone()
    };
    let status = cases
        .dry_run_route(pb::DryRunRouteRequest {
            lead: Some(bad),
            rules_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("region_code"));
    let status = CasesClient::new(gw.channel_as("bank-102").await)
        .dry_run_route(pb::DryRunRouteRequest {
            lead: Some(lead),
            rules_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    gw.stop().await;
}

#[tokio::test]
async fn a_rules_file_in_the_configuration_replaces_the_defaults_and_a_broken_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "version = 3\n[[rule]]\nid = \"everything-to-the-city\"\nhandler = \"hrss-500000\"\n[defaults]\nclocks = { sign_for = 2, handle = 5, feed_back = 8 }\n",
    )
    .unwrap();
    let path = rules.clone();
    let gw = TestGateway::start_with(TestDb::sqlite().await, move |c| {
        c.routing.rules = Some(path)
    })
    .await;
    let r = CasesClient::new(gw.channel_as("leading-office-500000").await)
        .dry_run_route(pb::DryRunRouteRequest {
            lead: Some(housing_lead()),
            rules_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.handler.as_str(), r.rule_version), ("hrss-500000", 3));
    gw.stop().await;

    std::fs::write(&rules, "version = 3\n[[rule]]\nid = \"x\"\nwhen.sectors = [\"mining\"]\nhandler = \"hrss-500000\"\n[defaults]\nclocks = { sign_for = 1, handle = 2, feed_back = 3 }\n").unwrap();
    let mut config = wagelink_gateway::config::Config::default();
    config.routing.rules = Some(rules);
    let err = wagelink_gateway::server::routing_rules(&config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 3") && err.contains("mining"), "{err}");
}
