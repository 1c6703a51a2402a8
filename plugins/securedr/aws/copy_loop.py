"""The DR copy loop: start each copy as soon as AWS's concurrent-copy limit frees a slot.

One implementation, run in two places: a first pass in the Airflow worker (small runs finish
there) and the rest in the triggerer (:class:`securedr.triggers.dr_copy.DrCopyTrigger`), so a
night of thousands of copies costs one deferral, not one task resume per freed slot.

Every pass: one batched describe per (Region, kind) of the copies in flight, then the copies
the free slots allow. State is a plain dict (trigger kwargs and the event are JSON).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from securedr.aws import ebs, rds
from securedr.aws.clients import AsyncClientPool
from securedr.aws.errors import error_code
from securedr.aws.limits import classify_limit, error_message, is_transient, quota_message
from securedr.aws.snapshots import poll_async
from securedr.core.copy_slots import CopySlots
from securedr.core.model import (
    ROLE_DR_COPY,
    TAG_PLAN,
    TAG_ROLE,
    TAG_RUN_ID,
    TAG_SOURCE_SNAPSHOT,
    SnapshotRef,
    tags_to_dict,
)

log = logging.getLogger(__name__)

#: The fields of a recovery point the loop fills in (the rest of the point stays with the task).
RESULT_FIELDS = (
    "dr_region",
    "dr_snapshot_id",
    "dr_snapshot_arn",
    "dr_kms_key_arn",
    "dr_created_at",
    "dr_requested_at",
    "not_protected",
)


def percent(progress: str) -> float:
    """AWS's progress figure (EBS ``Progress`` "37%", RDS ``PercentProgress``) as a number."""
    try:
        return float(str(progress).strip().rstrip("%") or 0)
    except ValueError:
        return 0.0


def iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return None if value is None else str(value)


@dataclass
class CopyLoop:
    """One run's DR copies into ``dr``: what to copy, what happened, the slots, the deadline.

    ``requests`` maps a point's label to what its copy needs: ``kind``, ``source_region``,
    ``snapshot_id``, ``tags``, ``description`` (EBS) or ``source_arn``, ``identifier``,
    ``option_group`` (RDS). ``results`` maps a label to the :data:`RESULT_FIELDS` known so far.
    """

    dr: str
    dr_key: str
    plan: str
    run_id: str
    requests: dict[str, dict[str, Any]]
    slots: CopySlots
    deadline: float
    poll_seconds: float
    missing_grace_seconds: float
    copy_timeout_minutes: int
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Copies that completed while this loop watched them (for progress lines).
    completed: int = 0

    # -- state across deferrals ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "dr": self.dr,
            "dr_key": self.dr_key,
            "plan": self.plan,
            "run_id": self.run_id,
            "requests": self.requests,
            "slots": self.slots.to_dict(),
            "deadline": self.deadline,
            "poll_seconds": self.poll_seconds,
            "missing_grace_seconds": self.missing_grace_seconds,
            "copy_timeout_minutes": self.copy_timeout_minutes,
            "results": self.results,
            "completed": self.completed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CopyLoop:
        values = dict(data)
        values["slots"] = CopySlots.from_dict(values["slots"])
        return cls(**values)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, pool: AsyncClientPool) -> dict[str, Any]:
        """Start every copy (or rule it out), then return the event payload.

        Returns once nothing waits for a slot: copies still in flight are left to the sensor
        that follows. At the deadline, what never got a slot is ruled out by name.
        """
        await self.reconcile(pool)
        while True:
            await self.step(pool)
            now = time.time()
            if self.slots.all_started:
                return self.event("done")
            if now >= self.deadline:
                self._rule_out_at_deadline()
                return self.event("deadline")
            pause = self.slots.sleep_seconds(now, self.poll_seconds)
            await asyncio.sleep(max(0.05, min(pause, self.deadline - now)))

    def event(self, status: Literal["done", "deadline"]) -> dict[str, Any]:
        return {"status": status, "results": self.results, "summary": self.summary()}

    async def reconcile(self, pool: AsyncClientPool) -> None:
        """Pick up copies this run already started (a retried task, a restarted triggerer).

        EBS copies are found by their lineage tags, RDS copies by their deterministic
        identifier; either way a retry never starts a second copy of the same point. (A copy
        started within AWS's describe consistency window before a crash may not show yet; see
        the README on eventual consistency.)
        """
        waiting = self.slots.labels("waiting")
        ebs_waiting = {
            self.requests[label]["snapshot_id"]: label
            for label in waiting
            if self.requests[label]["kind"] == "ebs"
        }
        if ebs_waiting:
            found = await ebs.find_snapshots_async(
                await pool.get("ec2", self.dr),
                {TAG_PLAN: self.plan, TAG_RUN_ID: self.run_id, TAG_ROLE: ROLE_DR_COPY},
            )
            for snap in found:
                source = tags_to_dict(snap.get("Tags")).get(TAG_SOURCE_SNAPSHOT)
                label = ebs_waiting.get(source or "")
                if label and snap.get("State") != "error":
                    self._attach(
                        label,
                        snap["SnapshotId"],
                        None,
                        snap.get("KmsKeyId"),
                        iso(snap.get("StartTime")),
                    )
        rds_waiting = {
            self.requests[label]["identifier"]: label
            for label in waiting
            if self.requests[label]["kind"] == "rds"
        }
        if rds_waiting:
            found = await rds.describe_snapshots_async(
                await pool.get("rds", self.dr), list(rds_waiting)
            )
            for identifier, snap in found.items():
                self._attach(
                    rds_waiting[identifier],
                    identifier,
                    snap.get("DBSnapshotArn"),
                    snap.get("KmsKeyId"),
                    iso(snap.get("SnapshotCreateTime")),
                )

    def _attach(
        self,
        label: str,
        snapshot_id: str,
        arn: str | None,
        key: str | None,
        created_at: str | None,
    ) -> None:
        result = self.results.setdefault(label, {})
        result.update(
            dr_region=self.dr,
            dr_snapshot_id=snapshot_id,
            dr_snapshot_arn=arn,
            dr_kms_key_arn=key,
            dr_created_at=created_at,
        )
        self.slots.started(label)
        log.info("%s: DR copy %s already started by an earlier try; reused.", label, snapshot_id)

    async def step(self, pool: AsyncClientPool) -> None:
        """One pass: see which copies in flight finished, then fill the free slots."""
        finished_before = self.completed
        await self._poll(pool)
        now = time.time()
        started = 0
        blocked: set[str] = set()
        for label in self.slots.startable(now):
            kind = self.requests[label]["kind"]
            if kind in blocked:
                continue
            outcome = await self._start(pool, label)
            if outcome == "no_slot":
                self.slots.no_slot(kind, time.time())
                blocked.add(kind)
            elif outcome == "started":
                started += 1
        if started or self.completed != finished_before:
            log.info("DR copies into %s: %s (%d started now).", self.dr, self.summary(), started)

    def summary(self) -> str:
        s = self.slots
        return (
            f"{len(s.labels('done'))} finished, {s.in_flight} in flight, "
            f"{len(s.labels('waiting'))} waiting for a slot, "
            f"{len(s.labels('ruled_out'))} not protected"
        )

    async def _poll(self, pool: AsyncClientPool) -> None:
        flying = self.slots.labels("in_flight")
        if not flying:
            return
        refs = {label: self._ref(label) for label in flying}
        poll = await poll_async(pool, refs, self.missing_grace_seconds, "DR copies")
        if poll is None:
            return
        progress, keys, found = poll.progress, poll.labels, poll.found
        now = time.time()
        for key in progress.pending:
            label = keys[key]
            started_at = self.results[label].get("dr_requested_at")
            status = found.get(key)
            if started_at and status is not None:
                self.slots.progressed(label, started_at, now, percent(status.progress))
        for key in progress.completed:
            self.slots.finished(keys[key])
            self.completed += 1
        for key, reason in progress.failed.items():
            label = keys[key]
            self.slots.finished(label)
            result = self.results[label]
            result["not_protected"] = f"the DR copy {result['dr_snapshot_id']} failed: {reason}"
            log.error("NOT PROTECTED %s: %s", label, result["not_protected"])

    def _ref(self, label: str) -> SnapshotRef:
        result = self.results[label]
        return SnapshotRef(
            self.requests[label]["kind"],  # type: ignore[arg-type]
            self.dr,
            result["dr_snapshot_id"],
            requested_at=result.get("dr_requested_at"),
        )

    async def _start(
        self, pool: AsyncClientPool, label: str
    ) -> Literal["started", "no_slot", "ruled_out", "later"]:
        request = self.requests[label]
        requested_at = time.time()
        arn: str | None = None
        created_at: str | None = None
        try:
            if request["kind"] == "ebs":
                response = await (await pool.get("ec2", self.dr)).copy_snapshot(
                    **ebs.copy_request(
                        source_region=request["source_region"],
                        snapshot_id=request["snapshot_id"],
                        kms_key_arn=self.dr_key,
                        tags=request["tags"],
                        description=request["description"],
                    )
                )
                snapshot_id = str(response["SnapshotId"])
            else:
                snapshot_id = request["identifier"]
                try:
                    response = await (await pool.get("rds", self.dr)).copy_db_snapshot(
                        **rds.copy_request(
                            source_region=request["source_region"],
                            source_arn=request["source_arn"],
                            target_identifier=snapshot_id,
                            kms_key_arn=self.dr_key,
                            tags=request["tags"],
                            option_group=request.get("option_group"),
                        )
                    )
                    arn = response["DBSnapshot"].get("DBSnapshotArn")
                    created_at = iso(response["DBSnapshot"].get("SnapshotCreateTime"))
                except Exception as exc:
                    # This run's identifier: ours from an earlier try that describes did not
                    # show yet. Carried as in flight; the missing grace covers the describe lag.
                    if error_code(exc) != "DBSnapshotAlreadyExists":
                        raise
        except Exception as exc:
            return self._refused(label, exc)
        self.results[label] = {
            "dr_region": self.dr,
            "dr_snapshot_id": snapshot_id,
            "dr_snapshot_arn": arn,
            "dr_kms_key_arn": self.dr_key,
            "dr_created_at": created_at,
            "dr_requested_at": requested_at,
            "not_protected": None,
        }
        self.slots.started(label)
        log.info(
            "Copying %s %s -> %s/%s under %s",
            label,
            request["snapshot_id"],
            self.dr,
            snapshot_id,
            self.dr_key,
        )
        return "started"

    def _refused(self, label: str, exc: Exception) -> Literal["no_slot", "ruled_out", "later"]:
        verdict = classify_limit(exc)
        if verdict == "concurrency":
            log.info("AWS's concurrent-copy limit reached in %s (%s).", self.dr, error_message(exc))
            return "no_slot"
        if is_transient(exc):
            # botocore's standard mode already retried; the point stays queued for a later pass.
            log.warning("Copy of %s failed transiently (%s); trying again.", label, exc)
            return "later"
        if not error_code(exc):
            raise exc
        reason = (
            quota_message(exc, self.dr)
            if verdict == "quota"
            else f"the copy to {self.dr} was refused ({error_code(exc)}: {error_message(exc)})"
        )
        self.results[label] = {"not_protected": reason}
        self.slots.ruled_out(label)
        log.error("NOT PROTECTED %s: %s", label, reason)
        return "ruled_out"

    def _rule_out_at_deadline(self) -> None:
        for label in self.slots.labels("waiting"):
            reason = (
                f"no free copy slot in {self.dr} before the copy deadline "
                f"(waits.copy_timeout_minutes={self.copy_timeout_minutes}); other copies "
                "held AWS's concurrent-copy limit all night. Raise the timeout, or move "
                "other copy jobs away from this window"
            )
            self.results[label] = {"not_protected": reason}
            self.slots.ruled_out(label)
            log.error("NOT PROTECTED %s: %s", label, reason)
