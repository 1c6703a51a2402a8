"""The shipped backup policy allows exactly what a nightly run calls, scoped where AWS allows."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from sandbox.estate import ensure_notification_topic
from securedr.aws import filesets as filesets_adapter
from securedr.core.iam import backup_policy_values, render
from securedr.core.model import lineage_tags
from securedr.operators.dr_copy import CopyToDrRegionOperator
from securedr.operators.filesets import BackupFileSetsOperator
from securedr.operators.manifest import SignRunManifestOperator
from securedr.operators.preflight import PreflightChecksOperator
from securedr.operators.recovery_points import (
    CreateRecoveryPointsOperator,
    DiscoverProtectedResourcesOperator,
)
from securedr.operators.report import NightlyReportOperator
from securedr.operators.retention import ApplyRetentionOperator
from securedr.operators.verify import ReverifyRetainedCopiesOperator, VerifyDrCopiesOperator
from securedr.triggers.recovery_points import RecoveryPointsTrigger
from tests.iam_eval import denied, kms_aliases, recorded_requests
from tests.operators.helpers import (
    ACCOUNT,
    ec2_backend,
    rds_backend,
    sign_manifest,
    task_context,
)

POLICY = Path(__file__).resolve().parents[2] / "include" / "iam" / "securedr-backup-policy.json"

#: API operations whose IAM action is not "<service>:<Operation>".
S3_ACTIONS = {
    "HeadBucket": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "HeadObject": "s3:GetObject",
    "ListObjectVersions": "s3:ListBucketVersions",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
}
#: AWS evaluates no resource for these, so "*" is the only possible resource.
UNSCOPABLE = {
    "ec2:DescribeVolumes",
    "ec2:DescribeSnapshots",
    "ec2:DescribeSnapshotAttribute",
    "ec2:DescribeLockedSnapshots",
    "ec2:GetSnapshotBlockPublicAccessState",
}
#: Called by EBS, RDS and S3 on the caller's behalf, never by SecureDR's code directly.
VIA_SERVICE = {
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GenerateDataKey",
}
#: Implied by a call with Object Lock parameters (PutObject with a retain-until date).
IMPLIED = {"s3:PutObjectRetention"}
#: Called only when an upload fails half way (tested on its own below).
ON_FAILURE = {"s3:AbortMultipartUpload"}
#: Called by dr_restore and the drill, which run under the same Airflow connection: it assumes
#: the restore role (tested against recorded restores in tests/restore/test_iam_policy.py).
FOR_RESTORES = {"sts:AssumeRole"}
#: Stand-in for the DR key's ARN where no estate exists.
SOME_DR_KEY = "arn:aws:kms:us-west-2:123456789012:key/00000000-0000-0000-0000-000000000000"


def _action(service: str, operation: str, params: dict | None = None) -> str:
    if service == "s3":
        if operation in ("GetObject", "HeadObject") and (params or {}).get("VersionId"):
            return "s3:GetObjectVersion"  # reading a given version is its own permission
        return S3_ACTIONS.get(operation, f"s3:{operation}")
    return f"{service}:{operation}"


@contextmanager
def recorded_calls():
    """Every AWS API call made inside the block, sync (boto3) and async (aiobotocore)."""
    import aiobotocore.client
    import botocore.client

    calls: set[str] = set()
    sync_call = botocore.client.BaseClient._make_api_call
    async_call = aiobotocore.client.AioBaseClient._make_api_call

    def record(client, operation, params):
        calls.add(_action(client.meta.service_model.endpoint_prefix, operation, params))

    def sync(self, operation, params):
        record(self, operation, params)
        return sync_call(self, operation, params)

    async def asynchronous(self, operation, params):
        record(self, operation, params)
        return await async_call(self, operation, params)

    botocore.client.BaseClient._make_api_call = sync
    aiobotocore.client.AioBaseClient._make_api_call = asynchronous
    try:
        yield calls
    finally:
        botocore.client.BaseClient._make_api_call = sync_call
        aiobotocore.client.AioBaseClient._make_api_call = async_call


def _policy(plan, dr_key_arn: str = SOME_DR_KEY) -> dict:
    return render(
        POLICY.read_text(), backup_policy_values(plan, account_id=ACCOUNT, dr_key_arn=dr_key_arn)
    )


def _allowed(policy: dict) -> set[str]:
    actions: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        listed = statement["Action"]
        actions |= set([listed] if isinstance(listed, str) else listed)
    return actions


def _statements_for(policy: dict, action: str) -> list[dict]:
    return [
        s
        for s in policy["Statement"]
        if any(
            fnmatch.fnmatchcase(action, a)
            for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        )
    ]


def test_policy_has_no_wildcard_actions_and_scopes_every_resource_it_can(plan):
    policy = _policy(plan)
    for statement in policy["Statement"]:
        actions = (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
        for action in actions:
            assert "*" not in action, f"{statement['Sid']}: wildcard action {action}"
        resources = statement["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        if "*" in resources:
            assert set(actions) <= UNSCOPABLE, f"{statement['Sid']}: '*' for {actions}"
        for resource in resources:
            if resource != "*":
                assert resource.startswith("arn:aws:"), resource
    for action in VIA_SERVICE:
        for statement in _statements_for(policy, action):
            if statement["Resource"] == [SOME_DR_KEY]:
                continue  # file-set data keys: the DR key alone, called directly
            assert "kms:ViaService" in json.dumps(statement.get("Condition", {})), action
    direct = [s for s in policy["Statement"] if s["Resource"] == [SOME_DR_KEY]]
    assert {a for s in direct for a in s["Action"]} == {"kms:GenerateDataKey", "kms:Decrypt"}
    sources = {r for s in _statements_for(policy, "s3:GetObject") for r in s["Resource"]}
    assert "arn:aws:s3:::securedr-demo-app-config/config/*" in sources
    for action in ("ec2:DeleteSnapshot", "ec2:ModifySnapshotAttribute"):
        for statement in _statements_for(policy, action):
            condition = statement["Condition"]["StringEquals"]
            assert condition["aws:ResourceTag/securedr:managed"] == "true"
            assert condition["aws:ResourceTag/securedr:plan"] == plan.name


def test_policy_allows_every_call_of_a_nightly_run_and_nothing_more(estate, plan, ctx, monkeypatch):
    dr = plan.regions.dr
    # A file large enough for a multipart upload, in the local file set.
    monkeypatch.setattr(filesets_adapter, "PART_SIZE", 5 << 20)
    local = next(f for f in plan.file_sets.sets if not f.is_s3)
    (local.directory(Path(".")) / "big.dump").write_bytes(b"x" * (6 << 20))
    # An expired copy (so retention deletes) and, after copying, a public copy (so verify unshares).
    volume = boto3.client("ec2", region_name=dr).create_volume(AvailabilityZone=f"{dr}a", Size=1)
    tags = lineage_tags(
        plan=plan.name,
        run_id="old",
        kind="ebs",
        source_id="vol-gone",
        source_region="us-east-1",
        role="dr-copy",
    )
    tags["securedr:verified"] = "old"
    old = [
        boto3.client("ec2", region_name=dr).create_snapshot(
            VolumeId=volume["VolumeId"],
            TagSpecifications=[
                {
                    "ResourceType": "snapshot",
                    "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                }
            ],
        )["SnapshotId"]
        for _ in range(5)
    ]
    for age, snapshot_id in enumerate(old):
        ec2_backend(dr).snapshots[snapshot_id].start_time = datetime.now(UTC) - timedelta(
            days=30 + age
        )
        # Retention deletes only what a signed manifest lists: the night that made the copy.
        sign_manifest(
            f"scheduled__old-ebs-{age}",
            [
                {
                    "kind": "ebs",
                    "source_id": "vol-gone",
                    "snapshot_id": f"snap-src-{age}",
                    "dr_snapshot_id": snapshot_id,
                }
            ],
            days_ago=30 + age,
        )

    rds_tags = lineage_tags(
        plan=plan.name,
        run_id="old",
        kind="rds",
        source_id="orders-db",
        source_region="us-east-1",
        role="recovery-point",
    )
    rds_tags["securedr:verified"] = "old"
    for age in range(5):
        identifier = f"securedr-orders-db-old{age}"
        boto3.client("rds", region_name="us-east-1").create_db_snapshot(
            DBInstanceIdentifier="orders-db",
            DBSnapshotIdentifier=identifier,
            Tags=[{"Key": k, "Value": v} for k, v in rds_tags.items()],
        )
        rds_backend("us-east-1").database_snapshots[identifier].created = datetime.now(
            UTC
        ) - timedelta(days=30 + age)
        sign_manifest(
            f"scheduled__old-rds-{age}",
            [{"kind": "rds", "source_id": "orders-db", "snapshot_id": identifier}],
            days_ago=30 + age,
        )

    with recorded_calls() as calls, recorded_requests() as requests:
        PreflightChecksOperator(task_id="preflight").execute(ctx)
        file_sets = BackupFileSetsOperator(task_id="backup_file_sets").execute(ctx)
        # A retry finds, and decrypts to check, what the first try stored.
        assert BackupFileSetsOperator(task_id="backup_file_sets").execute(ctx) == [
            {**entry, "reused": entry["file_count"]} for entry in file_sets
        ]
        found = DiscoverProtectedResourcesOperator(task_id="discover").execute(ctx)
        points = CreateRecoveryPointsOperator(
            task_id="snapshot", protected_resources=found
        ).execute(ctx)
        trigger = RecoveryPointsTrigger(
            refs=[
                {"kind": p["kind"], "region": p["source_region"], "snapshot_id": p["snapshot_id"]}
                for p in points
            ],
            poll_seconds=0.1,
        )

        async def first_event():
            async for event in trigger.run():
                return event

        asyncio.run(first_event())
        copied = CopyToDrRegionOperator(task_id="copy", points=points).execute(ctx)
    for kind in ("ebs", "rds"):
        target = next(p for p in copied if p["kind"] == kind)
        if kind == "ebs":
            boto3.client("ec2", region_name=dr).modify_snapshot_attribute(
                SnapshotId=target["dr_snapshot_id"],
                Attribute="createVolumePermission",
                OperationType="add",
                GroupNames=["all"],
            )
        else:
            boto3.client("rds", region_name=dr).modify_db_snapshot_attribute(
                DBSnapshotIdentifier=target["dr_snapshot_id"],
                AttributeName="restore",
                ValuesToAdd=["111122223333"],
            )
    with recorded_calls() as later, recorded_requests() as later_requests:
        verdicts = VerifyDrCopiesOperator(task_id="verify", points=copied).execute(ctx)
        manifest = SignRunManifestOperator(
            task_id="manifest", verifications=verdicts, file_sets=file_sets
        ).execute(ctx)
        retention = ApplyRetentionOperator(task_id="retention", verifications=verdicts).execute(ctx)

        class TI:
            def get_task_states(self, dag_id, run_ids):
                return {run_ids[0]: {}}

        NightlyReportOperator(
            task_id="report_run", verifications=verdicts, manifest=manifest, retention=retention
        ).execute({**ctx, "ti": TI()})
    calls |= later
    # The next night re-checks this night's copies (one was made public again meanwhile),
    # reading the signed manifest by version and notifying the plan's topic of the incident.
    ensure_notification_topic(plan, os.environ["AWS_ENDPOINT_URL"])
    boto3.client("ec2", region_name=dr).modify_snapshot_attribute(
        SnapshotId=next(p for p in copied if p["kind"] == "ebs")["dr_snapshot_id"],
        Attribute="createVolumePermission",
        OperationType="add",
        GroupNames=["all"],
    )
    with recorded_calls() as next_night, recorded_requests() as next_requests:
        rechecked = ReverifyRetainedCopiesOperator(task_id="reverify").execute(
            task_context(run_id="scheduled__next-night")
        )
    assert rechecked["incidents"] and rechecked["notified"]
    calls |= next_night
    assert retention["deleted"], "the run exercised deletion"

    policy = _policy(plan, estate.key_arns[dr])
    allowed = _allowed(policy)
    assert calls - allowed == set(), f"calls the policy does not allow: {calls - allowed}"
    assert {"s3:PutObject", "kms:GenerateDataKey", "kms:Decrypt"} <= calls
    # The retried file-set backup re-read the envelopes it stored, by VersionId.
    assert "s3:GetObjectVersion" in calls
    unused = allowed - calls - VIA_SERVICE - IMPLIED - ON_FAILURE - FOR_RESTORES
    assert unused == set(), f"the policy allows more than the run needs: {unused}"
    # Resource level: each action on the very resource (ARN) the run used is allowed.
    everything = [*requests, *later_requests, *next_requests]
    aliases = kms_aliases(sorted({r.region for r in everything}))
    assert denied(policy, everything, aliases) == []


@pytest.mark.parametrize("action", sorted(VIA_SERVICE | IMPLIED))
def test_indirect_permissions_are_granted(plan, action):
    assert action in _allowed(_policy(plan))


def test_an_upload_that_fails_half_way_is_aborted_with_an_allowed_call(estate, plan, monkeypatch):
    import io

    class Failing(io.RawIOBase):
        """16 MiB of data, then a read error: the first part is uploaded, then it fails.

        The envelope pipeline holds at most 7 chunks (1 MiB each) between reading and writing,
        so by the time the read fails at least 9 MiB have been written: the 5 MiB first part
        is uploaded whatever the threads' timing.
        """

        def __init__(self) -> None:
            self.left = 16 << 20

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            if self.left <= 0:
                raise OSError("disk read error")
            n = min(len(buffer), self.left)
            buffer[:n] = b"y" * n
            self.left -= n
            return n

    monkeypatch.setattr(filesets_adapter, "PART_SIZE", 5 << 20)
    dr = plan.regions.dr
    s3 = boto3.client("s3", region_name=dr)
    key = f"{plan.evidence_bucket.prefix}/file-sets/{plan.name}/x/set/failing.sdr"
    public = plan.recovery_public_key(Path("."))
    with recorded_calls() as calls, pytest.raises(OSError, match="disk read error"):
        filesets_adapter.store_envelope(
            s3,
            boto3.client("kms", region_name=dr),
            Failing(),
            bucket=plan.evidence_bucket.name,
            key=key,
            kms_key_arn=estate.key_arns[dr],
            recovery_public_key=public,
            lock_mode="GOVERNANCE",
            lock_days=1,
        )
    assert {"s3:PutObject", "s3:AbortMultipartUpload"} <= calls
    assert calls <= _allowed(_policy(plan, estate.key_arns[dr]))
    assert s3.list_multipart_uploads(Bucket=plan.evidence_bucket.name).get("Uploads", []) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=plan.evidence_bucket.name, Prefix=key)


def test_the_connection_may_assume_exactly_the_plans_restore_role(plan):
    """dr_restore and the drill assume the restore role with the connection's identity: the
    trust policy alone is not enough on real AWS, the caller needs sts:AssumeRole on the role."""
    (statement,) = _statements_for(_policy(plan), "sts:AssumeRole")
    assert statement["Resource"] == [plan.restore.role_arn]
    assert "*" not in plan.restore.role_arn
    no_role = _policy(
        plan.model_copy(update={"restore": plan.restore.model_copy(update={"role_arn": None})})
    )
    assert _statements_for(no_role, "sts:AssumeRole") == []
