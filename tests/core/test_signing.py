"""Tests for securedr.core.signing: canonical JSON, keys, signed documents."""

from __future__ import annotations

import base64
import copy
import enum
import hashlib
import json
import random
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from securedr.core.signing import (
    SIGNED_FORMAT,
    SignatureError,
    SigningError,
    SigningKeyError,
    TrustedKeys,
    canonical_json,
    generate_signing_key,
    key_id,
    load_private_key,
    load_public_key,
    sign_document,
    verify_document,
)

KEY_A = generate_signing_key()
KEY_B = generate_signing_key()


def _pem_body(pem: bytes) -> str:
    """The base64 body of a PEM: what must never appear in an error message."""
    lines = pem.decode().strip().splitlines()
    return "".join(lines[1:-1])


def _assert_no_key_material(message: str, *pems: bytes) -> None:
    for pem in pems:
        body = _pem_body(pem)
        # Any 16-char window of the body would be a leak, not only the whole body.
        for start in range(0, len(body) - 16, 8):
            assert body[start : start + 16] not in message


# --------------------------------------------------------------------------- canonical JSON

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


def test_canonical_json_is_compact_sorted_utf8() -> None:
    data = {"b": 1, "a": {"z": [1, 2.5, None, True], "é": "ü"}}
    assert canonical_json(data) == '{"a":{"z":[1,2.5,null,true],"é":"ü"},"b":1}'.encode()


def test_canonical_json_ignores_insertion_order() -> None:
    assert canonical_json({"a": 1, "b": 2}) == canonical_json({"b": 2, "a": 1})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_canonical_json_rejects_non_finite_floats(bad: float) -> None:
    with pytest.raises(ValueError, match=r"\$\.x\[1\]"):
        canonical_json({"x": [0, bad]})


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"a": {"b": b"raw"}}, r"\$\.a\.b"),
        ({"a": [1, {2, 3}]}, r"\$\.a\[1\]"),
        ({"weird key": object()}, r'\$\["weird key"\]'),
    ],
)
def test_canonical_json_rejects_non_json_types_naming_the_path(value: object, path: str) -> None:
    with pytest.raises(TypeError, match=path):
        canonical_json(value)


def test_canonical_json_rejects_non_string_keys() -> None:
    # json.dumps would turn 1 into "1" and collide with a real "1" key.
    with pytest.raises(TypeError, match="not a string"):
        canonical_json({1: "a", "1": "b"})


def test_canonical_json_rejects_cycles_and_lone_surrogates() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="circular"):
        canonical_json({"l": loop})
    with pytest.raises(ValueError, match=r"\$\.s"):
        canonical_json({"s": "\ud800"})


def test_canonical_json_shared_non_cyclic_references_are_fine() -> None:
    shared = [1, 2]
    assert canonical_json({"a": shared, "b": shared}) == b'{"a":[1,2],"b":[1,2]}'


def test_canonical_json_normalises_tuples_and_str_enums() -> None:
    # A str-mixin Enum on purpose: its str() is "Colour.RED", unlike StrEnum's.
    class Colour(str, enum.Enum):  # noqa: UP042
        RED = "red"

    class Size(enum.IntEnum):
        BIG = 3

    assert canonical_json({"t": (1, 2), "c": Colour.RED, "s": Size.BIG}) == (
        b'{"c":"red","s":3,"t":[1,2]}'
    )


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_canonical_json_is_a_fixed_point_of_parsing(value: object) -> None:
    encoded = canonical_json(value)
    assert canonical_json(json.loads(encoded)) == encoded
    assert json.loads(encoded) == value


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=8), st.randoms())
def test_canonical_json_does_not_depend_on_key_order(data: dict, rnd: random.Random) -> None:
    items = list(data.items())
    rnd.shuffle(items)
    assert canonical_json(dict(items)) == canonical_json(data)


# --------------------------------------------------------------------------- keys


def test_generate_signing_key_returns_pkcs8_and_spki_pems() -> None:
    private_pem, public_pem = KEY_A
    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert b"ENCRYPTED" not in private_pem
    assert KEY_A != KEY_B


def test_key_id_is_sha256_of_raw_public_key() -> None:
    public_pem = KEY_A[1]
    raw = load_public_key(public_pem).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    expected = "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]
    assert key_id(public_pem) == expected
    assert key_id(public_pem.decode()) == expected
    assert re.fullmatch(r"ed25519:[0-9a-f]{16}", expected)
    assert key_id(KEY_B[1]) != expected


def _rsa_pems() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


RSA_KEY = _rsa_pems()


def test_load_private_key_rejects_other_algorithms_without_echoing() -> None:
    with pytest.raises(SigningKeyError, match="RSA key; SecureDR signs with Ed25519 only") as err:
        load_private_key(RSA_KEY[0])
    _assert_no_key_material(str(err.value), RSA_KEY[0])


def test_load_private_key_rejects_public_key_malformed_and_encrypted() -> None:
    with pytest.raises(SigningKeyError, match="got a public key"):
        load_private_key(KEY_A[1])
    with pytest.raises(SigningKeyError, match="not a valid PEM"):
        load_private_key(b"-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n")
    encrypted = load_private_key(KEY_A[0]).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(SigningKeyError, match="encrypted") as err:
        load_private_key(encrypted)
    _assert_no_key_material(str(err.value), encrypted)


def test_load_public_key_refuses_private_key_without_echoing_it() -> None:
    with pytest.raises(SigningKeyError, match="PRIVATE key") as err:
        load_public_key(KEY_A[0])
    _assert_no_key_material(str(err.value), KEY_A[0])
    assert err.value.__cause__ is None
    assert err.value.__context__ is None


def test_load_public_key_rejects_other_algorithms_and_garbage() -> None:
    ec_pub = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(SigningKeyError, match="EC key"):
        load_public_key(ec_pub)
    with pytest.raises(SigningKeyError, match="not a valid PEM"):
        load_public_key("hello")
    with pytest.raises(SigningKeyError, match="PEM bytes or str"):
        load_public_key(42)  # type: ignore[arg-type]


def test_errors_share_a_base_class() -> None:
    assert issubclass(SignatureError, SigningError)
    assert issubclass(SigningKeyError, SigningError)


# --------------------------------------------------------------------------- documents


def test_sign_document_shape_and_round_trip() -> None:
    payload = {"plan": "prod", "regions": ("eu-west-1", "eu-central-1"), "n": 3}
    doc = sign_document(payload, KEY_A[0])
    assert doc["format"] == SIGNED_FORMAT
    assert doc["payload"] == {"plan": "prod", "regions": ["eu-west-1", "eu-central-1"], "n": 3}
    sig = doc["signature"]
    assert sig["alg"] == "Ed25519"
    assert sig["key_id"] == key_id(KEY_A[1])
    assert len(base64.b64decode(sig["value"])) == 64
    assert verify_document(doc, [KEY_A[1]]) == doc["payload"]


def test_signed_document_survives_json_storage() -> None:
    doc = sign_document({"text": "ünïcode ✓", "f": 0.1, "big": 2**70}, KEY_A[0])
    stored = json.loads(json.dumps(doc, indent=2))
    assert verify_document(stored, [KEY_A[1]])["text"] == "ünïcode ✓"


def test_signed_payload_is_isolated_from_caller_mutation() -> None:
    payload = {"items": [1, 2]}
    doc = sign_document(payload, KEY_A[0])
    payload["items"].append(3)
    assert doc["payload"] == {"items": [1, 2]}
    verified = verify_document(doc, [KEY_A[1]])
    verified["items"].append(99)
    assert verify_document(doc, [KEY_A[1]]) == {"items": [1, 2]}


def test_unsigned_document_is_refused() -> None:
    with pytest.raises(SignatureError, match=r"^document is not signed$"):
        verify_document({"format": SIGNED_FORMAT, "payload": {"a": 1}}, [KEY_A[1]])
    with pytest.raises(SignatureError, match=r"^document is not signed$"):
        verify_document({"plan": "prod"}, [KEY_A[1]])


def test_unknown_format_is_refused() -> None:
    doc = sign_document({"a": 1}, KEY_A[0])
    doc["format"] = "securedr-signed/2"
    with pytest.raises(SignatureError, match="unknown signed-document format 'securedr-signed/2'"):
        verify_document(doc, [KEY_A[1]])


def test_modified_payload_does_not_verify() -> None:
    doc = sign_document({"keep_days": 14}, KEY_A[0])
    doc["payload"]["keep_days"] = 1
    with pytest.raises(
        SignatureError,
        match="signature does not verify: the document was modified after signing or signed "
        "by another key",
    ):
        verify_document(doc, [KEY_A[1]])


def test_unsigned_fields_next_to_the_payload_are_refused() -> None:
    doc = sign_document({"a": 1}, KEY_A[0])
    doc["override"] = {"keep_days": 0}
    with pytest.raises(SignatureError, match=r"outside the signed payload: \['override'\]"):
        verify_document(doc, [KEY_A[1]])


def test_untrusted_key_names_the_key_and_the_trusted_ones() -> None:
    doc = sign_document({"a": 1}, KEY_B[0])
    kid_a, kid_b = key_id(KEY_A[1]), key_id(KEY_B[1])
    with pytest.raises(SignatureError) as err:
        verify_document(doc, [KEY_A[1]])
    assert str(err.value) == (
        f"signed by key {kid_b} which is not among the trusted keys ['{kid_a}']; "
        "add its public key to the plan's trusted keys if the rotation is intended"
    )


def test_key_rotation_accepts_any_trusted_key() -> None:
    trusted = [KEY_A[1], KEY_B[1]]
    for private_pem, _ in (KEY_A, KEY_B):
        assert verify_document(sign_document({"v": 1}, private_pem), trusted) == {"v": 1}
    keys = TrustedKeys(trusted)
    assert len(keys) == 2
    assert keys.ids() == sorted([key_id(KEY_A[1]), key_id(KEY_B[1])])
    assert verify_document(sign_document({"v": 2}, KEY_B[0]), keys) == {"v": 2}


def test_relabelling_key_id_to_another_trusted_key_fails() -> None:
    # The key id is covered by the signature, so claiming another trusted signer is caught.
    doc = sign_document({"a": 1}, KEY_A[0])
    doc["signature"]["key_id"] = key_id(KEY_B[1])
    with pytest.raises(SignatureError, match="signature does not verify"):
        verify_document(doc, [KEY_A[1], KEY_B[1]])


def test_signature_over_payload_alone_is_not_accepted() -> None:
    # A signature that does not bind format and key id (e.g. from another tool that signs the
    # bare payload with the same key) must not be replayable as a SecureDR document.
    payload = {"a": 1}
    bare = load_private_key(KEY_A[0]).sign(canonical_json(payload))
    doc = {
        "format": SIGNED_FORMAT,
        "payload": payload,
        "signature": {
            "alg": "Ed25519",
            "key_id": key_id(KEY_A[1]),
            "value": base64.b64encode(bare).decode(),
        },
    }
    with pytest.raises(SignatureError, match="signature does not verify"):
        verify_document(doc, [KEY_A[1]])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.__setitem__("signature", "abc"), "must be a JSON object"),
        (lambda d: d["signature"].pop("key_id"), r"missing \['key_id'\]"),
        (lambda d: d["signature"].__setitem__("extra", 1), r"unexpected \['extra'\]"),
        (lambda d: d["signature"].__setitem__("alg", "RS256"), "unsupported signature alg"),
        (lambda d: d["signature"].__setitem__("value", "!!!"), "not valid base64"),
        (lambda d: d["signature"].__setitem__("value", "AAAA"), "64 bytes, got 3"),
        (lambda d: d["signature"].__setitem__("key_id", 7), "'key_id' must be a string"),
        (lambda d: d.pop("payload"), "'payload' is missing"),
        (lambda d: d.__setitem__("payload", [1]), "'payload' must be a JSON object"),
        (lambda d: d["payload"].__setitem__("x", float("nan")), "not canonical JSON"),
    ],
)
def test_malformed_documents_raise_signature_error(mutate, message: str) -> None:
    doc = copy.deepcopy(sign_document({"a": 1}, KEY_A[0]))
    mutate(doc)
    with pytest.raises(SignatureError, match=message):
        verify_document(doc, [KEY_A[1]])


def test_non_mapping_document_is_refused() -> None:
    with pytest.raises(SignatureError, match="must be a JSON object"):
        verify_document([1, 2], [KEY_A[1]])  # type: ignore[arg-type]


def test_trusted_keys_accept_a_single_pem_and_report_bad_entries() -> None:
    doc = sign_document({"a": 1}, KEY_A[0])
    assert verify_document(doc, KEY_A[1]) == {"a": 1}  # type: ignore[arg-type]
    with pytest.raises(SigningKeyError, match=r"trusted key #2: .*PRIVATE key") as err:
        verify_document(doc, [KEY_A[1], KEY_B[0]])
    _assert_no_key_material(str(err.value), KEY_B[0])
    assert KEY_B[0].decode() not in repr(TrustedKeys([KEY_B[1]]))


def test_sign_document_rejects_non_json_payload() -> None:
    with pytest.raises(TypeError, match=r"\$\.when"):
        sign_document({"when": object()}, KEY_A[0])
    with pytest.raises(TypeError, match="mapping"):
        sign_document([1], KEY_A[0])  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_any_json_payload_round_trips(payload: dict) -> None:
    doc = sign_document(payload, KEY_A[0])
    stored = json.loads(json.dumps(doc))
    assert verify_document(stored, [KEY_A[1]]) == payload
