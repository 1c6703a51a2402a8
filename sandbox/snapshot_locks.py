"""EBS snapshot locks for the sandbox: ``DescribeLockedSnapshots`` with AWS's response shape.

Moto 5.2.5 does not emulate snapshot locks, and retention reads them before deleting anything
(https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeLockedSnapshots.html).
Installed only where the emulator has no implementation of its own, so a fuller one (with
LockSnapshot and DeleteSnapshot refusals) takes precedence when present. Tests lock a
snapshot with :func:`lock`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.responses import EC2Response

#: snapshot id -> LockedSnapshotsInfo (snapshot ids are unique across the sandbox)
_LOCKS: dict[str, dict[str, Any]] = {}


def lock(
    snapshot_id: str, *, state: str = "governance", days: int = 30, owner: str = "123456789012"
) -> None:
    """Put ``snapshot_id`` under a lock in ``state`` (a LockState value) for ``days``."""
    now = datetime.now(UTC)
    _LOCKS[snapshot_id] = {
        "OwnerId": owner,
        "SnapshotId": snapshot_id,
        "LockState": state,
        "LockDuration": days,
        "LockCreatedOn": now,
        "LockDurationStartTime": now,
        "LockExpiresOn": now + timedelta(days=days),
    }


def _describe(self: EC2Response) -> ActionResult:
    ids = set(self._get_param("SnapshotIds", []))
    states = set(self._filters_from_querystring().get("lock-state", []))
    found = [
        info
        for sid, info in sorted(_LOCKS.items())
        if (not ids or sid in ids) and (not states or info["LockState"] in states)
    ]
    return ActionResult({"Snapshots": found})


def install() -> None:
    """Add DescribeLockedSnapshots unless the emulator already answers it (idempotent)."""
    if not hasattr(EC2Response, "describe_locked_snapshots"):
        EC2Response.describe_locked_snapshots = _describe  # type: ignore[attr-defined]


def reset() -> None:
    _LOCKS.clear()
