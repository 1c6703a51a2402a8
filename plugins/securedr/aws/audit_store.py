"""The audit trail in the evidence bucket: one signed, hash-chained entry per S3 object.

Layout: ``<evidence prefix>/audit/<plan>/<seq:012d>.json`` (see :mod:`securedr.core.audit`).

Guarantees:

* :meth:`S3AuditTrail.append` writes each entry exactly once, through
  :meth:`securedr.aws.evidence.EvidenceStore.put` (``If-None-Match: *``, SSE-KMS, Object Lock).
  Two writers racing for the same ``seq`` cannot both win: the loser re-reads the head and
  retries with the next ``seq``, so concurrent tasks never fork the chain.
* :meth:`S3AuditTrail.verify` reads the whole trail by object *versions* (ListObjectVersions)
  in key order and reports the first broken link: edited, deleted, inserted, reordered, renamed
  or unparsable entries, or an entry signed by a key outside the trusted set. It also names
  every entry hidden by a delete marker, deleted, or rewritten (a second version of a
  write-once key), and checks the trail against the newest signed anchor, so a truncated or
  hidden tail is named too.
* :meth:`S3AuditTrail.anchor` stores the head in a signed anchor (:mod:`securedr.core.anchor`),
  written once; runs call it after their last entry.

This module imports neither Airflow nor boto3 (the CLI uses it without Airflow); it works with
any S3 client object.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from securedr.aws.evidence import list_versions
from securedr.core.anchor import Anchor, AnchorError, anchor_document, anchor_prefix, parse_anchor
from securedr.core.audit import (
    GENESIS_HASH,
    AuditEntry,
    ChainReport,
    MalformedEntryError,
    ObjectVersion,
    VersionFinding,
    chosen_versions,
    entry_from_json,
    entry_to_json,
    new_entry,
    object_key,
    seq_from_object_key,
    verify_chain,
    version_findings,
    with_findings,
)
from securedr.core.signing import TrustedKeys, canonical_json

if TYPE_CHECKING:
    from securedr.aws.evidence import EvidenceStore

MAX_APPEND_ATTEMPTS = 20


class AuditWriteError(Exception):
    """An entry could not be appended; the action it records must not be considered audited."""


@dataclass(frozen=True)
class StoredTrail:
    """What :meth:`S3AuditTrail.read` found: parsed entries in key order, and the first object
    that could not be taken as an entry (its key and why), if any."""

    entries: list[AuditEntry]
    broken_key: str | None = None
    broken_seq: int | None = None
    broken_reason: str | None = None
    findings: tuple[VersionFinding, ...] = ()


@dataclass(frozen=True)
class AnchorReading:
    """The anchors found: the newest one that verifies, and what is wrong with the others
    (forged, replayed, hidden or rewritten), one sentence each."""

    newest: Anchor | None
    problems: tuple[str, ...] = ()


class S3AuditTrail:
    """The audit trail of one plan in the evidence bucket."""

    def __init__(
        self,
        s3: Any,
        *,
        bucket: str,
        evidence_prefix: str,
        plan: str,
        writer: EvidenceStore | None = None,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.plan = plan
        self.evidence_prefix = evidence_prefix.strip("/")
        self.prefix = "/".join(p for p in (self.evidence_prefix, "audit", plan) if p)
        self.writer = writer

    @classmethod
    def for_evidence(cls, evidence: EvidenceStore, plan: str) -> S3AuditTrail:
        """The trail stored (and written) through ``evidence``."""
        return cls(
            evidence.s3,
            bucket=evidence.bucket,
            evidence_prefix=evidence.prefix,
            plan=plan,
            writer=evidence,
        )

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/"

    # ------------------------------------------------------------------ reading
    def versions(self) -> list[ObjectVersion]:
        """Every version and delete marker under the trail's prefix."""
        return list_versions(self.s3, self.bucket, self.prefix + "/")

    def keys(self) -> list[str]:
        """Entry object keys in lexical (= seq) order, hidden ones included (every key that
        still has a stored version); foreign objects are included."""
        return sorted(chosen_versions(self.versions()))

    def _load(self, key: str, version_id: str | None = None) -> AuditEntry:
        extra = {"VersionId": version_id} if version_id else {}
        body = self.s3.get_object(Bucket=self.bucket, Key=key, **extra)["Body"].read()
        return entry_from_json(body)

    def read(self) -> StoredTrail:
        """Every entry, each from the version first written (delete markers do not hide it),
        stopping at the first object that is not a well-formed entry stored under its own
        ``seq``; with the version history's findings."""
        versions = self.versions()
        findings = tuple(version_findings(versions))
        entries: list[AuditEntry] = []
        for key, version_id in sorted(chosen_versions(versions).items()):
            try:
                seq = seq_from_object_key(key)
            except ValueError:
                return StoredTrail(
                    entries,
                    key,
                    len(entries),
                    f"foreign object {key} inside the audit trail",
                    findings,
                )
            try:
                entry = self._load(key, version_id)
            except MalformedEntryError as exc:
                return StoredTrail(entries, key, seq, f"{exc} (object {key})", findings)
            if entry.seq != seq:
                return StoredTrail(
                    entries,
                    key,
                    seq,
                    f"object {key} holds entry {entry.seq}: the entry was moved or renamed",
                    findings,
                )
            entries.append(entry)
        return StoredTrail(entries, findings=findings)

    def head(self) -> AuditEntry | None:
        """The newest entry, or None for an empty trail.

        Read by versions: an entry hidden by a delete marker is still the head, so the next
        append takes the next free ``seq`` instead of writing a second version of the hidden
        one. A key left with only delete markers still counts as taken.
        """
        versions = self.versions()
        if not versions:
            return None
        chosen = chosen_versions(versions)
        taken = [k for k in {v.key for v in versions} if _is_entry_key(k)]
        if not taken:
            return None
        key = max(taken, key=seq_from_object_key)
        if key in chosen:
            try:
                return self._load(key, chosen[key])
            except MalformedEntryError:
                pass
        # Keep appending after an unreadable or deleted head: refusing would let whoever broke
        # it silence the trail; verify() reports the break anyway.
        return _placeholder(seq_from_object_key(key))

    def anchors(self, trusted_public_keys: TrustedKeys | Iterable[bytes | str]) -> AnchorReading:
        """Read every anchor of the trail by versions; the newest that verifies wins.

        Hidden, deleted or rewritten anchors and anchors that do not verify are named in
        :attr:`AnchorReading.problems` - an anchor is evidence as much as an entry is.
        """
        trusted = TrustedKeys.coerce(trusted_public_keys)
        prefix = self.anchor_prefix + "/"
        versions = list_versions(self.s3, self.bucket, prefix)
        problems = [f.sentence("anchor of entry") for f in version_findings(versions)]
        good: list[Anchor] = []
        for key, version_id in sorted(chosen_versions(versions).items()):
            try:
                body = self.s3.get_object(Bucket=self.bucket, Key=key, VersionId=version_id)[
                    "Body"
                ].read()
                good.append(parse_anchor(json.loads(body), trusted, plan=self.plan, key=key))
            except (AnchorError, ValueError) as exc:
                problems.append(
                    str(exc) if isinstance(exc, AnchorError) else f"anchor {key} is not valid JSON"
                )
        newest = max(good, key=lambda a: a.seq, default=None)
        return AnchorReading(newest, tuple(problems))

    def verify(
        self,
        trusted_public_keys: TrustedKeys | Iterable[bytes | str],
        *,
        expected_head: tuple[int, str] | None = None,
        use_anchors: bool = True,
    ) -> ChainReport:
        """Verify the stored trail; the report names the first broken link and every hidden,
        deleted or rewritten entry.

        With ``use_anchors`` the trail must also still hold, unchanged, the entry of the newest
        anchor that verifies (and ``expected_head``, if given); a problem with an anchor itself
        is a finding too.
        """
        trusted = TrustedKeys.coerce(trusted_public_keys)
        stored = self.read()
        anchor_problems: tuple[str, ...] = ()
        heads = [expected_head] if expected_head else []
        if use_anchors:
            reading = self.anchors(trusted)
            anchor_problems = reading.problems
            if reading.newest is not None:
                heads.append(reading.newest.head)
        report = verify_chain(
            stored.entries,
            trusted,
            expected_head=None if stored.broken_key or not heads else max(heads),
        )
        if stored.broken_key is not None and report.ok:
            seq = stored.broken_seq if stored.broken_seq is not None else len(stored.entries)
            checked = len(stored.entries)
            report = ChainReport(
                ok=False,
                entries_checked=checked,
                first_broken_seq=seq,
                reason=f"entry {seq}: {stored.broken_reason}",
                first_seq=0 if checked else None,
                last_seq=report.last_seq,
                last_hash=report.last_hash,
            )
        if report.ok and len(heads) > 1:
            # Both an explicit head and an anchor: check the other one too.
            other = verify_chain(stored.entries, trusted, expected_head=min(heads))
            report = other if not other.ok else report
        findings = list(stored.findings) + [
            VersionFinding(key=self.anchor_prefix, seq=None, what=problem)
            for problem in anchor_problems
        ]
        return with_findings(report, findings)

    # ------------------------------------------------------------------ writing
    def append(
        self,
        *,
        actor: str,
        action: str,
        resource: str,
        outcome: str,
        run_id: str,
        private_key_pem: bytes,
        details: Mapping[str, Any] | None = None,
        time_: datetime | None = None,
    ) -> AuditEntry:
        """Append one entry after the current head; return it once it is stored.

        Raises :class:`AuditWriteError` if no free ``seq`` could be claimed after
        ``MAX_APPEND_ATTEMPTS`` tries (a writer storm, or objects that cannot be written).
        """
        if self.writer is None:
            raise AuditWriteError("this audit trail was opened read-only")
        from securedr.aws.evidence import EvidenceExists

        for attempt in range(MAX_APPEND_ATTEMPTS):
            entry = new_entry(
                self.head(),
                time=time_,
                actor=actor,
                action=action,
                resource=resource,
                outcome=outcome,
                details=details,
                run_id=run_id,
                private_key_pem=private_key_pem,
            )
            key = object_key(self.prefix, entry.seq)
            try:
                self.writer.put(key, entry_to_json(entry))
            except EvidenceExists:
                # Another writer took this seq first: re-read the head and chain after it.
                time.sleep(random.uniform(0, 0.05 * (attempt + 1)))  # noqa: S311 - jitter only
                continue
            return entry
        raise AuditWriteError(
            f"could not append to the audit trail {self.url} after {MAX_APPEND_ATTEMPTS} "
            "attempts: every claimed entry number was taken"
        )

    # ------------------------------------------------------------------ anchoring
    @property
    def anchor_prefix(self) -> str:
        return anchor_prefix(self.evidence_prefix, self.plan)

    def anchor(self, *, run_id: str, private_key_pem: bytes) -> Anchor | None:
        """Anchor the current head in a signed, write-once object; return the anchor.

        Returns None for an empty trail or an unreadable head (nothing trustworthy to anchor;
        ``verify`` reports why). Idempotent: the anchor of a ``seq`` is written once, and a
        retry or a later run anchoring the same head finds it there.
        """
        if self.writer is None:
            raise AuditWriteError("this audit trail was opened read-only")
        from securedr.aws.evidence import EvidenceExists

        head = self.head()
        if head is None or not head.signature:
            return None
        now = datetime.now(UTC)
        key, document = anchor_document(
            plan=self.plan,
            seq=head.seq,
            hash_=head.hash,
            run_id=run_id,
            anchored_at=now,
            private_key_pem=private_key_pem,
            evidence_prefix=self.evidence_prefix,
        )
        for attempt in range(MAX_APPEND_ATTEMPTS):
            try:
                self.writer.put(key, canonical_json(document))
                break
            except EvidenceExists:
                # 412: already anchored (a retry, or a run that added no entry). A 409
                # ConditionalRequestConflict also lands here and wrote nothing: retry it.
                # https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html
                if self.writer.exists(key):
                    break
                time.sleep(random.uniform(0, 0.05 * (attempt + 1)))  # noqa: S311 - jitter only
        else:
            raise AuditWriteError(
                f"could not write the audit anchor {key} after {MAX_APPEND_ATTEMPTS} attempts"
            )
        return Anchor(
            plan=self.plan,
            seq=head.seq,
            hash=head.hash,
            run_id=run_id,
            anchored_at=now.isoformat(),
            key=key,
        )


def _is_entry_key(key: str) -> bool:
    try:
        seq_from_object_key(key)
    except ValueError:
        return False
    return True


def _placeholder(seq: int) -> AuditEntry:
    """Stand-in for an unreadable head: only its ``seq`` is used, to chain after it."""
    return AuditEntry(
        seq=seq,
        time="",
        actor="",
        action="",
        resource="",
        outcome="",
        details={},
        run_id="",
        prev_hash=GENESIS_HASH,
        hash=GENESIS_HASH,
        signature="",
        key_id="",
    )
