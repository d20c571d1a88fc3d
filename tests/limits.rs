//! Per-partner limits enforced by the gateway's tower layers, over real mTLS: request rate,
//! concurrent calls and message size, each refused with RESOURCE_EXHAUSTED and a message that
//! says what to do. (Deadlines are tested beside their layer with a slow inner service.)

use std::time::Duration;

use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use wagelink_proto::v1 as pb;
use wagelink_proto::v1::identity_client::IdentityClient;
use wagelink_tests::{TestDb, TestGateway};

async fn who_am_i(channel: tonic::transport::Channel) -> Result<pb::WhoAmIResponse, tonic::Status> {
    IdentityClient::new(channel)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn a_partner_over_its_rate_is_told_when_to_retry_and_others_are_not_slowed() {
    let gw = TestGateway::start_with(TestDb::sqlite().await, |c| {
        c.limits.requests_per_second = 1;
        c.limits.burst = 2;
    })
    .await;
    let bank = gw.channel_as("bank-102").await;
    who_am_i(bank.clone()).await.unwrap();
    who_am_i(bank.clone()).await.unwrap();
    let status = who_am_i(bank.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("bank-102") && status.message().contains("retry after"),
        "{}",
        status.message()
    );
    let retry: u64 = status
        .metadata()
        .get("retry-after-ms")
        .expect("retry-after-ms metadata")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1000).contains(&retry), "{retry}");

    // Another partner has its own budget.
    who_am_i(gw.channel_as("bank-105").await).await.unwrap();
    // And after waiting as told, the first partner may call again.
    tokio::time::sleep(Duration::from_millis(retry + 20)).await;
    who_am_i(bank).await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn an_open_stream_counts_against_concurrent_calls_until_it_ends() {
    let gw = TestGateway::start_with(TestDb::sqlite().await, |c| {
        c.limits.max_concurrent_calls = 1
    })
    .await;
    let channel = gw.channel_as("hrss-500112").await;
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch opens")
        .into_inner();
    watch
        .message()
        .await
        .expect("first health status")
        .expect("a status");

    let status = who_am_i(channel.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("calls open"),
        "{}",
        status.message()
    );
    // The limit is per partner.
    who_am_i(gw.channel_as("hrss-500113").await).await.unwrap();

    drop(watch);
    let mut freed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if who_am_i(channel.clone()).await.is_ok() {
            freed = true;
            break;
        }
    }
    assert!(freed, "closing the stream never gave the call back");
    gw.stop().await;
}

/// WhoAmIRequest as the server decodes it, with room for filler in a field it ignores.
#[derive(Clone, PartialEq, prost::Message)]
struct PaddedWhoAmI {
    #[prost(bytes = "vec", tag = "99")]
    filler: Vec<u8>,
}

async fn padded_who_am_i(
    channel: tonic::transport::Channel,
    size: usize,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<PaddedWhoAmI, pb::WhoAmIResponse>::default();
    let path = http::uri::PathAndQuery::from_static("/wagelink.v1.Identity/WhoAmI");
    grpc.unary(
        tonic::Request::new(PaddedWhoAmI {
            filler: vec![7; size],
        }),
        path,
        codec,
    )
    .await
    .map(|_| ())
}

#[tokio::test]
async fn an_oversized_message_is_refused_with_the_limit() {
    let gw = TestGateway::start_with(TestDb::sqlite().await, |c| {
        c.limits.max_message_bytes = 2048
    })
    .await;
    let channel = gw.channel_as("leading-office-500000").await;
    padded_who_am_i(channel.clone(), 1500)
        .await
        .expect("under the limit");
    let status = padded_who_am_i(channel.clone(), 5000).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("2048"), "{}", status.message());
    assert!(
        status.message().contains("max_message_bytes"),
        "{}",
        status.message()
    );
    // The connection stays usable.
    padded_who_am_i(channel, 10)
        .await
        .expect("a small message after a refused one");
    gw.stop().await;
}
