"""Restoring from the vault: which vault copies a signed manifest vouches for, and whether the
copy the vault account holds is still the one it vouched for.

A restore from the vault (``source: vault``) exists for the day the workload account is lost or
in an attacker's hands: its DR copies, manifests and keys may be gone or forged. So it trusts
only what the vault holds and the plan's trusted signing keys:

* the signed manifest is read from the vault evidence bucket (Object Lock COMPLIANCE), and its
  signature, name and plan binding are checked exactly as for the workload bucket;
* each recovery point is the manifest's ``vault`` entry - written by the nightly run after it
  verified the vault copy in the vault account (``verified: true``);
* the vault copy is then checked where it lives: it exists, is owned by the vault account, is
  completed, is encrypted under exactly the vault CMK the signed manifest names, carries
  SecureDR's lineage for this plan, source and run, is shared with nobody (but the recovery
  account, when that is another account), and - EBS - is under a compliance-mode snapshot lock
  that has not expired (RDS has no snapshot lock; see README, "Vault").

:func:`vault_view` rewrites a manifest's points so that the restore steps see the vault copy
where they see the DR copy today (``dr_snapshot_id`` and friends); the workload account's DR
copy is kept as ``workload_dr_snapshot_id`` for the record.

Pure module: no Airflow, no boto3.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from securedr.core.model import (
    TAG_KIND,
    TAG_MANAGED,
    TAG_PLAN,
    TAG_RUN_ID,
    TAG_SOURCE_ID,
    tags_to_dict,
)
from securedr.core.restore import RestoreRefused

#: EBS snapshot lock states that hold a vault copy in compliance mode: during the cooling-off
#: period (``compliance-cooloff``) and after it (``compliance``). ``governance`` can be lifted
#: by anyone allowed ec2:UnlockSnapshot, and ``expired`` protects nothing.
#: https://docs.aws.amazon.com/ebs/latest/userguide/snapshot-lock-concepts.html
#: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_LockedSnapshotsInfo.html
COMPLIANCE_LOCK_STATES = ("compliance-cooloff", "compliance")

_ARN_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12}):")


def arn_account(arn: str | None) -> str | None:
    """The account id in an ARN (``None`` if there is none)."""
    match = _ARN_ACCOUNT.match(str(arn or ""))
    return match.group(1) if match else None


def vault_copy_id(entry: Mapping[str, Any]) -> str | None:
    """The vault copy's id: the EBS snapshot id, or the DB snapshot identifier."""
    if entry.get("kind") == "ebs":
        return entry.get("snapshot_id")
    return entry.get("db_snapshot_identifier")


def _entry_problems(
    point: Mapping[str, Any], entry: Any, *, vault_account: str, dr_region: str
) -> list[str]:
    if not isinstance(entry, Mapping):
        return ["the manifest records no vault copy for it (the nightly run did not bring it in)"]
    problems: list[str] = []
    if entry.get("verified") is not True:
        problems.append("its vault copy was not verified by the nightly run")
    if str(entry.get("account_id")) != vault_account:
        problems.append(
            f"its vault copy is recorded in account {entry.get('account_id')}, not the plan's "
            f"vault account {vault_account}"
        )
    if entry.get("region") != dr_region:
        problems.append(f"its vault copy is recorded in {entry.get('region')}, not {dr_region}")
    if entry.get("kind") != point.get("kind"):
        problems.append(f"its vault entry is of kind {entry.get('kind')}, not {point.get('kind')}")
    if not vault_copy_id(entry):
        problems.append("its vault entry names no copy")
    key = entry.get("kms_key_arn")
    if not key or arn_account(key) != vault_account:
        problems.append(f"its vault copy's recorded key {key} is not a key of the vault account")
    return problems


def vault_view(
    key: str, payload: Mapping[str, Any], *, vault_account: str, dr_region: str
) -> dict[str, Any]:
    """``payload`` (a verified manifest) as a restore from the vault sees it.

    Each recovery point becomes its vault copy (``dr_snapshot_id``, ``dr_snapshot_arn``,
    ``dr_kms_key_arn``, ``dr_created_at`` and ``dr_region`` are the vault copy's; ``created_at``
    stays the source point's time, which RPO is measured from); a point whose vault entry is
    missing, unverified or not in the plan's vault is kept as *not verified*, with the reason,
    so a restore that asks for it is refused by name. File sets are left out: they are stored in
    the workload evidence bucket, not in the vault (``securedr recover-file`` restores them with
    the offline recovery key). Raises :class:`RestoreRefused` when the manifest as a whole does
    not belong to the plan's vault.
    """
    top = payload.get("vault")
    if not isinstance(top, Mapping):
        raise RestoreRefused(
            f"manifest {key} records no vault copies (it was signed by a nightly run without a "
            "vault); restore it with source 'workload', or choose a later recovery_point"
        )
    if str(top.get("account_id")) != vault_account:
        raise RestoreRefused(
            f"manifest {key} records vault copies in account {top.get('account_id')}, not in the "
            f"plan's vault account {vault_account}"
        )
    points = []
    for point in payload.get("recovery_points") or []:
        entry = point.get("vault")
        problems = _entry_problems(point, entry, vault_account=vault_account, dr_region=dr_region)
        view = dict(point)
        view["workload_dr_snapshot_id"] = point.get("dr_snapshot_id")
        if isinstance(entry, Mapping):
            view.update(
                dr_region=entry.get("region"),
                dr_snapshot_id=vault_copy_id(entry),
                dr_snapshot_arn=entry.get("arn"),
                dr_kms_key_arn=entry.get("kms_key_arn"),
                dr_created_at=entry.get("created_at"),
                vault=dict(entry),
            )
        else:
            view.update(dr_snapshot_id=None, dr_snapshot_arn=None, vault=None)
        if problems:
            view["verified"] = False
            view["problems"] = [*(point.get("problems") or []), *problems]
        points.append(view)
    return {**payload, "recovery_points": points, "file_sets": []}


def _lock_problems(lock: Mapping[str, Any] | None, now: datetime) -> list[str]:
    if lock is None:
        return ["NOT locked: the vault copy has no snapshot lock (anyone allowed to delete it can)"]
    state = lock.get("LockState")
    if state not in COMPLIANCE_LOCK_STATES:
        return [f"its snapshot lock is {state!r}, not a compliance-mode lock"]
    expires = lock.get("LockExpiresOn")
    if isinstance(expires, datetime) and expires.tzinfo is not None and expires <= now:
        return [f"its snapshot lock expired on {expires.isoformat()}"]
    return []


def vault_copy_problems(
    point: Mapping[str, Any],
    snapshot: Mapping[str, Any] | None,
    *,
    lock: Mapping[str, Any] | None,
    shared_with: Sequence[str],
    vault_account: str,
    recovery_account: str,
    plan: str,
    manifest_run_id: str,
    now: datetime,
) -> list[str]:
    """Everything that makes a vault copy unfit to restore from; ``[]`` means fit.

    ``point`` is a point of :func:`vault_view`; ``snapshot`` what DescribeSnapshots /
    DescribeDBSnapshots report for its vault copy (``None``: not found); ``lock`` the EBS copy's
    DescribeLockedSnapshots entry (``None``: not locked; ignored for RDS); ``shared_with`` the
    accounts (or groups) it is shared with.
    """
    kind = point.get("kind")
    entry = point.get("vault") or {}
    if snapshot is None:
        return ["the vault copy does not exist in the vault account"]
    problems: list[str] = []
    if kind == "ebs":
        state, done = snapshot.get("State"), "completed"
        tags = tags_to_dict(snapshot.get("Tags"))
        owner = str(snapshot.get("OwnerId") or "")
    else:
        state, done = snapshot.get("Status"), "available"
        tags = tags_to_dict(snapshot.get("TagList"))
        owner = arn_account(snapshot.get("DBSnapshotArn")) or ""
    if owner != vault_account:
        problems.append(f"owned by account {owner or '?'}, not the vault account {vault_account}")
    if state != done:
        problems.append(f"state is {state!r}, expected {done!r}")
    expected_key = entry.get("kms_key_arn")
    if not snapshot.get("Encrypted"):
        problems.append("the vault copy is NOT encrypted")
    elif snapshot.get("KmsKeyId") != expected_key:
        problems.append(
            f"encrypted under {snapshot.get('KmsKeyId')}, not the vault key {expected_key} the "
            "signed manifest names"
        )
    if tags.get(TAG_MANAGED, "true") != "true":
        problems.append(f"{TAG_MANAGED} is {tags[TAG_MANAGED]!r}: SecureDR did not create it")
    for tag, expected in (
        (TAG_PLAN, plan),
        (TAG_SOURCE_ID, str(point.get("source_id"))),
        (TAG_KIND, str(kind)),
        (TAG_RUN_ID, manifest_run_id),
    ):
        if tag not in tags:
            if tag in (TAG_PLAN, TAG_SOURCE_ID):
                problems.append(f"lineage tag {tag} missing")
        elif tags[tag] != expected:
            problems.append(f"tagged {tag}={tags[tag]}, the signed manifest says {expected}")
    if kind == "ebs":
        size = snapshot.get("VolumeSize")
        if size is not None and point.get("size_gib") and int(size) != int(point["size_gib"]):
            problems.append(f"snapshot is {size} GiB, the manifest says {point['size_gib']} GiB")
        problems.extend(_lock_problems(lock, now))
    else:
        engine = snapshot.get("Engine")
        if point.get("engine") and engine and engine != point["engine"]:
            problems.append(f"snapshot engine is {engine}, the manifest says {point['engine']}")
    others = [s for s in shared_with if s != recovery_account or s == vault_account]
    if others:
        problems.append(
            f"shared with {', '.join(others)}; a vault copy others can read is not restored "
            "(investigate who changed its permissions in the vault account)"
        )
    return problems


__all__ = [
    "COMPLIANCE_LOCK_STATES",
    "arn_account",
    "vault_copy_id",
    "vault_copy_problems",
    "vault_view",
]
