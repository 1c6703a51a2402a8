"""Section ``s3``: S3's conditional-write conflicts and multipart part-number limit.

Parameters (``realism.configure("s3", ...)``):

- ``conflict_every`` (default 0, off): every Nth conditional write (``PutObject`` or
  ``CompleteMultipartUpload`` carrying ``If-None-Match`` or ``If-Match``) answers HTTP 409
  ``ConditionalRequestConflict``, as S3 does when a concurrent operation on the key races the
  write; the write does not happen and the caller is expected to retry it. Only 412
  ``PreconditionFailed`` means the condition failed (the object exists / changed).
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html and
  https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html ("If a conflicting
  operation occurs during the upload S3 returns a 409 ConditionalRequestConflict response. On a
  409 failure you should retry the upload."). The API reference gives no message text; the
  sandbox uses S3's wording for a conflicting conditional operation.
- ``max_parts`` (default 10000): ``UploadPart`` with a ``partNumber`` outside 1..max_parts answers
  400 ``InvalidArgument`` "Part number must be an integer between 1 and 10000, inclusive"
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html: part numbers 1 to 10,000;
  message as S3 sends it, quoted in bloomreach/s4cmd#238). Moto checks only the upper bound.

``DeleteObject`` on a versioned bucket adds a delete marker and keeps every version; moto already
does this (https://docs.aws.amazon.com/AmazonS3/latest/userguide/DeletingObjectVersions.html),
and ``tests/sandbox/test_realism_s3.py`` holds it to that.
"""

from __future__ import annotations

import threading
from urllib.parse import parse_qs, urlsplit

import sandbox.realism as realism

SECTION = "s3"
S3_MAX_PARTS = 10000
CONFLICT_MESSAGE = (
    "A conflicting conditional operation is currently in progress against this resource. "
    "Please try again."
)
_CONDITIONAL_WRITES = ("PutObject", "CompleteMultipartUpload")

_LOCK = threading.Lock()
_STATE = {"conditional_writes": 0}


def _header(call: realism.Call, name: str) -> str | None:
    wanted = name.lower()
    for key, value in call.params.items():
        if key.lower() == wanted:
            return str(value)
    return None


def _query(call: realism.Call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(str(call.param("full_url", ""))).query, keep_blank_values=True)


def _refuse_part_number(call: realism.Call, max_parts: int) -> None:
    values = _query(call).get("partNumber") or [""]
    try:
        number = int(values[0])
    except ValueError:
        number = 0
    if not 1 <= number <= max_parts:
        raise realism.AWSError(
            "InvalidArgument",
            f"Part number must be an integer between 1 and {max_parts}, inclusive",
        )


def _conflict(call: realism.Call, every: int) -> None:
    if _header(call, "If-None-Match") is None and _header(call, "If-Match") is None:
        return
    with _LOCK:
        _STATE["conditional_writes"] += 1
        clash = _STATE["conditional_writes"] % every == 0
    if clash:
        raise realism.AWSError("ConditionalRequestConflict", CONFLICT_MESSAGE, 409)


def before(call: realism.Call) -> None:
    if call.service != "s3":
        return
    params = realism.settings(SECTION) or {}
    if call.action == "UploadPart":
        _refuse_part_number(call, int(params.get("max_parts", S3_MAX_PARTS)))
    elif call.action in _CONDITIONAL_WRITES and int(params.get("conflict_every", 0) or 0) > 0:
        _conflict(call, int(params["conflict_every"]))


def _reset() -> None:
    with _LOCK:
        _STATE["conditional_writes"] = 0


realism.behaviour(SECTION, before=before)
realism.on_reset(SECTION, _reset)

# On for the e2e suites: the product retries a 409 and confirms the write
# (securedr.aws.s3_writes); only 412 means "already written".
realism.PROFILES["e2e"][SECTION] = {
    "max_parts": S3_MAX_PARTS,
    "conflict_every": 7,
}
