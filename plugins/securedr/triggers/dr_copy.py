"""The trigger that runs the DR copy loop in the triggerer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from securedr.aws.clients import AwsClients
from securedr.aws.copy_loop import CopyLoop


class DrCopyTrigger(BaseTrigger):
    """Start every DR copy as soon as a slot frees, then fire one event.

    The whole slot loop runs here (:class:`~securedr.aws.copy_loop.CopyLoop`): a copy that
    finishes frees its slot for the next one within one poll, with no task resume in between.
    Fires ``{"status": "done" | "deadline", "results": {label: fields}, "summary": ...}`` once
    nothing waits for a slot any more (copies may still be in flight; the sensor that follows
    waits for them) or the run's absolute copy deadline passes.

    Guarantees: clients are built once per run of the trigger; a restarted triggerer starts
    from the kwargs and first picks up the copies already started (lineage tags, deterministic
    RDS identifiers), so it does not copy a point twice; the deadline is absolute (epoch
    seconds), so restarts do not extend it.
    """

    def __init__(self, *, loop: dict[str, Any], aws_conn_id: str | None = "aws_default") -> None:
        super().__init__()
        self.loop = loop
        self.aws_conn_id = aws_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"loop": self.loop, "aws_conn_id": self.aws_conn_id},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # The clients are closed before the event is yielded: the triggerer may drop the
        # generator right after its first event.
        yield TriggerEvent(await self.copy())

    async def copy(self) -> dict[str, Any]:
        """Run the loop to its end and return the event payload."""
        loop = CopyLoop.from_dict(self.loop)
        async with AwsClients(self.aws_conn_id).async_clients() as pool:
            return await loop.run(pool)
