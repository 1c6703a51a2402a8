"""MFA state in the evidence bucket: spent time steps and failures, as write-once objects.

Layout (under the evidence prefix)::

    mfa/<plan>/<user>/used/<time step:012d>.json        one per spent code
    mfa/<plan>/<user>/failures/<UTC time>-<random>.json  one per wrong code

Guarantees:

* :meth:`S3MfaLedger.claim_step` writes ``used/<step>`` with ``If-None-Match: *`` (through
  :meth:`securedr.aws.evidence.EvidenceStore.put`): S3 answers 412 PreconditionFailed when the
  object exists and 409 ConditionalRequestConflict to the loser of a concurrent write, so two
  tasks, processes or Airflow deployments racing to use the same code cannot both win
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html).
* Failures are never overwritten or deleted (Object Lock, like all evidence); their keys sort by
  time, so :meth:`S3MfaLedger.recent_failures` lists only the lookback window with
  ``StartAfter`` (ListObjectsV2 returns keys in UTF-8 binary order) and never reads a body.
* Nothing stored holds a code or a secret: the object names the step or the time, the body
  names the purpose and the run.

No Airflow, no boto3 import: works with any S3 client behind an :class:`EvidenceStore`.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from securedr.aws.errors import page_config
from securedr.aws.evidence import EvidenceExists
from securedr.core.mfa import check_user

if TYPE_CHECKING:
    from securedr.aws.evidence import EvidenceStore

_TIME_FORMAT = "%Y%m%dT%H%M%S%fZ"


class S3MfaLedger:
    """The :class:`securedr.core.mfa.MfaLedger` of one plan, in its evidence bucket."""

    def __init__(self, evidence: EvidenceStore, plan: str) -> None:
        self.evidence = evidence
        self.plan = plan

    def _key(self, user: str, *parts: str) -> str:
        return self.evidence.key("mfa", self.plan, check_user(user), *parts)

    def claim_step(self, user: str, step: int, purpose: str, run_id: str) -> bool:
        body = {"user": user, "time_step": step, "purpose": purpose, "run_id": run_id}
        try:
            self.evidence.put(self._key(user, "used", f"{step:012d}.json"), _json(body))
        except EvidenceExists:
            return False  # spent already, or a concurrent use of the same code won the race
        return True

    def record_failure(self, user: str, at: datetime, purpose: str, run_id: str) -> None:
        body = {"user": user, "at": at.isoformat(), "purpose": purpose, "run_id": run_id}
        for _ in range(3):
            name = f"{at.astimezone(UTC).strftime(_TIME_FORMAT)}-{secrets.token_hex(8)}.json"
            try:
                self.evidence.put(self._key(user, "failures", name), _json(body))
                return
            except EvidenceExists:
                continue  # a random-suffix collision or a 409 conflict: write under a new name
        raise RuntimeError(f"could not record an MFA failure for {user!r} in the evidence bucket")

    def recent_failures(self, user: str, since: datetime) -> list[datetime]:
        prefix = self._key(user, "failures") + "/"
        # Keys before `since` sort before this one; list only what follows it.
        start_after = prefix + since.astimezone(UTC).strftime(_TIME_FORMAT)
        found: list[datetime] = []
        pages = self.evidence.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.evidence.bucket,
            Prefix=prefix,
            StartAfter=start_after,
            PaginationConfig=page_config("list_objects_v2"),
        )
        for page in pages:
            for obj in page.get("Contents", []):
                stamp = obj["Key"][len(prefix) :].split("-", 1)[0]
                try:
                    at = datetime.strptime(stamp, _TIME_FORMAT).replace(tzinfo=UTC)
                except ValueError:
                    continue  # not a failure record SecureDR wrote; never counts either way
                if at >= since:
                    found.append(at)
        return found


def _json(body: dict[str, object]) -> bytes:
    return json.dumps(body, sort_keys=True).encode()
