"""The trigger that waits for restored volumes and DB instances, in the triggerer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from asgiref.sync import sync_to_async

from securedr.aws.restore import restored_states_async
from securedr.aws.sts import assume_restore_role

#: Re-assume the restore role when the session has less than this left (sessions last <= 1 h).
REFRESH_SECONDS = 300


def summarise(states: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """Split ``ref_key -> (state, detail)`` into completed / pending / failed (with reasons)."""
    return {
        "completed": sorted(k for k, (s, _) in states.items() if s == "completed"),
        "pending": sorted(k for k, (s, _) in states.items() if s == "pending"),
        "failed": {k: d for k, (s, d) in sorted(states.items()) if s == "failed"},
    }


class RestoredResourcesTrigger(BaseTrigger):
    """Poll restored resources under the restore role, one batched describe per (Region, kind).

    The trigger holds no credentials: it assumes the role itself (external id from its Airflow
    Variable) and again before the session expires. Fires exactly one event:

    - ``{"status": "success", "completed": [...]}`` when every resource is available;
    - ``{"status": "error", "failed": {key: reason}, ...}`` as soon as one fails or disappears;
    - ``{"status": "timeout", "pending": [...], ...}`` when ``timeout_seconds`` pass first.
    """

    def __init__(
        self,
        *,
        refs: list[dict[str, Any]],
        run_id: str,
        role_arn: str | None,
        external_id_variable: str,
        sts_region: str,
        aws_conn_id: str | None = "aws_default",
        poll_seconds: float = 30,
        timeout_seconds: float = 6 * 3600,
        started_at: float | None = None,
    ) -> None:
        super().__init__()
        self.refs = refs
        self.run_id = run_id
        self.role_arn = role_arn
        self.external_id_variable = external_id_variable
        self.sts_region = sts_region
        self.aws_conn_id = aws_conn_id
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        # Wall-clock start, kept across triggerer restarts so the timeout is not reset.
        self.started_at = started_at if started_at is not None else time.time()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "refs": self.refs,
                "run_id": self.run_id,
                "role_arn": self.role_arn,
                "external_id_variable": self.external_id_variable,
                "sts_region": self.sts_region,
                "aws_conn_id": self.aws_conn_id,
                "poll_seconds": self.poll_seconds,
                "timeout_seconds": self.timeout_seconds,
                "started_at": self.started_at,
            },
        )

    async def _assume(self) -> Any:
        return await sync_to_async(assume_restore_role)(
            self.aws_conn_id,
            region=self.sts_region,
            role_arn=self.role_arn,
            external_id_variable=self.external_id_variable,
            run_id=self.run_id,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        clients = await self._assume()
        while True:
            if clients.expires_within(REFRESH_SECONDS):
                clients = await self._assume()
            progress = summarise(await restored_states_async(clients, self.refs))
            self.log.info(
                "Restored resources: %d available, %d pending, %d failed",
                len(progress["completed"]),
                len(progress["pending"]),
                len(progress["failed"]),
            )
            if progress["failed"]:
                yield TriggerEvent({"status": "error", **progress})
                return
            if not progress["pending"]:
                yield TriggerEvent({"status": "success", **progress})
                return
            if time.time() - self.started_at > self.timeout_seconds:
                yield TriggerEvent({"status": "timeout", **progress})
                return
            await asyncio.sleep(self.poll_seconds)
