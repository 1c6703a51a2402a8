"""The restore role: short-lived STS credentials for everything a restore does in AWS.

A restore never uses the Airflow connection's own permissions for its work. It assumes the
plan's dedicated role (``restore.role_arn``) with an external id (Airflow Variable named by
``restore.external_id_variable``), a session name that carries the run's token (so CloudTrail
ties every call to the run), and a session of at most one hour. :class:`AssumedRoleClients`
then offers the same ``client(service, region)`` / ``async_client`` interface as
:class:`securedr.aws.clients.AwsClients`, so adapters do not care which one they get.

Guarantees: credentials live only in memory, never appear in ``repr``, logs or exceptions;
``AWS_ENDPOINT_URL`` is honoured exactly as for the connection's clients (sandbox).
"""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session

from securedr.aws.errors import ServiceClients, error_code
from securedr.core.manifest import run_token

#: AWS caps role chaining at one hour; SecureDR never asks for more.
MAX_SESSION_SECONDS = 3600
MIN_SESSION_SECONDS = 900
SESSION_PREFIX = "securedr-restore-"
_EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
_ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")


_SESSION_LOCK = threading.RLock()
_SESSION: botocore.session.Session | None = None


def _shared_session() -> botocore.session.Session:
    """One botocore session per process: clients share its parsed service models (loading
    them again for every task's credentials costs ~0.2 s per client). Credentials are passed
    per client, never stored in the session."""
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            _SESSION = botocore.session.get_session()
        return _SESSION


class RestoreRoleError(Exception):
    """The restore role cannot be assumed; the message says why and what to do (no secrets)."""


def session_name(run_id: str) -> str:
    """``securedr-restore-<run token>``: stable per run, valid for STS (<= 64 chars)."""
    return SESSION_PREFIX + run_token(run_id)


class AssumedRoleClients(ServiceClients):
    """boto3/aiobotocore clients, one per (service, Region), under one assumed-role session."""

    def __init__(
        self,
        credentials: Mapping[str, Any],
        *,
        role_arn: str,
        session_name: str,
    ) -> None:
        self._access_key = str(credentials["AccessKeyId"])
        self._secret_key = str(credentials["SecretAccessKey"])
        self._token = str(credentials["SessionToken"])
        expiration = credentials.get("Expiration")
        self.expiration: datetime | None = expiration if isinstance(expiration, datetime) else None
        self.role_arn = role_arn
        self.session_name = session_name
        self._clients: dict[tuple[str, str], Any] = {}

    def __repr__(self) -> str:
        return f"AssumedRoleClients(role_arn={self.role_arn!r}, session={self.session_name!r})"

    def expires_within(self, seconds: float) -> bool:
        if self.expiration is None:
            return False
        return self.expiration - datetime.now(UTC) < timedelta(seconds=seconds)

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:
            # botocore sessions are not safe for concurrent client creation; creation is rare.
            with _SESSION_LOCK:
                self._clients[key] = _shared_session().create_client(
                    service,
                    region_name=region,
                    aws_access_key_id=self._access_key,
                    aws_secret_access_key=self._secret_key,
                    aws_session_token=self._token,
                )
        return self._clients[key]

    @asynccontextmanager
    async def async_client(self, service: str, region: str) -> AsyncIterator[Any]:
        """An aiobotocore client under the same session, for a trigger's event loop."""
        from aiobotocore.session import get_session

        async with get_session().create_client(
            service,
            region_name=region,
            aws_access_key_id=self._access_key,
            aws_secret_access_key=self._secret_key,
            aws_session_token=self._token,
        ) as client:
            yield client


def check_role_settings(role_arn: str | None, external_id: str | None, variable: str) -> None:
    """Refuse missing or malformed settings before calling STS (messages name the fix)."""
    if not role_arn:
        raise RestoreRoleError(
            "restore.role_arn is not set in the plan; restores run only under the dedicated "
            "restore role (see include/iam/securedr-restore-policy.json and docs/restore.md)"
        )
    if not _ROLE_ARN_RE.match(role_arn):
        raise RestoreRoleError(f"restore.role_arn {role_arn!r} is not an IAM role ARN")
    if not external_id:
        raise RestoreRoleError(
            f"the Airflow Variable {variable!r} (the restore role's external id) is not set; "
            f"provision it (AIRFLOW_VAR_{variable.upper()} or a secrets backend)"
        )
    if not _EXTERNAL_ID_RE.match(external_id):
        raise RestoreRoleError(
            f"the external id in Variable {variable!r} is malformed (2-1224 characters of "
            "letters, digits and +=,.@:/-); fix the Variable"
        )


def assume_role(
    sts: Any,
    *,
    role_arn: str | None,
    external_id: str | None,
    external_id_variable: str,
    session: str,
    duration_seconds: int = MAX_SESSION_SECONDS,
) -> AssumedRoleClients:
    """Assume ``role_arn`` through ``sts`` (a client under the connection's identity).

    ``duration_seconds`` is clamped to [900, 3600]. Raises :class:`RestoreRoleError` naming the
    role (never the external id or credentials) when STS refuses.
    """
    check_role_settings(role_arn, external_id, external_id_variable)
    assert role_arn is not None and external_id is not None
    duration = max(MIN_SESSION_SECONDS, min(MAX_SESSION_SECONDS, int(duration_seconds)))
    try:
        response = sts.assume_role(
            RoleArn=role_arn,
            RoleSessionName=session,
            ExternalId=external_id,
            DurationSeconds=duration,
        )
    except Exception as exc:
        code = error_code(exc)
        if code:
            raise RestoreRoleError(
                f"STS refused to assume {role_arn} ({code}); check the role's trust policy "
                "(include/iam/securedr-restore-trust-policy.json) allows this Airflow identity "
                "with this external id"
            ) from None
        raise
    return AssumedRoleClients(response["Credentials"], role_arn=role_arn, session_name=session)


def assume_restore_role(
    aws_conn_id: str | None,
    *,
    region: str,
    role_arn: str | None,
    external_id_variable: str,
    run_id: str,
) -> AssumedRoleClients:
    """Assume the plan's restore role for ``run_id``, with the external id from its Variable.

    The external id is registered with Airflow's secrets masker before use, so it cannot leak
    into task logs. Callable from tasks and (through ``sync_to_async``) from triggers.
    """
    from airflow.sdk import Variable
    from airflow.sdk.log import mask_secret

    from securedr.aws.clients import AwsClients

    external_id = Variable.get(external_id_variable, default=None)
    if external_id:
        external_id = str(external_id).strip()
        mask_secret(external_id, external_id_variable)
    return assume_role(
        AwsClients(aws_conn_id).client("sts", region),
        role_arn=role_arn,
        external_id=external_id,
        external_id_variable=external_id_variable,
        session=session_name(run_id),
    )
