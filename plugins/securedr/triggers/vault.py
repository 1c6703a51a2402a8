"""The trigger that runs the vault copy handshake in the triggerer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from asgiref.sync import sync_to_async

from securedr.aws.clients import AwsClients
from securedr.aws.vault import VaultLoop, assume_vault_role


class VaultCopyTrigger(BaseTrigger):
    """Share, copy into the vault and lock every point, then fire one event.

    Fires ``{"status": "done" | "deadline", "results": {label: fields}, "summary": ...}`` once
    every vault copy is completed and locked (RDS: available) or failed, or the run's absolute
    copy deadline passes. The trigger holds no credentials: it assumes the vault intake role
    itself (external id from its Airflow Variable), and the session renews itself for copies
    that take longer than an hour. A restarted triggerer starts from the kwargs and first picks
    up the vault copies already started (lineage tags, deterministic RDS identifiers), so no
    point is copied twice; the deadline is absolute, so restarts do not extend it.
    """

    def __init__(
        self,
        *,
        loop: dict[str, Any],
        role_arn: str,
        external_id_variable: str,
        aws_conn_id: str | None = "aws_default",
    ) -> None:
        super().__init__()
        self.loop = loop
        self.role_arn = role_arn
        self.external_id_variable = external_id_variable
        self.aws_conn_id = aws_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "loop": self.loop,
                "role_arn": self.role_arn,
                "external_id_variable": self.external_id_variable,
                "aws_conn_id": self.aws_conn_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self.copy())

    async def copy(self) -> dict[str, Any]:
        """Run the handshake to its end and return the event payload."""
        loop = VaultLoop.from_dict(self.loop)
        vault_clients = await sync_to_async(assume_vault_role)(
            self.aws_conn_id,
            role_arn=self.role_arn,
            external_id_variable=self.external_id_variable,
            region=loop.region,
            run_id=loop.run_id,
        )
        async with (
            AwsClients(self.aws_conn_id).async_clients() as workload,
            vault_clients.async_clients() as vault,
        ):
            return await loop.run(workload, vault)
