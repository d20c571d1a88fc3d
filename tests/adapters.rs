//! The agency adapter against a real HTTP webhook on loopback: while the webhook is down the
//! agency's deliveries wait; when it is back each arrives exactly once; an adapter stopped and
//! restarted (its state folder kept) loses and duplicates nothing, including a message it had
//! handed over but not yet acknowledged when it stopped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use wagelink_adapters::agency::{AgencyConfig, run_agency};
use wagelink_adapters::bank::runner::GatewayConfig;
use wagelink_proto::v1 as pb;
use wagelink_proto::v1::cases_client::CasesClient;
use wagelink_proto::v1::delivery_client::DeliveryClient;
use wagelink_tests::{TestDb, TestGateway, header};

/// The agency's webhook: answers 503 while `down`, else 200, counting what it took.
struct Webhook {
    url: String,
    down: Arc<AtomicBool>,
    taken: Arc<Mutex<HashMap<String, u32>>>,
}

async fn webhook() -> Webhook {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/wagelink/hook", listener.local_addr().unwrap());
    let down = Arc::new(AtomicBool::new(true));
    let taken = Arc::new(Mutex::new(HashMap::new()));
    let (d, t) = (down.clone(), taken.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (d, t) = (d.clone(), t.clone());
            tokio::spawn(async move {
                let mut raw = Vec::new();
                let mut buf = [0u8; 8192];
                // Read the head, then the body by Content-Length.
                loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    raw.extend_from_slice(&buf[..n]);
                    if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if raw.len() >= end + 4 + len {
                            let body: serde_json::Value =
                                serde_json::from_slice(&raw[end + 4..end + 4 + len]).unwrap();
                            let status = if d.load(Ordering::SeqCst) {
                                "503 Service Unavailable"
                            } else {
                                let id = body["message_id"].as_str().unwrap().to_owned();
                                *t.lock().unwrap().entry(id).or_insert(0) += 1;
                                "200 OK"
                            };
                            let _ = socket
                                .write_all(
                                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                                        .as_bytes(),
                                )
                                .await;
                            return;
                        }
                    }
                }
            });
        }
    });
    Webhook { url, down, taken }
}

const AGENCY: &str = "hrss-500112";

/// A lead for 渝北区 from the national platform; returns its message id.
async fn lead(gw: &TestGateway, employer: &str) -> String {
    let me = "source-national-platform";
    let h = header(me);
    let id = h.message_id.clone();
    let lead = pb::Lead {
        channel: pb::LeadChannel::NationalPlatform as i32,
        lead_type: pb::LeadType::Arrears as i32,
        region_code: "500112".into(),
        employer_name: format!("重庆{employer}有限公司"),
        worker_count: 4,
        ..Default::default()
    };
    let env = gw.signer(me).seal(h, &lead).unwrap();
    CasesClient::new(gw.channel_as(me).await)
        .submit_lead(env)
        .await
        .unwrap();
    id
}

fn start(
    gw: &TestGateway,
    hook: &Webhook,
    state: &std::path::Path,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), String>>,
) {
    let gateway = GatewayConfig {
        address: gw.address().uri,
        server_name: "localhost".into(),
        credentials: gw.partner_dir(AGENCY),
    };
    let agency = AgencyConfig {
        id: AGENCY.into(),
        webhook: Some(hook.url.clone()),
        package_dir: None,
        state_dir: state.to_owned(),
        rest_listen: None,
        document_store: None,
    };
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    (stop_tx, tokio::spawn(run_agency(gateway, agency, stop)))
}

async fn wait_for(hook: &Webhook, ids: &[String]) {
    for _ in 0..150 {
        let taken = hook.taken.lock().unwrap().clone();
        if ids.iter().all(|i| taken.contains_key(i)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "not all of {ids:?} arrived: {:?}",
        hook.taken.lock().unwrap()
    );
}

/// Waits until the adapter acknowledged everything in the agency's mailbox. The webhook counts
/// a message before it answers, and the adapter acknowledges it only after reading that
/// answer: stopping the adapter as soon as the webhook has seen everything could leave the last
/// message unacknowledged, to be delivered (and posted) again.
async fn all_acknowledged(gw: &TestGateway) {
    let mut counts = None;
    for _ in 0..150 {
        let now = gw.running.log.store().mailbox_counts(AGENCY).await.unwrap();
        if now.pending == 0 {
            return;
        }
        counts = Some(now);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the adapter left messages unacknowledged: {counts:?}");
}

#[tokio::test]
async fn webhook_deliveries_wait_for_the_webhook_and_arrive_once_across_restarts() {
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let hook = webhook().await;
    let state = tempfile::tempdir().unwrap();
    let (stop, adapter) = start(&gw, &hook, state.path());

    // The webhook is down: three leads wait.
    let mut ids = Vec::new();
    for e in ["甲", "乙", "丙"] {
        ids.push(lead(&gw, e).await);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(hook.taken.lock().unwrap().is_empty());

    // Back up: each arrives, once.
    hook.down.store(false, Ordering::SeqCst);
    wait_for(&hook, &ids).await;
    all_acknowledged(&gw).await;

    // The adapter is killed (its task aborted, no clean shutdown); two more leads come; it
    // restarts with its state.
    adapter.abort();
    let _ = adapter.await;
    drop(stop);
    for e in ["丁", "戊"] {
        ids.push(lead(&gw, e).await);
    }
    // One more, as if handed over just before a crash but never acknowledged.
    let handed = lead(&gw, "己").await;
    std::fs::write(
        state.path().join("handed-over.txt"),
        format!(
            "{}{handed}\n",
            std::fs::read_to_string(state.path().join("handed-over.txt")).unwrap()
        ),
    )
    .unwrap();
    let (stop, adapter) = start(&gw, &hook, state.path());
    wait_for(&hook, &ids).await;
    all_acknowledged(&gw).await;
    // Everything acknowledged: the mailbox is empty.
    let mut pending = DeliveryClient::new(gw.channel_as(AGENCY).await)
        .subscribe(pb::SubscribeRequest {
            from_cursor: 0,
            window: 10,
        })
        .await
        .unwrap()
        .into_inner();
    let mut left = Vec::new();
    for _ in 0..20 {
        match tokio::time::timeout(Duration::from_millis(500), pending.message()).await {
            Ok(Ok(Some(d))) => {
                let h = pb::Header::decode(d.envelope.unwrap().header.as_slice()).unwrap();
                left.push(h.message_id);
            }
            _ => break,
        }
        // Give the adapter time to acknowledge what it is still working on.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let taken = hook.taken.lock().unwrap().clone();
    assert_eq!(taken.len(), ids.len(), "{taken:?}");
    assert!(
        taken.values().all(|n| *n == 1),
        "a message arrived twice: {taken:?}"
    );
    assert!(
        !taken.contains_key(&handed),
        "the handed-over message was posted again"
    );
    stop.send(true).unwrap();
    adapter.await.unwrap().unwrap();
    // (A message may still be in flight to the adapter when the check above runs; after it
    // stopped, nothing of the leads is left unacknowledged.)
    let mut after = DeliveryClient::new(gw.channel_as(AGENCY).await)
        .subscribe(pb::SubscribeRequest {
            from_cursor: 0,
            window: 10,
        })
        .await
        .unwrap()
        .into_inner();
    let rest = tokio::time::timeout(Duration::from_millis(700), after.message()).await;
    assert!(
        !matches!(rest, Ok(Ok(Some(_)))),
        "a message stayed unacknowledged: {left:?}"
    );
    gw.stop().await;
}

/// One HTTP request to the adapter's REST API: (status, JSON).
async fn call(
    address: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(address).await.unwrap();
    let key = key
        .map(|k| format!("Idempotency-Key: {k}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\n{key}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    (status, serde_json::from_str(body).unwrap())
}

#[tokio::test]
async fn the_rest_api_takes_case_steps_once_per_idempotency_key() {
    use wagelink_adapters::agency::rest::{Rest, bind, serve};
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let state = tempfile::tempdir().unwrap();
    let me = "source-national-platform";
    let l = pb::Lead {
        channel: pb::LeadChannel::NationalPlatform as i32,
        lead_type: pb::LeadType::Arrears as i32,
        region_code: "500112".into(),
        employer_name: "重庆接口测试有限公司".into(),
        worker_count: 4,
        ..Default::default()
    };
    let case = wagelink_tests::submit_lead(&gw, me, &l).await.case_id;
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let api = Arc::new(Rest {
        agency_id: AGENCY.into(),
        signer: gw.signer(AGENCY),
        channel: gw.channel_as(AGENCY).await,
        state_dir: state.path().to_owned(),
        document_store: None,
    });
    tokio::spawn(serve(api, listener));
    assert!(
        bind("0.0.0.0:0".parse().unwrap()).await.is_err(),
        "loopback only"
    );

    let path = format!("/cases/{case}/sign-for");
    let (status, first) = call(&address, &path, Some("k-1"), r#"{"note": "监察一科"}"#).await;
    assert_eq!(status, 200, "{first}");
    // The same request again (a retry after a timeout): the same receipt, one step.
    let (status, again) = call(&address, &path, Some("k-1"), r#"{"note": "监察一科"}"#).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(first["log_index"], again["log_index"]);
    // After a restart (a new server on the same state folder) the same key is still the same
    // step: nothing lost, nothing duplicated.
    let restarted = spawn_rest(&gw, AGENCY, state.path().to_owned(), None).await;
    let (status, after_restart) =
        call(&restarted, &path, Some("k-1"), r#"{"note": "监察一科"}"#).await;
    assert_eq!(status, 200, "{after_restart}");
    assert_eq!(first["log_index"], after_restart["log_index"]);
    // Without the key a second sign-for is a second step, refused by the case's state.
    let (status, refused) = call(&address, &path, None, "{}").await;
    assert_eq!(status, 412, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("SIGNED_FOR"),
        "{refused}"
    );
    let (status, bad) = call(
        &address,
        &format!("/cases/{case}/resolve"),
        None,
        r#"{"conclusion": "paid-somehow", "channel": "mediation"}"#,
    )
    .await;
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["error"].as_str().unwrap().contains("conclusion"),
        "{bad}"
    );
    let (status, ok) = call(
        &address,
        &format!("/cases/{case}/resolve"),
        Some("k-2"),
        r#"{"conclusion": "arrears-paid", "channel": "mediation", "amount_recovered_fen": 1200000, "workers_paid": 4, "resolved_on": "2026-11-27", "summary": "调解后支付"}"#,
    )
    .await;
    assert_eq!(status, 200, "{ok}");
    let v = CasesClient::new(gw.channel_as(AGENCY).await)
        .get_case(pb::GetCaseRequest {
            case_id: case.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.state(), pb::CaseState::Resolved);
    assert_eq!(v.history.len(), 3, "lead, one sign-for, resolve");
    gw.stop().await;
}

#[tokio::test]
async fn a_criminal_referral_becomes_a_police_package_whose_digests_match_its_files() {
    use wagelink_adapters::agency::rest::{Rest, bind, serve};
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("document-store");
    let packages = tmp.path().join("police-packages");
    // The referring labour-inspection office's files.
    let letter = tmp.path().join("移送书.pdf");
    let report = tmp.path().join("调查报告.pdf");
    std::fs::write(&letter, b"%PDF-1.7 referral letter").unwrap();
    std::fs::write(&report, b"%PDF-1.7 investigation report").unwrap();

    // A lead held by hrss-500112, signed for.
    let me = "source-national-platform";
    let l = pb::Lead {
        channel: pb::LeadChannel::NationalPlatform as i32,
        lead_type: pb::LeadType::SuspectedCrime as i32,
        region_code: "500112".into(),
        employer_name: "重庆拒付劳务有限公司".into(),
        worker_count: 12,
        ..Default::default()
    };
    let case = wagelink_tests::submit_lead(&gw, me, &l).await.case_id;
    let rest_for = |who: &'static str, state: std::path::PathBuf| {
        let gw = &gw;
        let store = store.clone();
        async move {
            let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
            let address = listener.local_addr().unwrap().to_string();
            tokio::spawn(serve(
                Arc::new(Rest {
                    agency_id: who.into(),
                    signer: gw.signer(who),
                    channel: gw.channel_as(who).await,
                    state_dir: state,
                    document_store: Some(store),
                }),
                listener,
            ));
            address
        }
    };
    let hrss = rest_for(AGENCY, tmp.path().join("hrss-state")).await;
    assert_eq!(
        call(&hrss, &format!("/cases/{case}/sign-for"), None, "{}")
            .await
            .0,
        200
    );
    let forward = serde_json::json!({
        "to_partner": "police-500112",
        "summary": "涉嫌拒不支付劳动报酬罪",
        "documents": [
            {"path": letter.to_str().unwrap(), "kind": "referral-letter", "media_type": "application/pdf"},
            {"path": report.to_str().unwrap(), "kind": "investigation-report", "media_type": "application/pdf"}
        ],
        "criminal_referral": {"amount_fen": 36000000, "worker_count": 12, "months_owed": 4,
            "order_to_pay_number": "渝北人社监令〔2026〕18号", "order_delivered_on": "2026-11-02",
            "decided_on": "2026-11-27"}
    });
    let (status, sent) = call(
        &hrss,
        &format!("/cases/{case}/forward"),
        Some("fwd-1"),
        &forward.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let referral_id = sent["message_id"].as_str().unwrap().to_owned();

    // The police adapter writes the package.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let police = tokio::spawn(run_agency(
        GatewayConfig {
            address: gw.address().uri,
            server_name: "localhost".into(),
            credentials: gw.partner_dir("police-500112"),
        },
        AgencyConfig {
            id: "police-500112".into(),
            webhook: None,
            package_dir: Some(packages.clone()),
            state_dir: tmp.path().join("police-state"),
            rest_listen: None,
            document_store: Some(store.clone()),
        },
        stop,
    ));
    let dir = packages.join(&case).join(&referral_id);
    for _ in 0..100 {
        if dir.join("manifest.json").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let docs = manifest["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 2);
    for d in docs {
        assert_eq!(d["present"], true, "{d}");
        let bytes = std::fs::read(dir.join(d["file_name"].as_str().unwrap())).unwrap();
        let digest: String = wagelink_proto::envelope::sha256(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(digest, d["sha256"].as_str().unwrap());
        assert_eq!(d["size_bytes"].as_u64().unwrap(), bytes.len() as u64);
    }
    assert!(
        manifest["decree_310"]["filing_decision"]["due_at"]
            .as_i64()
            .unwrap()
            > 0
    );
    assert_eq!(manifest["referred_by"], AGENCY);

    // The police file the case through their REST API, answering the referral.
    let police_rest = rest_for("police-500112", tmp.path().join("police-rest")).await;
    let decision = serde_json::json!({"outcome": "filed", "police_case_number": "渝北公（经）立字〔2026〕77号",
        "decided_on": "2026-11-28", "referral_message_id": referral_id});
    let (status, filed) = call(
        &police_rest,
        &format!("/cases/{case}/filing-decision"),
        Some("fd-1"),
        &decision.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{filed}");
    let v = CasesClient::new(gw.channel_as(AGENCY).await)
        .get_case(pb::GetCaseRequest {
            case_id: case.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.filing.unwrap().outcome(), pb::FilingOutcome::Filed);
    stop_tx.send(true).unwrap();
    police.await.unwrap().unwrap();
    gw.stop().await;
}

async fn spawn_rest(
    gw: &TestGateway,
    who: &str,
    state: std::path::PathBuf,
    store: Option<std::path::PathBuf>,
) -> String {
    use wagelink_adapters::agency::rest::{Rest, bind, serve};
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(serve(
        Arc::new(Rest {
            agency_id: who.into(),
            signer: gw.signer(who),
            channel: gw.channel_as(who).await,
            state_dir: state,
            document_store: store,
        }),
        listener,
    ));
    address
}

#[tokio::test]
async fn a_court_takes_an_enforcement_request_as_a_package_and_answers_with_its_result() {
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let award = tmp.path().join("仲裁裁决书.pdf");
    std::fs::write(&award, b"%PDF-1.7 award").unwrap();
    let me = "source-national-platform";
    let l = pb::Lead {
        channel: pb::LeadChannel::NationalPlatform as i32,
        lead_type: pb::LeadType::Enforcement as i32,
        region_code: "500112".into(),
        employer_name: "重庆执行测试有限公司".into(),
        worker_count: 6,
        ..Default::default()
    };
    let case = wagelink_tests::submit_lead(&gw, me, &l).await.case_id;
    let hrss = spawn_rest(&gw, AGENCY, tmp.path().join("h"), Some(store.clone())).await;
    assert_eq!(
        call(&hrss, &format!("/cases/{case}/sign-for"), None, "{}")
            .await
            .0,
        200
    );
    let request = serde_json::json!({
        "to_partner": "court-500112", "summary": "申请强制执行仲裁裁决",
        "documents": [{"path": award.to_str().unwrap(), "kind": "other-evidence"}],
        "court_request": {"kind": "enforcement", "decision_number": "渝北劳人仲案字〔2026〕31号",
            "amount_fen": 18000000, "worker_count": 6}
    });
    let (status, sent) = call(
        &hrss,
        &format!("/cases/{case}/forward"),
        Some("c-1"),
        &request.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let request_id = sent["message_id"].as_str().unwrap().to_owned();

    let packages = tmp.path().join("court-packages");
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let court = tokio::spawn(run_agency(
        GatewayConfig {
            address: gw.address().uri,
            server_name: "localhost".into(),
            credentials: gw.partner_dir("court-500112"),
        },
        AgencyConfig {
            id: "court-500112".into(),
            webhook: None,
            package_dir: Some(packages.clone()),
            state_dir: tmp.path().join("court-state"),
            rest_listen: None,
            document_store: Some(store.clone()),
        },
        stop,
    ));
    let manifest_path = packages.join(&case).join(&request_id).join("manifest.json");
    for _ in 0..100 {
        if manifest_path.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(
        manifest["request"]["court_request"]["kind"],
        "COURT_REQUEST_KIND_ENFORCEMENT"
    );
    assert_eq!(manifest["documents"][0]["present"], true);
    assert!(
        manifest["answer_with"]
            .as_str()
            .unwrap()
            .contains("court-result")
    );

    let court_rest = spawn_rest(&gw, "court-500112", tmp.path().join("c"), None).await;
    let result = serde_json::json!({"kind": "enforced-in-full", "decision_number": "(2026)渝0112执1234号",
        "decided_on": "2026-11-28", "amount_ordered_fen": 18000000, "amount_enforced_fen": 18000000,
        "worker_count": 6, "referral_message_id": request_id});
    let (status, answered) = call(
        &court_rest,
        &format!("/cases/{case}/court-result"),
        Some("r-1"),
        &result.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answered}");
    // Without naming the request it answers, a result is refused.
    let mut loose = result.clone();
    loose["referral_message_id"] = "".into();
    let (status, refused) = call(
        &court_rest,
        &format!("/cases/{case}/court-result"),
        None,
        &loose.to_string(),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    let v = CasesClient::new(gw.channel_as(AGENCY).await)
        .get_case(pb::GetCaseRequest {
            case_id: case.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        v.history.last().unwrap().kind(),
        pb::CaseEventKind::CourtResult
    );
    stop_tx.send(true).unwrap();
    court.await.unwrap().unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn the_kit_verifies_receipts_against_the_gateway_certificate() {
    use wagelink_adapters::kit::verify_receipt;
    use wagelink_proto::v1::audit_client::AuditClient;
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let me = "source-national-platform";
    let l = pb::Lead {
        channel: pb::LeadChannel::CityApp as i32,
        lead_type: pb::LeadType::Arrears as i32,
        region_code: "500105".into(),
        worker_count: 2,
        ..Default::default()
    };
    let sent = gw.signer(me).seal(header(me), &l).unwrap();
    let other = gw.signer(me).seal(header(me), &l).unwrap();
    let receipt = CasesClient::new(gw.channel_as(me).await)
        .submit_lead(sent.clone())
        .await
        .unwrap()
        .into_inner()
        .receipt
        .unwrap();
    let keys = AuditClient::new(gw.channel_as(me).await)
        .get_log_keys(pb::GetLogKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    let body = verify_receipt(
        &receipt,
        &sent,
        &keys.gateway_certificate_pem,
        &keys.gateway_id,
    )
    .unwrap();
    assert_eq!(body.kind(), pb::ReceiptKind::Accepted);
    // About another envelope; tampered; checked with another certificate.
    assert!(
        verify_receipt(
            &receipt,
            &other,
            &keys.gateway_certificate_pem,
            &keys.gateway_id
        )
        .is_err()
    );
    let mut tampered = receipt.clone();
    let mut b = body.clone();
    b.log_index += 1;
    tampered.payload = b.encode_to_vec();
    assert!(
        verify_receipt(
            &tampered,
            &sent,
            &keys.gateway_certificate_pem,
            &keys.gateway_id
        )
        .is_err()
    );
    let someone = std::fs::read_to_string(gw.partner_dir(me).join("cert.pem")).unwrap();
    assert!(verify_receipt(&receipt, &sent, &someone, &keys.gateway_id).is_err());
    gw.stop().await;
}
