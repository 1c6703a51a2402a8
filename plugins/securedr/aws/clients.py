"""Per-Region AWS clients built on the Amazon provider's hooks.

Credentials, assumed roles and endpoints come from the Airflow connection (``aws_default`` unless
the plan or the operator says otherwise), exactly as for the provider's own operators; with
``AWS_ENDPOINT_URL`` set both boto3 and aiobotocore talk to that endpoint instead of AWS.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from securedr.aws.errors import ServiceClients, chunks, error_code, retry_config

__all__ = ["AwsClients", "chunks", "error_code"]


# Building a botocore client parses the service model (about half a second for EC2), and one
# task talks to several services in several Regions, so clients are shared for the life of the
# process. botocore clients are thread-safe and refresh assumed-role credentials themselves.
_CLIENTS: dict[tuple[str | None, str, str, str | None], Any] = {}
_LOCK = threading.Lock()


class AwsClients(ServiceClients):
    """boto3 clients, one per (service, Region), for one Airflow AWS connection."""

    def __init__(self, aws_conn_id: str | None = "aws_default") -> None:
        self.aws_conn_id = aws_conn_id

    def hook(self, service: str, region: str) -> AwsBaseHook:
        # The same retry policy for the boto3 client (``.conn``) and the aiobotocore one
        # (``get_async_conn``): the hook hands ``config`` to both.
        return AwsBaseHook(
            aws_conn_id=self.aws_conn_id,
            client_type=service,
            region_name=region,
            config=retry_config(),
        )

    def client(self, service: str, region: str) -> Any:
        key = (self.aws_conn_id, service, region, os.environ.get("AWS_ENDPOINT_URL"))
        with _LOCK:
            if key not in _CLIENTS:
                _CLIENTS[key] = self.hook(service, region).conn
            return _CLIENTS[key]

    @asynccontextmanager
    async def async_client(self, service: str, region: str) -> AsyncIterator[Any]:
        """An aiobotocore client for use inside a trigger's event loop."""
        async with await self.hook(service, region).get_async_conn() as client:
            yield client

    @asynccontextmanager
    async def async_clients(self) -> AsyncIterator[AsyncClientPool]:
        """aiobotocore clients built on first use and kept until the block ends.

        A trigger opens this once per run: building a client builds a session (and, with a
        ``role_arn`` on the connection, calls AssumeRole), so it must not happen on every poll.
        """
        async with AsyncExitStack() as stack:
            yield AsyncClientPool(self, stack)


class AsyncClientPool:
    """One aiobotocore client per (service, Region), alive for the pool's ``async with``."""

    def __init__(self, clients: AwsClients, stack: AsyncExitStack) -> None:
        self._clients = clients
        self._stack = stack
        self._open: dict[tuple[str, str], Any] = {}
        self.built = 0

    async def get(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._open:
            conn = await self._clients.hook(service, region).get_async_conn()
            self._open[key] = await self._stack.enter_async_context(conn)
            self.built += 1
        return self._open[key]
