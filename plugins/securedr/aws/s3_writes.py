"""Write-once S3 objects (``If-None-Match: *``) with AWS's two refusals told apart.

S3 answers a conditional write in two ways that look alike and mean opposite things
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html):

* ``412 PreconditionFailed``: an object already exists at the key. Nothing was written.
* ``409 ConditionalRequestConflict``: a concurrent operation on the key got in the way. Nothing
  is known about the key; AWS says to retry (for CompleteMultipartUpload: start the upload
  again).

Only 412 means "already written". A 409 is retried with backoff; if a retry then meets a 412,
the object found is compared with the one being written (``confirm``), so a write that landed
on an earlier attempt counts as written instead of as somebody else's object.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from securedr.aws.errors import error_code

__all__ = [
    "CONFLICT",
    "CONFLICT_ATTEMPTS",
    "PRECONDITION_FAILED",
    "AlreadyWritten",
    "WriteConflict",
    "is_conflict",
    "is_precondition_failed",
    "write_once",
]

PRECONDITION_FAILED = "PreconditionFailed"
CONFLICT = "ConditionalRequestConflict"
#: Tries of one conditional write through 409s before giving up.
CONFLICT_ATTEMPTS = 6
_BASE_DELAY = 0.2
_MAX_DELAY = 5.0

T = TypeVar("T")


class AlreadyWritten(Exception):
    """A different object already exists at the key (412 and not confirmed as ours)."""


class WriteConflict(Exception):
    """S3 kept answering 409 ConditionalRequestConflict; nothing is known to be written."""


def is_precondition_failed(exc: BaseException) -> bool:
    return error_code(exc) in (PRECONDITION_FAILED, "412")


def is_conflict(exc: BaseException) -> bool:
    return error_code(exc) in (CONFLICT, "409")


def backoff(attempt: int) -> float:
    """Full-jitter exponential delay before retry ``attempt`` (1-based)."""
    return random.uniform(0, min(_MAX_DELAY, _BASE_DELAY * 2**attempt))  # noqa: S311


def write_once(
    write: Callable[[], T],
    *,
    url: str,
    confirm: Callable[[], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T | None:
    """Run the conditional ``write``; return its response, or ``None`` if the object found at
    the key is confirmed to be this very object (``confirm()``).

    Raises :class:`AlreadyWritten` on a 412 that is not confirmed, :class:`WriteConflict` after
    :data:`CONFLICT_ATTEMPTS` 409s, and any other error unchanged.
    """
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            return write()
        except Exception as exc:
            if is_precondition_failed(exc):
                if confirm is not None and confirm():
                    return None
                raise AlreadyWritten(url) from None
            if not is_conflict(exc):
                raise
            if attempt == CONFLICT_ATTEMPTS:
                raise WriteConflict(
                    f"{url}: S3 answered 409 ConditionalRequestConflict {attempt} times; "
                    "another writer keeps racing for this key"
                ) from None
            sleep(backoff(attempt))
    raise AssertionError("unreachable")  # pragma: no cover
