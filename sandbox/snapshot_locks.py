"""EBS snapshot lock for the sandbox: LockSnapshot, UnlockSnapshot, DescribeLockedSnapshots.

Moto has no model of snapshot locks, and SecureDR must read them (a locked snapshot is never a
retention candidate) and survive AWS refusing to delete one. The three calls are added to moto's
EC2 responder with AWS's request and response shapes, times on the sandbox clock
(:func:`sandbox.realism.now`) so a test can let a lock expire with ``realism.advance``:

- API: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_LockSnapshot.html,
  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_UnlockSnapshot.html,
  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeLockedSnapshots.html
- Concepts (modes, cooling-off 1-72 h, duration 1-36,500 days or an expiration date, lock
  states ``compliance-cooloff`` / ``compliance`` / ``governance`` / ``expired``; what may change
  in which state): https://docs.aws.amazon.com/ebs/latest/userguide/snapshot-lock-concepts.html

A snapshot can be locked only while it is ``pending`` or ``completed``; a lock taken while it
is pending counts its duration from when it completes (until then the lock has no
``LockDurationStartTime`` nor ``LockExpiresOn``), and if the snapshot fails (``error``) the lock
is cancelled (https://docs.aws.amazon.com/ebs/latest/userguide/snapshot-lock-considerations.html).
Locking a snapshot in any other state answers ``IncorrectState``, EC2's code for "the resource
is in an incorrect state for the request" (errors-overview page below). Locks are per account:
another account's snapshot is not found.

``DeleteSnapshot`` of a snapshot whose lock has not expired is refused ("While a snapshot is
locked, it can't be deleted by any user, regardless of their IAM permissions":
https://docs.aws.amazon.com/ebs/latest/userguide/ebs-snapshot-lock.html). AWS does not document
the error code of that refusal nor of refused lock changes. The sandbox answers a delete with
``InvalidSnapshot.InUse``, EC2's documented code for "the snapshot cannot be deleted because
something holds it" (the code DeleteSnapshot gives for a snapshot a registered AMI uses), and a
refused lock change with ``OperationNotPermitted``, EC2's documented code for an operation the
resource's state forbids (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.exceptions import (
    EC2ClientError,
    InvalidParameterCombination,
    MissingParameterError,
    OperationNotPermitted,
)
from moto.ec2.responses import EC2Response

from sandbox import realism

MODES = ("compliance", "governance")
MAX_LOCK_DAYS = 36500
MAX_COOL_OFF_HOURS = 72


@dataclass
class SnapshotLock:
    snapshot_id: str
    owner_id: str
    mode: str
    created_on: dt.datetime
    #: None while a lock by duration waits for its pending snapshot to complete
    expires_on: dt.datetime | None
    duration_days: int | None = None
    cool_off_hours: int | None = None
    cool_off_expires_on: dt.datetime | None = None
    duration_start: dt.datetime | None = None

    def state(self, now: dt.datetime) -> str:
        if self.expires_on is not None and now >= self.expires_on:
            return "expired"
        if self.mode == "governance":
            return "governance"
        if self.cool_off_expires_on is not None and now < self.cool_off_expires_on:
            return "compliance-cooloff"
        return "compliance"

    def as_dict(self, now: dt.datetime) -> dict[str, Any]:
        info: dict[str, Any] = {
            "OwnerId": self.owner_id,
            "SnapshotId": self.snapshot_id,
            "LockState": self.state(now),
            "LockCreatedOn": self.created_on,
        }
        if self.expires_on is not None:
            info["LockDurationStartTime"] = self.duration_start or self.created_on
            info["LockExpiresOn"] = self.expires_on
        if self.duration_days is not None:
            info["LockDuration"] = self.duration_days
        if self.cool_off_hours is not None:
            info["CoolOffPeriod"] = self.cool_off_hours
            info["CoolOffPeriodExpiresOn"] = self.cool_off_expires_on
        return info


_LOCK = threading.Lock()
#: (account id, Region, snapshot id) -> lock
_LOCKS: dict[tuple[str, str, str], SnapshotLock] = {}


def _key(response: EC2Response, snapshot_id: str) -> tuple[str, str, str]:
    return response.current_account, response.region, snapshot_id


def lock_of(account: str, region: str, snapshot_id: str) -> SnapshotLock | None:
    """The lock recorded for a snapshot (expired or not), if any."""
    return _settled((account, region, snapshot_id))


def _snapshot_model(account: str, region: str, snapshot_id: str) -> Any:
    from moto.ec2.models import ec2_backends

    per_account = dict.get(ec2_backends, account)
    backend = None if per_account is None else dict.get(per_account, region)
    return None if backend is None else backend.snapshots.get(snapshot_id)


def _settled(key: tuple[str, str, str]) -> SnapshotLock | None:
    """The lock of ``key`` after its snapshot's progress: started on completion, gone on error."""
    from sandbox.realism.timing import COMPLETED_AT

    with _LOCK:
        lock = _LOCKS.get(key)
        if lock is None or lock.expires_on is not None:
            return lock
        snapshot = _snapshot_model(*key)
        status = getattr(snapshot, "status", None)
        if status == "error":
            del _LOCKS[key]  # "if the snapshot creation fails for any reason, the lock is canceled"
            return None
        if status == "completed" and lock.duration_days is not None:
            start = snapshot.__dict__.get(COMPLETED_AT) or realism.now()
            lock.duration_start = start
            lock.expires_on = start + dt.timedelta(days=lock.duration_days)
        return lock


def _timestamp(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    text = str(value)
    if text.replace(".", "", 1).isdigit():
        return dt.datetime.fromtimestamp(float(text), dt.UTC)
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _invalid(message: str) -> EC2ClientError:
    return EC2ClientError("InvalidParameterValue", message)


def _lock_snapshot(self: EC2Response) -> ActionResult:
    snapshot_id = self._get_param("SnapshotId")
    if not snapshot_id:
        raise MissingParameterError("SnapshotId")
    mode = self._get_param("LockMode")
    if not mode:
        raise MissingParameterError("LockMode")
    if mode not in MODES:
        raise _invalid(
            f"Value ({mode}) for parameter LockMode is invalid. Use compliance or governance."
        )
    duration = self._get_int_param("LockDuration")
    expiration = self._get_param("ExpirationDate")
    cool_off = self._get_int_param("CoolOffPeriod")
    if (duration is None) == (expiration is None):
        raise InvalidParameterCombination(
            "Specify either LockDuration or ExpirationDate, not both."
        )
    if cool_off is not None and mode != "compliance":
        raise InvalidParameterCombination("CoolOffPeriod can be specified only in compliance mode.")
    if cool_off is not None and not 1 <= cool_off <= MAX_COOL_OFF_HOURS:
        raise _invalid(f"CoolOffPeriod must be between 1 and {MAX_COOL_OFF_HOURS} hours.")
    now = realism.now()
    expires_on: dt.datetime | None
    if duration is not None:
        if not 1 <= duration <= MAX_LOCK_DAYS:
            raise _invalid(f"LockDuration must be between 1 and {MAX_LOCK_DAYS} days.")
        expires_on = now + dt.timedelta(days=duration)
    else:
        expires_on = _timestamp(expiration)
        if expires_on <= now or expires_on > now + dt.timedelta(days=MAX_LOCK_DAYS):
            raise _invalid(
                f"ExpirationDate must be in the future, at most {MAX_LOCK_DAYS} days away."
            )
    snapshot = self.ec2_backend.get_snapshot(snapshot_id)  # InvalidSnapshot.NotFound if absent
    if snapshot.status not in ("pending", "completed"):
        raise EC2ClientError(
            "IncorrectState",
            f"The snapshot '{snapshot_id}' is in the '{snapshot.status}' state; only a pending "
            "or completed snapshot can be locked.",
        )
    self.error_on_dryrun()
    pending = snapshot.status == "pending"
    if pending and duration is not None:
        expires_on = None  # the duration starts when the snapshot completes
    key = _key(self, snapshot_id)
    _settled(key)
    with _LOCK:
        current = _LOCKS.get(key)
        if current is not None and current.state(now) == "compliance":
            # After the cooling-off period a compliance lock can only be extended.
            if mode != "compliance" or cool_off is not None:
                raise OperationNotPermitted(
                    f"The snapshot {snapshot_id} is locked in compliance mode and its cooling-off "
                    "period has expired: the lock mode cannot be changed."
                )
            if _shortens(expires_on, duration, current):
                raise OperationNotPermitted(
                    f"The snapshot {snapshot_id} is locked in compliance mode and its cooling-off "
                    "period has expired: the lock can only be extended."
                )
            cool_off, cool_off_expires = current.cool_off_hours, current.cool_off_expires_on
            created_on = current.created_on
        else:
            cool_off_expires = now + dt.timedelta(hours=cool_off) if cool_off else None
            created_on = now
        lock = SnapshotLock(
            snapshot_id=snapshot_id,
            owner_id=snapshot.owner_id,
            mode=mode,
            created_on=created_on,
            expires_on=expires_on,
            duration_days=duration,
            cool_off_hours=cool_off,
            cool_off_expires_on=cool_off_expires,
            duration_start=None if expires_on is None else now,
        )
        _LOCKS[key] = lock
    result = lock.as_dict(now)
    result.pop("OwnerId")
    return ActionResult(result)


def _shortens(expires_on: dt.datetime | None, duration: int | None, current: SnapshotLock) -> bool:
    """Whether a new lock would end before ``current`` does (both may still wait to start)."""
    if expires_on is not None and current.expires_on is not None:
        return expires_on < current.expires_on
    if expires_on is None and current.expires_on is None:
        return (duration or 0) < (current.duration_days or 0)
    return False  # a lock that has not started yet ends after any fixed date that has


def _unlock_snapshot(self: EC2Response) -> ActionResult:
    snapshot_id = self._get_param("SnapshotId")
    if not snapshot_id:
        raise MissingParameterError("SnapshotId")
    self.ec2_backend.get_snapshot(snapshot_id)
    self.error_on_dryrun()
    key = _key(self, snapshot_id)
    _settled(key)
    with _LOCK:
        lock = _LOCKS.get(key)
        if lock is None:
            raise _invalid(f"The snapshot {snapshot_id} is not locked.")
        if lock.state(realism.now()) == "compliance":
            raise OperationNotPermitted(
                f"The snapshot {snapshot_id} is locked in compliance mode and its cooling-off "
                "period has expired: it cannot be unlocked."
            )
        del _LOCKS[key]
    return ActionResult({"SnapshotId": snapshot_id})


def _describe_locked_snapshots(self: EC2Response) -> ActionResult:
    wanted = set(self._get_param("SnapshotIds", []) or [])
    filters = self._filters_from_querystring()
    states = set(filters.get("lock-state", []))
    unknown = set(filters) - {"lock-state"}
    if unknown:
        raise _invalid(f"The filter '{sorted(unknown)[0]}' is invalid")
    now = realism.now()
    snapshots = self.ec2_backend.snapshots
    found = []
    for key in list(_LOCKS):
        _settled(key)
    with _LOCK:
        for (account, region, snapshot_id), lock in sorted(_LOCKS.items()):
            if (account, region) != (self.current_account, self.region):
                continue
            if snapshot_id not in snapshots or (wanted and snapshot_id not in wanted):
                continue
            if states and lock.state(now) not in states:
                continue
            found.append(lock.as_dict(now))
    max_results = self._get_int_param("MaxResults") or 1000
    start = int(self._get_param("NextToken") or 0)
    page = found[start : start + max_results]
    result: dict[str, Any] = {"Snapshots": page}
    if start + max_results < len(found):
        result["NextToken"] = str(start + max_results)
    return ActionResult(result)


_ORIGINAL: dict[str, Any] = {}


def _delete_snapshot(self: EC2Response) -> Any:
    snapshot_id = self._get_param("SnapshotId")
    lock = _settled(_key(self, str(snapshot_id)))
    if lock is not None and lock.state(realism.now()) != "expired":
        until = (
            f"until {lock.expires_on.strftime('%Y-%m-%dT%H:%M:%S.000Z')}"
            if lock.expires_on is not None
            else f"for {lock.duration_days} days once it completes"
        )
        raise EC2ClientError(
            "InvalidSnapshot.InUse",
            f"The snapshot {snapshot_id} is locked in {lock.mode} mode {until} and cannot be "
            "deleted.",
        )
    return _ORIGINAL["delete_snapshot"](self)


def install() -> None:
    """Add the lock calls to moto's EC2 responder and guard DeleteSnapshot (idempotent)."""
    EC2Response.lock_snapshot = _lock_snapshot  # type: ignore[attr-defined]
    EC2Response.unlock_snapshot = _unlock_snapshot  # type: ignore[attr-defined]
    EC2Response.describe_locked_snapshots = _describe_locked_snapshots  # type: ignore[attr-defined]
    if "delete_snapshot" not in _ORIGINAL:
        _ORIGINAL["delete_snapshot"] = EC2Response.delete_snapshot
        _delete_snapshot.__name__ = "delete_snapshot"
        EC2Response.delete_snapshot = _delete_snapshot  # type: ignore[method-assign]


def reset() -> None:
    """Forget every lock."""
    with _LOCK:
        _LOCKS.clear()
