"""The restore role: short-lived STS credentials for everything a restore does in AWS.

A restore never uses the Airflow connection's own permissions for its work. It assumes the
plan's dedicated role (``restore.role_arn``) with an external id (Airflow Variable named by
``restore.external_id_variable``), a session name that carries the run's token (so CloudTrail
ties every call to the run), and a session of at most one hour. :class:`AssumedRoleClients`
then offers the same ``client(service, region)`` / ``async_client`` interface as
:class:`securedr.aws.clients.AwsClients`, so adapters do not care which one they get.

Guarantees: credentials live only in memory, never appear in ``repr``, logs or exceptions;
``AWS_ENDPOINT_URL`` is honoured exactly as for the connection's clients (sandbox); the
credentials are renewed (the role assumed again) before they expire, so a task may run longer
than one STS session.
"""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
from botocore.credentials import RefreshableCredentials

from securedr.aws.errors import ServiceClients, error_code, retry_config
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


def session_name(run_id: str, prefix: str = SESSION_PREFIX) -> str:
    """``<prefix><run token>`` (``securedr-restore-`` by default): stable per run, valid for STS
    (<= 64 chars), so CloudTrail ties every call under the role to the run."""
    return prefix + run_token(run_id)


#: Error codes AWS answers when a request is signed with expired temporary credentials
#: (EC2 says RequestExpired: "...this error can also occur if the credentials have expired",
#: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html; STS-backed
#: services say ExpiredToken / ExpiredTokenException).
EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})

#: Fetch the next session's credentials: ``{"AccessKeyId", "SecretAccessKey", "SessionToken",
#: "Expiration"}`` as STS returns them.
Renew = Callable[[], Mapping[str, Any]]


def _metadata(credentials: Mapping[str, Any]) -> dict[str, str]:
    """STS credentials in the shape botocore's refreshable credentials expect."""
    expiration = credentials.get("Expiration")
    if not isinstance(expiration, datetime):
        # No expiry known: treat the session as lasting the minimum STS grants.
        expiration = datetime.now(UTC) + timedelta(seconds=MIN_SESSION_SECONDS)
    return {
        "access_key": str(credentials["AccessKeyId"]),
        "secret_key": str(credentials["SecretAccessKey"]),
        "token": str(credentials["SessionToken"]),
        "expiry_time": expiration.astimezone(UTC).isoformat(),
    }


class _RenewableCredentials(RefreshableCredentials):
    """botocore's refreshable credentials, plus a way to renew now (AWS said they expired)."""

    def renew_now(self) -> None:
        with self._refresh_lock:  # _protected_refresh expects the lock held
            self._protected_refresh(is_mandatory=True)


def _expired(response: Any) -> bool:
    if not response:
        return False
    parsed = response[1] if isinstance(response, tuple) and len(response) > 1 else {}
    return str((parsed or {}).get("Error", {}).get("Code", "")) in EXPIRED_CODES


class AssumedRoleClients(ServiceClients):
    """boto3/aiobotocore clients, one per (service, Region), under one assumed-role session.

    With ``renew`` (what :func:`assume_role` passes), the session outlives STS's one-hour limit:
    botocore's refreshable credentials re-assume the role shortly before ``Expiration`` (15 min
    ahead, mandatory at 10 min), and a request AWS refuses as expired (a local clock behind
    AWS's) renews the credentials and is sent once more, freshly signed. A long file-set restore
    or drill verification therefore keeps working past the hour.
    """

    def __init__(
        self,
        credentials: Mapping[str, Any],
        *,
        role_arn: str,
        session_name: str,
        renew: Renew | None = None,
    ) -> None:
        self.role_arn = role_arn
        self.session_name = session_name
        self._renew = renew
        self._first = dict(credentials)
        self._lock = threading.Lock()
        self._latest_expiration: datetime | None = _as_datetime(credentials.get("Expiration"))
        self._credentials = _RenewableCredentials.create_from_metadata(
            metadata=_metadata(credentials),
            refresh_using=self._fetch,
            method="securedr-assume-role",
        )
        self._session = _session_with(self._credentials)
        self._clients: dict[tuple[str, str], Any] = {}

    def __repr__(self) -> str:
        return f"AssumedRoleClients(role_arn={self.role_arn!r}, session={self.session_name!r})"

    @property
    def expiration(self) -> datetime | None:
        """When the current credentials expire (moves forward on every renewal)."""
        return self._latest_expiration

    def _fetch(self) -> dict[str, str]:
        """Called by botocore (under its own lock) whenever the credentials need renewing."""
        if self._renew is None:
            # Nothing to renew with: hand back the same credentials; AWS will refuse them.
            return _metadata(self._first)
        credentials = self._renew()
        self._latest_expiration = _as_datetime(credentials.get("Expiration"))
        return _metadata(credentials)

    def expires_within(self, seconds: float) -> bool:
        expiration = self.expiration
        if expiration is None:
            return False
        return expiration - datetime.now(UTC) < timedelta(seconds=seconds)

    def _on_needs_retry(self, response: Any = None, request_dict: Any = None, **_: Any) -> Any:
        """Renew and resend once when AWS says the token has expired."""
        if not self._claim_renewal(response, request_dict):
            return None
        self._credentials.renew_now()
        return 0  # retry at once; botocore signs the retry with the new credentials

    def _claim_renewal(self, response: Any, request_dict: Any) -> bool:
        """Whether to renew for this request: AWS said the token expired, and it is the
        request's first renewal (a request is resent once, never in a loop)."""
        if self._renew is None or not _expired(response):
            return False
        context = (request_dict or {}).setdefault("context", {})
        if context.get("securedr_renewed"):
            return False
        context["securedr_renewed"] = True
        return True

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        with self._lock:
            if key not in self._clients:
                # botocore sessions are not safe for concurrent client creation; creation is rare.
                with _SESSION_LOCK:
                    client = self._session.create_client(
                        service, region_name=region, config=retry_config()
                    )
                client.meta.events.register("needs-retry", self._on_needs_retry)
                self._clients[key] = client
            return self._clients[key]

    @asynccontextmanager
    async def async_client(self, service: str, region: str) -> AsyncIterator[Any]:
        """An aiobotocore client under the same session, for a trigger's event loop."""
        from aiobotocore.credentials import AioRefreshableCredentials
        from aiobotocore.session import get_session

        async def fetch() -> dict[str, str]:
            from asgiref.sync import sync_to_async

            return await sync_to_async(self._fetch)()

        class Renewable(AioRefreshableCredentials):
            async def renew_now(self) -> None:
                async with self._refresh_lock:
                    await self._protected_refresh(is_mandatory=True)

        frozen = self._credentials.get_frozen_credentials()
        credentials = Renewable.create_from_metadata(
            metadata={
                "access_key": frozen.access_key,
                "secret_key": frozen.secret_key,
                "token": frozen.token or "",
                "expiry_time": (self.expiration or datetime.now(UTC)).isoformat(),
            },
            refresh_using=fetch,
            method="securedr-assume-role",
        )

        async def on_needs_retry(
            response: Any = None, request_dict: Any = None, **_: Any
        ) -> int | None:
            if not self._claim_renewal(response, request_dict):
                return None
            await credentials.renew_now()
            return 0

        session = get_session()
        session._credentials = credentials
        async with session.create_client(
            service, region_name=region, config=retry_config()
        ) as client:
            client.meta.events.register("needs-retry", on_needs_retry)
            yield client

    @asynccontextmanager
    async def async_clients(self) -> AsyncIterator[AssumedAsyncPool]:
        """aiobotocore clients under this session, built on first use and kept until the block
        ends (the same ``get(service, region)`` as :class:`securedr.aws.clients.AsyncClientPool`,
        so a trigger's loop takes either)."""
        async with AsyncExitStack() as stack:
            yield AssumedAsyncPool(self, stack)


class AssumedAsyncPool:
    """One aiobotocore client per (service, Region) under an assumed role."""

    def __init__(self, clients: AssumedRoleClients, stack: AsyncExitStack) -> None:
        self._clients = clients
        self._stack = stack
        self._open: dict[tuple[str, str], Any] = {}

    async def get(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._open:
            self._open[key] = await self._stack.enter_async_context(
                self._clients.async_client(service, region)
            )
        return self._open[key]


def _as_datetime(value: Any) -> datetime | None:
    return value.astimezone(UTC) if isinstance(value, datetime) else None


def _session_with(credentials: RefreshableCredentials) -> botocore.session.Session:
    """A botocore session signing with ``credentials`` that shares the process's parsed models.

    botocore has no public setter for refreshable credentials on a session; assigning
    ``_credentials`` is the documented-by-use way (botocore's own providers do the same).
    """
    with _SESSION_LOCK:
        session = botocore.session.Session()
        session.register_component("data_loader", _shared_session().get_component("data_loader"))
    session._credentials = credentials
    return session


def check_role_settings(
    role_arn: str | None,
    external_id: str | None,
    variable: str,
    *,
    setting: str = "restore.role_arn",
) -> None:
    """Refuse missing or malformed settings before calling STS (messages name the fix).

    ``setting`` is the plan field that names the role (``restore.role_arn``,
    ``vault.role_arn``).
    """
    if not role_arn:
        if setting != "restore.role_arn":
            raise RestoreRoleError(f"{setting} is not set in the plan")
        raise RestoreRoleError(
            f"{setting} is not set in the plan; restores run only under their dedicated "
            "role (see include/iam/ and docs/restore.md)"
        )
    if not _ROLE_ARN_RE.match(role_arn):
        raise RestoreRoleError(f"{setting} {role_arn!r} is not an IAM role ARN")
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
    setting: str = "restore.role_arn",
    trust_policy: str = "include/iam/securedr-restore-trust-policy.json",
) -> AssumedRoleClients:
    """Assume ``role_arn`` through ``sts`` (a client under the connection's identity).

    ``duration_seconds`` is clamped to [900, 3600]. Raises :class:`RestoreRoleError` naming the
    role (never the external id or credentials) when STS refuses; ``setting`` and
    ``trust_policy`` name the plan field and the shipped trust policy in its messages.
    """
    check_role_settings(role_arn, external_id, external_id_variable, setting=setting)
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
                f"({trust_policy}) allows this Airflow identity with this external id"
            ) from None
        raise

    def renew() -> Mapping[str, Any]:
        # The same request again: a new session under the same name, for the same run.
        try:
            return sts.assume_role(
                RoleArn=role_arn,
                RoleSessionName=session,
                ExternalId=external_id,
                DurationSeconds=duration,
            )["Credentials"]
        except Exception as exc:
            code = error_code(exc)
            if code:
                raise RestoreRoleError(
                    f"STS refused to renew the session of {role_arn} ({code})"
                ) from None
            raise

    return AssumedRoleClients(
        response["Credentials"], role_arn=role_arn, session_name=session, renew=renew
    )


def assume_restore_role(
    aws_conn_id: str | None,
    *,
    region: str,
    role_arn: str | None,
    external_id_variable: str,
    run_id: str,
    session_prefix: str = SESSION_PREFIX,
    setting: str = "restore.role_arn",
    trust_policy: str = "include/iam/securedr-restore-trust-policy.json",
) -> AssumedRoleClients:
    """Assume the plan's restore role for ``run_id``, with the external id from its Variable.

    ``aws_conn_id`` is the connection whose identity calls STS: the workload's for a restore
    from the workload account, ``vault.recovery.aws_conn_id`` for one from the vault.

    The external id is registered with Airflow's secrets masker before use, so it cannot leak
    into task logs. Callable from tasks and (through ``sync_to_async``) from triggers. The
    keyword arguments after ``run_id`` let other plan roles (the vault intake role) share the
    same machinery: the session-name prefix, and the plan field / trust policy messages name.
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
        session=session_name(run_id, session_prefix),
        setting=setting,
        trust_policy=trust_policy,
    )
