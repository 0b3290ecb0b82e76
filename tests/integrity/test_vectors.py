"""The test vectors in docs/PROTOCOL.md §10 match the implementation, in both directions."""

from __future__ import annotations

import re
from pathlib import Path

import blake3
import pytest

from ec_node.integrity._json import loads_strict
from ec_node.integrity.aead import ENC_KEY_CONTEXT, NONCE_KEY_CONTEXT, StreamCipher, object_aad
from ec_node.integrity.errors import IntegrityFormatError, RejectReason
from ec_node.integrity.frames import decode_frame
from ec_node.integrity.keys import derive_stream_key, signer_id_of, signing_key_from_seed
from ec_node.integrity.manifest import (
    Manifest,
    ManifestSignature,
    build_epoch_body,
    epoch_id_for,
    epoch_of,
    parse_epoch_id,
    parse_manifest,
    sign_manifest,
)
from ec_node.integrity.merkle import MerkleProof, merkle_proof, merkle_root, verify_proof
from ec_node.integrity.objects import open_object, seal_object
from ec_node.integrity.stream_id import SourceHint, derive_stream_id
from ec_node.integrity.verifier import Verdict, Verifier
from ec_node.pipeline.identify import identity_of
from ec_node.ts.inspect import probe_head
from ec_node.ts.psi import parse_pat
from ec_node.ts.psip import PSIP_BASE_PID
from ec_node.ts.section import packetize_section

DOC = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
USAGE = DOC.with_name("USAGE.md")
STREAM_ID_CASES = (
    "callsign-punctuation",
    "callsign-unicode",
    "several-channels",
    "cvct",
    "tsid-0",
    "no-matching-channel",
    "mpegts",
    "several-programs-file",
    "several-programs-url",
)


def _vectors() -> dict[str, dict[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    out: dict[str, dict[str, str]] = {}
    for name, body in re.findall(r"<!-- vector:(\S+) -->\s*```text\n(.*?)```", text, flags=re.S):
        fields: dict[str, str] = {}
        for line in body.splitlines():
            key, _, value = line.partition(": ")
            fields[key] = value
        out[name] = fields
    return out


@pytest.fixture(scope="module")
def vec() -> dict[str, dict[str, str]]:
    v = _vectors()
    assert set(v) == {
        "key-derivation",
        "sealed-object",
        "signed-manifest",
        "manifest-v2",
        "merkle-proof",
        *(f"stream-id-{case}" for case in STREAM_ID_CASES),
        "canonical-json",
        "frame-edges",
        "epoch-id",
        "ed25519-rule",
    }
    return v


def test_key_derivation(vec: dict[str, dict[str, str]]) -> None:
    v = vec["key-derivation"]
    key = derive_stream_key(v["stream_id"], bytes.fromhex(v["network_secret"]))
    assert key.hex() == v["stream_key"]
    assert derive_stream_key(v["stream_id"]).hex() == v["stream_key_no_secret"]
    assert blake3.blake3(key, derive_key_context=ENC_KEY_CONTEXT).hexdigest() == v["enc_key"]
    assert blake3.blake3(key, derive_key_context=NONCE_KEY_CONTEXT).hexdigest() == v["nonce_key"]


def test_sealed_object(vec: dict[str, dict[str, str]]) -> None:
    v = vec["sealed-object"]
    sid, index = v["stream_id"], int(v["chunk_index"])
    cipher = StreamCipher(sid, derive_stream_key(sid, bytes.fromhex(v["network_secret"])))
    pt = bytes.fromhex(v["plaintext"])
    assert object_aad(sid, index).hex() == v["aad"]
    sealed = seal_object(
        cipher,
        index,
        pt,
        epoch_id=epoch_id_for(sid, epoch_of(index, int(v["epoch_chunks"]))),
        chunk_duration_ms=int(v["chunk_duration_ms"]),
    )
    assert sealed.meta.chunk_hash == v["chunk_hash"] == blake3.blake3(pt).hexdigest()
    assert sealed.meta.encryption.nonce == v["nonce"]
    frame = bytes.fromhex(v["frame"])
    assert sealed.frame == frame
    n = int.from_bytes(frame[:4], "big")
    assert frame[4 : 4 + n].decode() == v["meta_json"]
    assert frame[4 + n :].hex() == v["ciphertext"]
    assert open_object(cipher, frame).plaintext == pt


def test_signed_manifest(vec: dict[str, dict[str, str]]) -> None:
    v, o = vec["signed-manifest"], vec["sealed-object"]
    key = signing_key_from_seed(bytes.fromhex(v["signing_seed"]))
    assert signer_id_of(key) == v["signer_id"]
    m = parse_manifest(v["manifest_json"].encode())
    assert m.body.canonical_bytes().decode() == v["body_json"]
    assert m.manifest_id == v["manifest_id"] == blake3.blake3(v["body_json"].encode()).hexdigest()
    assert m.signatures[0].signature == v["signature"]
    assert sign_manifest(m.body, key).encode().decode() == v["manifest_json"]
    sid = o["stream_id"]
    rebuilt = build_epoch_body(
        sid,
        5,
        1,
        {5: o["chunk_hash"]},
        chunk_duration_ms=2000,
        encoder_profile_id="passthrough",
        created_unix_ms=1_700_000_000_000,
        metadata={"title": "WSYN-HD 7.1"},
    )
    assert rebuilt == m.body
    # end to end: the manifest vouches for the sealed object under a pinned signer
    ver = Verifier(sid, derive_stream_key(sid, bytes.fromhex(o["network_secret"])), trusted_signers=[v["signer_id"]])
    assert ver.add_manifest(v["manifest_json"].encode()).verdict is Verdict.ACCEPTED
    assert ver.add_object(bytes.fromhex(o["frame"])).verdict is Verdict.ACCEPTED


def test_manifest_v2_two_signers(vec: dict[str, dict[str, str]]) -> None:
    v, o, first = vec["manifest-v2"], vec["sealed-object"], vec["signed-manifest"]
    k1 = signing_key_from_seed(bytes.fromhex(v["signing_seed"]))
    k2 = signing_key_from_seed(bytes.fromhex(v["second_seed"]))
    assert (signer_id_of(k1), signer_id_of(k2)) == (first["signer_id"], v["second_signer_id"])
    frame = bytes.fromhex(o["frame"])
    assert blake3.blake3(frame).hexdigest() == v["object_hash"]
    sid = o["stream_id"]
    body = build_epoch_body(
        sid,
        5,
        1,
        {5: o["chunk_hash"]},
        chunk_duration_ms=2000,
        encoder_profile_id="passthrough",
        metadata={"title": "WSYN-HD 7.1"},
        objects={5: v["object_hash"]},
    )
    assert body.canonical_bytes().decode() == v["body_json"]
    m = sign_manifest(body, k1, k2)
    assert (m.manifest_id, m.encode().decode()) == (v["manifest_id"], v["manifest_json"])
    assert parse_manifest(v["manifest_json"].encode()) == m
    trusted = [first["signer_id"], v["second_signer_id"]]
    both = Verifier(sid, None, trusted_signers=trusted, min_signers=2)  # keyless: the commitment checks
    assert both.add_manifest(m.encode()).verdict is Verdict.ACCEPTED
    assert both.add_object(frame).verdict is Verdict.ACCEPTED
    alone = Verifier(sid, None, trusted_signers=trusted, min_signers=2)
    assert alone.add_manifest(sign_manifest(body, k1).encode()).reason is RejectReason.TOO_FEW_SIGNERS


def test_merkle(vec: dict[str, dict[str, str]]) -> None:
    v = vec["merkle-proof"]
    slots = ["" if s == "-" else s for s in v["slots"].split(",")]
    assert slots == ["" if i == 3 else blake3.blake3(f"chunk-{i}".encode()).hexdigest() for i in range(5)]
    assert merkle_root(slots) == v["root"]
    for i in (4, 2):
        sibs = tuple(s for s in v[f"proof_{i}"].split(",") if s != "-")
        assert merkle_proof(slots, i).siblings == sibs
        assert verify_proof(slots[i], MerkleProof(i, len(slots), sibs), v["root"])
    assert merkle_root([]) == v["root_of_empty"]
    assert merkle_root([""]) == v["root_one_absent"]


@pytest.mark.parametrize("case", STREAM_ID_CASES)
def test_stream_id_from_sections(vec: dict[str, dict[str, str]], case: str) -> None:
    """§10.6: the given section bytes, packetized and read by the head probe, name the stream as shown."""
    v = vec[f"stream-id-{case}"]
    pat, pmt = bytes.fromhex(v["pat"]), bytes.fromhex(v["pmt"])
    psip = [] if v["psip"] == "-" else [bytes.fromhex(h) for h in v["psip"].split(",")]
    programs = parse_pat(pat).programs
    packets = [*packetize_section(0, pat, 0), *packetize_section(programs[min(programs)], pmt, 0)]
    cc = 0
    for sec in psip:
        more = packetize_section(PSIP_BASE_PID, sec, cc)
        cc = (cc + len(more)) % 16
        packets += more
    head = probe_head(iter(packets), 2000, case)  # one packet per read
    kind, _, locator = v["source"].partition(" ")
    assert kind in ("stdin", "file", "url")
    hint = SourceHint("stdin") if kind == "stdin" else SourceHint("file" if kind == "file" else "url", locator=locator)
    assert derive_stream_id(identity_of(head.info), hint) == v["stream_id"]
    if kind == "url":  # the ref is the whole URL string's hash
        assert v["stream_id"].split("/ref-")[1].startswith(blake3.blake3(locator.encode()).hexdigest(length=8))


def test_canonical_json_spellings(vec: dict[str, dict[str, str]]) -> None:
    """§10.7: which bytes are canonical JSON (big integers, surrogates, escapes, key order, depth)."""
    cases = vec["canonical-json"]
    assert len(cases) >= 25
    for name, line in cases.items():
        verdict, _, text = line.partition(" ")
        raw = bytes.fromhex(text) if name.endswith("_hex") else text.encode()
        if verdict == "accept":
            assert isinstance(loads_strict(raw, name), dict), name
        else:
            assert verdict == "malformed", name
            with pytest.raises(IntegrityFormatError) as e:
                loads_strict(raw, name)
            assert e.value.reason is RejectReason.MALFORMED, name


def test_frame_edges(vec: dict[str, dict[str, str]]) -> None:
    """§10.8: an object shorter than its tag and a null chunk_proof are malformed."""
    cases = vec["frame-edges"]
    assert set(cases) == {"tag_only", "shorter_than_tag", "null_proof"}
    for name, line in cases.items():
        verdict, _, hexed = line.partition(" ")
        raw = bytes.fromhex(hexed)
        if verdict == "accept":
            assert decode_frame(raw).payload.nbytes == 16
        else:
            with pytest.raises(IntegrityFormatError) as e:
                decode_frame(raw)
            assert (verdict, e.value.reason) == ("malformed", RejectReason.MALFORMED), name


def test_epoch_ids(vec: dict[str, dict[str, str]]) -> None:
    """§10.9: epoch-05 and friends do not parse."""
    v = dict(vec["epoch-id"])
    sid = v.pop("stream_id")
    assert len(v) == 10
    for name, line in v.items():
        epoch_id, _, want = line.rpartition(" -> ")
        got = parse_epoch_id(sid, epoch_id)
        assert (str(got) if got is not None else "none") == want, name
    assert v["case_6"].endswith("  -> none")  # the trailing space survived the document


def test_ed25519_rule(vec: dict[str, dict[str, str]]) -> None:
    """§10.10: the verification rule is OpenSSL's (cofactorless, S < L, canonical R, any A)."""
    v = dict(vec["ed25519-rule"])
    msg = v.pop("message")
    body = parse_manifest(vec["signed-manifest"]["manifest_json"].encode()).body
    assert body.compute_id() == msg
    assert set(v) == {
        "honest",
        "small_order_key",
        "noncanonical_key",
        "s_not_below_l",
        "noncanonical_r",
        "cofactored_only",
    }
    for name, line in v.items():
        verdict, signer, sig = line.split(" ")
        m = Manifest(body, msg, (ManifestSignature(signer, sig),))
        assert m.valid_signers() == ([signer] if verdict == "valid" else []), name


def _reasons(text: str) -> set[str]:
    return set(re.findall(r"`([a-z_]+)`", text))


def test_reason_lists_are_complete() -> None:
    """PROTOCOL §9 and USAGE list every RejectReason, and nothing else."""
    want = {r.value for r in RejectReason}
    protocol = DOC.read_text(encoding="utf-8")
    listed = protocol.split("Every rejection carries one `RejectReason`:")[1].split("The\nverifier counts")[0]
    assert _reasons(listed) - {"object_root"} == want  # ("bad_merkle_root (also for object_root)")
    usage = USAGE.read_text(encoding="utf-8")
    listed = usage.split("Rejection reasons (`reason` in")[1].split("(see")[0]
    assert _reasons(listed) - {"rejected", "manifest_rejected", "reason"} == want
