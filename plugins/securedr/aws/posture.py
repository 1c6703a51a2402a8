"""Read the DR posture from AWS: signed manifests, discovery, the newest drill, open incidents.

Every read is bounded: the newest ``latest_manifests`` trusted manifests (see
:func:`securedr.aws.manifests.load_signed_manifests`), one listing plus one GetObject for the
newest drill record, and the newest ``audit_entries`` audit-trail entries. Nothing is written.
Used by the hourly RPO watchdog and by the posture page (which caches the result briefly).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from securedr.aws import ebs, rds
from securedr.aws.audit_store import S3AuditTrail
from securedr.aws.errors import ServiceClients
from securedr.aws.evidence import AwsTimeUnavailable, EvidenceStore, aws_time
from securedr.aws.manifests import load_signed_manifests
from securedr.core import posture as core
from securedr.core.audit import MalformedEntryError, chosen_versions, seq_from_object_key
from securedr.core.plan import Plan

#: Nights of manifests read by default: enough to find a copy older than any sane RPO target
#: and to keep showing a resource whose newest nights failed.
DEFAULT_LATEST_MANIFESTS = 14
#: Newest audit entries scanned for incidents.
DEFAULT_AUDIT_ENTRIES = 500


@dataclass
class PostureReading:
    """What one read found. ``incidents`` is None when the audit trail could not be read."""

    posture: core.Posture
    drill: dict[str, Any] | None = None
    incidents: list[dict[str, Any]] | None = None
    nightly_report_key: str | None = None
    problems: list[str] = field(default_factory=list)
    reads: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.posture.to_dict(),
            "drill": self.drill,
            "incidents": self.incidents,
            "nightly_report_key": self.nightly_report_key,
            "problems": list(self.problems),
        }


def evidence_reader(plan: Plan, clients: ServiceClients) -> EvidenceStore:
    """The plan's evidence bucket, for reading (no KMS lookup: nothing is written)."""
    bucket = plan.evidence_bucket
    return EvidenceStore(
        clients.s3(plan.regions.dr),
        bucket=bucket.name,
        prefix=bucket.prefix,
        kms_key_arn=plan.kms_key(plan.regions.dr),
        lock_mode=bucket.object_lock_mode,
        lock_days=bucket.object_lock_days,
    )


def discover(plan: Plan, clients: ServiceClients) -> list[dict[str, Any]]:
    """The resources the plan's selection tag finds now (as :func:`core.assess` takes them)."""
    sel = plan.selection
    found = []
    for region in plan.regions.sources:
        if "ebs" in sel.resource_types:
            found += ebs.discover_volumes(clients.ec2(region), region, sel.tag_key, sel.tag_value)
        if "rds" in sel.resource_types:
            found += rds.discover_instances(clients.rds(region), region, sel.tag_key, sel.tag_value)
    return [
        {"kind": r.kind, "region": r.region, "resource_id": r.resource_id, "name": r.name}
        for r in found
    ]


def newest_drill(evidence: EvidenceStore, plan: str) -> dict[str, Any] | None:
    """The newest drill record (keys sort in time order), or None when there is none."""
    keys = [k for k in evidence.list("drills", plan) if k.endswith(".json")]
    if not keys:
        return None
    record = json.loads(evidence.get(keys[-1]))
    return record if isinstance(record, dict) else None


def newest_nightly_report(evidence: EvidenceStore, plan: str) -> str | None:
    keys = [k for k in evidence.list("reports", "nightly", plan) if k.endswith(".json")]
    return keys[-1] if keys else None


def recent_audit_entries(evidence: EvidenceStore, plan: str, limit: int) -> list[Any]:
    """The newest ``limit`` audit entries, in ``seq`` order (unreadable objects skipped)."""
    trail = S3AuditTrail.for_evidence(evidence, plan)
    chosen = chosen_versions(trail.versions())
    entry_keys = []
    for key, version_id in chosen.items():
        try:
            entry_keys.append((seq_from_object_key(key), key, version_id))
        except ValueError:
            continue
    entries = []
    for _, key, version_id in sorted(entry_keys)[-limit:]:
        try:
            entries.append(trail._load(key, version_id))
        except MalformedEntryError:
            continue
    return entries


def read_posture(
    plan: Plan,
    clients: ServiceClients,
    trusted_keys: Any,
    *,
    latest_manifests: int = DEFAULT_LATEST_MANIFESTS,
    audit_entries: int = DEFAULT_AUDIT_ENTRIES,
    now: datetime | None = None,
    with_discovery: bool = True,
) -> PostureReading:
    """The plan's posture now. ``now`` defaults to AWS's clock (S3's ``Date``), the local
    clock only if that cannot be read. A failure to read the drill record or the audit trail
    is named in ``problems`` and leaves that part empty; manifests and discovery must work."""
    evidence = evidence_reader(plan, clients)
    problems: list[str] = []
    if now is None:
        try:
            now = aws_time(evidence.s3, evidence.bucket)
        except AwsTimeUnavailable as exc:
            problems.append(f"{exc}; the local clock was used")
            now = datetime.now(UTC)
    signed = load_signed_manifests(
        evidence, trusted_keys, plan=plan.name, dr_region=plan.regions.dr, latest=latest_manifests
    )
    found = discover(plan, clients) if with_discovery else None
    result = core.assess(
        plan=plan.name,
        rpo_hours=plan.targets.rpo_hours,
        manifests=signed.manifests,
        now=now,
        discovered=found,
        rejected=signed.rejected,
    )
    reading = PostureReading(posture=result, problems=problems, reads=signed.reads)
    try:
        reading.drill = core.drill_summary(newest_drill(evidence, plan.name))
    except Exception as exc:  # the page and the watchdog still show the copies
        problems.append(f"the newest drill record could not be read: {str(exc)[:200]}")
    try:
        entries = recent_audit_entries(evidence, plan.name, audit_entries)
        reading.incidents = core.open_incidents(entries)
    except Exception as exc:
        problems.append(f"the audit trail could not be read: {str(exc)[:200]}")
    try:
        reading.nightly_report_key = newest_nightly_report(evidence, plan.name)
    except Exception as exc:
        problems.append(f"the nightly reports could not be listed: {str(exc)[:200]}")
    return reading
