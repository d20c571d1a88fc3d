//! The wagelink/v1 contract as a client sees it: every declared service is reachable and
//! listed by reflection, and each RPC whose capability is not built yet answers UNIMPLEMENTED
//! naming that capability.

use std::collections::BTreeSet;

use prost::Message;
use tonic::Code;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use wagelink_gateway::layers::unbuilt::{UNBUILT, capability};
use wagelink_proto::v1 as pb;
use wagelink_tests::{TestDb, TestGateway};

/// Every (service, method) of wagelink.v1.
fn methods() -> Vec<(String, String)> {
    let fds = prost_types::FileDescriptorSet::decode(wagelink_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut out = Vec::new();
    for file in fds.file {
        for service in &file.service {
            for method in &service.method {
                out.push((
                    format!("{}.{}", file.package(), service.name()),
                    method.name().to_owned(),
                ));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_rpc_not_built_yet_names_its_capability() {
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let channel = gw.channel_as("hrss-500000").await;
    let mut checked = 0;
    for (service, method) in methods() {
        let path = format!("/{service}/{method}");
        let Some(capability) = capability(&path) else {
            continue;
        };
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<pb::SignedEnvelope, pb::SignedEnvelope>::default();
        let status = grpc
            .unary(
                tonic::Request::new(pb::SignedEnvelope::default()),
                path.parse().unwrap(),
                codec,
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{path}: {status:?}");
        assert!(
            status.message().contains(capability),
            "{path}: {}",
            status.message()
        );
        assert!(status.message().contains(&method), "{}", status.message());
        checked += 1;
    }
    // Each entry of the table covers at least one RPC.
    assert!(
        checked >= UNBUILT.len(),
        "only {checked} unbuilt RPCs found in the contract for {} table entries",
        UNBUILT.len()
    );
    // Every entry of the unbuilt table names a service or method of the contract.
    let declared: BTreeSet<String> = methods()
        .into_iter()
        .flat_map(|(s, m)| [s.clone(), format!("{s}/{m}")])
        .collect();
    for (entry, _) in UNBUILT {
        assert!(declared.contains(*entry), "{entry} is not in the contract");
    }
    gw.stop().await;
}

#[tokio::test]
async fn reflection_lists_the_contract_and_health() {
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let mut client = ServerReflectionClient::new(gw.channel_as("admin-ops").await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: BTreeSet<String> = list.service.into_iter().map(|s| s.name).collect();
    let declared: BTreeSet<String> = methods().into_iter().map(|(s, _)| s).collect();
    for service in &declared {
        assert!(
            names.contains(service),
            "reflection misses {service}: {names:?}"
        );
    }
    assert!(names.contains("grpc.health.v1.Health"), "{names:?}");
    gw.stop().await;
}
