"""Tamper-evident audit trail: hash-chained, Ed25519-signed entries.

Each entry records who did what to which resource, with which outcome, and is linked to its
predecessor::

    hash      = sha256(canonical_json(every field except "hash" and "signature"))
    prev_hash = hash of the entry with seq - 1  ("0" * 64 for seq 0)
    signature = Ed25519(private key, bytes.fromhex(hash))

Because ``seq``, ``prev_hash`` and ``key_id`` are inside the hashed fields, an attacker with
write access to the storage but without the signing key cannot edit, delete, insert or
reorder entries without :func:`verify_chain` naming the first broken link.

Storage (done by the S3 adapter, not here) keeps one object per entry under
:func:`object_key`; writes use ``If-None-Match: *`` so two writers can never both create the
same ``seq`` - the loser re-reads the head and retries.

Limits, stated honestly:

* Truncating the *end* of the trail leaves a valid shorter chain. Pass ``expected_head``
  (a ``(seq, hash)`` recorded elsewhere: the newest signed anchor, :mod:`securedr.core.anchor`,
  or a run report) to detect it.
* The bucket is versioned and Object-Locked, which protects *versions*, not the current view:
  a plain DeleteObject adds a delete marker that hides an entry from ordinary listings, and a
  PutObject adds a second version of a write-once key. :func:`version_findings` works on the
  full version listing and names every such entry, and :func:`chosen_versions` picks the
  version the chain is verified from (the first one written) so a hidden entry is still
  checked.
* ``time`` is supplied by the writer and is not checked for monotonicity: several workers
  with slightly different clocks legitimately write interleaved entries.

Pure module: stdlib and ``cryptography`` only; the only clock read is the optional default
for ``time`` in :func:`new_entry`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from securedr.core.signing import TrustedKeys, canonical_json, key_id, load_private_key

__all__ = [
    "GENESIS_HASH",
    "KNOWN_OUTCOMES",
    "AuditEntry",
    "AuditError",
    "ChainReport",
    "MalformedEntryError",
    "ObjectVersion",
    "VersionFinding",
    "chosen_versions",
    "entry_from_json",
    "entry_hash",
    "entry_to_json",
    "format_time",
    "new_entry",
    "object_key",
    "render_report",
    "seq_from_object_key",
    "verify_chain",
    "version_findings",
    "with_findings",
]

GENESIS_HASH = "0" * 64
KNOWN_OUTCOMES = frozenset({"started", "succeeded", "failed", "refused", "skipped"})

# 12 digits keep lexical order == numeric order for 10**12 entries; far beyond any trail.
_SEQ_DIGITS = 12
_MAX_SEQ = 10**_SEQ_DIGITS - 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_OBJECT_NAME = re.compile(r"(?:^|/)(\d{12})\.json$")

_HASHED_FIELDS = (
    "seq",
    "time",
    "actor",
    "action",
    "resource",
    "outcome",
    "details",
    "run_id",
    "prev_hash",
    "key_id",
)
_ALL_FIELDS = frozenset((*_HASHED_FIELDS, "hash", "signature"))


class AuditError(Exception):
    """Base class of audit-trail errors."""


class MalformedEntryError(AuditError, ValueError):
    """Serialised audit entry cannot be parsed into an :class:`AuditEntry`."""


@dataclass(frozen=True)
class AuditEntry:
    """One signed link of the audit chain. Build with :func:`new_entry`.

    ``details`` is excluded from ``__hash__`` (dicts are unhashable) but included in
    equality. Mutating ``details`` after creation is detected by :func:`verify_chain` as an
    edit, so treat it as read-only.
    """

    seq: int
    time: str
    actor: str
    action: str
    resource: str
    outcome: str
    details: dict[str, Any] = field(hash=False)
    run_id: str
    prev_hash: str
    hash: str
    signature: str
    key_id: str


# --------------------------------------------------------------------------- building


def format_time(moment: datetime) -> str:
    """ISO-8601 UTC with a ``Z`` suffix and microseconds, e.g. ``2025-01-31T08:00:00.000000Z``.

    Fixed width, so lexical order equals chronological order.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("audit time must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_time(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"audit time {value!r} is not ISO-8601") from None
    if parsed.utcoffset() != timedelta(0):
        raise ValueError(f"audit time {value!r} must be UTC ('Z' or '+00:00')")
    return value


def _hashed_view(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {name: fields[name] for name in _HASHED_FIELDS}


def _hash_fields(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(_hashed_view(fields))).hexdigest()


def entry_hash(entry: AuditEntry) -> str:
    """Recompute the hash of ``entry`` from its content (ignores the stored ``hash``)."""
    return _hash_fields(dataclasses.asdict(entry))


def new_entry(
    prev: AuditEntry | None,
    *,
    time: str | datetime | None = None,
    actor: str,
    action: str,
    resource: str,
    outcome: str,
    details: Mapping[str, Any] | None = None,
    run_id: str,
    private_key_pem: bytes | str,
) -> AuditEntry:
    """Create the entry that follows ``prev`` (or the first entry if ``prev`` is None).

    ``seq`` is ``prev.seq + 1`` and ``prev_hash`` is ``prev.hash`` as recorded, even if
    ``prev`` has been tampered with: refusing to write would let an attacker silence the
    trail, and :func:`verify_chain` reports the tampered entry anyway.

    ``time`` should be supplied by the caller (an ISO-8601 UTC string or an aware datetime);
    if omitted the current UTC time is used. ``details`` is deep-copied through canonical JSON,
    so it must be JSON-safe (:class:`TypeError`/:class:`ValueError` naming the path otherwise).
    """
    for name, value in (("actor", actor), ("action", action), ("outcome", outcome)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"audit {name} must be a non-empty string")
    for name, value in (("resource", resource), ("run_id", run_id)):
        if not isinstance(value, str):
            raise ValueError(f"audit {name} must be a string")
    if time is None:
        time = datetime.now(UTC)
    time_str = format_time(time) if isinstance(time, datetime) else _check_time(time)
    if details is None:
        details = {}
    if not isinstance(details, Mapping):
        raise TypeError(f"audit details must be a mapping, not {type(details).__name__}")
    plain_details: dict[str, Any] = json.loads(canonical_json(details))

    if prev is None:
        seq, prev_hash = 0, GENESIS_HASH
    else:
        seq, prev_hash = prev.seq + 1, prev.hash
    if seq > _MAX_SEQ:
        raise AuditError(f"audit trail is full: seq {seq} exceeds {_MAX_SEQ}")

    private = load_private_key(private_key_pem)
    fields: dict[str, Any] = {
        "seq": seq,
        "time": time_str,
        "actor": actor,
        "action": action,
        "resource": resource,
        "outcome": outcome,
        "details": plain_details,
        "run_id": run_id,
        "prev_hash": prev_hash,
        "key_id": key_id(
            private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ),
    }
    digest = _hash_fields(fields)
    # Signing the 32 raw hash bytes cannot be confused with a signed document
    # (securedr.core.signing), whose signed message is a JSON object far longer than 32 bytes.
    signature = private.sign(bytes.fromhex(digest))
    return AuditEntry(**fields, hash=digest, signature=base64.b64encode(signature).decode("ascii"))


# --------------------------------------------------------------------------- serialisation


def entry_to_json(entry: AuditEntry) -> bytes:
    """Canonical JSON of every field of ``entry`` (stable bytes: same entry, same object)."""
    return canonical_json(dataclasses.asdict(entry))


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Different JSON parsers keep the first or the last duplicate; refusing duplicates means
    # every reader of the trail sees the same entry.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedEntryError(f"duplicate field {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise MalformedEntryError(f"{name} is not valid JSON")


def entry_from_json(data: bytes | str) -> AuditEntry:
    """Parse an entry written by :func:`entry_to_json`.

    Checks structure and types only (exact field set, ``seq`` a non-negative int, hashes 64
    lowercase hex, signature base64), not integrity: a tampered but well-formed entry loads
    fine so that :func:`verify_chain` can report *where* the chain breaks. Raises
    :class:`MalformedEntryError` with the reason otherwise.
    """
    try:
        raw = json.loads(
            data,
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except MalformedEntryError as exc:
        raise MalformedEntryError(f"malformed audit entry: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise MalformedEntryError(f"malformed audit entry: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise MalformedEntryError("malformed audit entry: expected a JSON object")
    missing = sorted(_ALL_FIELDS - raw.keys())
    unexpected = sorted(raw.keys() - _ALL_FIELDS)
    if missing or unexpected:
        raise MalformedEntryError(
            f"malformed audit entry: missing fields {missing}, unexpected fields {unexpected}"
        )
    seq = raw["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= _MAX_SEQ:
        raise MalformedEntryError(f"malformed audit entry: seq {seq!r} is not a valid number")
    for name in ("time", "actor", "action", "resource", "outcome", "run_id", "key_id"):
        if not isinstance(raw[name], str):
            raise MalformedEntryError(f"malformed audit entry {seq}: {name} must be a string")
    if not isinstance(raw["details"], dict):
        raise MalformedEntryError(f"malformed audit entry {seq}: details must be an object")
    for name in ("prev_hash", "hash"):
        value = raw[name]
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            raise MalformedEntryError(
                f"malformed audit entry {seq}: {name} must be 64 lowercase hex characters"
            )
    signature = raw["signature"]
    try:
        if not isinstance(signature, str):
            raise TypeError
        base64.b64decode(signature.encode("ascii"), validate=True)
    except (TypeError, binascii.Error, UnicodeEncodeError):
        raise MalformedEntryError(
            f"malformed audit entry {seq}: signature must be base64"
        ) from None
    return AuditEntry(**raw)


def object_key(prefix: str, seq: int) -> str:
    """Storage key of entry ``seq``: ``f"{prefix}/{seq:012d}.json"``.

    Zero-padding makes lexical (S3 listing) order equal to ``seq`` order.
    """
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= _MAX_SEQ:
        raise ValueError(f"seq must be an int in [0, {_MAX_SEQ}], got {seq!r}")
    prefix = prefix.rstrip("/")
    name = f"{seq:0{_SEQ_DIGITS}d}.json"
    return f"{prefix}/{name}" if prefix else name


def seq_from_object_key(key: str) -> int:
    """Inverse of :func:`object_key`; raises :class:`ValueError` for foreign keys."""
    match = _OBJECT_NAME.search(key)
    if match is None:
        raise ValueError(f"{key!r} is not an audit entry key")
    return int(match.group(1))


# --------------------------------------------------------------------------- versions


@dataclass(frozen=True)
class ObjectVersion:
    """One row of an S3 ListObjectVersions answer (a version or a delete marker).

    ``order`` ranks the rows of one key from newest (0) to oldest, as S3 lists them
    (https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectVersions.html: versions of
    a key are returned newest first; delete markers come in their own list, so the adapter
    merges both by ``LastModified``).
    """

    key: str
    version_id: str
    is_latest: bool
    delete_marker: bool
    last_modified: str
    order: int = 0


@dataclass(frozen=True)
class VersionFinding:
    """Something the version history of one write-once object shows: who can read it, what
    happened to it."""

    key: str
    seq: int | None
    what: str

    def sentence(self, noun: str = "entry") -> str:
        name = f"{noun} {self.seq}" if self.seq is not None else f"object {self.key}"
        return f"{name} {self.what}"


def _by_key(versions: Iterable[ObjectVersion]) -> dict[str, list[ObjectVersion]]:
    grouped: dict[str, list[ObjectVersion]] = {}
    for version in versions:
        grouped.setdefault(version.key, []).append(version)
    for rows in grouped.values():
        rows.sort(key=lambda v: v.order)  # newest first
    return grouped


def _seq_or_none(key: str) -> int | None:
    try:
        return seq_from_object_key(key)
    except ValueError:
        return None


def version_findings(versions: Iterable[ObjectVersion]) -> list[VersionFinding]:
    """Name every write-once object whose history shows tampering, ordered by key.

    * the current version is a delete marker and a stored version exists: *hidden*;
    * only delete markers remain: *deleted* (every stored version was removed);
    * more than one stored version: *rewritten* (a write-once key was written again);
    * a delete marker below a newer stored version: hidden, then written again.
    """
    findings: list[VersionFinding] = []
    for key, rows in sorted(_by_key(versions).items()):
        seq = _seq_or_none(key)
        data = [v for v in rows if not v.delete_marker]
        markers = [v for v in rows if v.delete_marker]
        newest = rows[0]
        if newest.delete_marker and data:
            findings.append(
                VersionFinding(
                    key,
                    seq,
                    f"is hidden by a delete marker (version {newest.version_id}, "
                    f"{newest.last_modified}); its stored version {data[-1].version_id} "
                    "still exists and was checked",
                )
            )
        elif newest.delete_marker:
            findings.append(
                VersionFinding(
                    key,
                    seq,
                    f"was deleted: only a delete marker remains (version {newest.version_id}, "
                    f"{newest.last_modified}); every stored version of it was removed",
                )
            )
        elif markers:
            findings.append(
                VersionFinding(
                    key,
                    seq,
                    f"was hidden by a delete marker ({markers[0].last_modified}) and then "
                    "written again",
                )
            )
        if len(data) > 1:
            findings.append(
                VersionFinding(
                    key,
                    seq,
                    f"was rewritten: {len(data)} stored versions of a write-once object "
                    f"(newest {data[0].version_id}, {data[0].last_modified}); the first one "
                    "written was checked",
                )
            )
    return findings


def chosen_versions(versions: Iterable[ObjectVersion]) -> dict[str, str]:
    """Key -> the version to verify: the oldest stored version (the one written first).

    Objects are written once, so the first version is the genuine one; anything later is a
    rewrite that :func:`version_findings` names. Keys with only delete markers are absent.
    """
    chosen: dict[str, str] = {}
    for key, rows in _by_key(versions).items():
        data = [v for v in rows if not v.delete_marker]
        if data:
            chosen[key] = data[-1].version_id
    return chosen


def with_findings(
    report: ChainReport, findings: Sequence[VersionFinding], *, noun: str = "entry"
) -> ChainReport:
    """``report`` with the version ``findings`` added; not ``ok`` once there is any.

    A break in the chain stays the reported break; otherwise the first finding becomes it.
    """
    if not findings:
        return report
    sentences = tuple(f.sentence(noun) for f in findings)
    if not report.ok:
        return dataclasses.replace(report, findings=sentences)
    seqs = [f.seq for f in findings if f.seq is not None]
    return dataclasses.replace(
        report,
        ok=False,
        first_broken_seq=min(seqs) if seqs else None,
        reason=sentences[0],
        findings=sentences,
    )


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class ChainReport:
    """Outcome of :func:`verify_chain`.

    ``entries_checked`` counts the entries proven intact (all of them when ``ok``; those
    before the first break otherwise). Every entry with ``seq < first_broken_seq`` is intact;
    nothing from ``first_broken_seq`` on can be trusted. ``last_seq``/``last_hash`` identify
    the newest intact entry, worth recording outside the trail to detect later truncation.
    """

    ok: bool
    entries_checked: int
    first_broken_seq: int | None
    reason: str
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    #: What the version history shows besides the chain (hidden, deleted, rewritten entries),
    #: one sentence each naming the entry; any finding makes the report not ``ok``.
    findings: tuple[str, ...] = ()

    @property
    def chain_intact(self) -> bool:
        """True when every entry verified and only the version history shows tampering."""
        return self.ok or (bool(self.findings) and self.reason == self.findings[0])


def _describe_out_of_place(entries: Sequence[AuditEntry], index: int, expected: int) -> str:
    """Why the entry at ``index`` is not ``expected``.

    Looks at the rest of the list to tell a deletion from a reordering or a duplicate.
    """
    found = entries[index].seq
    if found < expected:
        # Every seq below ``expected`` was already seen in place, so this is a second copy.
        return (
            f"out of place - entry {found} appears again where entry {expected} belongs: "
            "an entry was duplicated or the chain was reordered"
        )
    if any(e.seq == expected for e in entries[index + 1 :]):
        return (
            f"out of place - entry {found} stands where entry {expected} belongs and entry "
            f"{expected} comes later: the chain was reordered"
        )
    gone = f"entries {expected}..{found - 1} were" if found > expected + 1 else "it was"
    if index == 0:
        return f"missing - the trail starts at entry {found}, so {gone} deleted"
    return f"missing - entry {found} directly follows entry {expected - 1}, so {gone} deleted"


def _signature_problem(entry: AuditEntry, trusted: TrustedKeys) -> str | None:
    """Return None if the signature is valid, else the reason."""
    public_key = trusted.get(entry.key_id)
    if public_key is None:
        return (
            f"signed by key {entry.key_id} which is not among the trusted keys "
            f"{trusted.ids()} - the entry was re-signed by someone else, or add the key "
            "to the trusted keys if a rotation is intended"
        )
    try:
        raw = base64.b64decode(entry.signature.encode("ascii"), validate=True)
        public_key.verify(raw, bytes.fromhex(entry.hash))
    except (InvalidSignature, binascii.Error, UnicodeEncodeError, ValueError, AttributeError):
        return "signature does not verify - the entry was modified or signed by another key"
    return None


def verify_chain(
    entries: Sequence[AuditEntry],
    trusted_public_keys: TrustedKeys | Iterable[bytes | str],
    *,
    allow_start_at: int | None = None,
    expected_head: tuple[int, str] | None = None,
) -> ChainReport:
    """Verify ``entries`` in the order given (storage order) and report the first break.

    For each position the checks are, in order: the ``seq`` is the expected one (catches
    deleted, duplicated and reordered entries), the content matches ``hash`` (edits), the key
    is trusted and the signature verifies (forged or re-signed entries), and ``prev_hash``
    equals the previous entry's hash (replaced/spliced entries). The trail must start at
    seq 0 with the genesis ``prev_hash``, unless ``allow_start_at`` names the exact first
    seq of a deliberately pruned trail (its ``prev_hash`` cannot be checked then).

    ``expected_head=(seq, hash)`` is an entry recorded earlier out of band; the trail must
    still contain it unchanged, which detects truncation of the newest entries.

    Never raises for tampered content; raises :class:`SigningKeyError` only if a trusted key
    itself is invalid.
    """
    trusted = TrustedKeys.coerce(trusted_public_keys)
    start = 0 if allow_start_at is None else allow_start_at

    def broken(seq: int, reason: str, checked: int) -> ChainReport:
        last = entries[checked - 1] if checked else None
        return ChainReport(
            ok=False,
            entries_checked=checked,
            first_broken_seq=seq,
            reason=f"entry {seq}: {reason}",
            first_seq=start if checked else None,
            last_seq=last.seq if last else None,
            last_hash=last.hash if last else None,
        )

    prev: AuditEntry | None = None
    for index, entry in enumerate(entries):
        expected = start + index
        if entry.seq != expected:
            return broken(expected, _describe_out_of_place(entries, index, expected), index)
        try:
            recomputed = entry_hash(entry)
        except (TypeError, ValueError) as exc:
            return broken(expected, f"content is not canonical JSON ({exc})", index)
        if recomputed != entry.hash:
            return broken(
                expected,
                "content does not match its hash - the entry was edited after it was written",
                index,
            )
        signature_problem = _signature_problem(entry, trusted)
        if signature_problem is not None:
            return broken(expected, signature_problem, index)
        if prev is None:
            if allow_start_at is None and entry.prev_hash != GENESIS_HASH:
                return broken(
                    expected,
                    "first entry does not carry the genesis prev_hash - the trail was "
                    "truncated at the start or spliced from another trail",
                    index,
                )
        elif entry.prev_hash != prev.hash:
            return broken(
                expected,
                f"prev_hash does not match the hash of entry {prev.seq} - an entry was "
                "deleted or replaced, or the chain was reordered",
                index,
            )
        prev = entry

    if expected_head is not None:
        head_seq, head_hash = expected_head
        checked = len(entries)
        if head_seq >= start + checked:
            ends = (
                f"the trail ends at entry {start + checked - 1}"
                if checked
                else "the trail is empty"
            )
            first_missing = start + checked
            gone = (
                f"entries {first_missing}..{head_seq} are"
                if head_seq > first_missing
                else f"entry {head_seq} is"
            )
            return broken(
                first_missing,
                f"missing - {ends} but entry {head_seq} was recorded earlier, so the newest "
                f"entries were deleted: {gone} gone",
                checked,
            )
        if head_seq >= start and entries[head_seq - start].hash != head_hash:
            return broken(
                head_seq,
                "hash differs from the one recorded earlier - the trail was rewritten "
                "from this entry on",
                head_seq - start,
            )

    if not entries:
        return ChainReport(ok=True, entries_checked=0, first_broken_seq=None, reason="empty trail")
    return ChainReport(
        ok=True,
        entries_checked=len(entries),
        first_broken_seq=None,
        reason=f"entries {start}..{start + len(entries) - 1} intact",
        first_seq=start,
        last_seq=entries[-1].seq,
        last_hash=entries[-1].hash,
    )


def render_report(report: ChainReport) -> str:
    """One-paragraph human summary of a :class:`ChainReport`."""
    if report.ok:
        if report.entries_checked == 0:
            return "Audit trail is empty: there was nothing to verify."
        noun = "entry" if report.entries_checked == 1 else "entries"
        return (
            f"Audit trail intact: {report.entries_checked} {noun} verified "
            f"(seq {report.first_seq} to {report.last_seq}); each one matches its hash, is "
            "signed by a trusted key and is chained to its predecessor. "
            f"Head hash {report.last_hash}."
        )
    if report.chain_intact:
        listing = "; ".join(report.findings)
        return (
            f"Audit trail TAMPERED WITH ({len(report.findings)} finding(s)): {listing}. "
            f"The hash chain itself verifies ({report.entries_checked} entries, seq "
            f"{report.first_seq} to {report.last_seq}, each read from the version first "
            "written), so what was hidden or rewritten is known. Investigate who had write "
            "access to the audit bucket, and keep every version as it is for forensics."
        )
    also = f" Also in the version history: {'; '.join(report.findings)}." if report.findings else ""
    if report.entries_checked:
        intact = (
            f"The {report.entries_checked} entries before it (seq {report.first_seq} to "
            f"{report.last_seq}) are intact"
            if report.entries_checked != 1
            else f"The entry before it (seq {report.first_seq}) is intact"
        )
    else:
        intact = "No entry before it could be verified"
    return (
        f"Audit trail BROKEN at {report.reason}. {intact}; "
        f"nothing from entry {report.first_broken_seq} on can be trusted.{also} "
        "Investigate who had write access to the audit bucket, and keep the objects as they "
        "are for forensics."
    )
