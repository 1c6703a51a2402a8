"""Copy every recovery point to the DR Region, re-encrypted under the DR Region's key."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from securedr.aws import ebs, rds
from securedr.aws.errors import error_code
from securedr.aws.snapshots import ref_key, statuses
from securedr.core.model import (
    ROLE_DR_COPY,
    TAG_PLAN,
    TAG_ROLE,
    TAG_RUN_ID,
    TAG_SOURCE_SNAPSHOT,
    RecoveryPoint,
    lineage_tags,
    tags_to_dict,
)
from securedr.core.status import evaluate
from securedr.operators.base import SecureDrOperator, run_identity
from securedr.triggers.recovery_points import RecoveryPointsTrigger

#: Errors that mean "no copy slot free right now", not "this copy is impossible".
QUOTA_ERRORS = {"ResourceLimitExceeded", "SnapshotQuotaExceeded", "SnapshotCopyLimitExceeded"}


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return None if value is None else str(value)


class CopyToDrRegionOperator(SecureDrOperator):
    """Copy each recovery point into the DR Region, encrypted under the plan's DR key.

    Guarantees:

    - every copy is requested with ``Encrypted=True`` and the DR key's ARN, so an unencrypted
      source comes out encrypted and no copy lands under a default or AWS-managed key;
    - never more than ``waits.max_copies_in_flight`` (at most 20, the EBS quota) copies of this
      run are in flight per destination Region; a quota error from AWS is treated as "no slot"
      and retried after a copy finishes, not as a failure;
    - idempotent: copies this run already started are found by their lineage tags (EBS) or
      deterministic identifier (RDS) and reused, so retries never duplicate a copy;
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
        return self._advance(context)

    def resume(self, context: Any, event: dict[str, Any]) -> list[dict[str, Any]] | None:
        if event.get("status") == "error":
            failed = "; ".join(f"{k}: {v}" for k, v in event["failed"].items())
            raise AirflowFailException(f"DR copies failed: {failed}")
        if event.get("status") == "timeout":
            raise AirflowFailException(
                f"DR copies still pending after the plan's copy timeout: {event['pending']}"
            )
        return self._advance(context)

    def _advance(self, context: Any) -> list[dict[str, Any]] | None:
        """Reconcile with AWS, start copies into free slots, then return or wait for a slot."""
        _, run_id = run_identity(context)
        plan = self.plan
        dr = plan.regions.dr
        dr_key = self.key_arn(dr)
        limit = plan.waits.max_copies_in_flight
        deadline = time.time() + plan.waits.copy_timeout_minutes * 60
        points = [RecoveryPoint.from_dict(p) for p in self.points or []]
        while True:
            self._attach_existing_copies(points, run_id, dr)
            copied = [p for p in points if p.dr_snapshot_id]
            progress = evaluate(
                [ref_key(p.dr_ref) for p in copied],
                statuses(self.clients, [p.dr_ref for p in copied]),
            )
            if progress.failed:
                raise AirflowFailException(f"DR copies failed: {progress.failed}")
            in_flight = {k for k in progress.pending}
            free = max(0, limit - len(in_flight))
            waiting = [p for p in points if not p.dr_snapshot_id]
            started = 0
            for point in waiting[:free]:
                if not self._start_copy(point, run_id, dr, dr_key):
                    break  # AWS says no slot: wait for one of ours to finish
                started += 1
            remaining = len(waiting) - started
            self.log.info(
                "DR copies: %d done, %d in flight, %d started now, %d waiting for a slot.",
                len(progress.completed),
                len(in_flight) + started,
                started,
                remaining,
            )
            if remaining == 0:
                return [p.to_dict() for p in points]
            in_flight_refs = [p.dr_ref for p in points if p.dr_snapshot_id]
            in_flight_refs = [r for r in in_flight_refs if ref_key(r) not in progress.completed]
            if self.deferrable:
                self.defer(
                    trigger=RecoveryPointsTrigger(
                        refs=[r.to_dict() for r in in_flight_refs],
                        aws_conn_id=self.aws_conn_id,
                        poll_seconds=plan.waits.poll_seconds,
                        timeout_seconds=max(60.0, deadline - time.time()),
                        until="any",
                    ),
                    method_name="resume",
                    timeout=timedelta(minutes=plan.waits.copy_timeout_minutes + 10),
                )
            if time.time() > deadline:
                raise AirflowFailException("DR copies did not get a free slot before the timeout")
            time.sleep(plan.waits.poll_seconds)

    def _attach_existing_copies(self, points: list[RecoveryPoint], run_id: str, dr: str) -> None:
        """Fill in DR copies this run already started (after a retry, crash or deferral)."""
        by_snapshot = {p.snapshot_id: p for p in points if p.kind == "ebs"}
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
        rds_points = {p.snapshot_id: p for p in points if p.kind == "rds"}
        if rds_points:
            found = rds.describe_snapshots(self.clients.rds(dr), list(rds_points))
            for identifier, snap in found.items():
                point = rds_points[identifier]
                point.dr_region, point.dr_snapshot_id = dr, identifier
                point.dr_snapshot_arn = snap.get("DBSnapshotArn")
                point.dr_kms_key_arn = snap.get("KmsKeyId")
                point.dr_created_at = _iso(snap.get("SnapshotCreateTime"))

    def _start_copy(self, point: RecoveryPoint, run_id: str, dr: str, dr_key: str) -> bool:
        tags = lineage_tags(
            plan=self.plan.name,
            run_id=run_id,
            kind=point.kind,
            source_id=point.source_id,
            source_region=point.source_region,
            role=ROLE_DR_COPY,
        )
        tags[TAG_SOURCE_SNAPSHOT] = point.snapshot_id
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
                if not point.snapshot_arn:
                    raise AirflowFailException(f"{point.label}: source snapshot has no ARN")
                snap = rds.copy_snapshot(
                    self.clients.rds(dr),
                    source_region=point.source_region,
                    source_arn=point.snapshot_arn,
                    target_identifier=point.snapshot_id,
                    kms_key_arn=dr_key,
                    tags=tags,
                )
                point.dr_snapshot_id = point.snapshot_id
                point.dr_snapshot_arn = snap.get("DBSnapshotArn")
                point.dr_created_at = _iso(snap.get("SnapshotCreateTime"))
        except Exception as exc:
            if error_code(exc) in QUOTA_ERRORS:
                self.log.info("AWS copy quota reached in %s; waiting for a free slot.", dr)
                point.dr_snapshot_id = None
                return False
            raise
        point.dr_region = dr
        point.dr_kms_key_arn = dr_key
        self.log.info(
            "Copying %s %s -> %s/%s under %s",
            point.label,
            point.snapshot_id,
            dr,
            point.dr_snapshot_id,
            dr_key,
        )
        return True
