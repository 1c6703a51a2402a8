"""The sensor that waits for recovery points (source snapshots) or DR copies to complete."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

from securedr.aws.snapshots import grace_deadlines, ref_key, statuses
from securedr.core.model import RecoveryPoint, SnapshotRef
from securedr.core.status import evaluate
from securedr.operators.base import SecureDrMixin
from securedr.triggers.recovery_points import RecoveryPointsTrigger


class RecoveryPointsSensor(SecureDrMixin, BaseSensorOperator):
    """Wait until every snapshot of ``points`` completes or fails; name every one that fails.

    Guarantees: one batched describe per (Region, kind) per poll, whatever the number of
    snapshots; a snapshot that enters ``error`` is logged by name with the reason AWS gave and no
    longer waited for, while the others still are (per-resource isolation: the copy step marks
    that resource not protected, and the run's report fails naming it); points already ruled out
    upstream are skipped; "not found" within ``waits.missing_grace_seconds`` of the request is
    pending (eventual consistency); the overall wait is bounded by the plan's ``waits`` (or
    ``timeout_minutes``), not by a botocore waiter's retry limit. With ``deferrable=True``
    (default) the wait runs in the triggerer and holds no worker slot.

    :param points: recovery points (dicts) from the upstream step
    :param location: ``"source"`` to wait for the source snapshots, ``"dr"`` for the DR copies
    """

    template_fields: Sequence[str] = ("points", "plan_path")
    ui_color = "#fef3c7"

    def __init__(
        self,
        *,
        points: Any,
        location: Literal["source", "dr"],
        deferrable: bool = True,
        timeout_minutes: float | None = None,
        poll_seconds: float | None = None,
        plan_path: str | None = None,
        aws_conn_id: str | None = "aws_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.points = points
        self.location = location
        self.deferrable = deferrable
        self.timeout_minutes = timeout_minutes
        self.poll_seconds = poll_seconds
        self.plan_path = plan_path
        self.aws_conn_id = aws_conn_id

    def _points(self) -> list[RecoveryPoint]:
        points = [RecoveryPoint.from_dict(p) for p in self.points or []]
        if self.location == "dr":
            return [p for p in points if p.protected and p.dr_snapshot_id]
        return [p for p in points if p.protected and p.snapshot_id]

    def _refs(self, excluded: Sequence[str] = ()) -> list[SnapshotRef]:
        points = self._points()
        refs = [p.source_ref if self.location == "source" else p.dr_ref for p in points]
        return [r for r in refs if ref_key(r) not in set(excluded)]

    def _labels(self) -> dict[str, str]:
        points = self._points()
        refs = [p.source_ref if self.location == "source" else p.dr_ref for p in points]
        return {ref_key(r): p.label for r, p in zip(refs, points, strict=True)}

    def _wait_seconds(self) -> float:
        if self.timeout_minutes is not None:
            return self.timeout_minutes * 60
        waits = self.plan.waits
        minutes = (
            waits.snapshot_timeout_minutes
            if self.location == "source"
            else waits.copy_timeout_minutes
        )
        return minutes * 60

    def execute(
        self,
        context: Any,
        excluded: list[str] | None = None,
        deadline: float | None = None,
    ) -> Any:
        refs = self._refs(excluded or [])
        if not refs:
            self.log.info("No %s snapshots to wait for.", self.location)
            return None
        self.log.info("Waiting for %d %s snapshot(s).", len(refs), self.location)
        poll = self.poll_seconds or self.plan.waits.poll_seconds
        if not self.deferrable:
            self.poke_interval = poll
            self.timeout = self._wait_seconds()
            return super().execute(context)
        deadline = deadline or time.time() + self._wait_seconds()
        remaining = max(1.0, deadline - time.time())
        self.defer(
            trigger=RecoveryPointsTrigger(
                refs=[r.to_dict() for r in refs],
                aws_conn_id=self.aws_conn_id,
                poll_seconds=poll,
                timeout_seconds=remaining,
                missing_grace_seconds=self.plan.waits.missing_grace_seconds,
            ),
            method_name="execute_complete",
            kwargs={"excluded": list(excluded or []), "deadline": deadline},
            # A backstop only: the trigger reports its own timeout with the pending names.
            timeout=timedelta(seconds=remaining + 10 * poll),
        )

    def poke(self, context: Any) -> bool:
        refs = self._refs()
        progress = evaluate(
            [ref_key(r) for r in refs],
            statuses(self.clients, refs),
            missing_grace_until=grace_deadlines(refs, self.plan.waits.missing_grace_seconds),
            now=time.time(),
        )
        self.log.info("%s snapshots: %s", self.location, progress.summary())
        if progress.failed:
            self._report_failed(progress.failed)
        return not progress.pending

    def execute_complete(
        self,
        context: Any,
        event: dict[str, Any],
        excluded: list[str] | None = None,
        deadline: float | None = None,
    ) -> None:
        status = event.get("status")
        if status == "error":
            self._report_failed(event["failed"])
            excluded = sorted({*(excluded or []), *event["failed"]})
            return self.execute(context, excluded=excluded, deadline=deadline)
        if status == "timeout":
            labels = self._labels()
            names = ", ".join(f"{labels.get(k, k)} ({k})" for k in event["pending"])
            raise AirflowFailException(
                f"Gave up after {self._wait_seconds() / 60:.0f} minutes; still pending: {names}. "
                "Raise the plan's waits if copies of this size need longer."
            )
        self.log.info("All %d %s snapshot(s) completed.", len(event["completed"]), self.location)
        return None

    def _report_failed(self, failed: dict[str, str]) -> None:
        labels = self._labels()
        for key, reason in failed.items():
            self.log.error(
                "%s snapshot of %s (%s) failed: %s; that resource is not protected tonight, the "
                "others go on.",
                self.location,
                labels.get(key, key),
                key,
                reason,
            )
