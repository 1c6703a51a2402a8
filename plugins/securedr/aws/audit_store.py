"""The audit trail in the evidence bucket: one signed, hash-chained entry per S3 object.

Layout: ``<evidence prefix>/audit/<plan>/<seq:012d>.json`` (see :mod:`securedr.core.audit`).

Guarantees:

* :meth:`S3AuditTrail.append` writes each entry exactly once, through
  :meth:`securedr.aws.evidence.EvidenceStore.put` (``If-None-Match: *``, SSE-KMS, Object Lock).
  Two writers racing for the same ``seq`` cannot both win: the loser re-reads the head and
  retries with the next ``seq``, so concurrent tasks never fork the chain.
* :meth:`S3AuditTrail.verify` reads the whole trail in key order and reports the first broken
  link: edited, deleted, inserted, reordered, renamed or unparsable entries, or an entry signed
  by a key outside the trusted set.

This module imports neither Airflow nor boto3 (the CLI uses it without Airflow); it works with
any S3 client object.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from securedr.aws.errors import page_config
from securedr.core.audit import (
    GENESIS_HASH,
    AuditEntry,
    ChainReport,
    MalformedEntryError,
    entry_from_json,
    entry_to_json,
    new_entry,
    object_key,
    seq_from_object_key,
    verify_chain,
)
from securedr.core.signing import TrustedKeys

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
        self.prefix = "/".join(p for p in (evidence_prefix.strip("/"), "audit", plan) if p)
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
    def keys(self) -> list[str]:
        """Entry object keys in lexical (= seq) order; foreign objects are included."""
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket,
            Prefix=self.prefix + "/",
            PaginationConfig=page_config("list_objects_v2"),
        ):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return sorted(keys)

    def _load(self, key: str) -> AuditEntry:
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return entry_from_json(body)

    def read(self) -> StoredTrail:
        """Every entry, stopping at the first object that is not a well-formed entry stored
        under its own ``seq``."""
        entries: list[AuditEntry] = []
        for key in self.keys():
            try:
                seq = seq_from_object_key(key)
            except ValueError:
                return StoredTrail(
                    entries, key, len(entries), f"foreign object {key} inside the audit trail"
                )
            try:
                entry = self._load(key)
            except MalformedEntryError as exc:
                return StoredTrail(entries, key, seq, f"{exc} (object {key})")
            if entry.seq != seq:
                return StoredTrail(
                    entries,
                    key,
                    seq,
                    f"object {key} holds entry {entry.seq}: the entry was moved or renamed",
                )
            entries.append(entry)
        return StoredTrail(entries)

    def head(self) -> AuditEntry | None:
        """The newest entry, or None for an empty trail."""
        keys = self.keys()
        if not keys:
            return None
        key = keys[-1]
        try:
            return self._load(key)
        except MalformedEntryError:
            # Keep appending after an unreadable head: refusing would let whoever broke it
            # silence the trail; verify() reports the break anyway.
            seq = seq_from_object_key(key)
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

    def verify(
        self,
        trusted_public_keys: TrustedKeys | Iterable[bytes | str],
        *,
        expected_head: tuple[int, str] | None = None,
    ) -> ChainReport:
        """Verify the stored trail; the report names the first broken link."""
        stored = self.read()
        report = verify_chain(
            stored.entries,
            trusted_public_keys,
            expected_head=None if stored.broken_key else expected_head,
        )
        if stored.broken_key is None or not report.ok:
            return report
        seq = stored.broken_seq if stored.broken_seq is not None else len(stored.entries)
        checked = len(stored.entries)
        return ChainReport(
            ok=False,
            entries_checked=checked,
            first_broken_seq=seq,
            reason=f"entry {seq}: {stored.broken_reason}",
            first_seq=0 if checked else None,
            last_seq=report.last_seq,
            last_hash=report.last_hash,
        )

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
