"""The cross-account DR vault: names, lock parameters, verdicts and manifest entries.

Pure (no AWS, no clock of its own). The handshake itself lives in :mod:`securedr.aws.vault`;
this module decides what each vault copy must look like and whether the one AWS reports does.

A vault copy is a copy, owned by the vault account, of a verified DR copy (the workload's
"intermediate"), re-encrypted under the vault account's CMK in the DR Region. EBS vault copies
are locked in compliance mode (EBS snapshot lock,
https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_LockSnapshot.html). RDS has no
snapshot lock: an RDS vault copy is protected by the vault account's own permissions (and the
Organization's SCP) only, and its manifest entry records ``lock: null``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from securedr.core.model import (
    LINEAGE_TAGS,
    TAG_PLAN,
    TAG_ROLE,
    TAG_RUN_ID,
    TAG_SOURCE_ID,
    TAG_SOURCE_REGION,
    TAG_SOURCE_SNAPSHOT,
    Kind,
    RecoveryPoint,
    lineage_tags,
)
from securedr.core.verify import state_and_tags

#: ``securedr:role`` of a copy in the vault account.
ROLE_VAULT_COPY = "vault-copy"
#: The only lock mode SecureDR asks for: after the cooling-off period nobody - the vault
#: account's root included - can unlock, shorten or delete it.
LOCK_MODE = "compliance"
#: Lock states that hold in compliance mode (``compliance-cooloff`` may still be changed by the
#: vault account during the cooling-off period; ``expired`` no longer protects).
#: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_LockedSnapshotsInfo.html
COMPLIANCE_STATES = ("compliance-cooloff", "compliance")
#: AWS's limits: CoolOffPeriod 1-72 hours, LockDuration 1-36,500 days.
MAX_COOL_OFF_HOURS = 72
MAX_LOCK_DAYS = 36500

_RDS_ID_BAD = re.compile(r"[^a-z0-9-]+")
_ACCOUNT_RE = re.compile(r"^\d{12}$")


class VaultError(ValueError):
    """A vault setting is unusable; the message names it and the fix."""


def vault_tags(point: RecoveryPoint, *, plan: str, run_id: str) -> dict[str, str]:
    """The lineage tags of ``point``'s vault copy: SecureDR's lineage plus the DR copy it came
    from, so a retried task or a restarted triggerer finds the copy it already started."""
    tags = lineage_tags(
        plan=plan,
        run_id=run_id,
        kind=point.kind,
        source_id=point.source_id,
        source_region=point.source_region,
        role=ROLE_VAULT_COPY,
    )
    tags[TAG_SOURCE_SNAPSHOT] = point.dr_snapshot_id or ""
    return tags


def rds_vault_identifier(dr_identifier: str, workload_account: str) -> str:
    """The RDS vault copy's identifier: the DR copy's plus the workload account.

    Deterministic (a retry finds its own copy by name) and unique in a vault shared by several
    workload accounts (the same database name and run in two accounts). Valid for RDS: letters,
    digits and single hyphens, at most 255 characters.
    """
    base = _RDS_ID_BAD.sub("-", dr_identifier.lower()).strip("-")
    base = re.sub(r"-{2,}", "-", base)[:230].rstrip("-")
    return f"{base}-{workload_account}"


def account_of_arn(arn: str) -> str:
    """The account id field of an ARN (``arn:partition:service:region:account:...``)."""
    parts = arn.split(":")
    if len(parts) < 6 or not _ACCOUNT_RE.match(parts[4]):
        raise VaultError(f"{arn!r} is not an ARN with an account id")
    return parts[4]


def lock_request(snapshot_id: str, *, cool_off_hours: int, duration_days: int) -> dict[str, Any]:
    """LockSnapshot's parameters: compliance mode, a cooling-off period, a duration in days.

    ``LockDuration`` (days) rather than ``ExpirationDate``: AWS counts it from the lock's
    creation on its own clock, so no local clock enters the lock.
    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_LockSnapshot.html
    """
    if not 1 <= cool_off_hours <= MAX_COOL_OFF_HOURS:
        raise VaultError(
            f"vault.lock.cool_off_hours is {cool_off_hours}; AWS allows 1-{MAX_COOL_OFF_HOURS}"
        )
    if not 1 <= duration_days <= MAX_LOCK_DAYS:
        raise VaultError(
            f"the vault lock duration is {duration_days} days; AWS allows 1-{MAX_LOCK_DAYS}"
        )
    return {
        "SnapshotId": snapshot_id,
        "LockMode": LOCK_MODE,
        "CoolOffPeriod": int(cool_off_hours),
        "LockDuration": int(duration_days),
    }


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return None if value is None else str(value)


def _utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def vault_copy_problems(
    point: RecoveryPoint,
    snapshot: Mapping[str, Any] | None,
    *,
    expected_key_arn: str,
    plan: str,
    run_id: str,
    shared_with: list[str],
    lock: Mapping[str, Any] | None,
    keep_days: int,
) -> list[str]:
    """Everything wrong with ``point``'s vault copy as the vault account sees it; ``[]`` = good.

    Good means: completed (EBS) / available (RDS); encrypted under exactly the vault CMK;
    shared with nobody (``shared_with``: account ids or ``all``); SecureDR's lineage tags for
    this plan, run, source and DR copy; and, for EBS, a lock (DescribeLockedSnapshots info) in
    compliance mode that expires no earlier than ``keep_days`` after the copy was taken.
    """
    if snapshot is None:
        return ["the vault copy does not exist"]
    problems: list[str] = []
    state, done, tags = state_and_tags(point.kind, snapshot)
    if state != done:
        problems.append(f"vault copy state is {state!r}, expected {done!r}")
    encrypted = snapshot.get("Encrypted")
    key = snapshot.get("KmsKeyId")
    if not encrypted:
        problems.append("the vault copy is NOT encrypted")
    elif key != expected_key_arn:
        problems.append(f"vault copy encrypted under {key}, not the vault CMK {expected_key_arn}")
    if shared_with:
        problems.append(f"the vault copy is shared with {', '.join(sorted(shared_with))}")
    missing = [t for t in LINEAGE_TAGS if t not in tags]
    if missing:
        problems.append(f"vault copy lineage tags missing: {', '.join(missing)}")
    expected = {
        TAG_PLAN: plan,
        TAG_RUN_ID: run_id,
        TAG_SOURCE_ID: point.source_id,
        TAG_SOURCE_REGION: point.source_region,
        TAG_ROLE: ROLE_VAULT_COPY,
        TAG_SOURCE_SNAPSHOT: point.dr_snapshot_id or "",
    }
    for tag, value in expected.items():
        if tag in tags and tags[tag] != value:
            problems.append(f"vault copy tag {tag} is {tags[tag]!r}, expected {value!r}")
    if point.kind == "ebs":
        problems.extend(_lock_problems(snapshot, lock, keep_days))
    return problems


def _lock_problems(
    snapshot: Mapping[str, Any], lock: Mapping[str, Any] | None, keep_days: int
) -> list[str]:
    if not lock:
        return ["the vault copy has no snapshot lock"]
    problems: list[str] = []
    state = lock.get("LockState")
    if state not in COMPLIANCE_STATES:
        problems.append(f"the vault copy's lock is {state!r}, not compliance mode")
    expires = _utc(lock.get("LockExpiresOn"))
    started = _utc(snapshot.get("StartTime"))
    if expires is None:
        problems.append("the vault copy's lock has no expiry date")
    elif started is not None and expires < started + timedelta(days=keep_days):
        problems.append(
            f"the vault copy's lock expires on {expires.isoformat()}, before the retention "
            f"period ({keep_days} days) ends"
        )
    return problems


def lock_entry(lock: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The manifest's ``lock`` of a vault copy from DescribeLockedSnapshots' info."""
    if not lock:
        return None
    return {
        "mode": LOCK_MODE if lock.get("LockState") in COMPLIANCE_STATES else lock.get("LockState"),
        "cool_off_hours": lock.get("CoolOffPeriod"),
        "expires_on": _iso(lock.get("LockExpiresOn")),
    }


def vault_entry(
    point: RecoveryPoint,
    snapshot: Mapping[str, Any] | None,
    *,
    account_id: str,
    region: str,
    kms_key_arn: str,
    vault_snapshot_id: str | None,
    lock: Mapping[str, Any] | None,
    problems: list[str],
) -> dict[str, Any]:
    """A point's ``vault`` entry in the manifest (the shape every vault reader codes against).

    ``verified`` is true exactly when ``problems`` is empty; a failed entry carries them.
    """
    kind: Kind = point.kind
    entry: dict[str, Any] = {"account_id": account_id, "region": region, "kind": kind}
    if kind == "ebs":
        entry["snapshot_id"] = vault_snapshot_id
        created = (snapshot or {}).get("StartTime")
    else:
        entry["db_snapshot_identifier"] = vault_snapshot_id
        entry["arn"] = (snapshot or {}).get("DBSnapshotArn")
        created = (snapshot or {}).get("SnapshotCreateTime")
    entry["kms_key_arn"] = kms_key_arn
    entry["created_at"] = _iso(created)
    entry["lock"] = lock_entry(lock) if kind == "ebs" else None
    entry["verified"] = not problems
    if problems:
        entry["problems"] = list(problems)
    return entry


def failed_entry(
    point: RecoveryPoint, *, account_id: str, region: str, kms_key_arn: str, reason: str
) -> dict[str, Any]:
    """The ``vault`` entry of a point whose vault copy could not be made."""
    return vault_entry(
        point,
        None,
        account_id=account_id,
        region=region,
        kms_key_arn=kms_key_arn,
        vault_snapshot_id=None,
        lock=None,
        problems=[reason],
    )


def manifest_vault(
    *, account_id: str, evidence_bucket: str, kms_keys: Mapping[str, str]
) -> dict[str, Any]:
    """The manifest's top-level ``vault``."""
    return {
        "account_id": account_id,
        "evidence_bucket": evidence_bucket,
        "kms_keys": dict(sorted(kms_keys.items())),
    }
