"""Copy every recovery point to the DR Region, re-encrypted under the DR Region's key."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk.exceptions import AirflowFailException

from securedr.aws import ebs, rds
from securedr.aws.errors import error_code
from securedr.aws.limits import classify_limit, error_message, is_transient, quota_message
from securedr.aws.snapshots import grace_deadlines, ref_key, statuses
from securedr.core.model import (
    ROLE_DR_COPY,
    TAG_PLAN,
    TAG_ROLE,
    TAG_RUN_ID,
    TAG_SOURCE_SNAPSHOT,
    RecoveryPoint,
    lineage_tags,
    rds_dr_copy_identifier,
    tags_to_dict,
)
from securedr.core.status import evaluate
from securedr.operators.base import SecureDrOperator, run_identity
from securedr.triggers.recovery_points import RecoveryPointsTrigger

#: Fields of a point the copy step fills in, carried across deferrals in the trigger kwargs
#: (a copy just started may not show in describes yet, so it must not be looked up again).
_STATE_FIELDS = (
    "dr_region",
    "dr_snapshot_id",
    "dr_snapshot_arn",
    "dr_kms_key_arn",
    "dr_created_at",
    "dr_requested_at",
    "not_protected",
)


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return None if value is None else str(value)


class CopyToDrRegionOperator(SecureDrOperator):
    """Copy each recovery point into the DR Region, encrypted under the plan's DR key.

    Guarantees:

    - every copy is requested with ``Encrypted=True`` and the DR key's ARN, so an unencrypted
      source comes out encrypted and no copy lands under a default or AWS-managed key;
    - RDS copies are named after the source snapshot AND the source Region (two databases of
      the same name in two Regions never collide in the DR Region), and get the plan's DR option
      group (``rds.option_groups``) where one applies;
    - never more than ``waits.max_copies_in_flight`` (at most 20, the EBS quota) copies of this
      run are in flight per destination Region; a concurrency limit from AWS (EBS
      ResourceLimitExceeded, RDS SnapshotQuotaExceeded "across regions") means "wait for a slot":
      for one of our own copies to finish when we have some in flight, otherwise for
      ``waits.quota_wait_seconds`` (a timed wait, never a defer/resume loop);
    - a hard quota (RDS manual snapshots), a refused copy, a failed source snapshot or a failed
      copy rules out THAT resource (``not_protected`` says why and what to do); the others go on;
    - one absolute deadline (``waits.copy_timeout_minutes`` from the first try) survives every
      deferral; a resource still without a slot then is ruled out, by name;
    - idempotent: copies started before a deferral are carried in the trigger kwargs; copies a
      retried task started are found by their lineage tags (EBS) or deterministic identifier
      (RDS) and reused, so retries never duplicate a copy; "not found" right after a request is
      pending for ``waits.missing_grace_seconds``;
    - lineage tags are carried over, plus the source snapshot id.

    Returns the recovery points with their DR copy filled in. Waiting for the last copies to
    complete is left to :class:`~securedr.sensors.recovery_points.RecoveryPointsSensor`.
    """

    template_fields: Sequence[str] = ("points", "plan_path")

    def __init__(self, *, points: Any, deferrable: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.points = points
        self.deferrable = deferrable

    def execute(self, context: Any) -> list[dict[str, Any]] | None:
        return self._advance(context, {}, None)

    def resume(
        self,
        context: Any,
        event: Any = None,
        state: dict[str, dict[str, Any]] | None = None,
        deadline: float | None = None,
    ) -> list[dict[str, Any]] | None:
        # Events: the snapshot trigger's dict (a copy finished, failed or the deadline passed),
        # or the time trigger's moment (the timed wait for a free slot is over). Failed copies
        # and the deadline are handled per resource by the next pass.
        if isinstance(event, dict) and event.get("status") == "error":
            self.log.error("DR copies failed: %s", event.get("failed"))
        return self._advance(context, state or {}, deadline)

    def _advance(
        self, context: Any, state: dict[str, dict[str, Any]], deadline: float | None
    ) -> list[dict[str, Any]] | None:
        """Reconcile with AWS, start copies into free slots, then return or wait for a slot."""
        _, run_id = run_identity(context)
        plan = self.plan
        waits = plan.waits
        dr = plan.regions.dr
        dr_key = self.key_arn(dr)
        limit = waits.max_copies_in_flight
        if deadline is None:
            deadline = time.time() + waits.copy_timeout_minutes * 60
        points = [RecoveryPoint.from_dict(p) for p in self.points or []]
        for point in points:
            for name, value in state.get(point.label, {}).items():
                setattr(point, name, value)
        self._rule_out_failed_sources(points)
        while True:
            self._attach_existing_copies(points, run_id, dr)
            active = [p for p in points if p.protected]
            copied = [p for p in active if p.dr_snapshot_id]
            refs = [p.dr_ref for p in copied]
            progress = evaluate(
                [ref_key(r) for r in refs],
                statuses(self.clients, refs),
                missing_grace_until=grace_deadlines(refs, waits.missing_grace_seconds),
                now=time.time(),
            )
            for point in copied:
                reason = progress.failed.get(ref_key(point.dr_ref))
                if reason:
                    point.not_protected = f"the DR copy {point.dr_snapshot_id} failed: {reason}"
                    self.log.error("NOT PROTECTED %s: %s", point.label, point.not_protected)
            in_flight = set(progress.pending)
            free = max(0, limit - len(in_flight))
            waiting = [p for p in points if p.protected and not p.dr_snapshot_id]
            started = 0
            no_slot: set[str] = set()  # EBS and RDS limits are separate: one full, not both
            for point in waiting:
                if started >= free:
                    break
                if point.kind in no_slot:
                    continue
                outcome = self._start_copy(point, run_id, dr, dr_key)
                if outcome == "no_slot":
                    no_slot.add(point.kind)
                elif outcome == "started":
                    started += 1
            remaining = [p for p in points if p.protected and not p.dr_snapshot_id]
            self.log.info(
                "DR copies: %d done, %d in flight, %d started now, %d waiting for a slot, %d "
                "resource(s) not protected.",
                len(progress.completed),
                len(in_flight) + started,
                started,
                len(remaining),
                sum(1 for p in points if not p.protected),
            )
            if not remaining:
                return [p.to_dict() for p in points]
            if time.time() >= deadline:
                for point in remaining:
                    point.not_protected = (
                        f"no free copy slot in {dr} before the copy deadline "
                        f"(waits.copy_timeout_minutes={waits.copy_timeout_minutes}); other copies "
                        "held AWS's concurrent-copy limit all night. Raise the timeout, or move "
                        "other copy jobs away from this window"
                    )
                    self.log.error("NOT PROTECTED %s: %s", point.label, point.not_protected)
                return [p.to_dict() for p in points]
            ours = [
                p.dr_ref
                for p in points
                if p.protected and p.dr_snapshot_id and ref_key(p.dr_ref) not in progress.completed
            ]
            kwargs = {"state": self._state(points), "deadline": deadline}
            left = max(1.0, deadline - time.time())
            if ours:
                # A slot frees when one of our own copies finishes: wait for that.
                self.log.info("Waiting for one of %d copies in flight to finish.", len(ours))
                if self.deferrable:
                    self.defer(
                        trigger=RecoveryPointsTrigger(
                            refs=[r.to_dict() for r in ours],
                            aws_conn_id=self.aws_conn_id,
                            poll_seconds=waits.poll_seconds,
                            timeout_seconds=left,
                            until="any",
                            missing_grace_seconds=waits.missing_grace_seconds,
                        ),
                        method_name="resume",
                        kwargs=kwargs,
                        timeout=timedelta(seconds=left + 600),
                    )
                time.sleep(min(waits.poll_seconds, left))
                continue
            # Nothing of ours is in flight: another job holds AWS's slots. Nothing to poll, so
            # wait a fixed time before asking again.
            pause = min(float(waits.quota_wait_seconds), left)
            self.log.info(
                "AWS's concurrent-copy limit in %s is held by copies that are not this run's%s; "
                "asking again in %.0f s.",
                dr,
                "" if no_slot else " (or every slot is taken)",
                pause,
            )
            if self.deferrable:
                self.defer(
                    trigger=DateTimeTrigger(moment=datetime.now(UTC) + timedelta(seconds=pause)),
                    method_name="resume",
                    kwargs=kwargs,
                    timeout=timedelta(seconds=pause + 600),
                )
            time.sleep(pause)

    @staticmethod
    def _state(points: list[RecoveryPoint]) -> dict[str, dict[str, Any]]:
        return {
            p.label: {name: getattr(p, name) for name in _STATE_FIELDS}
            for p in points
            if p.dr_snapshot_id or not p.protected
        }

    def _rule_out_failed_sources(self, points: list[RecoveryPoint]) -> None:
        """A source snapshot that failed (or vanished) cannot be copied: rule that one out."""
        todo = [p for p in points if p.protected and not p.dr_snapshot_id and p.snapshot_id]
        if not todo:
            return
        refs = [p.source_ref for p in todo]
        progress = evaluate(
            [ref_key(r) for r in refs],
            statuses(self.clients, refs),
            missing_grace_until=grace_deadlines(refs, self.plan.waits.missing_grace_seconds),
            now=time.time(),
        )
        for point in todo:
            reason = progress.failed.get(ref_key(point.source_ref))
            if reason:
                point.not_protected = f"the source snapshot {point.snapshot_id} failed: {reason}"
                self.log.error("NOT PROTECTED %s: %s", point.label, point.not_protected)

    def _attach_existing_copies(self, points: list[RecoveryPoint], run_id: str, dr: str) -> None:
        """Fill in DR copies this run already started (after a retry or crash)."""
        by_snapshot = {
            p.snapshot_id: p
            for p in points
            if p.kind == "ebs" and p.protected and not p.dr_snapshot_id
        }
        if by_snapshot:
            for snap in ebs.find_snapshots(
                self.clients.ec2(dr),
                {TAG_PLAN: self.plan.name, TAG_RUN_ID: run_id, TAG_ROLE: ROLE_DR_COPY},
            ):
                source = tags_to_dict(snap.get("Tags")).get(TAG_SOURCE_SNAPSHOT)
                point = by_snapshot.get(source or "")
                if point and snap.get("State") != "error":
                    point.dr_region, point.dr_snapshot_id = dr, snap["SnapshotId"]
                    point.dr_kms_key_arn = snap.get("KmsKeyId")
                    point.dr_created_at = _iso(snap.get("StartTime"))
        rds_points = {
            rds_dr_copy_identifier(p.snapshot_id, p.source_region): p
            for p in points
            if p.kind == "rds" and p.protected and not p.dr_snapshot_id
        }
        if rds_points:
            found = rds.describe_snapshots(self.clients.rds(dr), list(rds_points))
            for identifier, snap in found.items():
                point = rds_points[identifier]
                point.dr_region, point.dr_snapshot_id = dr, identifier
                point.dr_snapshot_arn = snap.get("DBSnapshotArn")
                point.dr_kms_key_arn = snap.get("KmsKeyId")
                point.dr_created_at = _iso(snap.get("SnapshotCreateTime"))

    def _start_copy(
        self, point: RecoveryPoint, run_id: str, dr: str, dr_key: str
    ) -> Literal["started", "no_slot", "ruled_out"]:
        tags = lineage_tags(
            plan=self.plan.name,
            run_id=run_id,
            kind=point.kind,
            source_id=point.source_id,
            source_region=point.source_region,
            role=ROLE_DR_COPY,
        )
        tags[TAG_SOURCE_SNAPSHOT] = point.snapshot_id
        requested_at = time.time()
        try:
            if point.kind == "ebs":
                point.dr_snapshot_id = ebs.copy_snapshot(
                    self.clients.ec2(dr),
                    source_region=point.source_region,
                    snapshot_id=point.snapshot_id,
                    kms_key_arn=dr_key,
                    tags=tags,
                    description=f"SecureDR DR copy of {point.snapshot_id} ({point.source_id})",
                )
            else:
                self._copy_rds(point, dr, dr_key, tags)
        except Exception as exc:
            verdict = classify_limit(exc)
            if verdict == "concurrency":
                self.log.info("AWS's concurrent-copy limit reached in %s (%s).", dr, exc)
                point.dr_snapshot_id = None
                return "no_slot"
            if is_transient(exc) or not error_code(exc):
                raise
            point.dr_snapshot_id = None
            point.not_protected = (
                quota_message(exc, dr)
                if verdict == "quota"
                else f"the copy to {dr} was refused ({error_code(exc)}: {error_message(exc)})"
            )
            self.log.error("NOT PROTECTED %s: %s", point.label, point.not_protected)
            return "ruled_out"
        point.dr_region = dr
        point.dr_kms_key_arn = dr_key
        point.dr_requested_at = requested_at
        self.log.info(
            "Copying %s %s -> %s/%s under %s",
            point.label,
            point.snapshot_id,
            dr,
            point.dr_snapshot_id,
            dr_key,
        )
        return "started"

    def _copy_rds(self, point: RecoveryPoint, dr: str, dr_key: str, tags: dict[str, str]) -> None:
        source_arn = point.snapshot_arn
        if not source_arn:
            # Created just before describes could show it: read it now that it completed.
            found = rds.describe_snapshots(
                self.clients.rds(point.source_region), [point.snapshot_id]
            )
            source_arn = (found.get(point.snapshot_id) or {}).get("DBSnapshotArn")
            if not source_arn:
                raise AirflowFailException(f"{point.label}: source snapshot has no ARN yet")
            point.snapshot_arn = source_arn
        identifier = rds_dr_copy_identifier(point.snapshot_id, point.source_region)
        option_group = self.plan.rds.option_groups.for_db(point.engine, point.option_group)
        if (
            option_group is None
            and point.option_group
            and not point.option_group.startswith("default:")
        ):
            self.log.warning(
                "%s uses the non-default option group %s and the plan names no DR option group "
                "for it (rds.option_groups); AWS advises one, and requires one for Oracle or SQL "
                "Server with TDE.",
                point.label,
                point.option_group,
            )
        try:
            snap = rds.copy_snapshot(
                self.clients.rds(dr),
                source_region=point.source_region,
                source_arn=source_arn,
                target_identifier=identifier,
                kms_key_arn=dr_key,
                tags=tags,
                option_group=option_group,
            )
        except Exception as exc:
            if error_code(exc) != "DBSnapshotAlreadyExists":
                raise
            # Ours from an earlier try (the identifier is this run's); it may not show yet.
            snap = rds.describe_snapshots(self.clients.rds(dr), [identifier]).get(identifier) or {}
        point.dr_snapshot_id = identifier
        point.dr_snapshot_arn = snap.get("DBSnapshotArn")
        point.dr_created_at = _iso(snap.get("SnapshotCreateTime"))
