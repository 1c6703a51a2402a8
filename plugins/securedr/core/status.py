"""Snapshot status as AWS reports it, reduced to pending / completed / failed.

Used by the sensor and its trigger alike, so a deferred wait and a poking wait decide the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from securedr.core.model import Kind

State = Literal["pending", "completed", "failed", "missing"]

_RDS_DONE = {"available"}
_RDS_FAILED = {"failed", "incompatible-restore", "incompatible-parameters", "deleted", "deleting"}


@dataclass(frozen=True)
class SnapshotStatus:
    state: State
    detail: str = ""
    progress: str = ""


def ebs_status(snapshot: dict[str, Any]) -> SnapshotStatus:
    """EBS: ``pending`` / ``completed`` / ``error`` (with ``StateMessage`` as the reason)."""
    state = snapshot.get("State", "")
    if state == "completed":
        return SnapshotStatus("completed", progress="100%")
    if state in ("error", "recoverable"):
        reason = snapshot.get("StateMessage") or "AWS gave no reason"
        return SnapshotStatus("failed", f"state {state}: {reason}")
    return SnapshotStatus("pending", f"state {state}", snapshot.get("Progress", ""))


def rds_status(snapshot: dict[str, Any]) -> SnapshotStatus:
    """RDS: ``creating`` / ``copying`` / ``available``, or a failure state."""
    state = snapshot.get("Status", "")
    if state in _RDS_DONE:
        return SnapshotStatus("completed", progress="100%")
    if state in _RDS_FAILED:
        return SnapshotStatus("failed", f"status {state}")
    return SnapshotStatus("pending", f"status {state}", f"{snapshot.get('PercentProgress', 0)}%")


def status_of(kind: Kind, snapshot: dict[str, Any]) -> SnapshotStatus:
    return ebs_status(snapshot) if kind == "ebs" else rds_status(snapshot)


@dataclass
class Progress:
    """Where a wait stands: which snapshots are done, still going, or failed (with reasons)."""

    completed: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.completed) + len(self.pending) + len(self.failed)

    def summary(self) -> str:
        return (
            f"{len(self.completed)}/{self.total} completed, {len(self.pending)} pending, "
            f"{len(self.failed)} failed"
        )


def evaluate(
    expected: list[str],
    statuses: dict[str, SnapshotStatus],
    *,
    missing_grace_until: Mapping[str, float] | None = None,
    now: float | None = None,
) -> Progress:
    """Classify ``expected`` snapshot keys. A snapshot AWS no longer reports has failed, unless
    ``missing_grace_until`` gives it a deadline (epoch seconds) still ahead of ``now``: AWS
    describes are eventually consistent, so a snapshot just created or copied may not show yet.
    """
    progress = Progress()
    grace = missing_grace_until or {}
    for key in expected:
        status = statuses.get(key)
        if (status is None or status.state == "missing") and (now or 0) < grace.get(key, 0):
            progress.pending.append(key)
        elif status is None or status.state == "missing":
            progress.failed[key] = "not found: it was deleted, or it is in another account/Region"
        elif status.state == "completed":
            progress.completed.append(key)
        elif status.state == "failed":
            progress.failed[key] = status.detail
        else:
            progress.pending.append(key)
    return progress
