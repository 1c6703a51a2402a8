"""Section ``throttle``: bursts of throttling or internal errors, the way each service answers them.

AWS throttles every API per account and Region with token buckets, and any call can fail with a
server-side error that the caller is expected to retry. Moto never does either. This section makes
every ``every``-th matching call start a burst of ``burst`` consecutive failures; the count is a
plain counter over matching calls, so a test that makes the same calls sees the same failures.

Parameters (``realism.configure("throttle", ...)``):

- ``services``: boto3 service names to affect (``["ec2", "rds"]``); all services when omitted.
- ``actions``: action names to affect (``["CopySnapshot"]``); all actions when omitted.
- ``every``: every Nth matching call starts a burst (default 10).
- ``burst``: how many consecutive matching calls fail, that one included (default 1).
- ``error``: ``"throttle"`` (default) or ``"internal"``.

Codes, messages and HTTP statuses as each service answers them:

- EC2 ``RequestLimitExceeded`` "Request limit exceeded." (HTTP 503):
  https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html (code) and
  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/query-api-troubleshooting.html; the
  message and status as EC2 sends them are quoted in public reports (boto/boto3#770,
  otiai10/hotsub#10).
- RDS ``Throttling`` "Rate exceeded": https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-api-throttling.html
  (the guide prints the exception class; the wire code of the Query API is ``Throttling``, as
  reported in aws/aws-cli#8604 and awslabs/aurora-snapshot-tool#11).
- S3 ``SlowDown`` "Please reduce your request rate." (HTTP 503) and ``InternalError`` "We
  encountered an internal error. Please try again." (HTTP 500):
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/ErrorBestPractices.html and
  https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
- KMS ``ThrottlingException`` "You have exceeded the rate at which you may call KMS. Reduce the
  frequency of your calls.": https://repost.aws/knowledge-center/kms-throttlingexception-error
  and ``KMSInternalException`` (HTTP 500), as in every KMS action's Errors list, e.g.
  https://docs.aws.amazon.com/kms/latest/APIReference/API_Encrypt.html
- STS (and any other Query service) ``Throttling`` "Rate exceeded" and ``InternalFailure``
  (HTTP 500): https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html
- EC2 ``InternalError`` "An internal error has occurred" (HTTP 500):
  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
"""

from __future__ import annotations

import threading

import sandbox.realism as realism

SECTION = "throttle"

#: service -> (code, message, HTTP status) when throttled
THROTTLE_ERRORS: dict[str, tuple[str, str, int]] = {
    "ec2": ("RequestLimitExceeded", "Request limit exceeded.", 503),
    "rds": ("Throttling", "Rate exceeded", 400),
    "s3": ("SlowDown", "Please reduce your request rate.", 503),
    "kms": (
        "ThrottlingException",
        "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.",
        400,
    ),
    "sts": ("Throttling", "Rate exceeded", 400),
}
_DEFAULT_THROTTLE = ("Throttling", "Rate exceeded", 400)

#: service -> (code, message, HTTP status) for a server-side failure
INTERNAL_ERRORS: dict[str, tuple[str, str, int]] = {
    "ec2": ("InternalError", "An internal error has occurred", 500),
    "s3": ("InternalError", "We encountered an internal error. Please try again.", 500),
    "kms": (
        "KMSInternalException",
        "The request was rejected because an internal exception occurred. "
        "The request can be retried.",
        500,
    ),
}
_DEFAULT_INTERNAL = (
    "InternalFailure",
    "The request processing has failed because of an unknown error, exception or failure.",
    500,
)

_LOCK = threading.Lock()
_STATE = {"matched": 0, "remaining": 0}


def error_for(service: str, kind: str = "throttle") -> realism.AWSError:
    """The error ``service`` answers with for ``kind`` (``throttle`` or ``internal``)."""
    if kind == "internal":
        code, message, status = INTERNAL_ERRORS.get(service, _DEFAULT_INTERNAL)
    elif kind == "throttle":
        code, message, status = THROTTLE_ERRORS.get(service, _DEFAULT_THROTTLE)
    else:
        raise ValueError(f"throttle error must be 'throttle' or 'internal', not {kind!r}")
    return realism.AWSError(code, message, status)


def _names(value: object) -> list[str]:
    """A list parameter that may also be given as one name (e.g. from the environment's JSON)."""
    if not value:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]  # type: ignore[attr-defined]


def _matches(call: realism.Call, params: dict) -> bool:
    services = _names(params.get("services"))
    actions = _names(params.get("actions"))
    if services and call.service not in services:
        return False
    return not (actions and call.action not in actions)


def before(call: realism.Call) -> None:
    params = realism.settings(SECTION) or {}
    if not _matches(call, params):
        return
    every = max(1, int(params.get("every", 10)))
    burst = max(1, int(params.get("burst", 1)))
    with _LOCK:
        if _STATE["remaining"] > 0:
            _STATE["remaining"] -= 1
            fail = True
        else:
            _STATE["matched"] += 1
            fail = _STATE["matched"] % every == 0
            if fail:
                _STATE["remaining"] = burst - 1
    if fail:
        raise error_for(call.service, params.get("error", "throttle"))


def _reset() -> None:
    with _LOCK:
        _STATE["matched"] = 0
        _STATE["remaining"] = 0


realism.behaviour(SECTION, before=before)
realism.on_reset(SECTION, _reset)

# On for the e2e suites: every client the product builds uses standard retries with a bounded
# attempt count (securedr.aws.errors.retry_config), so short bursts are ridden out.
realism.PROFILES["e2e"][SECTION] = {"every": 25, "burst": 2, "services": ["ec2", "rds", "s3"]}
