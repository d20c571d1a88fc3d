//! Police and courts: a forward (`CaseAction.forward`: a criminal referral to police, an
//! enforcement or judicial-confirmation request to a court, …) reaching the target's mailbox is
//! written out as a document package — a
//! folder with `manifest.json` and the referral's files, collected from the shared document
//! store by their SHA-256 and checked against the digests the referring agency signed — for the
//! target's case system to take in. Other messages are written beside it as JSON files. Filing
//! decisions and court results go back through the adapter's REST API
//! (`POST /cases/{id}/filing-decision`, `POST /cases/{id}/court-result`).
//!
//! Package layout: `<package_dir>/<case_id>/<referral message_id>/` holding `manifest.json` and
//! each document under its file name. A document missing from the store, or whose bytes do not
//! match its digest, is listed with `"present": false` and not written.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use prost::{Message, Name};
use serde_json::json;
use wagelink_proto::envelope::sha256;
use wagelink_proto::v1 as pb;

/// A file name safe to write in the package: its last path component, not `.`/`..`.
fn safe_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next()?.trim();
    (!base.is_empty() && base != "." && base != "..").then(|| base.to_owned())
}

fn ts(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().map_or(0, |t| t.seconds)
}

/// Writes what a delivery holds for the police: a referral package, or the message as JSON.
/// `deadlines` are the case's clocks (from `Cases.GetCase`), for the Decree 310 due dates.
pub fn write(
    package_dir: &Path,
    store: Option<&Path>,
    d: &pb::MailboxDelivery,
    deadlines: &[pb::Deadline],
) -> Result<PathBuf, String> {
    let env = d.envelope.as_ref().ok_or("the delivery has no envelope")?;
    let h = pb::Header::decode(env.header.as_slice()).map_err(|e| e.to_string())?;
    let receipt = crate::kit::receipt_of(d);
    let case_id = crate::kit::case_id_of(d, &h);
    let case_dir = package_dir.join(safe_name(&case_id).unwrap_or_else(|| "no-case".into()));
    let forward = (h.payload_type == pb::CaseAction::full_name())
        .then(|| pb::CaseAction::decode(env.payload.as_slice()).ok())
        .flatten()
        .and_then(|a| match a.action {
            Some(pb::case_action::Action::Forward(f)) => Some(f),
            _ => None,
        });
    let Some(f) = forward.filter(|f| f.target.is_some()) else {
        let dir = case_dir.join("messages");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let path = dir.join(format!("{}.json", h.message_id));
        std::fs::write(&path, crate::agency::webhook_body(d)?).map_err(|e| e.to_string())?;
        return Ok(path);
    };
    use pb::case_action::forward::Target as T;
    let (request, answer_step) = match &f.target {
        Some(T::CriminalReferral(r)) => (
            json!({"criminal_referral": {
                "amount_fen": r.amount_fen,
                "worker_count": r.worker_count,
                "months_owed": r.months_owed,
                "order_to_pay_number": r.order_to_pay_number,
                "order_delivered_on": r.order_delivered_on,
                "decided_on": r.decided_on,
            }}),
            "filing-decision",
        ),
        Some(T::Court(c)) => (
            json!({"court_request": {
                "kind": pb::CourtRequestKind::try_from(c.kind).unwrap_or_default().as_str_name(),
                "decision_number": c.decision_number,
                "amount_fen": c.amount_fen,
                "worker_count": c.worker_count,
            }}),
            "court-result",
        ),
        Some(T::Arbitration(a)) => (
            json!({"arbitration": {
                "amount_fen": a.amount_fen,
                "worker_count": a.worker_count,
                "mediation_agreement_reached": a.mediation_agreement_reached,
            }}),
            "progress",
        ),
        Some(T::Procuratorate(p)) => (
            json!({"prosecution_support": {"amount_fen": p.amount_fen, "worker_count": p.worker_count}}),
            "progress",
        ),
        None => return Err("a forward without a target".into()),
    };
    let final_dir = case_dir.join(&h.message_id);
    if final_dir.join("manifest.json").exists() {
        return Ok(final_dir);
    }
    let partial = case_dir.join(format!("{}.partial", h.message_id));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| e.to_string())?;
    let mut documents = Vec::new();
    for doc in &f.documents {
        let name = safe_name(&doc.file_name);
        let bytes = store.and_then(|s| std::fs::read(s.join(hex::encode(&doc.sha256))).ok());
        let present = match (&name, bytes) {
            (Some(name), Some(bytes)) if sha256(&bytes).as_slice() == doc.sha256.as_slice() => {
                std::fs::write(partial.join(name), &bytes).map_err(|e| e.to_string())?;
                true
            }
            _ => false,
        };
        documents.push(json!({
            "file_name": name.unwrap_or_default(),
            "sha256": hex::encode(&doc.sha256),
            "size_bytes": doc.size_bytes,
            "kind": pb::DocumentKind::try_from(doc.kind).unwrap_or_default().as_str_name(),
            "media_type": doc.media_type,
            "present": present,
        }));
    }
    let due = |kind: pb::ClockKind| {
        deadlines
            .iter()
            .filter(|d| d.kind == kind as i32)
            .map(|d| json!({"partner": d.partner_id, "due_at": ts(&d.due_at), "met_at": ts(&d.met_at), "overdue": d.overdue}))
            .next_back()
            .unwrap_or(serde_json::Value::Null)
    };
    let manifest = json!({
        "case_id": case_id,
        "referral_message_id": h.message_id,
        "referred_by": h.sender,
        "referred_at": ts(&receipt.accepted_at),
        "summary": f.summary,
        "request": request,
        "documents": documents,
        "decree_310": {
            "referral_handover": due(pb::ClockKind::ReferralHandover),
            "filing_decision": due(pb::ClockKind::FilingDecision),
        },
        "answer_with": format!("POST /cases/{case_id}/{answer_step} with referral_message_id {}", h.message_id),
        "envelope_base64": B64.encode(env.encode_to_vec()),
    });
    std::fs::write(
        partial.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    std::fs::rename(&partial, &final_dir).map_err(|e| e.to_string())?;
    Ok(final_dir)
}
