"""What an AWS error on the snapshot/copy path means: wait for a slot, give up on one resource,
or try the call again.

AWS answers two different RDS limits with the same code, ``SnapshotQuotaExceeded``: the manual
snapshot quota (100 per Region by default; a hard stop until snapshots are deleted or the quota
raised) and the limit on concurrent cross-Region copies per destination Region (a slot frees when
a copy finishes). Only the message tells them apart.
"""

from __future__ import annotations

from typing import Literal

from securedr.aws.errors import error_code

# EBS: "There is a limit of 20 concurrent snapshot copy requests per destination Region. If you
# exceed this quota, you receive a ResourceLimitExceeded error."
# https://docs.aws.amazon.com/ebs/latest/userguide/ebs-copy-snapshot.html
EBS_CONCURRENT_COPY_CODE = "ResourceLimitExceeded"

# RDS: SnapshotQuotaExceeded = "The request would result in the user exceeding the allowed number
# of DB snapshots." (manual snapshot quota)
# https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CopyDBSnapshot.html
# https://docs.aws.amazon.com/botocore/latest/reference/services/rds/client/exceptions/SnapshotQuotaExceededFault.html
# The concurrent cross-Region copy limit answers the same code with a message such as
# "Cannot copy more than 5 snapshots across regions" (reported by users; the number varies).
RDS_SNAPSHOT_QUOTA_CODE = "SnapshotQuotaExceeded"
_RDS_CONCURRENCY_HINTS = ("across regions", "across region", "concurrent", "in progress")

# Throttling and server-side errors: the call may succeed if made again.
# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
# https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/CommonErrors.html
TRANSIENT_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestThrottled",
        "SlowDown",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "Unavailable",
        "RequestTimeout",
        "RequestExpired",
    }
)

Verdict = Literal["concurrency", "quota"]


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Message", "") or exc)


def classify_limit(exc: BaseException) -> Verdict | None:
    """``"concurrency"`` (wait for a slot), ``"quota"`` (hard quota: give up on the resource)
    or None (not a limit error)."""
    code = error_code(exc)
    if code == EBS_CONCURRENT_COPY_CODE:
        return "concurrency"
    if code == RDS_SNAPSHOT_QUOTA_CODE:
        message = error_message(exc).lower()
        if any(hint in message for hint in _RDS_CONCURRENCY_HINTS):
            return "concurrency"
        return "quota"
    if code == "SnapshotCopyLimitExceeded":
        return "concurrency"
    return None


def quota_message(exc: BaseException, region: str) -> str:
    """What a hard quota error means and what to do about it."""
    return (
        f"the RDS manual DB snapshot quota in {region} is reached ({error_code(exc)}: "
        f"{error_message(exc)}); AWS allows 100 manual DB snapshots per Region by default. "
        "Delete manual DB snapshots you no longer need there, lower retention.keep_days, or "
        "request a higher 'Manual DB instance snapshots' quota in Service Quotas, then run again"
    )


def is_transient(exc: BaseException) -> bool:
    """Throttling, a 5xx answer or a connection problem: worth asking again."""
    if error_code(exc) in TRANSIENT_CODES:
        return True
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if isinstance(status, int) and status >= 500:
        return True
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError
    except ImportError:  # pragma: no cover - botocore is always installed with the provider
        return False
    return isinstance(exc, (BotoConnectionError, HTTPClientError, TimeoutError))
