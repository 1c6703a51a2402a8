"""Every DR copy the plan still holds is re-checked each night, not only tonight's."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException

from sandbox import realism
from sandbox.estate import ensure_key, ensure_notification_topic
from securedr.operators.dr_copy import CopyToDrRegionOperator
from securedr.operators.manifest import SignRunManifestOperator
from securedr.operators.recovery_points import (
    CreateRecoveryPointsOperator,
    DiscoverProtectedResourcesOperator,
)
from securedr.operators.report import NightlyReportOperator
from securedr.operators.verify import ReverifyRetainedCopiesOperator, VerifyDrCopiesOperator
from tests.operators.helpers import ACCOUNT, ec2_backend, task_context

EARLIER = "scheduled__2026-11-20T02:00:00+00:00"
TONIGHT = "scheduled__2026-11-26T02:00:00+00:00"


def _earlier_night(plan) -> list[dict]:
    """Run an earlier night up to its signed manifest; returns its verdicts."""
    ctx = task_context(run_id=EARLIER)
    ctx["dag_run"].start_date = datetime.now(UTC) - timedelta(days=6)
    resources = DiscoverProtectedResourcesOperator(task_id="discover").execute(ctx)
    points = CreateRecoveryPointsOperator(
        task_id="snapshot", protected_resources=resources
    ).execute(ctx)
    copied = CopyToDrRegionOperator(task_id="copy", points=points).execute(ctx)
    for point in copied:  # AWS stamped that night's EBS copies six days ago
        if point["kind"] == "ebs":
            snap = ec2_backend(plan.regions.dr).snapshots[point["dr_snapshot_id"]]
            snap.start_time = datetime.now(UTC) - timedelta(days=6, hours=1)
    verdicts = VerifyDrCopiesOperator(task_id="verify", points=copied).execute(ctx)
    assert all(v["passed"] and not v["incidents"] for v in verdicts)
    SignRunManifestOperator(task_id="manifest", verifications=verdicts).execute(ctx)
    return verdicts


def _copy(verdicts, kind: str) -> str:
    return next(v["point"]["dr_snapshot_id"] for v in verdicts if v["point"]["kind"] == kind)


def _reverify() -> dict:
    ctx = task_context(run_id=TONIGHT)
    return ReverifyRetainedCopiesOperator(task_id="reverify").execute(ctx)


def _sns_messages(plan) -> list[str]:
    from moto.sns.models import sns_backends

    topics = sns_backends[ACCOUNT][plan.regions.dr].topics
    return [n[1] for t in topics.values() for n in t.sent_notifications]


def test_copy_shared_after_its_night_is_made_private_and_reported_with_its_age(estate, plan, aws):
    verdicts = _earlier_night(plan)
    ensure_notification_topic(plan, aws)
    dr = plan.regions.dr
    ebs_copy, rds_copy = _copy(verdicts, "ebs"), _copy(verdicts, "rds")
    ec2 = boto3.client("ec2", region_name=dr)
    rds = boto3.client("rds", region_name=dr)
    # Shared days after its own night was verified: tonight's verification never sees it.
    ec2.modify_snapshot_attribute(
        SnapshotId=ebs_copy,
        Attribute="createVolumePermission",
        OperationType="add",
        GroupNames=["all"],
        UserIds=["111122223333"],
    )
    rds.modify_db_snapshot_attribute(
        DBSnapshotIdentifier=rds_copy, AttributeName="restore", ValuesToAdd=["all"]
    )

    result = _reverify()

    assert result["checked"] == len(verdicts) and result["problems"] == []
    incidents = result["incidents"]
    ebs_incident = next(i for i in incidents if ebs_copy in i)
    assert "all" in ebs_incident and "111122223333" in ebs_incident
    assert "made private" in ebs_incident and "6 days old" in ebs_incident
    assert any(rds_copy in i and "made private" in i for i in incidents)
    perms = ec2.describe_snapshot_attribute(
        SnapshotId=ebs_copy, Attribute="createVolumePermission"
    )["CreateVolumePermissions"]
    assert perms == []
    attrs = rds.describe_db_snapshot_attributes(DBSnapshotIdentifier=rds_copy)
    restore = attrs["DBSnapshotAttributesResult"]["DBSnapshotAttributes"][0]["AttributeValues"]
    assert restore == []
    assert result["notified"] is True
    assert any(ebs_copy in m for m in _sns_messages(plan))


def test_wrong_key_state_or_lineage_of_a_retained_copy_is_reported(estate, plan):
    verdicts = _earlier_night(plan)
    dr = plan.regions.dr
    ebs_ids = [v["point"]["dr_snapshot_id"] for v in verdicts if v["point"]["kind"] == "ebs"]
    rekeyed, broken = ebs_ids
    relabelled = _copy(verdicts, "rds")
    backend = ec2_backend(dr)
    rogue = ensure_key(dr, "alias/rogue", None)
    backend.snapshots[rekeyed].kms_key_id = rogue
    backend.snapshots[broken].status = "error"
    rds = boto3.client("rds", region_name=dr)
    arn = rds.describe_db_snapshots(DBSnapshotIdentifier=relabelled)["DBSnapshots"][0]
    rds.add_tags_to_resource(
        ResourceName=arn["DBSnapshotArn"],
        Tags=[{"Key": "securedr:source-id", "Value": "db-someone-else"}],
    )

    result = _reverify()

    by_copy = {p["copy"]: " ".join(p["problems"]) for p in result["problems"]}
    assert f"encrypted under {rogue}" in by_copy[f"{dr}/{rekeyed}"]
    assert "state is 'error'" in by_copy[f"{dr}/{broken}"]
    assert "db-someone-else" in by_copy[f"{dr}/{relabelled}"]
    assert len(by_copy) == 3

    class TI:
        def get_task_states(self, dag_id, run_ids):
            return {run_ids[0]: {}}

    ctx = {**task_context(run_id=TONIGHT), "ti": TI()}
    report = NightlyReportOperator(
        task_id="report_run", verifications=[], manifest=None, retention=None, retained=result
    )
    failed = "retained DR copies failed re-verification"
    with pytest.raises(AirflowFailException, match=failed) as e:
        report.execute(ctx)
    assert rekeyed in str(e.value) and "6 days old" in str(e.value)


def test_missing_young_copy_is_reported_and_tonights_manifest_is_skipped(estate, plan):
    verdicts = _earlier_night(plan)
    gone = _copy(verdicts, "ebs")
    boto3.client("ec2", region_name=plan.regions.dr).delete_snapshot(SnapshotId=gone)
    result = _reverify()
    assert [p["problems"] for p in result["problems"]] == [["the DR copy does not exist"]]

    # The same manifest seen as tonight's own: nothing to re-check.
    ctx = task_context(run_id=EARLIER)
    tonight = ReverifyRetainedCopiesOperator(task_id="reverify").execute(ctx)
    assert tonight["checked"] == 0 and tonight["problems"] == []


def test_altered_manifest_is_named_and_vouches_for_nothing(estate, plan):
    _earlier_night(plan)
    s3 = boto3.client("s3", region_name=plan.regions.dr)
    bucket = plan.evidence_bucket.name
    key = next(
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
        if "/manifests/" in f"/{o['Key']}"
    )
    document = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    document["payload"]["run_id"] = "forged"
    forged_key = key.replace(".json", "-copy.json")
    s3.put_object(Bucket=bucket, Key=forged_key, Body=json.dumps(document).encode())
    result = _reverify()
    assert result["manifests"] == 1
    assert any(forged_key in i and "cannot be trusted" in i for i in result["incidents"])


def test_calls_per_retained_copy_are_bounded(estate, plan):
    """Describes are batched; only the sharing check is one call per copy."""
    for night in range(3):
        ctx = task_context(run_id=f"scheduled__2026-11-2{night}T02:00:00+00:00")
        ctx["dag_run"].start_date = datetime.now(UTC) - timedelta(days=3 - night, hours=1)
        resources = DiscoverProtectedResourcesOperator(task_id="discover").execute(ctx)
        points = CreateRecoveryPointsOperator(
            task_id="snapshot", protected_resources=resources
        ).execute(ctx)
        copied = CopyToDrRegionOperator(task_id="copy", points=points).execute(ctx)
        verdicts = VerifyDrCopiesOperator(task_id="verify", points=copied).execute(ctx)
        SignRunManifestOperator(task_id="manifest", verifications=verdicts).execute(ctx)

    seen: list[tuple[str, str]] = []
    realism.behaviour("count-calls", before=lambda call: seen.append((call.service, call.action)))
    realism.configure("count-calls")
    try:
        result = _reverify()
    finally:
        realism.disable("count-calls")
    copies = result["checked"]
    assert copies == 3 * len(verdicts)
    aws_calls = [a for s, a in seen if s in ("ec2", "rds")]
    describes = [a for a in aws_calls if a in ("DescribeSnapshots", "DescribeDBSnapshots")]
    attributes = [a for a in aws_calls if a.endswith("Attribute") or a.endswith("Attributes")]
    assert len(describes) == 2  # one batch per service for every copy of every night
    assert len(attributes) == copies  # one sharing read per copy, nothing else per copy
    assert len(aws_calls) == copies + 2
    assert result["calls"]["describe"] + result["calls"]["sharing"] == len(aws_calls)
    s3_reads = [a for s, a in seen if s == "s3"]
    # One HeadBucket (AWS's time), one version listing, one get per night.
    assert len(s3_reads) == result["calls"]["s3_reads"] == 1 + 1 + 3


def test_expired_copy_deleted_by_retention_is_not_a_problem(estate, plan, monkeypatch):
    verdicts = _earlier_night(plan)
    gone = _copy(verdicts, "ebs")
    boto3.client("ec2", region_name=plan.regions.dr).delete_snapshot(SnapshotId=gone)
    import securedr.operators.verify as verify

    # AWS's clock says keep_days have passed: the deleted copy was retention's to delete.
    later = datetime.now(UTC) + timedelta(days=plan.retention.keep_days + 1)
    monkeypatch.setattr(verify, "aws_time", lambda s3, bucket: later)
    result = _reverify()
    assert result["expired_and_gone"] == 1 and result["problems"] == []
    assert result["checked"] == len(verdicts) - 1


def test_a_forged_local_clock_cannot_age_a_missing_copy_into_expired(estate, plan, monkeypatch):
    verdicts = _earlier_night(plan)
    gone = _copy(verdicts, "ebs")
    boto3.client("ec2", region_name=plan.regions.dr).delete_snapshot(SnapshotId=gone)
    import securedr.operators.verify as verify

    class Forged(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            return datetime.now(tz) + timedelta(days=365)

    monkeypatch.setattr(verify, "datetime", Forged)
    result = _reverify()
    assert [p["copy"] for p in result["problems"]] == [f"{plan.regions.dr}/{gone}"]


def test_manifest_hidden_by_a_delete_marker_is_named_and_its_copies_still_checked(estate, plan):
    verdicts = _earlier_night(plan)
    s3 = boto3.client("s3", region_name=plan.regions.dr)
    bucket = plan.evidence_bucket.name
    key = next(
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
        if "/manifests/" in f"/{o['Key']}"
    )
    s3.delete_object(Bucket=bucket, Key=key)  # a delete marker; the locked version stays
    boto3.client("ec2", region_name=plan.regions.dr).modify_snapshot_attribute(
        SnapshotId=_copy(verdicts, "ebs"),
        Attribute="createVolumePermission",
        OperationType="add",
        GroupNames=["all"],
    )
    result = _reverify()
    assert result["manifests"] == 1 and result["checked"] == len(verdicts)
    assert any(key in i and "delete marker" in i for i in result["incidents"])
    assert any(_copy(verdicts, "ebs") in i and "made private" in i for i in result["incidents"])
