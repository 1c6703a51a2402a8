"""Client-side envelope encryption for file-set backups (SecureDR envelope format v1).

The byte-level format is specified in ``docs/envelope-format.md``; every constant below
carries the name the specification uses. In short: a per-file 32-byte data key (from KMS
``GenerateDataKey``) encrypts the file as a STREAM of AES-256-GCM chunks under a per-file
payload key; the header carries the KMS-wrapped data key and a second copy of the data
key wrapped to an offline X25519 *recovery key*, and is authenticated by an HMAC under the
data key.

Guarantees:

* Every byte of an envelope is authenticated. Modifying, truncating, extending or
  reordering it, moving chunks between files (even under the same data key) or grafting
  a header onto another file's payload makes decryption fail with a specific
  :class:`EnvelopeError` subclass; a decoder never releases a chunk's plaintext before
  that chunk's tag has been verified.
* :func:`decrypt_file` is all-or-nothing: the output appears (atomically, by rename) only
  after every chunk authenticated and the SHA-256 matched; on any failure no output file
  and no temporary file is left behind.
* Memory is flat in the file size: at most seven chunk buffers (7 MiB with the default
  1 MiB chunks) to encrypt and five to decrypt, whatever the length of the stream; a file
  of one chunk gets one or two. :func:`decrypt_to_path` decrypts into a mapping of its
  temporary file instead, at most two 8 MiB windows of it at a time.
* Files of several chunks run as a pipeline over two helper threads: the caller's thread
  reads and runs AES-GCM, one helper hashes and one writes (none writes when decrypting
  into a mapped file). A failure in any stage is raised in the caller's thread, later
  stages never see a chunk an earlier one failed on, and no thread outlives the call.
* The plaintext SHA-256 is computed in the same pass and returned, for the signed manifest.
* No error message, ``repr`` or result object produced here contains key material.

This module is pure: stdlib and ``cryptography`` only. It never calls AWS; the caller
passes the data key that KMS returned and stores nothing else.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import hmac
import mmap
import os
import queue
import struct
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAGIC",
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "VERSION",
    "ChecksumMismatchError",
    "ChunkAuthenticationError",
    "DecryptResult",
    "EncryptResult",
    "EnvelopeError",
    "Header",
    "HeaderAuthenticationError",
    "HeaderError",
    "HeaderFromAnotherFileError",
    "KeyFormatError",
    "MalformedHeaderError",
    "NotAnEnvelopeError",
    "TrailingDataError",
    "TruncatedError",
    "UnsupportedVersionError",
    "WrongDataKeyError",
    "WrongKeyError",
    "WrongRecoveryKeyError",
    "decrypt_file",
    "decrypt_stream",
    "encrypt_stream",
    "generate_recovery_keypair",
    "identity_file_contents",
    "read_header",
    "recovery_key_id",
    "recovery_public_key",
    "verify_stream",
]

# --- Constants (names as in docs/envelope-format.md, section 2) ---------------------------

MAGIC = b"SECUREDR"
VERSION = 1
DATA_KEY_SIZE = 32
FILE_ID_SIZE = 32
KEY_COMMITMENT_SIZE = 32
MAX_KMS_KEY_ARN_SIZE = 2048
MAX_KMS_WRAPPED_KEY_SIZE = 6144
RECOVERY_KEY_ID_SIZE = 8
X25519_KEY_SIZE = 32
RECOVERY_WRAPPED_KEY_SIZE = DATA_KEY_SIZE + 16
HEADER_MAC_SIZE = 32
RECORD_HEADER_SIZE = 5
TAG_SIZE = 16
NONCE_SIZE = 12
COUNTER_SIZE = 11
FLAG_NOT_FINAL = 0x00
FLAG_FINAL = 0x01
DEFAULT_CHUNK_SIZE = 1 << 20
MIN_CHUNK_SIZE = 1
MAX_CHUNK_SIZE = 4 << 20
INFO_KEY_COMMITMENT = b"securedr/v1 key commitment"
INFO_HEADER_MAC_KEY = b"securedr/v1 header mac key"
INFO_PAYLOAD_KEY = b"securedr/v1 payload key"
INFO_RECOVERY_WRAP_KEY = b"securedr/v1 recovery wrap key"
LABEL_RECOVERY_KEY_ID = b"securedr/v1 recovery key id"
PUBLIC_KEY_PREFIX = "securedr-recovery-pub-"
PRIVATE_KEY_PREFIX = "SECUREDR-RECOVERY-KEY-"
KEY_CHECKSUM_SIZE = 8

# MAGIC, VERSION, CHUNK_SIZE, FILE_ID, KEY_COMMITMENT: the fixed part before the first length.
_FIXED_HEADER = struct.Struct(f">{len(MAGIC)}sBI{FILE_ID_SIZE}s{KEY_COMMITMENT_SIZE}s")
_U16 = struct.Struct(">H")
_RECORD_HEADER = struct.Struct(">BI")
_RECOVERY_STANZA_SIZE = RECOVERY_KEY_ID_SIZE + X25519_KEY_SIZE + RECOVERY_WRAPPED_KEY_SIZE
_KEY_TEXT_BODY_CHARS = 64  # base32 of 32-byte key + 8-byte checksum, no padding
_ZERO_NONCE = bytes(NONCE_SIZE)

# Below this chunk size helper threads cost more than they overlap: hashlib only releases
# the GIL for buffers of at least 2 KiB, and thread hand-offs cost microseconds each.
_THREAD_MIN_CHUNK = 64 << 10
# Plaintext buffers: enough that reading and AES-GCM run ahead of the hash (the slowest
# stage) and it never waits for input; few enough that memory stays a handful of chunks.
_RING = 4
# Ciphertext buffers on encryption: the writer works on one while the next is encrypted.
_SEALED_RING = 3
# Bytes of the output file mapped at a time when decrypting to a path (see _MappedOutput).
_WINDOW = 8 << 20
# ...and bytes of it reserved at a time, ahead of the windows.
_RESERVE = 64 << 20


# --- Errors ----------------------------------------------------------------------------


class EnvelopeError(Exception):
    """Base class: the input is not an intact SecureDR envelope for the given key.

    Messages say what failed and what to do; they never contain key material.
    """


class NotAnEnvelopeError(EnvelopeError):
    """The input does not start with the SecureDR envelope magic bytes."""


class UnsupportedVersionError(EnvelopeError):
    """The envelope is of a format version this code does not know."""


class HeaderError(EnvelopeError):
    """The header is corrupt, was modified, or belongs to another file."""


class MalformedHeaderError(HeaderError):
    """A header field is out of range or not decodable (corruption or modification)."""


class HeaderAuthenticationError(HeaderError):
    """The header does not authenticate under the (correct) key: it was modified."""


class HeaderFromAnotherFileError(HeaderError):
    """The header is authentic but its file id is not the one the caller expected."""


class WrongKeyError(EnvelopeError):
    """The key supplied is not a key of this envelope."""


class WrongDataKeyError(WrongKeyError):
    """The data key does not match the header's key commitment."""


class WrongRecoveryKeyError(WrongKeyError):
    """The envelope was wrapped to a different recovery key."""


class ChunkAuthenticationError(EnvelopeError):
    """Record ``index`` failed authentication: modified, reordered, or from another file."""

    def __init__(self, index: int, detail: str = "") -> None:
        self.index = index
        message = (
            f"chunk {index} failed authentication{': ' + detail if detail else ''}: the "
            "ciphertext was modified, reordered or comes from another file; do not use this "
            "copy, restore the object from another replica or an older version"
        )
        super().__init__(message)


class TruncatedError(EnvelopeError):
    """The input ends before the final chunk: the file was cut short."""


class TrailingDataError(EnvelopeError):
    """Bytes follow the final chunk: something was appended to the file."""


class ChecksumMismatchError(EnvelopeError):
    """All chunks authenticated, but the plaintext SHA-256 is not the expected one."""


class KeyFormatError(EnvelopeError):
    """A recovery key text or identity file does not parse."""


# --- Results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """A parsed envelope header. Until a decrypt/verify call has checked ``HEADER_MAC``,
    nothing here is authenticated: use the KMS fields only to ask KMS for the data key
    (KMS authenticates its own blob) and the recovery key id only to pick a key."""

    version: int
    chunk_size: int
    file_id: bytes
    key_commitment: bytes
    kms_key_arn: str
    kms_wrapped_key: bytes
    recovery_key_id: bytes
    recovery_ephemeral: bytes
    recovery_wrapped_key: bytes
    header_mac: bytes
    #: The exact header bytes as read, ``HEADER_MAC`` included.
    raw: bytes = field(repr=False)

    @property
    def size(self) -> int:
        """Length of the header in bytes."""
        return len(self.raw)

    @property
    def file_id_hex(self) -> str:
        return self.file_id.hex()

    @property
    def recovery_key_id_hex(self) -> str:
        return self.recovery_key_id.hex()


@dataclass(frozen=True)
class EncryptResult:
    """What the caller records in the manifest. Contains no key material."""

    plaintext_sha256: str  #: lowercase hex
    plaintext_size: int
    ciphertext_size: int
    file_id: str  #: lowercase hex of FILE_ID
    chunk_count: int


@dataclass(frozen=True)
class DecryptResult:
    """Outcome of a successful decrypt or verify: every chunk authenticated."""

    plaintext_sha256: str  #: lowercase hex
    plaintext_size: int
    ciphertext_size: int
    file_id: str  #: lowercase hex of FILE_ID
    chunk_count: int


# --- Recovery keys ---------------------------------------------------------------------


def generate_recovery_keypair() -> tuple[bytes, bytes]:
    """Create an offline recovery key pair.

    Returns ``(private_key, public_key)`` as ASCII text forms
    (``SECUREDR-RECOVERY-KEY-...`` and ``securedr-recovery-pub-...``, 86 characters each,
    with a checksum). Store the private key with :func:`identity_file_contents`, offline;
    configure only the public key in SecureDR.
    """
    private = X25519PrivateKey.generate()
    raw_private = private.private_bytes_raw()
    raw_public = private.public_key().public_bytes_raw()
    return (
        _encode_key_text(PRIVATE_KEY_PREFIX, raw_private),
        _encode_key_text(PUBLIC_KEY_PREFIX, raw_public),
    )


def recovery_public_key(private_key: bytes | str) -> bytes:
    """The public key text for a private key text or identity file content."""
    raw_public = _load_private_key(private_key).public_key().public_bytes_raw()
    return _encode_key_text(PUBLIC_KEY_PREFIX, raw_public)


def recovery_key_id(public_key: bytes | str) -> str:
    """The 16-hex-digit id that headers record for a recovery public key text."""
    return _recovery_key_id(_decode_key_text(PUBLIC_KEY_PREFIX, public_key)).hex()


def identity_file_contents(private_key: bytes | str, *, created: datetime | None = None) -> bytes:
    """The offline identity file for a private key text (spec section 3.3).

    Comment lines name the public key and key id, so whoever holds the file can tell which
    backups it opens without loading it into anything.
    """
    raw_private = _decode_key_text(PRIVATE_KEY_PREFIX, private_key)
    public = recovery_public_key(private_key).decode("ascii")
    when = (created or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        "# SecureDR offline recovery key. Anyone holding this file can decrypt every backup\n"
        "# wrapped to the public key below: keep it offline, never on a backup system.\n"
        f"# created: {when}\n"
        f"# public key: {public}\n"
        f"# key id: {recovery_key_id(public)}\n"
        f"{_encode_key_text(PRIVATE_KEY_PREFIX, raw_private).decode('ascii')}\n"
    ).encode("ascii")


def _key_checksum(prefix: str, raw: bytes) -> bytes:
    return hashlib.sha256(prefix.encode("ascii") + raw).digest()[:KEY_CHECKSUM_SIZE]


def _encode_key_text(prefix: str, raw: bytes) -> bytes:
    body = base64.b32encode(raw + _key_checksum(prefix, raw)).decode("ascii")
    body = body.upper() if prefix == PRIVATE_KEY_PREFIX else body.lower()
    return (prefix + body).encode("ascii")


def _decode_key_text(prefix: str, text: bytes | str) -> bytes:
    # Messages never echo the input: it may be a private key passed in the wrong place.
    kind = "recovery private key" if prefix == PRIVATE_KEY_PREFIX else "recovery public key"
    if isinstance(text, bytes | bytearray | memoryview):
        try:
            text = bytes(text).decode("ascii")
        except UnicodeDecodeError:
            raise KeyFormatError(f"the {kind} is not ASCII text") from None
    text = text.strip()
    if text[: len(prefix)].lower() != prefix.lower():
        other = PUBLIC_KEY_PREFIX if prefix == PRIVATE_KEY_PREFIX else PRIVATE_KEY_PREFIX
        hint = (
            f" (that looks like a {other}... key)" if text.lower().startswith(other.lower()) else ""
        )
        raise KeyFormatError(f"expected a {kind} starting with {prefix!r}{hint}")
    body = text[len(prefix) :]
    if len(body) != _KEY_TEXT_BODY_CHARS:
        raise KeyFormatError(f"the {kind} has the wrong length; copy it again in full")
    try:
        decoded = base64.b32decode(body.upper())
    except binascii.Error:
        raise KeyFormatError(f"the {kind} contains characters outside base32") from None
    raw, checksum = decoded[:X25519_KEY_SIZE], decoded[X25519_KEY_SIZE:]
    if not hmac.compare_digest(checksum, _key_checksum(prefix, raw)):
        raise KeyFormatError(f"the {kind} checksum does not match: it was mistyped or damaged")
    return raw


def _load_private_key(private_key: bytes | str) -> X25519PrivateKey:
    """Accept a bare private key text or a whole identity file (comments ignored)."""
    if isinstance(private_key, bytes | bytearray | memoryview):
        try:
            private_key = bytes(private_key).decode("utf-8")
        except UnicodeDecodeError:
            raise KeyFormatError("the identity is not UTF-8 text") from None
    lines = [
        line.strip()
        for line in private_key.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if len(lines) != 1:
        raise KeyFormatError(
            "an identity file must contain exactly one SECUREDR-RECOVERY-KEY-... line "
            f"(found {len(lines)} non-comment lines)"
        )
    return X25519PrivateKey.from_private_bytes(_decode_key_text(PRIVATE_KEY_PREFIX, lines[0]))


def _recovery_key_id(raw_public: bytes) -> bytes:
    return hashlib.sha256(LABEL_RECOVERY_KEY_ID + raw_public).digest()[:RECOVERY_KEY_ID_SIZE]


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _wrap_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return _hkdf(shared, ephemeral + recipient, INFO_RECOVERY_WRAP_KEY)


# --- Header ----------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)  # no repr: never print key material
class _FileKeys:
    payload: AESGCM
    header_mac_key: bytes


def _derive_file_keys(data_key: bytes, file_id: bytes) -> _FileKeys:
    return _FileKeys(
        payload=AESGCM(_hkdf(data_key, file_id, INFO_PAYLOAD_KEY)),
        header_mac_key=_hkdf(data_key, file_id, INFO_HEADER_MAC_KEY),
    )


def _key_commitment(data_key: bytes) -> bytes:
    return _hkdf(data_key, None, INFO_KEY_COMMITMENT)


def _header_mac(header_mac_key: bytes, header_without_mac: bytes) -> bytes:
    return hmac.new(header_mac_key, header_without_mac, hashlib.sha256).digest()


def _check_data_key(data_key: bytes) -> bytes:
    if not isinstance(data_key, bytes | bytearray | memoryview):
        raise TypeError("data_key must be bytes")
    data_key = bytes(data_key)
    if len(data_key) != DATA_KEY_SIZE:
        raise ValueError(f"data_key must be {DATA_KEY_SIZE} bytes (a KMS AES_256 data key)")
    return data_key


def _build_header(
    *,
    chunk_size: int,
    file_id: bytes,
    data_key: bytes,
    kms_key_arn: str,
    kms_wrapped_key: bytes,
    recovery_public: bytes,
    header_mac_key: bytes,
) -> bytes:
    arn = kms_key_arn.encode("utf-8")
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    try:
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recovery_public))
    except ValueError:
        # All-zero shared secret: the public key is a low-order point, not a real key.
        raise KeyFormatError("the recovery public key is not a valid X25519 key") from None
    wrapped = AESGCM(_wrap_key(shared, ephemeral_public, recovery_public)).encrypt(
        _ZERO_NONCE, data_key, file_id
    )
    body = b"".join(
        (
            _FIXED_HEADER.pack(MAGIC, VERSION, chunk_size, file_id, _key_commitment(data_key)),
            _U16.pack(len(arn)),
            arn,
            _U16.pack(len(kms_wrapped_key)),
            kms_wrapped_key,
            _recovery_key_id(recovery_public),
            ephemeral_public,
            wrapped,
        )
    )
    return body + _header_mac(header_mac_key, body)


def read_header(src: BinaryIO) -> Header:
    """Read and parse the header, leaving ``src`` positioned at the first record.

    Checks structure only (magic, version, field ranges); the header is authenticated
    later, once a key is available. Raises :class:`NotAnEnvelopeError`,
    :class:`UnsupportedVersionError`, :class:`MalformedHeaderError` or
    :class:`TruncatedError`.
    """
    raw = bytearray()

    def take(n: int, what: str) -> bytes:
        data = _read_exact(src, n)
        raw.extend(data)
        if len(data) < n:
            raise TruncatedError(
                f"the file ends inside the header ({what}): it was cut short or a header "
                "length field is corrupt; fetch the object again"
            )
        return data

    magic = _read_exact(src, len(MAGIC))
    if not magic:
        raise NotAnEnvelopeError("not a SecureDR envelope: the file is empty")
    if magic != MAGIC[: len(magic)]:
        raise NotAnEnvelopeError(
            "not a SecureDR envelope (the file does not start with 'SECUREDR'); check that "
            "you passed the encrypted object, not plaintext or another format"
        )
    if len(magic) < len(MAGIC):
        raise TruncatedError("the file ends inside the header magic: it was cut short")
    raw.extend(magic)
    (version,) = take(1, "version")
    if version != VERSION:
        raise UnsupportedVersionError(
            f"SecureDR envelope version {version} is not supported (this code reads version "
            f"{VERSION}); upgrade SecureDR"
        )
    take(_FIXED_HEADER.size - len(raw), "fixed fields")
    _, _, chunk_size, file_id, commitment = _FIXED_HEADER.unpack(bytes(raw))
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise MalformedHeaderError(
            f"malformed header: chunk size {chunk_size} is outside "
            f"{MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}; the header is corrupt or was modified"
        )
    (arn_len,) = _U16.unpack(take(_U16.size, "KMS key ARN length"))
    if not 1 <= arn_len <= MAX_KMS_KEY_ARN_SIZE:
        raise MalformedHeaderError(
            f"malformed header: KMS key ARN length {arn_len} is out of range; the header is "
            "corrupt or was modified"
        )
    try:
        arn = take(arn_len, "KMS key ARN").decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedHeaderError(
            "malformed header: the KMS key ARN is not UTF-8; the header is corrupt or was modified"
        ) from None
    (blob_len,) = _U16.unpack(take(_U16.size, "KMS wrapped key length"))
    if not 1 <= blob_len <= MAX_KMS_WRAPPED_KEY_SIZE:
        raise MalformedHeaderError(
            f"malformed header: KMS wrapped key length {blob_len} is out of range; the "
            "header is corrupt or was modified"
        )
    blob = take(blob_len, "KMS wrapped key")
    stanza = take(_RECOVERY_STANZA_SIZE, "recovery stanza")
    mac = take(HEADER_MAC_SIZE, "header MAC")
    key_id_end = RECOVERY_KEY_ID_SIZE
    ephemeral_end = key_id_end + X25519_KEY_SIZE
    return Header(
        version=version,
        chunk_size=chunk_size,
        file_id=file_id,
        key_commitment=commitment,
        kms_key_arn=arn,
        kms_wrapped_key=blob,
        recovery_key_id=stanza[:key_id_end],
        recovery_ephemeral=stanza[key_id_end:ephemeral_end],
        recovery_wrapped_key=stanza[ephemeral_end:],
        header_mac=mac,
        raw=bytes(raw),
    )


def _resolve_key(
    data_key: bytes | None, recovery_private_key: bytes | str | None
) -> bytes | X25519PrivateKey:
    """Validate the caller's key before any input is read, so key errors come first."""
    if (data_key is None) == (recovery_private_key is None):
        raise ValueError("pass exactly one of data_key and recovery_private_key")
    if data_key is not None:
        return _check_data_key(data_key)
    assert recovery_private_key is not None
    return _load_private_key(recovery_private_key)


def _open_header(
    header: Header, key: bytes | X25519PrivateKey, expected_file_id: str | None
) -> _FileKeys:
    """Get the data key, authenticate the header (spec section 6, steps 3-5)."""
    if isinstance(key, bytes):
        data_key = key
        if not hmac.compare_digest(_key_commitment(data_key), header.key_commitment):
            raise WrongDataKeyError(
                "wrong data key: the key does not belong to this file (KMS returned the key "
                "of another envelope, or the header's key commitment was modified); decrypt "
                "this file's own KMS wrapped key, or use the offline recovery key"
            )
    else:
        private = key
        own_public = private.public_key().public_bytes_raw()
        own_id = _recovery_key_id(own_public)
        if not hmac.compare_digest(own_id, header.recovery_key_id):
            raise WrongRecoveryKeyError(
                f"wrong recovery key: this file was wrapped to recovery key id "
                f"{header.recovery_key_id.hex()}, the identity given has id {own_id.hex()}; "
                "use the identity file whose '# key id:' line matches (if it already "
                "does, the header is corrupt: fetch the object again)"
            )
        tampered = HeaderAuthenticationError(
            "header authentication failed: the recovery key is the right one but the "
            "wrapped key in the header does not open; the header was modified or corrupted, "
            "fetch the object again"
        )
        try:
            shared = private.exchange(X25519PublicKey.from_public_bytes(header.recovery_ephemeral))
            data_key = AESGCM(_wrap_key(shared, header.recovery_ephemeral, own_public)).decrypt(
                _ZERO_NONCE, header.recovery_wrapped_key, header.file_id
            )
        except (InvalidTag, ValueError):
            raise tampered from None
        if not hmac.compare_digest(_key_commitment(data_key), header.key_commitment):
            raise tampered
    keys = _derive_file_keys(data_key, header.file_id)
    body, mac = header.raw[:-HEADER_MAC_SIZE], header.raw[-HEADER_MAC_SIZE:]
    if not hmac.compare_digest(_header_mac(keys.header_mac_key, body), mac):
        raise HeaderAuthenticationError(
            "header authentication failed: the header was modified, corrupted, or assembled "
            "from parts of different files; fetch the object again"
        )
    if expected_file_id is not None and not hmac.compare_digest(
        header.file_id.hex(), expected_file_id
    ):
        raise HeaderFromAnotherFileError(
            f"this envelope is file {header.file_id.hex()}, not the expected "
            f"{expected_file_id}: the object was replaced by (or mixed up with) another "
            "backup file; check the manifest and the object key"
        )
    return keys


# --- Streaming -------------------------------------------------------------------------


def _read_exact(src: BinaryIO, n: int) -> bytes:
    """Read ``n`` bytes; fewer only at end of input."""
    data = src.read(n)
    if not data or len(data) == n:
        return data or b""
    chunks = [data]
    got = len(data)
    while got < n:
        more = src.read(n - got)
        if not more:
            break
        chunks.append(more)
        got += len(more)
    return b"".join(chunks)


def _readinto_full(src: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` from ``src``; returns fewer than ``len(view)`` only at end of input."""
    readinto = getattr(src, "readinto", None)
    total, size = 0, len(view)
    while total < size:
        if readinto is not None:
            n = readinto(view[total:])
        else:  # e.g. an HTTP body that only offers read()
            data = src.read(size - total)
            n = len(data) if data else 0
            view[total : total + n] = data or b""
        if not n:
            break
        total += n
    return total


def _write_all(dst: BinaryIO, view: memoryview) -> None:
    while len(view):
        written = dst.write(view)
        if written is None:
            raise OSError("the destination stream is non-blocking; pass a blocking stream")
        if written >= len(view):
            return
        view = view[written:]


def _nonce(index: int, flag: int) -> bytes:
    return index.to_bytes(COUNTER_SIZE, "big") + bytes((flag,))


class _Worker:
    """One pipeline stage on a helper thread: runs ``fn(job)`` for each job, in order.

    Jobs are counted from 0 as they are submitted. :meth:`wait_for` blocks until the first
    ``count`` jobs are done and raises, in the caller's thread, an exception a job raised;
    after a failure the stage runs no further job. :meth:`close` makes the thread skip what
    is still queued and joins it, so no thread outlives the call that started it and none
    is still touching a buffer when the caller reuses or frees it.
    """

    def __init__(self, fn: Callable[[memoryview], object], name: str) -> None:
        self._fn = fn
        self._jobs: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._finished = 0  # jobs known to be done, as seen by the caller's thread
        self._submitted = 0
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fn, jobs, done = self._fn, self._jobs, self._done
        while (job := jobs.get()) is not None:
            if self._cancelled:
                continue
            try:
                fn(job)
            except BaseException as error:  # re-raised in the caller's thread
                del job  # the traceback keeps this frame: it must not keep the buffer
                done.put(error)
                return
            # Hold no reference to a job the caller knows is done: it may unmap its memory.
            del job
            done.put(None)

    def submit(self, job: memoryview) -> None:
        self._submitted += 1
        self._jobs.put(job)

    def wait_for(self, count: int) -> None:
        while self._finished < min(count, self._submitted):
            error = self._done.get()
            if error is not None:
                raise error
            self._finished += 1

    def wait_all(self) -> None:
        self.wait_for(self._submitted)

    def close(self) -> None:
        self._cancelled = True
        self._jobs.put(None)
        self._thread.join()


class _Inline:
    """The :class:`_Worker` interface, run in the caller's thread (one-chunk files, tiny
    chunks), where a thread would cost more than it overlaps."""

    def __init__(self, fn: Callable[[memoryview], object]) -> None:
        self.submit = fn

    def wait_for(self, count: int) -> None:
        pass

    def wait_all(self) -> None:
        pass

    def close(self) -> None:
        pass


def _stage(fn: Callable[[memoryview], object], name: str, threaded: bool) -> _Worker | _Inline:
    return _Worker(fn, name) if threaded else _Inline(fn)


class _MappedOutput:
    """Plaintext decrypted straight into the page cache of the output file.

    :func:`decrypt_to_path` owns a private temporary file, so instead of decrypting into
    a buffer and copying it out with ``write`` (a second pass over every byte, on the core
    that also reads and decrypts) chunks are decrypted into a shared memory mapping of the
    file, a window of :data:`_WINDOW` bytes at a time. Each window's disk blocks are
    reserved with ``posix_fallocate`` before it is mapped, so a full disk is an ``OSError``
    up front (never a ``SIGBUS`` on a page fault); the file grows past its final size by
    at most :data:`_RESERVE` until it is cut to size. At most two windows are mapped, and one
    is unmapped only after the hash stage is done with every chunk in it, so memory stays
    flat in the file size. :meth:`close` unmaps what is left (every view handed out must
    be gone by then) and :meth:`finish` cuts the file to the plaintext size.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._windows: list[tuple[mmap.mmap, memoryview, int, int]] = []  # map, view, base, last
        self._granularity = mmap.ALLOCATIONGRANULARITY
        self._reserved = 0  # bytes of the file whose blocks posix_fallocate reserved

    @classmethod
    def open(cls, fd: int) -> _MappedOutput | None:
        """A mapped output on the empty file ``fd``, or None where the file system cannot
        map it for writing (some network and FUSE file systems); the caller then writes
        instead. A full disk or quota is raised."""
        output = cls(fd)
        try:
            output._map(0, _WINDOW)
        except OSError as error:
            output.close()
            os.ftruncate(fd, 0)
            if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            return None
        return output

    def _reserve(self, end: int) -> None:
        """Reserve the file's blocks up to ``end``, :data:`_RESERVE` bytes ahead at a time
        (one ``fallocate`` per window costs ext4 more than the copy a mapping saves); on a
        full disk, just what the next window needs, or raise."""
        if end <= self._reserved:
            return
        ahead = max(end, self._reserved + _RESERVE)
        try:
            os.posix_fallocate(self._fd, self._reserved, ahead - self._reserved)
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            os.posix_fallocate(self._fd, self._reserved, end - self._reserved)
            ahead = end
        self._reserved = ahead

    def _map(self, base: int, size: int) -> None:
        self._reserve(base + size)
        mapped = mmap.mmap(self._fd, size, access=mmap.ACCESS_WRITE, offset=base)
        self._windows.append((mapped, memoryview(mapped), base, -1))

    def take(self, index: int, offset: int, length: int, hasher: _Worker | _Inline) -> memoryview:
        """The ``length`` bytes at ``offset`` of the file, for chunk ``index``."""
        mapped, view, base, _ = self._windows[-1]
        if offset + length > base + len(view):
            start = offset - offset % self._granularity
            size = max(_WINDOW, offset + length - start)
            if len(self._windows) == 2:
                oldest = self._windows[0]
                hasher.wait_for(oldest[3] + 1)
                self._release(oldest)
                del self._windows[0]
            self._map(start, size)
            mapped, view, base, _ = self._windows[-1]
        self._windows[-1] = (mapped, view, base, index)
        return view[offset - base : offset - base + length]

    def finish(self, size: int) -> None:
        """Cut the file to the ``size`` bytes decrypted (after :meth:`close`); the last
        window's reservation reaches past the end."""
        os.ftruncate(self._fd, size)

    @staticmethod
    def _release(window: tuple[mmap.mmap, memoryview, int, int], *, strict: bool = True) -> None:
        mapped, view, _, _ = window
        view.release()
        if strict:
            mapped.close()
            return
        # Unwinding from an error: a traceback may still hold a view of this window (a
        # stage's frame), and the error it belongs to matters more than a BufferError. The
        # window is then unmapped when the last view goes.
        with contextlib.suppress(BufferError):
            mapped.close()

    def close(self, *, strict: bool = True) -> None:
        """Unmap every window (idempotent); with ``strict=False``, as far as no view pins
        one (see :meth:`_release`)."""
        while self._windows:
            self._release(self._windows.pop(), strict=strict)


def _check_chunk_size(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise TypeError("chunk_size must be an int")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be in {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    *,
    data_key: bytes,
    kms_key_arn: str,
    kms_wrapped_key: bytes,
    recovery_public_key: bytes | str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> EncryptResult:
    """Encrypt ``src`` to ``dst`` as a SecureDR envelope; return the plaintext SHA-256.

    ``data_key`` is the 32-byte plaintext key from KMS ``GenerateDataKey`` and
    ``kms_wrapped_key`` its ``CiphertextBlob`` (stored in the header with ``kms_key_arn``);
    use a fresh data key per file. The data key is also wrapped to ``recovery_public_key``
    (``securedr-recovery-pub-...``) so the file can be restored without KMS.

    All arguments are validated before anything is written. ``src`` is read once, in
    order, in the caller's thread, with memory bounded by a few chunks; ``dst`` only
    needs ``write`` and must consume each buffer before returning (as every ``io`` class
    does). For inputs of several chunks ``dst.write`` is called from a helper thread, one
    call at a time and in order, and not after this function returned. The result
    contains no key material.
    """
    data_key = _check_data_key(data_key)
    _check_chunk_size(chunk_size)
    arn_len = len(kms_key_arn.encode("utf-8"))
    if not 1 <= arn_len <= MAX_KMS_KEY_ARN_SIZE:
        raise ValueError(f"kms_key_arn must be 1..{MAX_KMS_KEY_ARN_SIZE} bytes of UTF-8")
    kms_wrapped_key = bytes(kms_wrapped_key)
    if not 1 <= len(kms_wrapped_key) <= MAX_KMS_WRAPPED_KEY_SIZE:
        raise ValueError(f"kms_wrapped_key must be 1..{MAX_KMS_WRAPPED_KEY_SIZE} bytes")
    recovery_public = _decode_key_text(PUBLIC_KEY_PREFIX, recovery_public_key)

    file_id = os.urandom(FILE_ID_SIZE)
    keys = _derive_file_keys(data_key, file_id)
    header = _build_header(
        chunk_size=chunk_size,
        file_id=file_id,
        data_key=data_key,
        kms_key_arn=kms_key_arn,
        kms_wrapped_key=kms_wrapped_key,
        recovery_public=recovery_public,
        header_mac_key=keys.header_mac_key,
    )
    _write_all(dst, memoryview(header))

    # Pipeline: the caller's thread reads a chunk and encrypts it; one helper thread
    # hashes the plaintext and another writes the ciphertext, so the SHA-256 (the slowest
    # stage) runs on its own core, beside reading, AES-GCM and writing on the other.
    # Chunk i uses plaintext buffer i % len(plain) and ciphertext buffer i % len(sealed);
    # a buffer is reused only once the stages that read it are done with it.
    sha = hashlib.sha256()
    plain = [memoryview(bytearray(chunk_size))]
    length = _readinto_full(src, plain[0])
    # A file that fits in one chunk needs neither rings of buffers nor threads.
    several = length == chunk_size
    threaded = several and chunk_size >= _THREAD_MIN_CHUNK
    # Reading runs one chunk ahead of encryption (only the end of input tells which chunk
    # is the last), so even without threads two plaintext buffers are needed.
    plain += [memoryview(bytearray(chunk_size)) for _ in range((_RING if threaded else 2) - 1)]
    if not several:
        del plain[1:]
    record_size = RECORD_HEADER_SIZE + chunk_size + TAG_SIZE
    sealed = [memoryview(bytearray(record_size)) for _ in range(_SEALED_RING if threaded else 1)]
    hasher = _stage(sha.update, "securedr-hash", threaded)
    writer = _stage(lambda view: _write_all(dst, view), "securedr-write", threaded)
    index, plaintext_size, ciphertext_size = 0, 0, len(header)
    try:
        hasher.submit(plain[0][:length])
        while True:
            final, next_length = True, 0
            if length == chunk_size:
                ahead = plain[(index + 1) % len(plain)]
                hasher.wait_for(index + 2 - len(plain))  # chunk index+1-len(plain) hashed
                next_length = _readinto_full(src, ahead)
                final = next_length == 0
                if not final:
                    hasher.submit(ahead[:next_length])
            flag = FLAG_FINAL if final else FLAG_NOT_FINAL
            record_header = _RECORD_HEADER.pack(flag, length)
            out = sealed[index % len(sealed)]
            writer.wait_for(index + 1 - len(sealed))  # chunk index-len(sealed) written
            out[:RECORD_HEADER_SIZE] = record_header
            end = RECORD_HEADER_SIZE + length + TAG_SIZE
            keys.payload.encrypt_into(
                _nonce(index, flag),
                plain[index % len(plain)][:length],
                record_header,
                out[RECORD_HEADER_SIZE:end],
            )
            writer.submit(out[:end])
            plaintext_size += length
            ciphertext_size += end
            if final:
                break
            index, length = index + 1, next_length
        hasher.wait_all()
        writer.wait_all()
    finally:
        hasher.close()
        writer.close()
    return EncryptResult(
        plaintext_sha256=sha.hexdigest(),
        plaintext_size=plaintext_size,
        ciphertext_size=ciphertext_size,
        file_id=file_id.hex(),
        chunk_count=index + 1,
    )


def _normalize_hex(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"{name} must be 64 hex digits")
    return value


def _decrypt_records(
    src: BinaryIO,
    dst: BinaryIO | None,
    *,
    data_key: bytes | None,
    recovery_private_key: bytes | str | None,
    expected_sha256: str | None,
    expected_file_id: str | None,
    map_fd: int | None = None,
) -> DecryptResult:
    expected = _normalize_hex(expected_sha256, "expected_sha256")
    expected_file_id = _normalize_hex(expected_file_id, "expected_file_id")
    key = _resolve_key(data_key, recovery_private_key)
    header = read_header(src)
    keys = _open_header(header, key, expected_file_id)
    chunk_size = header.chunk_size

    sha = hashlib.sha256()
    # Buffers and threads are set up at the first record, so a one-chunk file gets buffers
    # of its own size and no thread. The caller's thread reads and decrypts; one helper
    # thread hashes the plaintext (the slowest stage, on a core of its own) and another
    # writes it. Chunk i decrypts into plaintext buffer i % len(plain), reused only once
    # the hash and write of the chunk that used it before are done; only a chunk whose tag
    # verified is ever handed to them. With ``map_fd`` (an empty file of the caller's), an
    # envelope of several chunks is decrypted straight into a mapping of that file instead
    # of into plaintext buffers that a writer then copies out (see _MappedOutput).
    in_view = memoryview(b"")
    plain: list[memoryview] = []
    hasher: _Worker | _Inline = _Inline(sha.update)
    writer: _Worker | _Inline | None = None
    mapped: _MappedOutput | None = None
    index, plaintext_size, ciphertext_size = 0, 0, header.size
    completed = False
    try:
        while True:
            record_header = _read_exact(src, RECORD_HEADER_SIZE)
            if not record_header:
                raise TruncatedError(
                    f"the file is truncated: it ends after chunk {index - 1} without the final "
                    "chunk (a tail of the file is missing); fetch the object again"
                    if index
                    else "the file is truncated: it ends right after the header, with no chunk; "
                    "fetch the object again"
                )
            if len(record_header) < RECORD_HEADER_SIZE:
                raise TruncatedError(
                    f"the file is truncated inside the record header of chunk {index}; fetch "
                    "the object again"
                )
            flag, length = _RECORD_HEADER.unpack(record_header)
            if flag == FLAG_NOT_FINAL:
                if length != chunk_size:
                    raise ChunkAuthenticationError(index, "corrupt record header")
            elif flag == FLAG_FINAL:
                if length > chunk_size or (length == 0 and index > 0):
                    raise ChunkAuthenticationError(index, "corrupt record header")
            else:
                raise ChunkAuthenticationError(index, "corrupt record header")
            if not index:
                size = length if flag == FLAG_FINAL else chunk_size
                in_view = memoryview(bytearray(size + TAG_SIZE))
                threaded = flag == FLAG_NOT_FINAL and chunk_size >= _THREAD_MIN_CHUNK
                hasher = _stage(sha.update, "securedr-hash", threaded)
                if threaded and map_fd is not None:
                    mapped = _MappedOutput.open(map_fd)
                if mapped is None:
                    plain = [memoryview(bytearray(size)) for _ in range(_RING if threaded else 1)]
                    if dst is not None:
                        writer = _stage(
                            lambda view: _write_all(dst, view), "securedr-write", threaded
                        )
            body = in_view[: length + TAG_SIZE]
            got = _readinto_full(src, body)
            if got < len(body):
                raise TruncatedError(
                    f"the file is truncated inside chunk {index} ({got} of {len(body)} bytes "
                    "present); fetch the object again"
                )
            if mapped is not None:
                out = mapped.take(index, plaintext_size, length, hasher)
            else:
                reused = index + 1 - len(plain)  # chunk index-len(plain) must be hashed, written
                hasher.wait_for(reused)
                if writer is not None:
                    writer.wait_for(reused)
                out = plain[index % len(plain)][:length]
            try:
                keys.payload.decrypt_into(_nonce(index, flag), body, record_header, out)
            except InvalidTag:
                out[:] = bytes(length)  # drop the unauthenticated plaintext
                raise ChunkAuthenticationError(index) from None
            hasher.submit(out)
            if writer is not None:
                writer.submit(out)
            plaintext_size += length
            ciphertext_size += RECORD_HEADER_SIZE + len(body)
            if flag == FLAG_FINAL:
                break
            index += 1
        if _read_exact(src, 1):
            raise TrailingDataError(
                f"trailing data after the final chunk ({index}): bytes were appended to the "
                "file; fetch the object again"
            )
        hasher.wait_all()
        if writer is not None:
            writer.wait_all()
        completed = True
    finally:
        hasher.close()
        if writer is not None:
            writer.close()
        if mapped is not None:
            out = memoryview(b"")  # the last view into the mapping, which close() unmaps
            mapped.close(strict=completed)
    if mapped is not None:
        mapped.finish(plaintext_size)
    digest = sha.hexdigest()
    if expected is not None and not hmac.compare_digest(digest, expected):
        raise ChecksumMismatchError(
            f"checksum mismatch: every chunk authenticated, but the plaintext SHA-256 is "
            f"{digest}, not the {expected} the manifest expects; this envelope is a different "
            "(valid) backup file than the one recorded, check the object key and manifest"
        )
    return DecryptResult(
        plaintext_sha256=digest,
        plaintext_size=plaintext_size,
        ciphertext_size=ciphertext_size,
        file_id=header.file_id.hex(),
        chunk_count=index + 1,
    )


def decrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    *,
    data_key: bytes | None = None,
    recovery_private_key: bytes | str | None = None,
    expected_sha256: str | None = None,
    expected_file_id: str | None = None,
) -> DecryptResult:
    """Decrypt an envelope from ``src`` into ``dst``.

    Pass exactly one key: ``data_key`` (what KMS ``Decrypt`` returned for the header's
    ``kms_wrapped_key``, see :func:`read_header`) or ``recovery_private_key`` (the offline
    identity file content or key text; no AWS needed). ``expected_sha256`` and
    ``expected_file_id`` come from the signed manifest and catch a whole envelope swapped
    for another valid one.

    Only authenticated chunks are written, in order (from a helper thread, one call at a
    time, for envelopes of several chunks; never after this function returned). On error,
    ``dst`` holds an authenticated prefix of the plaintext (or all of it, for a checksum
    mismatch) and must be discarded; use :func:`decrypt_file` for all-or-nothing output.
    """
    return _decrypt_records(
        src,
        dst,
        data_key=data_key,
        recovery_private_key=recovery_private_key,
        expected_sha256=expected_sha256,
        expected_file_id=expected_file_id,
    )


def verify_stream(
    src: BinaryIO,
    *,
    data_key: bytes | None = None,
    recovery_private_key: bytes | str | None = None,
    expected_sha256: str | None = None,
    expected_file_id: str | None = None,
) -> DecryptResult:
    """Authenticate every byte of an envelope and hash the plaintext, writing nothing.

    Same keys and checks as :func:`decrypt_stream`; returns only if the whole envelope is
    intact (and matches ``expected_sha256``/``expected_file_id`` when given).
    """
    return _decrypt_records(
        src,
        None,
        data_key=data_key,
        recovery_private_key=recovery_private_key,
        expected_sha256=expected_sha256,
        expected_file_id=expected_file_id,
    )


def decrypt_file(
    src_path: str | os.PathLike[str],
    dst_path: str | os.PathLike[str],
    *,
    data_key: bytes | None = None,
    recovery_private_key: bytes | str | None = None,
    expected_sha256: str | None = None,
    expected_file_id: str | None = None,
    fsync: bool = True,
) -> DecryptResult:
    """Decrypt the envelope at ``src_path`` to ``dst_path``, all or nothing.

    The guarantees of :func:`decrypt_to_path`, for an envelope in a local file.
    """
    with open(src_path, "rb") as src:
        return decrypt_to_path(
            src,
            dst_path,
            data_key=data_key,
            recovery_private_key=recovery_private_key,
            expected_sha256=expected_sha256,
            expected_file_id=expected_file_id,
            fsync=fsync,
        )


def decrypt_to_path(
    src: BinaryIO,
    dst_path: str | os.PathLike[str],
    *,
    data_key: bytes | None = None,
    recovery_private_key: bytes | str | None = None,
    expected_sha256: str | None = None,
    expected_file_id: str | None = None,
    fsync: bool = True,
) -> DecryptResult:
    """Decrypt an envelope stream (positioned at its start) to ``dst_path``, all or nothing.

    Plaintext goes to a private (mode 0600) temporary file in the destination directory,
    which is renamed over ``dst_path`` only after every chunk authenticated and the SHA-256
    matched ``expected_sha256`` (when given). Envelopes of several chunks are decrypted
    straight into a shared mapping of that file, with its blocks reserved first, so a full
    disk is an ``OSError`` rather than a ``SIGBUS``; where the file system cannot map it,
    the plaintext is written instead. On any failure the temporary file is deleted
    and ``dst_path`` is untouched, so no partial or unauthenticated plaintext is left
    behind (a process killed outright can leave a ``*.partial`` temporary file). With
    ``fsync`` (the default) the data and the rename are flushed to disk before returning.
    The restored file keeps mode 0600. Keys and checks are those of
    :func:`decrypt_stream`.
    """
    dst = Path(dst_path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            result = _decrypt_records(
                src,
                out,
                data_key=data_key,
                recovery_private_key=recovery_private_key,
                expected_sha256=expected_sha256,
                expected_file_id=expected_file_id,
                map_fd=fd,
            )
            out.flush()
            if fsync:
                os.fsync(out.fileno())
        os.replace(tmp_name, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    if fsync:
        dir_fd = os.open(dst.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return result
