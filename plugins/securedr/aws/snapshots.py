"""Status of many snapshots at once: one batched describe per (Region, kind) per poll."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from securedr.aws import ebs, rds
from securedr.aws.clients import AsyncClientPool, AwsClients
from securedr.aws.limits import is_transient
from securedr.core.model import SnapshotRef
from securedr.core.status import Progress, SnapshotStatus, evaluate, status_of

log = logging.getLogger(__name__)


def ref_key(ref: SnapshotRef) -> str:
    return f"{ref.kind}:{ref.region}:{ref.snapshot_id}"


def group(refs: list[SnapshotRef]) -> dict[tuple[str, str], list[str]]:
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for ref in refs:
        groups[(ref.region, ref.kind)].append(ref.snapshot_id)
    return groups


def _statuses(kind: str, region: str, found: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        ref_key(SnapshotRef(kind, region, sid)): status_of(kind, snap)  # type: ignore[arg-type]
        for sid, snap in found.items()
    }


def statuses(clients: AwsClients, refs: list[SnapshotRef]) -> dict[str, SnapshotStatus]:
    result: dict[str, SnapshotStatus] = {}
    for (region, kind), ids in group(refs).items():
        if kind == "ebs":
            found = ebs.describe_snapshots(clients.ec2(region), ids)
        else:
            found = rds.describe_snapshots(clients.rds(region), ids)
        result.update(_statuses(kind, region, found))
    return result


async def statuses_async(
    pool: AsyncClientPool, refs: list[SnapshotRef]
) -> dict[str, SnapshotStatus]:
    """Like :func:`statuses`, with aiobotocore clients from ``pool`` (built once per trigger)."""
    result: dict[str, SnapshotStatus] = {}
    for (region, kind), ids in group(refs).items():
        if kind == "ebs":
            found = await ebs.describe_snapshots_async(await pool.get("ec2", region), ids)
        else:
            found = await rds.describe_snapshots_async(await pool.get("rds", region), ids)
        result.update(_statuses(kind, region, found))
    return result


def grace_deadlines(refs: list[SnapshotRef], grace_seconds: float) -> dict[str, float]:
    """Until when each requested snapshot may still be missing from describes."""
    return {ref_key(r): r.requested_at + grace_seconds for r in refs if r.requested_at is not None}


@dataclass(frozen=True)
class Poll:
    """One pass over copies in flight: their progress, and each key's label and status."""

    progress: Progress
    labels: dict[str, str]
    found: dict[str, SnapshotStatus]


async def poll_async(
    pool: Any, refs: Mapping[str, SnapshotRef], missing_grace_seconds: float, what: str
) -> Poll | None:
    """Describe the snapshots behind ``refs`` (label -> ref) in batches and judge how far each
    got. A copy AWS does not show yet is pending until its grace period ends. ``None`` after a
    transient failure (botocore already retried; the caller's next pass asks again)."""
    try:
        found = await statuses_async(pool, list(refs.values()))
    except Exception as exc:
        if not is_transient(exc):
            raise
        log.warning("Describing %s failed transiently (%s); asking again.", what, exc)
        return None
    labels = {ref_key(ref): label for label, ref in refs.items()}
    progress = evaluate(
        list(labels),
        found,
        missing_grace_until=grace_deadlines(list(refs.values()), missing_grace_seconds),
        now=time.time(),
    )
    return Poll(progress, labels, found)
