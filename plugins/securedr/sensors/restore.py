"""The sensor that waits for restored volumes and DB instances to become available."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

from securedr.aws.restore import restored_states
from securedr.operators.audit import RestoreStepMixin
from securedr.triggers.restore import RestoredResourcesTrigger, summarise


class RestoredResourcesSensor(RestoreStepMixin, BaseSensorOperator):
    """Wait until every restored volume is ``available`` and every DB instance ``available``.

    Guarantees: one batched describe per (Region, kind) per poll, under the restore role; a
    resource that fails or disappears fails the task at the next poll, by name, with the state
    AWS reported - except that one not yet in describes within
    :data:`securedr.core.restore.NOT_FOUND_GRACE_SECONDS` of its creation request is pending
    (AWS describes are eventually consistent); the wait is bounded by ``timeout_minutes``
    (default: the plan's ``waits.snapshot_timeout_minutes``), not by a botocore waiter. Checks
    once before deferring, so resources that are already available cost no deferral. With
    ``deferrable=True`` (default) the wait runs in the triggerer and holds no worker slot.

    :param restored: the results of the restore tasks (a list, or a list of lists)
    """

    template_fields: Sequence[str] = ("restored", "plan_path")
    ui_color = "#fef3c7"

    def __init__(
        self,
        *,
        restored: Any,
        deferrable: bool = True,
        timeout_minutes: float | None = None,
        poll_seconds: float | None = None,
        plan_path: str | None = None,
        aws_conn_id: str | None = "aws_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.restored = restored
        self.deferrable = deferrable
        self.timeout_minutes = timeout_minutes
        self.poll_seconds = poll_seconds
        self.plan_path = plan_path
        self.aws_conn_id = aws_conn_id

    def _refs(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for group in self.restored or []:
            items.extend([group] if isinstance(group, dict) else list(group or []))
        # requested_at lets a resource that describes do not show yet, right after its
        # creation, count as pending for a grace period instead of failing the wait.
        return [
            {
                "kind": i["kind"],
                "region": i["region"],
                "resource_id": i["resource_id"],
                "requested_at": i.get("requested_at"),
            }
            for i in items
            if i.get("resource_id")
        ]

    def _wait_seconds(self) -> float:
        minutes = self.timeout_minutes or self.plan.waits.snapshot_timeout_minutes
        return float(minutes) * 60

    def execute(self, context: Any) -> Any:
        run_id = self.bind_run(context)
        refs = self._refs()
        if not refs:
            self.log.info("Nothing was restored (dry run or no points); nothing to wait for.")
            return None
        if self._check(context, refs):
            return None
        poll = self.poll_seconds or self.plan.waits.poll_seconds
        if not self.deferrable:
            self.poke_interval = poll
            self.timeout = self._wait_seconds()
            return super().execute(context)
        plan = self.plan
        role = self.role_settings()  # the vault recovery role for a restore from the vault
        self.defer(
            trigger=RestoredResourcesTrigger(
                refs=refs,
                run_id=run_id,
                role_arn=role.role_arn,
                external_id_variable=role.external_id_variable,
                sts_region=plan.regions.dr,
                aws_conn_id=role.aws_conn_id,
                poll_seconds=poll,
                timeout_seconds=self._wait_seconds(),
            ),
            method_name="execute_complete",
            # A backstop only: the trigger reports its own timeout with the pending names.
            timeout=timedelta(seconds=self._wait_seconds() + 10 * poll),
        )

    def _check(self, context: Any, refs: list[dict[str, Any]]) -> bool:
        progress = summarise(restored_states(self.clients, refs))
        self.log.info("Restored resources: %d/%d available.", len(progress["completed"]), len(refs))
        if progress["failed"]:
            self._fail(context, progress["failed"])
        return not progress["pending"]

    def poke(self, context: Any) -> bool:
        self.bind_run(context)
        return self._check(context, self._refs())

    def execute_complete(self, context: Any, event: dict[str, Any]) -> None:
        self.bind_run(context)
        status = event.get("status")
        if status == "error":
            self._fail(context, event["failed"])
        if status == "timeout":
            raise AirflowFailException(
                f"Gave up after {self._wait_seconds() / 60:.0f} minutes; still not available: "
                + ", ".join(event.get("pending", []))
                + ". Check the resources in the console; raise timeout_minutes if restores of "
                "this size need longer."
            )
        self.log.info("All %d restored resource(s) available.", len(event["completed"]))

    def _fail(self, context: Any, failed: dict[str, str]) -> None:
        for key, reason in failed.items():
            self.audit(
                context,
                action="restore.wait",
                resource=key,
                outcome="failed",
                details={"reason": reason},
            )
        lines = "; ".join(f"{k}: {reason}" for k, reason in failed.items())
        raise AirflowFailException(f"{len(failed)} restored resource(s) failed: {lines}")
