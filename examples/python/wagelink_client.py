"""A small wagelink client for agency systems, written from the published contract alone.

Sources: proto/wagelink/v1/*.proto, docs/protocol.md and README.md (section numbers below are
those of docs/protocol.md). Nothing here is generated ahead of time: the .proto files are
compiled with grpc_tools.protoc into a temporary directory when the client starts.

What it does:
  * connects with mutual TLS from a partner folder (cert.pem, key.pem, ca.pem)       §2
  * builds a Header + payload and signs DSSE PAE over the exact header bytes          §3, §4
  * submits, and verifies the gateway's signed receipt                                 §5, §6
  * verifies a C2SP signed-note checkpoint with the log's Ed25519 verifier key        §8
  * verifies an RFC 9162 inclusion proof against that checkpoint's root               §7.4
  * checks the proof's entry bytes: they hash to leaf_hash and hold our own header    §7.3

Every check raises VerificationError saying what failed.
"""

from __future__ import annotations

import atexit
import base64
import functools
import glob
import hashlib
import importlib
import importlib.resources
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

# DSSE payloadType of every wagelink header (§4.1). 43 bytes.
HEADER_PAYLOAD_TYPE = b"application/vnd.wagelink.header.v1+protobuf"


class WagelinkError(Exception):
    """Base class of this module's errors."""


class VerificationError(WagelinkError):
    """A signature, digest, proof or field did not check out."""


def check(condition: bool, what: str) -> None:
    """Raise VerificationError(what) unless condition holds."""
    if not condition:
        raise VerificationError(what)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --------------------------------------------------------------------------------------------
# The contract, compiled at run time
# --------------------------------------------------------------------------------------------

@dataclass
class Protos:
    """The generated modules of package wagelink.v1."""

    envelope: object
    audit: object
    audit_grpc: object
    cases: object
    cases_grpc: object
    partners: object
    partners_grpc: object


@functools.lru_cache(maxsize=None)
def compile_protos(proto_dir: str) -> Protos:
    """Compile proto_dir/wagelink/v1/*.proto into a temporary directory and import them.

    proto_dir is the include root (the files import `wagelink/v1/envelope.proto` and
    `google/protobuf/timestamp.proto`, §1).
    """
    from grpc_tools import protoc

    files = sorted(glob.glob(os.path.join(proto_dir, "wagelink", "v1", "*.proto")))
    if not files:
        raise WagelinkError(f"no .proto files under {proto_dir}/wagelink/v1: pass --proto-dir <repo>/proto")
    out = tempfile.mkdtemp(prefix="wagelink-proto-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{proto_dir}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise WagelinkError(f"protoc failed on {proto_dir} (command: {' '.join(args)})")
    sys.path.insert(0, out)
    imp = importlib.import_module
    return Protos(
        envelope=imp("wagelink.v1.envelope_pb2"),
        audit=imp("wagelink.v1.audit_pb2"),
        audit_grpc=imp("wagelink.v1.audit_pb2_grpc"),
        cases=imp("wagelink.v1.cases_pb2"),
        cases_grpc=imp("wagelink.v1.cases_pb2_grpc"),
        partners=imp("wagelink.v1.partners_pb2"),
        partners_grpc=imp("wagelink.v1.partners_pb2_grpc"),
    )


# --------------------------------------------------------------------------------------------
# Signatures (§4)
# --------------------------------------------------------------------------------------------

def pae(header: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding of the header bytes (§4.1)."""
    return b"DSSEv1 %d %s %d " % (len(HEADER_PAYLOAD_TYPE), HEADER_PAYLOAD_TYPE, len(header)) + header


def keyid_of(cert: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the certificate's DER: its pin and signature keyid (§4.2)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def verify_envelope_signature(cert: x509.Certificate, header: bytes, sig: bytes, what: str) -> None:
    """Verify one envelope signature over PAE(header) with the certificate's key (§4.3)."""
    key = cert.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            check(isinstance(key.curve, ec.SECP256R1), f"{what}: the certificate's EC key is not P-256")
            key.verify(sig, pae(header), ec.ECDSA(hashes.SHA256()))  # sig is ASN.1 DER
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, pae(header))
        else:
            raise VerificationError(f"{what}: the certificate has a key that cannot sign envelopes")
    except InvalidSignature:
        raise VerificationError(f"{what}: the signature does not verify over PAE(header)") from None


class PartnerIdentity:
    """A partner folder as `wagelink dev` writes it: cert.pem, key.pem, ca.pem (README)."""

    def __init__(self, folder: str):
        self.folder = folder
        paths = {name: os.path.join(folder, name) for name in ("cert.pem", "key.pem", "ca.pem")}
        for name, path in paths.items():
            if not os.path.isfile(path):
                raise WagelinkError(f"{path} is missing: a partner folder holds cert.pem, key.pem and ca.pem")
        with open(paths["cert.pem"], "rb") as f:
            self.cert_pem = f.read()
        with open(paths["key.pem"], "rb") as f:
            self.key_pem = f.read()
        with open(paths["ca.pem"], "rb") as f:
            self.ca_pem = f.read()
        self.cert = x509.load_pem_x509_certificate(self.cert_pem)
        self.key = serialization.load_pem_private_key(self.key_pem, password=None)
        self.keyid = keyid_of(self.cert)

    def sign(self, header: bytes) -> bytes:
        """Sign PAE(header): ECDSA P-256 with SHA-256, DER-encoded (or Ed25519)."""
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(pae(header), ec.ECDSA(hashes.SHA256()))
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.sign(pae(header))
        raise WagelinkError(f"{self.folder}/key.pem is neither ECDSA P-256 nor Ed25519")


# --------------------------------------------------------------------------------------------
# The Merkle tree (§7)
# --------------------------------------------------------------------------------------------

def leaf_hash(entry: bytes) -> bytes:
    return sha256(b"\x00" + entry)


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2, as written in §7.4. Raises VerificationError on failure."""
    check(index < size, f"inclusion proof: leaf index {index} is not below tree size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        check(len(p) == 32, "inclusion proof: a path hash is not 32 bytes")
        check(sn != 0, "inclusion proof: the path is too long")
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    check(sn == 0, "inclusion proof: the path is too short")
    check(r == root, "inclusion proof: the computed root does not equal the checkpoint's root")


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       path: list[bytes]) -> None:
    """RFC 9162 §2.1.4.2, as written in §7.5. Raises VerificationError on failure."""
    check(0 < first <= second, f"consistency proof: need 0 < first <= second, got {first}, {second}")
    if first == second:
        check(not path and first_root == second_root, "consistency proof: equal sizes, different roots")
        return
    check(bool(path), "consistency proof: empty path")
    if first & (first - 1) == 0:
        path = [first_root] + list(path)
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        check(sn != 0, "consistency proof: the path is too long")
        if fn % 2 == 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    check(sn == 0, "consistency proof: the path is too short")
    check(fr == first_root, "consistency proof: the first root does not match")
    check(sr == second_root, "consistency proof: the second root does not match")


# --------------------------------------------------------------------------------------------
# Checkpoints: C2SP signed notes (§8)
# --------------------------------------------------------------------------------------------

@dataclass
class VerifierKey:
    name: str
    key_hash: bytes
    public_key: ed25519.Ed25519PublicKey


def parse_verifier_key(text: str) -> VerifierKey:
    """`<name>+<8 hex key hash>+<base64(0x01 ‖ 32-byte key)>`; split on the first two `+` (§8.1)."""
    parts = text.strip().split("+", 2)
    check(len(parts) == 3, f"log verifier key {text!r} is not name+hash+key")
    name, hash_hex, key_b64 = parts
    key = base64.b64decode(key_b64, validate=True)
    check(len(key) == 33 and key[0] == 0x01, "log verifier key: not 0x01 followed by a 32-byte Ed25519 key")
    key_hash = sha256(name.encode() + b"\n" + key)[:4]
    check(key_hash.hex() == hash_hex, f"log verifier key: key hash {hash_hex} should be {key_hash.hex()}")
    return VerifierKey(name, key_hash, ed25519.Ed25519PublicKey.from_public_bytes(key[1:]))


@dataclass
class VerifiedCheckpoint:
    origin: str
    size: int
    root: bytes
    note: bytes


def verify_note(note: bytes, vkey: VerifierKey, origin: str) -> VerifiedCheckpoint:
    """Verify a checkpoint note and return origin, size and root taken FROM THE NOTE (§8.3)."""
    text = note.decode("utf-8")
    split = text.find("\n\n")
    check(split >= 0, "checkpoint note: no blank line between body and signatures")
    body, sig_lines = text[: split + 1], text[split + 2:]
    check(sig_lines.endswith("\n"), "checkpoint note: does not end with a newline")
    verified = False
    for line in sig_lines[:-1].split("\n"):
        check(line.startswith("\u2014 "), f"checkpoint note: signature line {line!r} does not start with '— '")
        name, _, b64 = line[2:].partition(" ")
        raw = base64.b64decode(b64, validate=True)
        if name != vkey.name or raw[:4] != vkey.key_hash:
            continue  # another key's line (e.g. a future witness): ignore
        check(len(raw) == 68, "checkpoint note: the log's signature is not 4 + 64 bytes")
        try:
            vkey.public_key.verify(raw[4:], body.encode("utf-8"))
        except InvalidSignature:
            raise VerificationError("checkpoint note: the log's Ed25519 signature does not verify") from None
        verified = True
    check(verified, "checkpoint note: no signature line from the log key")
    lines = body.split("\n")
    check(len(lines) == 4 and lines[3] == "", "checkpoint note: the body is not exactly 3 lines")
    note_origin, size_s, root_b64 = lines[:3]
    check(note_origin == origin, f"checkpoint note: origin {note_origin!r} is not the log's {origin!r}")
    check(size_s.isdigit() and (size_s == "0" or not size_s.startswith("0")),
          f"checkpoint note: tree size {size_s!r} is not canonical decimal")
    root = base64.b64decode(root_b64, validate=True)
    check(len(root) == 32, "checkpoint note: the root hash is not 32 bytes")
    return VerifiedCheckpoint(note_origin, int(size_s), root, note)


# --------------------------------------------------------------------------------------------
# Self-test against the vectors printed in docs/protocol.md
# --------------------------------------------------------------------------------------------

def self_test() -> None:
    """Check the verifiers above against the examples of §7.6 and §8.2 (no network)."""
    leaves = [bytes.fromhex(h) for h in
              ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
               "606162636465666768696a6b6c6d6e6f"]]
    check(leaf_hash(leaves[0]).hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
          "self-test: leaf_hash('') differs from §7.6")
    root8 = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
    path = [bytes.fromhex(h) for h in [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]]
    verify_inclusion(0, 8, leaf_hash(leaves[0]), path, root8)
    root6 = bytes.fromhex("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef")
    verify_consistency(6, 8, root6, root8, [bytes.fromhex(h) for h in [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]])
    vkey = parse_verifier_key("wagelink.dev/log+12756333+AVkoJlkcSaYFQMFX6jFcIMJtWjJqNDr6ikCMeQCP1IzU")
    note = ("wagelink.dev/log\n18\nznqESGYa2UsuVL0WDcVFBL6f6ZkbsDe/clhM5byGzBk=\n\n"
            "\u2014 wagelink.dev/log EnVjMzr3sTRrGVHsUjhgVSZccuoLIaoSaBuP16T5eiUPAEJA0EsRzURPNM4e"
            "NbtCs+y1ZlgY6tL1eSr5f3WSns51SAQ=\n").encode()
    cp = verify_note(note, vkey, "wagelink.dev/log")
    check(cp.size == 18 and cp.root.hex() ==
          "ce7a8448661ad94b2e54bd160dc54504be9fe9991bb037bf72584ce5bc86cc19",
          "self-test: the §8.2 note parsed to the wrong size or root")
    try:
        verify_note(note.replace(b"\n18\n", b"\n19\n"), vkey, "wagelink.dev/log")
    except VerificationError:
        pass
    else:
        raise VerificationError("self-test: a tampered note verified")


# --------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------

@dataclass
class Submission:
    """What a sender keeps: the envelope bytes it sent (a retry must resend exactly these)."""

    envelope: object  # wagelink.v1.SignedEnvelope
    header: object    # the decoded Header, for convenience; the signed bytes are envelope.header


@dataclass
class LogKeys:
    origin: str
    verifier_key: VerifierKey
    gateway_cert: x509.Certificate
    gateway_keyid: str
    gateway_id: str
    raw: object


class Client:
    """One mTLS channel to a gateway, used for every call (§2.1: do not reconnect per call)."""

    def __init__(self, target: str, partner_dir: str, proto_dir: str, server_name: str = "localhost",
                 timeout: float = 15.0):
        self.pb = compile_protos(proto_dir)
        self.me = PartnerIdentity(partner_dir)
        self.timeout = timeout
        creds = grpc.ssl_channel_credentials(root_certificates=self.me.ca_pem,
                                             private_key=self.me.key_pem,
                                             certificate_chain=self.me.cert_pem)
        self.channel = grpc.secure_channel(target, creds,
                                           options=[("grpc.ssl_target_name_override", server_name)])
        self.identity = self.pb.partners_grpc.IdentityStub(self.channel)
        self.cases = self.pb.cases_grpc.CasesStub(self.channel)
        self.audit = self.pb.audit_grpc.AuditStub(self.channel)
        self.partner_id: str | None = None

    def close(self) -> None:
        self.channel.close()

    # -- identity (§2.3) ------------------------------------------------------------------

    def who_am_i(self):
        """WhoAmI, with the checks of §2.3: our keyid is the pin the gateway sees, clocks agree."""
        me = self.identity.WhoAmI(self.pb.partners.WhoAmIRequest(), timeout=self.timeout)
        check(me.certificate_sha256 == self.me.keyid,
              f"WhoAmI: the gateway sees certificate {me.certificate_sha256}, ours is {self.me.keyid}")
        skew = me.server_time.seconds - int(time.time())
        check(abs(skew) <= 240, f"WhoAmI: our clock is {-skew} s away from the gateway's; fix NTP first")
        self.partner_id = me.partner.id
        return me

    # -- keys (§6.2, §8.1) ------------------------------------------------------------------

    def log_keys(self) -> LogKeys:
        keys = self.audit.GetLogKeys(self.pb.audit.GetLogKeysRequest(), timeout=self.timeout)
        certs = x509.load_pem_x509_certificates(keys.gateway_certificate_pem.encode())
        check(len(certs) >= 1, "GetLogKeys: no gateway certificate")
        gateway_cert = certs[0]  # §6.2 step 1: the first certificate
        check(keys.origin != "", "GetLogKeys: empty origin")
        check(keys.gateway_id != "", "GetLogKeys: empty gateway_id")
        return LogKeys(origin=keys.origin, verifier_key=parse_verifier_key(keys.log_verifier_key),
                       gateway_cert=gateway_cert, gateway_keyid=keyid_of(gateway_cert),
                       gateway_id=keys.gateway_id, raw=keys)

    # -- envelopes (§3, §4.5) ---------------------------------------------------------------

    def build_envelope(self, payload_msg, subject: str = "", in_reply_to: str = "",
                       recipients: tuple[str, ...] = ()) -> Submission:
        """Serialize the payload, build and serialize the Header once, sign PAE(header)."""
        check(self.partner_id is not None, "call who_am_i() first: the sender is WhoAmI.partner.id")
        env_pb = self.pb.envelope
        payload = payload_msg.SerializeToString()
        header = env_pb.Header(
            message_id=str(uuid.uuid4()),  # canonical: lowercase, hyphenated 8-4-4-4-12 (§3.2)
            sender=self.partner_id,
            payload_type=payload_msg.DESCRIPTOR.full_name,
            payload_sha256=sha256(payload),
            subject=subject,
            in_reply_to=in_reply_to,
            recipients=list(recipients),
        )
        header.created_at.GetCurrentTime()
        header_bytes = header.SerializeToString()  # serialize ONCE: these bytes are signed and sent
        envelope = env_pb.SignedEnvelope(
            header=header_bytes,
            payload=payload,
            signatures=[env_pb.Signature(keyid=self.me.keyid, sig=self.me.sign(header_bytes))],
        )
        return Submission(envelope=envelope, header=header)

    def submit_lead(self, submission: Submission):
        """Cases.SubmitLead; returns the receipt (a SignedEnvelope signed by the gateway)."""
        response = self.cases.SubmitLead(submission.envelope, timeout=self.timeout)
        check(response.HasField("receipt"), "SubmitLead: the response carries no receipt")
        return response.receipt

    # -- receipts (§6.2) ---------------------------------------------------------------------

    def verify_receipt(self, receipt, submission: Submission, keys: LogKeys):
        """Every check of §6.2; returns the decoded wagelink.v1.Receipt."""
        env_pb = self.pb.envelope
        ours = submission.envelope
        check(len(receipt.signatures) == 1, f"receipt: {len(receipt.signatures)} signatures, expected 1")
        sig = receipt.signatures[0]
        check(sig.keyid == keys.gateway_keyid,
              f"receipt: keyid {sig.keyid} is not the gateway certificate's {keys.gateway_keyid}")
        verify_envelope_signature(keys.gateway_cert, receipt.header, sig.sig, "receipt")
        rh = env_pb.Header()
        rh.ParseFromString(receipt.header)
        check(rh.sender == keys.gateway_id, f"receipt header: sender {rh.sender!r} is not {keys.gateway_id!r}")
        check(rh.payload_type == "wagelink.v1.Receipt",
              f"receipt header: payload_type {rh.payload_type!r} is not wagelink.v1.Receipt")
        check(rh.in_reply_to == submission.header.message_id,
              f"receipt header: in_reply_to {rh.in_reply_to!r} is not our message_id")
        check(list(rh.recipients) == [self.partner_id],
              f"receipt header: recipients {list(rh.recipients)} are not [{self.partner_id!r}]")
        check(rh.payload_sha256 == sha256(receipt.payload),
              "receipt header: payload_sha256 is not the SHA-256 of the receipt payload")
        r = env_pb.Receipt()
        r.ParseFromString(receipt.payload)
        check(r.kind == env_pb.RECEIPT_KIND_ACCEPTED, f"receipt: kind {r.kind} is not ACCEPTED")
        check(r.header_sha256 == sha256(ours.header),
              "receipt: header_sha256 is not the SHA-256 of our header bytes")
        check(r.message_id == submission.header.message_id,
              f"receipt: message_id {r.message_id!r} is not ours ({submission.header.message_id!r})")
        check(r.sender == self.partner_id, f"receipt: sender {r.sender!r} is not {self.partner_id!r}")
        check(r.payload_type == submission.header.payload_type,
              f"receipt: payload_type {r.payload_type!r} is not ours")
        return r

    # -- checkpoints and proofs (§8, §9) -------------------------------------------------------

    def inclusion_proof(self, leaf_index: int, wait_seconds: float = 10.0):
        """GetInclusionProof(leaf_index, tree_size = 0), retried while the entry is not yet
        covered by a checkpoint (FAILED_PRECONDITION, §9). Returns (proof, retries)."""
        deadline = time.monotonic() + wait_seconds
        retries = 0
        request = self.pb.audit.GetInclusionProofRequest(leaf_index=leaf_index, tree_size=0)
        while True:
            try:
                return self.audit.GetInclusionProof(request, timeout=self.timeout), retries
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.FAILED_PRECONDITION or time.monotonic() > deadline:
                    raise
                retries += 1
                time.sleep(0.5)

    def checkpoint(self, tree_size: int = 0):
        return self.audit.GetCheckpoint(self.pb.audit.GetCheckpointRequest(tree_size=tree_size),
                                        timeout=self.timeout)

    def verify_checkpoint(self, checkpoint, keys: LogKeys) -> VerifiedCheckpoint:
        """Verify the note (§8.3) and that the convenience fields repeat it."""
        cp = verify_note(checkpoint.note, keys.verifier_key, keys.origin)
        check(checkpoint.tree_size == cp.size and checkpoint.root_hash == cp.root
              and checkpoint.origin == cp.origin,
              "checkpoint: tree_size / root_hash / origin fields differ from the signed note")
        return cp

    def verify_proof_entry(self, proof, submission: Submission, receipt) -> object:
        """§7.3: the proof's entry bytes hash to leaf_hash and hold our own header and
        signatures. Returns the decoded AcceptedEntry."""
        check(len(proof.entry) > 0,
              "inclusion proof: entry is empty (it is given only to the submitting partner, "
              "a leading office or an admin)")
        check(leaf_hash(proof.entry) == proof.leaf_hash,
              "inclusion proof: SHA-256(0x00 ‖ entry) is not leaf_hash")
        body = self.pb.audit.EntryBody()
        body.ParseFromString(proof.entry)
        check(body.WhichOneof("kind") == "accepted",
              f"log entry: kind is {body.WhichOneof('kind')!r}, expected 'accepted'")
        acc = body.accepted
        ours = submission.envelope
        check(acc.header == ours.header, "log entry: the header bytes are not the ones we signed")
        check([(s.keyid, s.sig) for s in acc.signatures] == [(s.keyid, s.sig) for s in ours.signatures],
              "log entry: the signatures are not ours")
        check(acc.submitted_by == self.partner_id,
              f"log entry: submitted_by {acc.submitted_by!r} is not {self.partner_id!r}")
        check(acc.payload_sha256 == submission.header.payload_sha256,
              "log entry: payload_sha256 differs from our header's")
        check(acc.accepted_at == receipt.accepted_at, "log entry: accepted_at differs from the receipt's")
        check(acc.case_id == receipt.case_id, "log entry: case_id differs from the receipt's")
        check(list(acc.routed_to) == list(receipt.routed_to), "log entry: routed_to differs from the receipt's")
        return acc
