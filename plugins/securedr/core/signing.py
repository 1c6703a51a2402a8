"""Ed25519 signed JSON documents.

A signed document is a plain JSON object::

    {
      "format": "securedr-signed/1",
      "payload": {...},
      "signature": {"alg": "Ed25519", "key_id": "ed25519:0123456789abcdef", "value": "<base64>"}
    }

Guarantees:

* :func:`canonical_json` is deterministic: equal JSON values always give the same bytes,
  whatever the dict insertion order, and values that JSON cannot represent faithfully
  (NaN, Infinity, bytes, sets, non-string keys, lone surrogates...) are rejected instead of
  being silently coerced.
* :func:`verify_document` returns the payload only if it was signed by one of the trusted
  keys and not modified since; the returned dict is a fresh copy of exactly the bytes that
  were verified, so later mutation of the input document cannot change what was verified.
* No error message, log line or ``repr`` produced here contains key material.

This module is pure: stdlib and ``cryptography`` only, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

__all__ = [
    "SIGNATURE_ALG",
    "SIGNED_FORMAT",
    "SignatureError",
    "SigningError",
    "SigningKeyError",
    "TrustedKeys",
    "canonical_json",
    "generate_signing_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "sign_document",
    "verify_document",
]

SIGNED_FORMAT = "securedr-signed/1"
SIGNATURE_ALG = "Ed25519"
KEY_ID_PREFIX = "ed25519:"

_DOCUMENT_FIELDS = frozenset({"format", "payload", "signature"})
_SIGNATURE_FIELDS = frozenset({"alg", "key_id", "value"})
_ED25519_SIGNATURE_LEN = 64


class SigningError(Exception):
    """Base class of every error raised by this module."""


class SigningKeyError(SigningError, ValueError):
    """A key could not be loaded or is not an Ed25519 key. Never contains key material."""


class SignatureError(SigningError):
    """A document is unsigned, malformed, signed by an untrusted key or has been modified."""


# --------------------------------------------------------------------------- canonical JSON


def _path_child(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key, ensure_ascii=True)}]"


def _check_str(value: str, path: str) -> str:
    # Lone surrogates survive json.dumps(ensure_ascii=False) but cannot be UTF-8 encoded;
    # catching them here lets the error name the path instead of failing on the whole blob.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{path}: string is not valid Unicode (lone surrogate)") from None
    # str.__str__ strips subclasses (e.g. str-mixin enums) to the exact characters that are
    # serialised, so what we validated is what ends up in the bytes.
    return str.__str__(value)


def _normalise(value: Any, path: str, active: set[int]) -> Any:
    """Return a plain-JSON copy of ``value`` or raise naming the offending path."""
    if value is None or value is True or value is False:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path}: {value!r} is not allowed in canonical JSON")
        return float(value)
    if isinstance(value, str):
        return _check_str(value, path)
    if isinstance(value, Mapping | list | tuple):
        # Cycles would otherwise recurse until RecursionError with no useful path.
        if id(value) in active:
            raise ValueError(f"{path}: circular reference")
        active.add(id(value))
        try:
            if isinstance(value, Mapping):
                out: dict[str, Any] = {}
                for key, item in value.items():
                    if not isinstance(key, str):
                        # json.dumps would turn 1 into "1" and could merge it with a real
                        # "1" key: two different inputs, one signature.
                        raise TypeError(
                            f"{path}: object key {key!r} of type {type(key).__name__} "
                            "is not a string"
                        )
                    child = _path_child(path, key)
                    out[_check_str(key, child)] = _normalise(item, child, active)
                return out
            return [_normalise(item, f"{path}[{i}]", active) for i, item in enumerate(value)]
        finally:
            active.discard(id(value))
    raise TypeError(f"{path}: value of type {type(value).__name__} is not JSON-serialisable")


def canonical_json(obj: Any) -> bytes:
    """Serialise ``obj`` to deterministic UTF-8 JSON.

    Keys are sorted, no insignificant whitespace, non-ASCII kept as UTF-8. Accepts
    ``None``, ``bool``, ``int``, finite ``float``, ``str``, mappings with ``str`` keys,
    lists and tuples (as arrays). Anything else raises :class:`TypeError`; NaN, Infinity,
    circular references and invalid Unicode raise :class:`ValueError`. Error messages name
    the path of the offending value (``$.payload.items[3]``).
    """
    plain = _normalise(obj, "$", set())
    text = json.dumps(
        plain,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return text.encode("utf-8")


# --------------------------------------------------------------------------- keys


def _as_bytes(pem: bytes | str, what: str) -> bytes:
    if isinstance(pem, str):
        return pem.encode("utf-8")
    if isinstance(pem, bytes | bytearray | memoryview):
        return bytes(pem)
    raise SigningKeyError(f"{what} must be PEM bytes or str, not {type(pem).__name__}")


def _key_type_name(key: object) -> str:
    name = type(key).__name__.lstrip("_")
    return re.sub(r"(Private|Public)Key$", "", name) or name


def generate_signing_key() -> tuple[bytes, bytes]:
    """Create a new Ed25519 key pair.

    Returns ``(private_pem, public_pem)``: the private key as unencrypted PKCS#8 PEM, the
    public key as SubjectPublicKeyInfo PEM. The caller is responsible for storing the
    private key in a secret store; it is never written anywhere by this function.
    """
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    return private_pem, public_pem


def load_private_key(pem: bytes | str) -> Ed25519PrivateKey:
    """Load an unencrypted PKCS#8 PEM Ed25519 private key.

    Raises :class:`SigningKeyError` with a message that explains the problem (malformed PEM,
    public key given, encrypted key, wrong algorithm) and never echoes the key.
    """
    data = _as_bytes(pem, "private key")
    if b"-----BEGIN PUBLIC KEY-----" in data:
        raise SigningKeyError("expected an Ed25519 private key but got a public key PEM")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # cryptography raises TypeError for "encrypted key but no password"; its text is
        # harmless but we re-raise our own so the contract "no key material" is local.
        raise SigningKeyError(
            "private key is encrypted; SecureDR expects an unencrypted PKCS#8 PEM key "
            "(protect it with the secret store instead)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise SigningKeyError(
            "private key is not a valid PEM-encoded key "
            "(expected '-----BEGIN PRIVATE KEY-----' PKCS#8 Ed25519)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(
            f"private key is a {_key_type_name(key)} key; SecureDR signs with Ed25519 only"
        )
    return key


def load_public_key(pem: bytes | str) -> Ed25519PublicKey:
    """Load a SubjectPublicKeyInfo PEM Ed25519 public key.

    Raises :class:`SigningKeyError` (malformed PEM, private key given by mistake, wrong
    algorithm); the message never echoes the key.
    """
    data = _as_bytes(pem, "public key")
    if b"PRIVATE KEY-----" in data:
        # Most likely a configuration slip: the private key pasted into the trusted-keys
        # list. Say so loudly, without repeating it.
        raise SigningKeyError(
            "expected an Ed25519 public key but got a PRIVATE key; "
            "configure the public key only and rotate this private key if it was exposed"
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise SigningKeyError(
            "public key is not a valid PEM-encoded key "
            "(expected '-----BEGIN PUBLIC KEY-----' Ed25519 SubjectPublicKeyInfo)"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(
            f"public key is a {_key_type_name(key)} key; SecureDR verifies Ed25519 only"
        )
    return key


def _key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(
        encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw
    )
    return KEY_ID_PREFIX + hashlib.sha256(raw).hexdigest()[:16]


def key_id(public_key_pem: bytes | str) -> str:
    """Return ``"ed25519:"`` + the first 16 hex chars of sha256(raw 32-byte public key).

    The id depends only on the key, not on its PEM formatting, so the same key always has the
    same id. It is a lookup hint, not a security boundary: verification always uses the full
    public key.
    """
    return _key_id_of(load_public_key(public_key_pem))


class TrustedKeys(Mapping[str, Ed25519PublicKey]):
    """Read-only mapping ``key_id -> Ed25519PublicKey`` built from public-key PEMs.

    Several keys may be trusted at once, which is how key rotation works: trust old and new
    keys while documents signed by the old one are still in use, then drop the old one.
    """

    def __init__(self, public_key_pems: Iterable[bytes | str] = ()) -> None:
        keys: dict[str, Ed25519PublicKey] = {}
        for index, pem in enumerate(public_key_pems):
            try:
                key = load_public_key(pem)
            except SigningKeyError as exc:
                raise SigningKeyError(f"trusted key #{index + 1}: {exc}") from None
            keys[_key_id_of(key)] = key
        self._keys = keys

    @classmethod
    def coerce(cls, keys: TrustedKeys | Iterable[bytes | str]) -> TrustedKeys:
        """Return ``keys`` unchanged if already a :class:`TrustedKeys`, else build one."""
        if isinstance(keys, TrustedKeys):
            return keys
        if isinstance(keys, bytes | str):
            # A single PEM is iterable too (per byte / char); catching it avoids a baffling
            # "trusted key #1 is not valid PEM" error.
            return cls([keys])
        return cls(keys)

    def __getitem__(self, kid: str) -> Ed25519PublicKey:
        return self._keys[kid]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._keys))

    def __len__(self) -> int:
        return len(self._keys)

    def ids(self) -> list[str]:
        """Sorted key ids, for messages and reports."""
        return sorted(self._keys)

    def __repr__(self) -> str:
        return f"TrustedKeys({self.ids()!r})"


# --------------------------------------------------------------------------- documents


def _signed_message(payload: Any, kid: str) -> bytes:
    # The signature covers the format and the key id, not only the payload:
    # - binding the format stops a signature made for one document format/version from being
    #   replayed as another one that would interpret the same payload differently;
    # - binding the key id stops an attacker from relabelling a document with another trusted
    #   key's id to confuse audit/reporting about who signed it (and makes key_id in the
    #   signature block trustworthy once the signature verifies).
    return canonical_json({"format": SIGNED_FORMAT, "payload": payload, "key_id": kid})


def sign_document(payload: Mapping[str, Any], private_key_pem: bytes | str) -> dict[str, Any]:
    """Sign ``payload`` with an Ed25519 private key.

    Returns ``{"format": "securedr-signed/1", "payload": <plain JSON copy of payload>,
    "signature": {"alg": "Ed25519", "key_id": ..., "value": <base64>}}``. The payload in the
    result is a deep, JSON-normalised copy (tuples become lists), so mutating the caller's
    payload afterwards does not invalidate or alter the signed document.

    Raises :class:`TypeError`/:class:`ValueError` if the payload is not canonical JSON and
    :class:`SigningKeyError` if the key cannot be loaded.
    """
    if not isinstance(payload, Mapping):
        raise TypeError(f"payload must be a mapping, not {type(payload).__name__}")
    private = load_private_key(private_key_pem)
    kid = _key_id_of(private.public_key())
    plain_payload = json.loads(canonical_json(payload))
    signature = private.sign(_signed_message(plain_payload, kid))
    return {
        "format": SIGNED_FORMAT,
        "payload": plain_payload,
        "signature": {
            "alg": SIGNATURE_ALG,
            "key_id": kid,
            "value": base64.b64encode(signature).decode("ascii"),
        },
    }


def _decode_signature(value: object) -> bytes:
    if not isinstance(value, str):
        raise SignatureError("malformed signature block: 'value' must be a base64 string")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SignatureError("malformed signature block: 'value' is not valid base64") from None
    if len(raw) != _ED25519_SIGNATURE_LEN:
        raise SignatureError(
            f"malformed signature block: an Ed25519 signature is {_ED25519_SIGNATURE_LEN} "
            f"bytes, got {len(raw)}"
        )
    return raw


def verify_document(
    document: Mapping[str, Any],
    trusted_public_keys: TrustedKeys | Iterable[bytes | str],
) -> dict[str, Any]:
    """Verify a signed document and return its payload.

    Succeeds only if the document has exactly the fields ``format``, ``payload`` and
    ``signature`` (nothing unsigned rides along), the format is ``securedr-signed/1``, the
    signing key is one of ``trusted_public_keys`` and the signature verifies over the
    canonical payload. The returned dict is a fresh copy of the verified payload.

    Raises :class:`SignatureError` otherwise, with a message that says which check failed,
    and :class:`SigningKeyError` if a trusted key itself cannot be loaded.
    """
    if not isinstance(document, Mapping):
        raise SignatureError(f"document must be a JSON object, not {type(document).__name__}")
    if "signature" not in document:
        raise SignatureError("document is not signed")
    fmt = document.get("format")
    if fmt != SIGNED_FORMAT:
        raise SignatureError(f"unknown signed-document format {fmt!r}; expected {SIGNED_FORMAT!r}")
    extra = sorted(str(k) for k in document if k not in _DOCUMENT_FIELDS)
    if extra:
        raise SignatureError(
            f"document has fields outside the signed payload: {extra}; "
            "only 'format', 'payload' and 'signature' are allowed"
        )
    if "payload" not in document:
        raise SignatureError("malformed document: 'payload' is missing")
    payload = document["payload"]
    if not isinstance(payload, Mapping):
        raise SignatureError("malformed document: 'payload' must be a JSON object")

    block = document["signature"]
    if not isinstance(block, Mapping):
        raise SignatureError("malformed signature block: must be a JSON object")
    missing = sorted(_SIGNATURE_FIELDS - set(block))
    unexpected = sorted(str(k) for k in block if k not in _SIGNATURE_FIELDS)
    if missing or unexpected:
        raise SignatureError(
            f"malformed signature block: missing {missing}, unexpected {unexpected}"
        )
    if block["alg"] != SIGNATURE_ALG:
        raise SignatureError(
            f"unsupported signature algorithm {block['alg']!r}; expected {SIGNATURE_ALG!r}"
        )
    kid = block["key_id"]
    if not isinstance(kid, str):
        raise SignatureError("malformed signature block: 'key_id' must be a string")
    raw_signature = _decode_signature(block["value"])

    trusted = TrustedKeys.coerce(trusted_public_keys)
    public_key = trusted.get(kid)
    if public_key is None:
        raise SignatureError(
            f"signed by key {kid} which is not among the trusted keys {trusted.ids()}; "
            "add its public key to the plan's trusted keys if the rotation is intended"
        )

    try:
        message = _signed_message(payload, kid)
    except (TypeError, ValueError) as exc:
        # e.g. NaN parsed by a lenient JSON reader: it cannot have been produced by
        # sign_document, so the document was altered.
        raise SignatureError(f"payload is not canonical JSON: {exc}") from None
    try:
        public_key.verify(raw_signature, message)
    except InvalidSignature:
        raise SignatureError(
            "signature does not verify: the document was modified after signing "
            "or signed by another key"
        ) from None
    result: dict[str, Any] = json.loads(message)["payload"]
    return result
