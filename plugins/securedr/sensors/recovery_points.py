"""The sensor that waits for recovery points (source snapshots) or DR copies to complete."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

from securedr.aws.snapshots import ref_key, statuses
from securedr.core.model import RecoveryPoint, SnapshotRef
from securedr.core.status import evaluate
from securedr.operators.base import SecureDrMixin
from securedr.triggers.recovery_points import RecoveryPointsTrigger


class RecoveryPointsSensor(SecureDrMixin, BaseSensorOperator):
    """Wait until every snapshot of ``points`` completes; fail fast, by name, if one fails.

    Guarantees: one batched describe per (Region, kind) per poll, whatever the number of
    snapshots; a snapshot that enters ``error`` fails the task at the next poll with the reason AWS
    gave; the overall wait is bounded by the plan's ``waits`` (or ``timeout_minutes``), not by a
    botocore waiter's retry limit. With ``deferrable=True`` (default) the wait runs in the
    triggerer and holds no worker slot.

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
        return [RecoveryPoint.from_dict(p) for p in self.points or []]

    def _refs(self) -> list[SnapshotRef]:
        points = self._points()
        return [p.source_ref if self.location == "source" else p.dr_ref for p in points]

    def _labels(self) -> dict[str, str]:
        points = self._points()
        refs = self._refs()
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

    def execute(self, context: Any) -> Any:
        refs = self._refs()
        if not refs:
            self.log.info("No %s snapshots to wait for.", self.location)
            return None
        self.log.info("Waiting for %d %s snapshot(s).", len(refs), self.location)
        poll = self.poll_seconds or self.plan.waits.poll_seconds
        if not self.deferrable:
            self.poke_interval = poll
            self.timeout = self._wait_seconds()
            return super().execute(context)
        self.defer(
            trigger=RecoveryPointsTrigger(
                refs=[r.to_dict() for r in refs],
                aws_conn_id=self.aws_conn_id,
                poll_seconds=poll,
                timeout_seconds=self._wait_seconds(),
            ),
            method_name="execute_complete",
            # A backstop only: the trigger reports its own timeout with the pending names.
            timeout=timedelta(seconds=self._wait_seconds() + 10 * poll),
        )

    def poke(self, context: Any) -> bool:
        refs = self._refs()
        progress = evaluate([ref_key(r) for r in refs], statuses(self.clients, refs))
        self.log.info("%s snapshots: %s", self.location, progress.summary())
        if progress.failed:
            self._fail(progress.failed)
        return not progress.pending

    def execute_complete(self, context: Any, event: dict[str, Any]) -> None:
        status = event.get("status")
        if status == "error":
            self._fail(event["failed"])
        if status == "timeout":
            labels = self._labels()
            names = ", ".join(f"{labels.get(k, k)} ({k})" for k in event["pending"])
            raise AirflowFailException(
                f"Gave up after {self._wait_seconds() / 60:.0f} minutes; still pending: {names}. "
                "Raise the plan's waits if copies of this size need longer."
            )
        self.log.info("All %d %s snapshot(s) completed.", len(event["completed"]), self.location)

    def _fail(self, failed: dict[str, str]) -> None:
        labels = self._labels()
        lines = "; ".join(f"{labels.get(k, k)} ({k}): {reason}" for k, reason in failed.items())
        raise AirflowFailException(f"{len(failed)} {self.location} snapshot(s) failed: {lines}")
