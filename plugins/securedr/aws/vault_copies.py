"""Reading the vault for a restore: signed manifests by version, and the vault copies' state.

Runs under the vault recovery role. Nothing here writes, shares, unlocks or deletes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from securedr.aws import ebs, rds
from securedr.aws.errors import chunks
from securedr.aws.evidence import EvidenceStore
from securedr.core import signing
from securedr.core.restore import RestoreRefused, check_manifest_binding

LOCK_BATCH = 200


@dataclass
class VaultManifests:
    """Manifest keys of the plan in the vault evidence bucket (sorted, oldest first), each with
    its stored versions oldest first; ``rejected`` names versions that could not be trusted."""

    versions: dict[str, list[str]] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return sorted(self.versions)


def manifest_versions(evidence: EvidenceStore, plan: str) -> VaultManifests:
    """Every stored version of every manifest of ``plan`` (delete markers ignored).

    Versions, not the current view: a delete marker hides a manifest from a plain listing, and
    anyone allowed s3:PutObject on the bucket (the intake role the workload account can assume)
    can store a new version over a key, while Object Lock keeps every earlier version
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html - "Object Lock works
    only in versioned buckets, and retention periods and legal holds apply to individual object
    versions"). The write-once original is the oldest version of its key.
    """
    found = VaultManifests()
    rows = [v for v in evidence.versions("manifests", plan) if v.key.endswith(".json")]
    for row in sorted(rows, key=lambda v: (v.key, -v.order)):  # order 0 = newest
        if row.delete_marker:
            continue
        found.versions.setdefault(row.key, []).append(row.version_id)
    return found


def read_trusted(
    evidence: EvidenceStore,
    manifests: VaultManifests,
    key: str,
    trusted: Any,
    *,
    plan: str,
    dr_region: str,
) -> dict[str, Any] | None:
    """The first stored version of ``key`` (oldest first) whose signature verifies against
    ``trusted`` and whose signed content belongs at ``key``; ``None`` if no version does (each
    refusal is added to ``manifests.rejected``)."""
    for version_id in manifests.versions.get(key, []):
        try:
            document = json.loads(evidence.get_version(key, version_id))
            payload = signing.verify_document(document, trusted)
            check_manifest_binding(key, payload, plan, dr_region)
        except (ValueError, signing.SignatureError, RestoreRefused) as exc:
            manifests.rejected.append(
                f"manifest {key} (version {version_id}) cannot be trusted: {str(exc)[:300]}"
            )
            continue
        return payload
    return None


def snapshot_locks(ec2: Any, snapshot_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The snapshot lock of each of ``snapshot_ids`` that has one, in any state (id -> the
    DescribeLockedSnapshots entry: LockState, LockExpiresOn, ...). Snapshots without a lock are
    absent. https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeLockedSnapshots.html
    """
    locks: dict[str, dict[str, Any]] = {}
    for batch in chunks(sorted(set(snapshot_ids)), LOCK_BATCH):
        request: dict[str, Any] = {"SnapshotIds": batch, "MaxResults": 1000}
        while True:
            page = ec2.describe_locked_snapshots(**request)
            for info in page.get("Snapshots", []):
                locks[str(info["SnapshotId"])] = dict(info)
            token = page.get("NextToken")
            if not token:
                break
            request["NextToken"] = token
    return locks


def describe_vault_copies(
    ec2: Any, rds_client: Any, points: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, list[str]]]:
    """(copies by id, EBS locks by id, sharing by id) of the vault copies ``points`` name.

    The recovery role works in the vault account, so the copies are its own (``OwnerIds
    self``): a copy owned by anyone else is simply not found.
    """
    ebs_ids = [str(p["dr_snapshot_id"]) for p in points if p["kind"] == "ebs"]
    rds_ids = [str(p["dr_snapshot_id"]) for p in points if p["kind"] == "rds"]
    found = {
        **(ebs.describe_snapshots(ec2, ebs_ids) if ebs_ids else {}),
        **(rds.describe_snapshots(rds_client, rds_ids) if rds_ids else {}),
    }
    locks = snapshot_locks(ec2, [i for i in ebs_ids if i in found]) if ebs_ids else {}
    shared: dict[str, list[str]] = {}
    for point in points:
        sid = str(point["dr_snapshot_id"])
        if sid not in found:
            continue
        if point["kind"] == "ebs":
            shared[sid] = [p.get("Group") or p.get("UserId", "?") for p in ebs.sharing(ec2, sid)]
        else:
            shared[sid] = rds.sharing(rds_client, sid)
    return found, locks, shared
