"""Section ``quotas``: AWS's service quotas that a DR run meets, with AWS's codes and messages.

Parameters (each defaults to AWS's number when the section is on):

- ``ebs_copies_per_region`` (20): concurrent EBS snapshot copies into one destination Region;
  one more ``CopySnapshot`` answers ``ResourceLimitExceeded`` "Too many snapshot copies in
  progress. The limit is 20 for this destination region."
  (https://docs.aws.amazon.com/ebs/latest/userguide/ebs-resource-quotas.html; message as reported
  in aws-samples/copy-encrypted-ami issue 3 and aws-step-functions-ebs-snapshot-mgmt issue 3).
- ``rds_copies_per_region`` (20): cross-Region DB snapshot copies in progress into one
  destination Region. The RDS User Guide today: "You can have up to 20 snapshot copy requests in
  progress to a single destination Region per account" (older accounts and older versions of the
  guide: five) (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_CopySnapshot.html).
  One more ``CopyDBSnapshot`` answers ``SnapshotQuotaExceeded`` "Cannot copy more than 20
  snapshots across regions" (message as reported in pbudzon/aws-maintenance issue 19).
- ``rds_manual_snapshots`` (100): manual DB snapshots per Region
  (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/CHAP_Limits.html); one more
  ``CreateDBSnapshot`` or ``CopyDBSnapshot`` answers the same code, ``SnapshotQuotaExceeded``,
  with "Cannot create more than 100 manual snapshots" (pbudzon/aws-maintenance issue 12). The two
  RDS quotas are told apart only by their messages.
- ``vpcs_per_region`` (5, the default VPC included): one more ``CreateVpc`` answers
  ``VpcLimitExceeded`` "The maximum number of VPCs has been reached."
  (https://docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html).

Copies in flight come from :mod:`sandbox.realism.timing`: with ``timing`` off every copy
completes at once and the concurrency quotas are never reached.
"""

from __future__ import annotations

from typing import Any

import sandbox.realism as realism
from sandbox.realism import timing

NAME = "quotas"

DEFAULTS = {
    "ebs_copies_per_region": 20,
    "rds_copies_per_region": 20,
    "rds_manual_snapshots": 100,
    "vpcs_per_region": 5,
}


def limit(name: str) -> int:
    params = realism.settings(NAME) or {}
    return int(params.get(name, DEFAULTS[name]))


def _rds_source_region(call: realism.Call) -> str:
    source = str(call.param("SourceDBSnapshotIdentifier") or "")
    if call.param("SourceRegion"):
        return str(call.param("SourceRegion"))
    return source.split(":")[3] if source.startswith("arn:") else call.region


def _manual_snapshots(backend: Any) -> int:
    return sum(
        1
        for s in backend.database_snapshots.values()
        if getattr(s, "snapshot_type", "") == "manual"
    )


def before(call: realism.Call) -> None:
    if call.service == "ec2" and call.action == "CopySnapshot":
        quota = limit("ebs_copies_per_region")
        if timing.in_flight("ec2", call.region, call.account) >= quota:
            raise realism.AWSError(
                "ResourceLimitExceeded",
                f"Too many snapshot copies in progress. The limit is {quota} for this "
                "destination region.",
            )
    elif call.service == "ec2" and call.action == "CreateVpc":
        if len(call.responder.ec2_backend.vpcs) >= limit("vpcs_per_region"):
            raise realism.AWSError(
                "VpcLimitExceeded", "The maximum number of VPCs has been reached."
            )
    elif call.service == "rds" and call.action in ("CreateDBSnapshot", "CopyDBSnapshot"):
        quota = limit("rds_manual_snapshots")
        if _manual_snapshots(call.responder.backend) >= quota:
            raise realism.AWSError(
                "SnapshotQuotaExceeded", f"Cannot create more than {quota} manual snapshots"
            )
        if call.action == "CopyDBSnapshot" and _rds_source_region(call) != call.region:
            quota = limit("rds_copies_per_region")
            if timing.in_flight("rds", call.region, call.account) >= quota:
                raise realism.AWSError(
                    "SnapshotQuotaExceeded",
                    f"Cannot copy more than {quota} snapshots across regions",
                )


realism.behaviour(NAME, before=before)
# e2e: AWS's own numbers; the demo estate is far below them.
realism.PROFILES["e2e"][NAME] = dict(DEFAULTS)
