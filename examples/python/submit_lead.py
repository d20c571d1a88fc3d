#!/usr/bin/env python3
"""Submit one wagelink.v1.Lead as an agency system would, and check everything the gateway says.

  python3 submit_lead.py --gateway 127.0.0.1:7443 \
      --partner-dir wagelink-dev/partners/source-national-platform --proto-dir proto

Exits 0 only if every check passes. See README.md in this folder.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import uuid

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import wagelink_client as wl  # noqa: E402


def step(text: str) -> None:
    print(f"[ok] {text}", flush=True)


def expect_refusal(call, code: grpc.StatusCode, what: str) -> str:
    """Run call(), which must fail with the gRPC status `code`; return the status message."""
    try:
        call()
    except grpc.RpcError as e:
        if e.code() != code:
            raise wl.VerificationError(f"{what}: expected {code.name}, got {e.code().name}: {e.details()}")
        return e.details()
    raise wl.VerificationError(f"{what}: expected {code.name}, but the gateway accepted it")


def make_lead(pb):
    cases = pb.cases
    cst = datetime.timezone(datetime.timedelta(hours=8))  # dates are China Standard Time
    return cases.Lead(
        channel=cases.LEAD_CHANNEL_NATIONAL_PLATFORM,
        source_reference=f"GJPT-PY-{uuid.uuid4().hex[:12].upper()}",  # unique per sender
        occurred_on=datetime.datetime.now(cst).date().isoformat(),
        lead_type=cases.LEAD_TYPE_ARREARS,
        region_code="500112",  # 渝北区 (Yubei)
        project_name="渝北区某安置房项目",
        employer_name="重庆某建筑劳务有限公司",
        amount_fen=12_345_600,  # 123,456.00 yuan
        worker_count=17,
        work_type="钢筋工",
        description="17 workers unpaid since September (submitted by the Python example)",
    )


def run(args) -> None:
    wl.self_test()
    step("verifiers pass the RFC 6962 vectors (docs §7.6) and the signed-note example (§8.2)")

    client = wl.Client(args.gateway, args.partner_dir, args.proto_dir)
    step(f"compiled {args.proto_dir}/wagelink/v1/*.proto; mTLS channel to {args.gateway}")
    try:
        me = client.who_am_i()
        step(f"WhoAmI: partner {me.partner.id} ({client.pb.partners.PartnerKind.Name(me.partner.kind)}), "
             f"certificate {me.certificate_sha256[:16]}… = our keyid, gateway id {me.gateway_id!r}")

        keys = client.log_keys()
        wl.check(me.gateway_id == keys.gateway_id,
                 f"WhoAmI.gateway_id {me.gateway_id!r} differs from GetLogKeys.gateway_id {keys.gateway_id!r}")
        step(f"GetLogKeys: origin {keys.origin!r}, gateway {keys.gateway_id!r}, "
             f"gateway keyid {keys.gateway_keyid[:16]}…, verifier key hash {keys.verifier_key.key_hash.hex()}")

        # 1. Build, sign and submit.
        lead = make_lead(client.pb)
        sub = client.build_envelope(lead)
        step(f"signed lead {sub.header.message_id} ({len(sub.envelope.header)}-byte header, "
             f"{len(sub.envelope.payload)}-byte payload, ECDSA P-256 over DSSE PAE)")
        receipt_env = client.submit_lead(sub)
        step("SubmitLead accepted the envelope")

        # 2. The receipt.
        receipt = client.verify_receipt(receipt_env, sub, keys)
        step(f"receipt verified: signed by {keys.gateway_id!r}, header_sha256 = SHA-256(our header), "
             f"message_id and sender ours, log_index {receipt.log_index}")

        # 3. A checkpoint covering log_index, and the inclusion proof against it.
        proof, retries = client.inclusion_proof(receipt.log_index)
        step(f"GetInclusionProof: covered by the checkpoint of size {proof.tree_size} "
             f"after {retries} FAILED_PRECONDITION retr{'y' if retries == 1 else 'ies'}")
        wl.check(proof.HasField("checkpoint"), "inclusion proof: no checkpoint attached")
        wl.check(proof.leaf_index == receipt.log_index, "inclusion proof: for another leaf index")
        cp = client.verify_checkpoint(proof.checkpoint, keys)
        wl.check(cp.size == proof.tree_size, "inclusion proof: tree_size differs from its checkpoint's size")
        wl.check(cp.size > receipt.log_index, "checkpoint: does not cover our log_index")
        again = client.checkpoint(cp.size)  # a size at which a checkpoint was signed can be re-read
        wl.check(again.note == proof.checkpoint.note, "GetCheckpoint(size) returned a different note")
        step(f"checkpoint note verified (Ed25519, key hash {keys.verifier_key.key_hash.hex()}): "
             f"size {cp.size}, root {cp.root.hex()[:16]}…")
        wl.verify_inclusion(proof.leaf_index, cp.size, proof.leaf_hash, list(proof.hashes), cp.root)
        step(f"inclusion proof verified (RFC 9162, {len(proof.hashes)} hashes) against the checkpoint root")
        client.verify_proof_entry(proof, sub, receipt)
        step("proof entry: SHA-256(0x00 ‖ entry) = leaf_hash, and it holds our header bytes and signature")

        # 4. Idempotency: the same bytes again return the identical receipt.
        receipt_again = client.submit_lead(sub)
        wl.check(receipt_again.SerializeToString() == receipt_env.SerializeToString(),
                 "idempotency: resubmitting the same bytes returned a different receipt")
        step("resubmitting the same envelope bytes returned the identical receipt")

        # 5. A tampered payload (same signed header, different lead) is refused.
        tampered_lead = client.pb.cases.Lead()
        tampered_lead.CopyFrom(lead)
        tampered_lead.amount_fen += 100_000_00
        tampered = client.pb.envelope.SignedEnvelope()
        tampered.CopyFrom(sub.envelope)
        tampered.payload = tampered_lead.SerializeToString()
        msg = expect_refusal(lambda: client.cases.SubmitLead(tampered, timeout=client.timeout),
                             grpc.StatusCode.INVALID_ARGUMENT, "tampered payload")
        step(f"a tampered payload is refused with INVALID_ARGUMENT: {msg}")
    finally:
        client.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gateway", default="127.0.0.1:7443", help="host:port of the gateway (default %(default)s)")
    ap.add_argument("--partner-dir", default=os.path.join("wagelink-dev", "partners", "source-national-platform"),
                    help="folder with cert.pem, key.pem, ca.pem (default %(default)s)")
    ap.add_argument("--proto-dir", default=os.path.join(REPO, "proto"),
                    help="include root holding wagelink/v1/*.proto (default %(default)s)")
    args = ap.parse_args()
    try:
        run(args)
    except wl.WagelinkError as e:
        print(f"[FAIL] {e}", file=sys.stderr)
        return 1
    except grpc.RpcError as e:
        print(f"[FAIL] gRPC {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
