"""Section ``timing``: snapshots and copies take time, as they do on AWS.

Moto completes every snapshot and copy the moment it is requested. On AWS:

- an EBS snapshot (``CreateSnapshot``) or copy (``CopySnapshot``) is ``State: pending`` with a
  ``Progress`` such as ``"37%"`` until it is ``completed``; its ``StartTime`` is when the snapshot
  or the copy was initiated, not when it completed
  (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Snapshot.html);
- a DB snapshot (``CreateDBSnapshot``) is ``creating`` and a copy (``CopyDBSnapshot``) starts as
  ``creating`` (same Region) or ``pending`` then ``copying`` (cross-Region), with a
  ``PercentProgress``, until it is ``available``
  (https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DBSnapshot.html; the CLI's
  copy-db-snapshot example answers ``"Status": "creating", "PercentProgress": 0``);
- while a DB snapshot is not yet available it has **no** ``SnapshotCreateTime`` at all (boto3
  issue 952, awslabs/rds-snapshot-tool issue 45); once available, ``SnapshotCreateTime`` is when
  the snapshot was taken, and for a copy it "changes for the copy when the snapshot is copied"
  (API_DBSnapshot) while ``OriginalSnapshotCreateTime`` keeps the source's time.

Parameters (seconds on the sandbox clock, :func:`sandbox.realism.now`):
``snapshot_seconds`` (EBS CreateSnapshot), ``copy_seconds`` (EBS CopySnapshot and RDS
CopyDBSnapshot), ``db_snapshot_seconds`` (RDS CreateDBSnapshot), and ``overrides``
``{id: seconds}`` giving one snapshot or copy its own duration; ``id`` may be the new snapshot's
id, its source snapshot id (EBS copies), its volume id, or its DB instance identifier. A snapshot
already started can be given a new duration with :func:`set_duration`.

How it works: after moto creates the snapshot, its model is put into the in-progress state and
registered here; before every later request the registry is refreshed, so progress and
completion happen lazily on the sandbox clock, and every read (describes, filters, waiters) sees
the same state.

"A copy that takes 3 hours" without waiting 3 hours: the sandbox clock is real time plus an
offset, so a test sets ``copy_seconds=10800``, starts the copy (``StartTime`` is now), and calls
``realism.advance(10800)``: the copy completes, and every AWS timestamp issued from then on
(``StartTime`` of later snapshots, ``SnapshotCreateTime``...) is 3 hours after the copy began,
exactly as on a night whose copies took 3 hours. The host clock does not move, so code that
compares AWS time with its own clock sees the same skew it would see on such a night.

With short durations (the ``e2e`` profile) the waits are real: a copy of ``copy_seconds=3`` stays
pending for 3 real seconds.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from dataclasses import dataclass
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.models.elastic_block_store import Snapshot as _EbsSnapshot
from moto.rds.models import DBSnapshot as _DbSnapshot

import sandbox.realism as realism

NAME = "timing"

_LOCK = threading.RLock()


@dataclass
class InProgress:
    """One snapshot or copy that AWS would still be working on."""

    service: str  #: ``ec2`` or ``rds``
    account: str
    region: str  #: where the snapshot/copy lands (the destination Region of a copy)
    resource_id: str
    copy: bool
    cross_region: bool
    started: dt.datetime  #: sandbox clock, aware UTC
    seconds: float
    model: Any

    def fraction(self, now: dt.datetime) -> float:
        if self.seconds <= 0:
            return 1.0
        return max(0.0, (now - self.started).total_seconds() / self.seconds)


#: (service, account, region, id) -> in progress
_IN_PROGRESS: dict[tuple[str, str, str, str], InProgress] = {}


# -- the models answer with what AWS would show ------------------------------------------------
# Attributes set on a model instance by this module; absent, the model behaves as moto made it.
_PROGRESS = "_realism_progress"
_CREATE_TIME = "_realism_create_time"
_NO_CREATE_TIME = "_realism_no_create_time"
#: When an EBS snapshot or copy that took time completed (sandbox clock, aware UTC); a snapshot
#: lock taken while it was pending counts its duration from then (sandbox.snapshot_locks).
COMPLETED_AT = "_realism_completed_at"


def _ebs_progress(self: Any) -> str:
    return str(self.__dict__.get(_PROGRESS, "100%"))


def _db_snapshot_create_time(self: Any) -> dt.datetime | None:
    if self.__dict__.get(_NO_CREATE_TIME):
        return None  # not serialised: AWS omits the field until the snapshot is available
    return self.__dict__.get(_CREATE_TIME, self.created)


_EbsSnapshot.progress = property(_ebs_progress)  # type: ignore[assignment,method-assign]
_DbSnapshot.snapshot_create_time = property(_db_snapshot_create_time)  # type: ignore[assignment,method-assign]


def _naive(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None)  # moto keeps naive UTC datetimes


def _percent(fraction: float) -> int:
    return min(99, int(fraction * 100))


def _show(entry: InProgress, now: dt.datetime) -> None:
    """Put the model in the state AWS would report ``now`` (still in progress)."""
    model, pct = entry.model, _percent(entry.fraction(now))
    if entry.service == "ec2":
        model.status = "pending"
        model.__dict__[_PROGRESS] = f"{pct}%"
        return
    if not entry.copy or not entry.cross_region:
        model.status = "creating"
    else:
        # A cross-Region copy waits in a queue ("pending") before it starts copying.
        model.status = "pending" if pct < 10 else "copying"
    model.percent_progress = pct
    model.__dict__[_NO_CREATE_TIME] = True


def _finish(entry: InProgress) -> None:
    model = entry.model
    if entry.service == "ec2":
        model.status = "completed"
        model.__dict__.pop(_PROGRESS, None)
        due = entry.started + dt.timedelta(seconds=entry.seconds)
        model.__dict__[COMPLETED_AT] = min(due, realism.now())
        return
    model.status = "available"
    model.percent_progress = 100
    model.__dict__.pop(_NO_CREATE_TIME, None)
    model.__dict__[_CREATE_TIME] = _naive(entry.started)


def _still_exists(entry: InProgress) -> bool:
    model = entry.model
    if entry.service == "ec2":
        return model.ec2_backend.snapshots.get(entry.resource_id) is model
    return model.backend.database_snapshots.get(entry.resource_id) is model


def refresh(now: dt.datetime | None = None) -> None:
    """Complete what is due, update the progress of the rest, forget what was deleted."""
    now = now or realism.now()
    with _LOCK:
        for key, entry in list(_IN_PROGRESS.items()):
            if not _still_exists(entry):
                del _IN_PROGRESS[key]
            elif entry.fraction(now) >= 1.0:
                _finish(entry)
                del _IN_PROGRESS[key]
            else:
                _show(entry, now)


def in_flight(service: str, region: str, account: str | None = None) -> int:
    """Copies still in progress into ``region`` (``service`` ``ec2`` or ``rds``).

    For RDS only cross-Region copies count: AWS's limit is on "snapshot copy requests in
    progress to a single destination Region" (RDS User Guide, USER_CopySnapshot).
    """
    refresh()
    with _LOCK:
        return sum(
            1
            for e in _IN_PROGRESS.values()
            if e.copy
            and e.service == service
            and e.region == region
            and (account is None or e.account == account)
            and (service != "rds" or e.cross_region)
        )


def in_progress() -> list[InProgress]:
    """Everything still in progress (after a refresh), oldest first."""
    refresh()
    with _LOCK:
        return sorted(_IN_PROGRESS.values(), key=lambda e: e.started)


def set_duration(resource_id: str, seconds: float) -> None:
    """Give the in-progress snapshot or copy ``resource_id`` a total duration of ``seconds``."""
    with _LOCK:
        matches = [e for e in _IN_PROGRESS.values() if e.resource_id == resource_id.lower()]
        if not matches:
            raise KeyError(f"no snapshot or copy {resource_id!r} is in progress")
        for entry in matches:
            entry.seconds = seconds
    refresh()


def _duration(params: dict[str, Any], kind: str, ids: list[str]) -> float:
    overrides = params.get("overrides") or {}
    for candidate in ids:
        if candidate and candidate in overrides:
            return float(overrides[candidate])
        if candidate and candidate.lower() in overrides:
            return float(overrides[candidate.lower()])
    return float(params.get(kind, 0) or 0)


def _track(call: realism.Call, model: Any, resource_id: str, kind: str, ids: list[str]) -> bool:
    """Stamp the new snapshot with the sandbox clock; register it if it takes time."""
    params = realism.settings(NAME) or {}
    seconds = _duration(params, kind, [resource_id, *ids])
    started = realism.now()
    if call.service == "ec2":
        model.start_time = _naive(started)
    else:
        model.__dict__[_CREATE_TIME] = _naive(started)
        if kind != "copy_seconds":
            model.original_snapshot_create_time = _naive(started)
    if seconds <= 0:
        return False
    source_region = call.param("SourceRegion")
    if call.service == "rds" and not source_region:
        source = str(call.param("SourceDBSnapshotIdentifier") or "")
        source_region = source.split(":")[3] if source.startswith("arn:") else call.region
    entry = InProgress(
        service=call.service,
        account=call.account,
        region=call.region,
        resource_id=resource_id,
        copy=kind == "copy_seconds",
        cross_region=bool(source_region) and source_region != call.region,
        started=started,
        seconds=seconds,
        model=model,
    )
    with _LOCK:
        _IN_PROGRESS[(call.service, call.account, call.region, resource_id)] = entry
        _show(entry, started)
    return True


_SNAPSHOT_ID = re.compile(r"<snapshotId>(snap-[0-9a-zA-Z]+)</snapshotId>")


def _body_text(body: Any) -> str:
    return body.decode() if isinstance(body, bytes) else str(body)


def before(call: realism.Call) -> None:
    refresh()


def after(call: realism.Call, result: realism.TYPE_RESPONSE) -> realism.TYPE_RESPONSE:
    status, _headers, body = result
    if status != 200:
        return result
    if call.service == "ec2" and call.action in ("CreateSnapshot", "CopySnapshot"):
        found = _SNAPSHOT_ID.search(_body_text(body))
        if not found:
            return result
        snapshot_id = found.group(1)
        model = call.responder.ec2_backend.snapshots.get(snapshot_id)
        if model is None:
            return result
        kind = "snapshot_seconds" if call.action == "CreateSnapshot" else "copy_seconds"
        ids = [model.volume.id if model.volume else "", call.param("SourceSnapshotId") or ""]
        if _track(call, model, snapshot_id, kind, ids) and call.action == "CreateSnapshot":
            return call.responder.serialized(ActionResult(model))
        return result
    if call.service == "rds" and call.action in ("CreateDBSnapshot", "CopyDBSnapshot"):
        if call.action == "CreateDBSnapshot":
            identifier, kind = call.param("DBSnapshotIdentifier"), "db_snapshot_seconds"
        else:
            identifier, kind = call.param("TargetDBSnapshotIdentifier"), "copy_seconds"
        identifier = str(identifier or "").lower()
        model = call.responder.backend.database_snapshots.get(identifier)
        if model is None:
            return result
        source = str(call.param("SourceDBSnapshotIdentifier") or "").rsplit(":", 1)[-1]
        ids = [model.db_instance_identifier, source]
        if _track(call, model, identifier, kind, ids):
            return call.responder.serialized(ActionResult({"DBSnapshot": model}))
    return result


def _complete_all() -> None:
    """Turning the section off (or reconfiguring it) completes whatever was in progress."""
    with _LOCK:
        for entry in list(_IN_PROGRESS.values()):
            _finish(entry)
        _IN_PROGRESS.clear()


realism.behaviour(NAME, before=before, after=after)
realism.on_reset(NAME, _complete_all)
# e2e: a few real seconds each, enough for every wait path to see "pending" and poll again.
realism.PROFILES["e2e"][NAME] = {"snapshot_seconds": 2, "copy_seconds": 4, "db_snapshot_seconds": 3}
