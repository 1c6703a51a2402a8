"""The trigger that waits for many snapshots at once, in the triggerer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from airflow.triggers.base import BaseTrigger, TriggerEvent

from securedr.aws.clients import AwsClients
from securedr.aws.snapshots import ref_key, statuses_async
from securedr.core.model import SnapshotRef
from securedr.core.status import evaluate


class RecoveryPointsTrigger(BaseTrigger):
    """Poll snapshots with one batched describe per (Region, kind) per poll.

    Fires exactly one event:

    - ``{"status": "success", ...}`` when every snapshot completed (``until="all"``) or at least
      one snapshot completed (``until="any"``, used to free copy slots);
    - ``{"status": "error", "failed": {key: reason}}`` as soon as any snapshot fails, with the
      reason AWS reported;
    - ``{"status": "timeout", "pending": [...]}`` when ``timeout_seconds`` pass first.
    """

    def __init__(
        self,
        *,
        refs: list[dict[str, Any]],
        aws_conn_id: str | None = "aws_default",
        poll_seconds: float = 30,
        timeout_seconds: float = 6 * 3600,
        until: Literal["all", "any"] = "all",
        started_at: float | None = None,
    ) -> None:
        super().__init__()
        self.refs = refs
        self.aws_conn_id = aws_conn_id
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.until = until
        # Wall-clock start, kept across triggerer restarts so the timeout is not reset.
        self.started_at = started_at if started_at is not None else time.time()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "refs": self.refs,
                "aws_conn_id": self.aws_conn_id,
                "poll_seconds": self.poll_seconds,
                "timeout_seconds": self.timeout_seconds,
                "until": self.until,
                "started_at": self.started_at,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        refs = [SnapshotRef.from_dict(r) for r in self.refs]
        keys = [ref_key(r) for r in refs]
        clients = AwsClients(self.aws_conn_id)
        while True:
            progress = evaluate(keys, await statuses_async(clients, refs))
            self.log.info("Recovery points: %s", progress.summary())
            if progress.failed:
                yield TriggerEvent(
                    {"status": "error", "failed": progress.failed, "completed": progress.completed}
                )
                return
            if not progress.pending or (self.until == "any" and progress.completed):
                yield TriggerEvent(
                    {
                        "status": "success",
                        "completed": progress.completed,
                        "pending": progress.pending,
                    }
                )
                return
            if time.time() - self.started_at > self.timeout_seconds:
                yield TriggerEvent(
                    {
                        "status": "timeout",
                        "pending": progress.pending,
                        "completed": progress.completed,
                    }
                )
                return
            await asyncio.sleep(self.poll_seconds)
