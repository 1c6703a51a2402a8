"""Copy every recovery point to the DR Region, re-encrypted under the DR Region's key."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from securedr.aws import rds
from securedr.aws.copy_loop import RESULT_FIELDS, CopyLoop
from securedr.aws.snapshots import grace_deadlines, ref_key, statuses
from securedr.core.copy_slots import CopySlots
from securedr.core.copy_window import copy_slots
from securedr.core.model import (
    ROLE_DR_COPY,
    TAG_SOURCE_SNAPSHOT,
    RecoveryPoint,
    lineage_tags,
    rds_dr_copy_identifier,
)
from securedr.core.status import evaluate
from securedr.operators.base import SecureDrOperator, run_identity
from securedr.triggers.dr_copy import DrCopyTrigger


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
      for one of our own copies of that kind to finish, or ``waits.quota_wait_seconds`` when
      none is in flight (a timed wait, never a defer/resume loop);
    - a copy starts as soon as a slot frees: the first pass runs here, the rest of the slot loop
      in the triggerer (:class:`~securedr.triggers.dr_copy.DrCopyTrigger`), so a night of
      thousands of copies costs one deferral and one resume, not one per freed slot; each pass
      costs one batched describe per (Region, kind) of the copies in flight;
    - a hard quota (RDS manual snapshots), a refused copy, a failed source snapshot or a failed
      copy rules out THAT resource (``not_protected`` says why and what to do); the others go on;
    - one absolute deadline (``waits.copy_timeout_minutes`` from the try's start) holds in the
      triggerer across restarts; a resource still without a slot then is ruled out, by name;
    - idempotent: copies a retried task or a restarted triggerer started are found by their
      lineage tags (EBS) or deterministic identifier (RDS) and reused, so retries never
      duplicate a copy; "not found" right after a request is pending for
      ``waits.missing_grace_seconds``;
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
        _, run_id = run_identity(context)
        plan = self.plan
        waits = plan.waits
        dr = plan.regions.dr
        points = [RecoveryPoint.from_dict(p) for p in self.points or []]
        self._rule_out_failed_sources(points)
        todo = [p for p in points if p.protected and not p.dr_snapshot_id]
        self._resolve_rds_arns(todo)
        loop = CopyLoop(
            dr=dr,
            dr_key=self.key_arn(dr),
            plan=plan.name,
            run_id=run_id,
            requests={p.label: self._request(p, run_id, dr) for p in todo},
            slots=CopySlots(
                limit=waits.max_copies_in_flight,
                quota_wait_seconds=waits.quota_wait_seconds,
                kinds={p.label: p.kind for p in todo},
                # The same slots pre-flight's copy-window estimate counts with.
                kind_limits=copy_slots(waits.max_copies_in_flight, plan.rds.concurrent_copy_quota),
            ),
            deadline=time.time() + waits.copy_timeout_minutes * 60,
            poll_seconds=waits.poll_seconds,
            missing_grace_seconds=waits.missing_grace_seconds,
            copy_timeout_minutes=waits.copy_timeout_minutes,
            results={
                p.label: {"not_protected": p.not_protected} for p in points if not p.protected
            },
        )
        # First pass here: picks up copies an earlier try started and fills the free slots, so a
        # run that fits in the slots never defers.
        asyncio.run(self._first_pass(loop))
        if loop.slots.all_started:
            return self._merge(points, loop.event("done"))
        trigger = DrCopyTrigger(loop=loop.to_dict(), aws_conn_id=self.aws_conn_id)
        self.log.info(
            "DR copies into %s: %s; the triggerer starts the rest as slots free.",
            dr,
            loop.summary(),
        )
        if not self.deferrable:
            return self._merge(points, asyncio.run(trigger.copy()))
        left = max(1.0, loop.deadline - time.time())
        self.defer(
            trigger=trigger,
            method_name="resume",
            timeout=timedelta(seconds=left + 600),
        )
        return None

    def resume(self, context: Any, event: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        if not isinstance(event, dict) or "results" not in event:
            raise AirflowFailException(f"the DR copy loop ended without its results: {event!r}")
        points = [RecoveryPoint.from_dict(p) for p in self.points or []]
        return self._merge(points, event)

    def _merge(self, points: list[RecoveryPoint], event: dict[str, Any]) -> list[dict[str, Any]]:
        results = event.get("results") or {}
        for point in points:
            for name, value in (results.get(point.label) or {}).items():
                if name in RESULT_FIELDS:
                    setattr(point, name, value)
        self.log.info("DR copies: %s.", event.get("summary"))
        if event.get("status") == "deadline":
            self.log.error("The copy deadline passed before every resource got a copy slot.")
        return [p.to_dict() for p in points]

    async def _first_pass(self, loop: CopyLoop) -> None:
        async with self.clients.async_clients() as pool:
            await loop.reconcile(pool)
            await loop.step(pool)

    def _request(self, point: RecoveryPoint, run_id: str, dr: str) -> dict[str, Any]:
        """What the copy loop needs to copy ``point`` (lineage tags, names, option group)."""
        tags = lineage_tags(
            plan=self.plan.name,
            run_id=run_id,
            kind=point.kind,
            source_id=point.source_id,
            source_region=point.source_region,
            role=ROLE_DR_COPY,
        )
        tags[TAG_SOURCE_SNAPSHOT] = point.snapshot_id
        request: dict[str, Any] = {
            "kind": point.kind,
            "source_region": point.source_region,
            "snapshot_id": point.snapshot_id,
            "tags": tags,
        }
        if point.kind == "ebs":
            request["description"] = f"SecureDR DR copy of {point.snapshot_id} ({point.source_id})"
            return request
        request["source_arn"] = point.snapshot_arn
        request["identifier"] = rds_dr_copy_identifier(point.snapshot_id, point.source_region)
        request["option_group"] = self._option_group(point)
        return request

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

    def _resolve_rds_arns(self, points: list[RecoveryPoint]) -> None:
        """Source ARNs of RDS snapshots created just before describes could show them (one
        batched describe per source Region)."""
        missing: dict[str, list[RecoveryPoint]] = {}
        for point in points:
            if point.kind == "rds" and not point.snapshot_arn:
                missing.setdefault(point.source_region, []).append(point)
        for region, group in missing.items():
            found = rds.describe_snapshots(self.clients.rds(region), [p.snapshot_id for p in group])
            for point in group:
                point.snapshot_arn = (found.get(point.snapshot_id) or {}).get("DBSnapshotArn")
                if not point.snapshot_arn:
                    raise AirflowFailException(f"{point.label}: source snapshot has no ARN yet")

    def _option_group(self, point: RecoveryPoint) -> str | None:
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
        return option_group
