"""Section ``sts``: assumed-role credentials expire, on the sandbox clock.

AWS: temporary credentials from ``AssumeRole`` last ``DurationSeconds`` (default 3600; at most the
role's maximum session duration, and one hour when chaining roles) and every request signed with
them afterwards is refused (https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html,
https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_temp_use-resources.html).
Moto never expires them. With this section on, the session token of every ``AssumeRole`` answer
is remembered with its expiry (sandbox clock, :func:`sandbox.realism.now`, so a test can
``realism.advance`` past it), the answer's ``Expiration`` says the same, and a later request
carrying that token (``X-Amz-Security-Token`` header, or query parameter of a presigned URL)
after expiry is answered the way each protocol answers it:

- Query services (EC2, RDS, STS, IAM, SNS...): ``ExpiredToken`` "The security token included in
  the request is expired", HTTP 403
  (https://repost.aws/knowledge-center/ec2-expired-token quotes the 403 ``ExpiredToken`` answer).
- JSON services (KMS...): ``ExpiredTokenException``, same message, HTTP 403
  (https://docs.aws.amazon.com/kms/latest/APIReference/CommonErrors.html).
- S3: ``ExpiredToken`` "The provided token has expired.", HTTP 400
  (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList).

``AssumeRole`` itself is refused, as on AWS, when ``DurationSeconds`` exceeds the role's
``MaxSessionDuration`` (roles created in the sandbox's IAM; default 3600) or, for a session that
was itself assumed (role chaining), one hour: ``ValidationError`` "The requested DurationSeconds
exceeds the MaxSessionDuration set for this role." / "... the 1 hour session limit for roles
assumed by role chaining." (AssumeRole API reference above, DurationSeconds).

Parameters: ``max_lifetime_seconds`` (optional) caps every session's lifetime below what was
asked for, e.g. to see credentials refresh within a short test.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import sandbox.realism as realism

SECTION = "sts"
DEFAULT_DURATION_SECONDS = 3600
QUERY_MESSAGE = "The security token included in the request is expired"
S3_MESSAGE = "The provided token has expired."

_LOCK = threading.Lock()
#: session token -> when it expires (sandbox clock)
_EXPIRES: dict[str, dt.datetime] = {}

_TOKEN = re.compile(r"<SessionToken>([^<]+)</SessionToken>")
_EXPIRATION = re.compile(r"<Expiration>[^<]*</Expiration>")


@functools.lru_cache(maxsize=64)
def _protocol(service: str) -> str:
    import botocore.session

    try:
        model = botocore.session.get_session().get_service_model(service)
    except Exception:  # an unknown service is treated as a Query service
        return "query"
    return str(model.metadata.get("protocol", "query"))


def expired_token_error(service: str) -> realism.AWSError:
    """What ``service`` answers to a request signed with expired temporary credentials."""
    if service == "s3":
        return realism.AWSError("ExpiredToken", S3_MESSAGE, 400)
    if _protocol(service) in ("json", "rest-json"):
        return realism.AWSError("ExpiredTokenException", QUERY_MESSAGE, 403)
    return realism.AWSError("ExpiredToken", QUERY_MESSAGE, 403)


def _token_of(call: realism.Call) -> str | None:
    headers = getattr(call.responder, "headers", None) or {}
    token = headers.get("X-Amz-Security-Token") if hasattr(headers, "get") else None
    if token:
        return str(token)
    for key, value in call.params.items():
        if key.lower() == "x-amz-security-token" and value:
            return str(value[0] if isinstance(value, list) else value)
    url = call.params.get("full_url")
    if url:
        query = parse_qs(urlsplit(str(url)).query)
        for key, values in query.items():
            if key.lower() == "x-amz-security-token" and values:
                return values[0]
    return None


CHAINED_MAX_SECONDS = 3600


def _refuse_duration(call: realism.Call, chained: bool) -> None:
    duration = int(call.param("DurationSeconds") or DEFAULT_DURATION_SECONDS)
    if chained and duration > CHAINED_MAX_SECONDS:
        raise realism.AWSError(
            "ValidationError",
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by "
            "role chaining.",
        )
    maximum = _role_max_session(call.account, str(call.param("RoleArn") or ""))
    if maximum is not None and duration > maximum:
        raise realism.AWSError(
            "ValidationError",
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        )


def _role_max_session(account: str, role_arn: str) -> int | None:
    """The role's MaxSessionDuration when the role exists in the sandbox's IAM."""
    from moto.iam.models import iam_backends

    role_account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else account
    try:
        role = iam_backends[role_account]["aws"].get_role_by_arn(role_arn)
    except Exception:  # a role the sandbox does not know: moto lets it be assumed
        return None
    return int(role.max_session_duration or DEFAULT_DURATION_SECONDS)


def before(call: realism.Call) -> None:
    token = _token_of(call) if _EXPIRES else None
    expires = _EXPIRES.get(token) if token else None
    if expires is not None and realism.now() >= expires:
        raise expired_token_error(call.service)
    if call.service == "sts" and call.action == "AssumeRole":
        _refuse_duration(call, chained=expires is not None)


def _text(body: Any) -> str:
    return body.decode() if isinstance(body, bytes) else str(body)


def after(call: realism.Call, result: realism.TYPE_RESPONSE) -> realism.TYPE_RESPONSE:
    if call.service != "sts" or call.action != "AssumeRole" or int(result[0]) >= 300:
        return result
    status, headers, body = result
    text = _text(body)
    match = _TOKEN.search(text)
    if match is None:
        return result
    lifetime = int(call.param("DurationSeconds") or DEFAULT_DURATION_SECONDS)
    cap = (realism.settings(SECTION) or {}).get("max_lifetime_seconds")
    if cap:
        lifetime = min(lifetime, int(cap))
    expires = realism.now() + dt.timedelta(seconds=lifetime)
    with _LOCK:
        _EXPIRES[match.group(1)] = expires
    stamp = expires.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{expires.microsecond // 1000:03d}Z"
    )
    text = _EXPIRATION.sub(f"<Expiration>{stamp}</Expiration>", text, count=1)
    return status, headers, text.encode() if isinstance(body, bytes) else text


def expiry_of(session_token: str) -> dt.datetime | None:
    """When the sandbox will start refusing ``session_token`` (None: not an assumed role's)."""
    return _EXPIRES.get(session_token)


def _reset() -> None:
    with _LOCK:
        _EXPIRES.clear()


realism.behaviour(SECTION, before=before, after=after)
realism.on_reset(SECTION, _reset)

# Not in the e2e profile yet: botocore decides when to refresh assumed-role credentials from the
# machine's clock, not the sandbox's, so a suite that advances the sandbox clock past an expiry
# would see tokens the client still believes fresh refused. Tests switch it on where they need it:
# realism.PROFILES["e2e"][SECTION] = {}
