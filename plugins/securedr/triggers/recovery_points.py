"""The trigger that waits for many snapshots at once, in the triggerer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from airflow.triggers.base import BaseTrigger, TriggerEvent

from securedr.aws.clients import AsyncClientPool, AwsClients
from securedr.aws.limits import is_transient
from securedr.aws.snapshots import grace_deadlines, ref_key, statuses_async
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

    Guarantees: the aiobotocore clients are built once per run of the trigger, not once per
    poll (each build is a session, and an AssumeRole when the connection has a ``role_arn``);
    they use botocore's standard retry mode, and a poll that still fails with throttling, a 5xx
    or a connection error is logged and polled again, never fatal. A snapshot requested less
    than ``missing_grace_seconds`` ago that describes do not show yet counts as pending.
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
        missing_grace_seconds: float = 300,
    ) -> None:
        super().__init__()
        self.refs = refs
        self.aws_conn_id = aws_conn_id
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.until = until
        # Wall-clock start, kept across triggerer restarts so the timeout is not reset.
        self.started_at = started_at if started_at is not None else time.time()
        self.missing_grace_seconds = missing_grace_seconds

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
                "missing_grace_seconds": self.missing_grace_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        refs = [SnapshotRef.from_dict(r) for r in self.refs]
        keys = [ref_key(r) for r in refs]
        grace = grace_deadlines(refs, self.missing_grace_seconds)
        # The clients are closed before the event is yielded: the triggerer may drop the
        # generator right after its first event.
        yield await self._wait(refs, keys, grace)

    async def _wait(
        self, refs: list[SnapshotRef], keys: list[str], grace: dict[str, float]
    ) -> TriggerEvent:
        async with AwsClients(self.aws_conn_id).async_clients() as pool:
            while True:
                event = await self._poll(pool, refs, keys, grace)
                if event is not None:
                    return event
                await asyncio.sleep(self.poll_seconds)

    async def _poll(
        self,
        pool: AsyncClientPool,
        refs: list[SnapshotRef],
        keys: list[str],
        grace: dict[str, float],
    ) -> TriggerEvent | None:
        """One poll: the event to fire, or None to poll again."""
        timed_out = time.time() - self.started_at > self.timeout_seconds
        try:
            found = await statuses_async(pool, refs)
        except Exception as exc:
            if not is_transient(exc):
                raise
            # botocore already retried this call; the next poll asks again.
            self.log.warning("Polling snapshots failed transiently (%s); polling again.", exc)
            if timed_out:
                return TriggerEvent({"status": "timeout", "pending": keys, "completed": []})
            return None
        progress = evaluate(keys, found, missing_grace_until=grace, now=time.time())
        self.log.info("Recovery points: %s", progress.summary())
        if progress.failed:
            return TriggerEvent(
                {"status": "error", "failed": progress.failed, "completed": progress.completed}
            )
        if not progress.pending or (self.until == "any" and progress.completed):
            return TriggerEvent(
                {"status": "success", "completed": progress.completed, "pending": progress.pending}
            )
        if timed_out:
            return TriggerEvent(
                {"status": "timeout", "pending": progress.pending, "completed": progress.completed}
            )
        return None
