"""The nightly backup's steps, one at a time, against the sandbox AWS over real HTTP."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from securedr.core.model import RecoveryPoint
from securedr.operators.dr_copy import CopyToDrRegionOperator
from securedr.operators.recovery_points import (
    CreateRecoveryPointsOperator,
    DiscoverProtectedResourcesOperator,
)
from securedr.operators.report import NightlyReportOperator
from securedr.operators.verify import VerifyDrCopiesOperator
from securedr.sensors.recovery_points import RecoveryPointsSensor
from securedr.triggers.recovery_points import RecoveryPointsTrigger
from tests.operators.helpers import ec2_backend, rds_backend


def discover(ctx):
    return DiscoverProtectedResourcesOperator(task_id="discover").execute(ctx)


def snapshot(ctx, resources):
    return CreateRecoveryPointsOperator(task_id="snapshot", protected_resources=resources).execute(
        ctx
    )


def managed_snapshots(region: str, role: str) -> list[dict]:
    return boto3.client("ec2", region_name=region).describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag:securedr:role", "Values": [role]}]
    )["Snapshots"]


def securedr_db_snapshots(region: str) -> list[str]:
    """Manual DB snapshots SecureDR made (moto also keeps an automated one per instance)."""
    return [i for i in rds_backend(region).database_snapshots if i.startswith("securedr-")]


def test_discovery_finds_exactly_the_tagged_resources(estate, ctx):
    found = discover(ctx)
    ids = sorted(r["resource_id"] for r in found)
    expected = sorted(
        [v for vols in estate.protected_volumes.values() for v in vols]
        + [d for dbs in estate.protected_databases.values() for d in dbs]
    )
    assert ids == expected
    untagged = estate.unprotected_volumes["us-east-1"][0]
    assert untagged not in ids


def test_recovery_points_carry_lineage_tags(estate, plan, ctx):
    points = snapshot(ctx, discover(ctx))
    ebs_point = next(p for p in points if p["kind"] == "ebs" and p["source_region"] == "us-east-1")
    snap = boto3.client("ec2", region_name="us-east-1").describe_snapshots(
        SnapshotIds=[ebs_point["snapshot_id"]]
    )["Snapshots"][0]
    tags = {t["Key"]: t["Value"] for t in snap["Tags"]}
    assert tags["securedr:managed"] == "true"
    assert tags["securedr:plan"] == plan.name
    assert tags["securedr:run-id"] == ctx["run_id"]
    assert tags["securedr:source-id"] == ebs_point["source_id"]
    assert tags["securedr:role"] == "recovery-point"


def test_retried_snapshot_task_creates_no_duplicates(estate, ctx):
    resources = discover(ctx)
    first = snapshot(ctx, resources)
    second = snapshot(ctx, resources)
    assert [p["snapshot_id"] for p in second] == [p["snapshot_id"] for p in first]
    assert all(p["reused"] for p in second)
    assert len(managed_snapshots("us-east-1", "recovery-point")) == 1
    assert len(securedr_db_snapshots("us-east-1")) == 1


def test_rds_snapshot_started_before_a_crash_is_adopted(estate, ctx):
    from securedr.core.model import rds_snapshot_identifier

    identifier = rds_snapshot_identifier("orders-db", ctx["run_id"])
    # The first try got as far as CreateDBSnapshot, then its worker died.
    boto3.client("rds", region_name="us-east-1").create_db_snapshot(
        DBInstanceIdentifier="orders-db", DBSnapshotIdentifier=identifier
    )
    points = snapshot(ctx, discover(ctx))
    rds_point = next(p for p in points if p["kind"] == "rds")
    assert rds_point["snapshot_id"] == identifier and rds_point["reused"]
    assert len(securedr_db_snapshots("us-east-1")) == 1


def _set_ebs_state(region: str, snapshot_id: str, state: str) -> None:
    ec2_backend(region).snapshots[snapshot_id].status = state


def test_a_snapshot_in_error_rules_out_only_its_resource(estate, ctx):
    points = snapshot(ctx, discover(ctx))
    bad = next(p for p in points if p["kind"] == "ebs" and p["source_region"] == "eu-west-1")
    _set_ebs_state("eu-west-1", bad["snapshot_id"], "error")
    sensor = RecoveryPointsSensor(task_id="wait", points=points, location="source")
    # The sensor no longer waits for it (and does not fail the run for it) ...
    assert sensor.poke(ctx) is True
    # ... and the copy step names it, and copies every other resource.
    copied = CopyToDrRegionOperator(task_id="copy", points=points).execute(ctx)
    ruled_out = next(p for p in copied if p["source_id"] == bad["source_id"])
    assert bad["snapshot_id"] in ruled_out["not_protected"]
    assert "state error" in ruled_out["not_protected"]
    assert not ruled_out["dr_snapshot_id"]
    others = [p for p in copied if p["source_id"] != bad["source_id"]]
    assert others and all(p["dr_snapshot_id"] and p["not_protected"] is None for p in others)


def _first_event(trigger: RecoveryPointsTrigger) -> dict:
    async def first():
        async for event in trigger.run():
            return event.payload
        return None

    return asyncio.run(asyncio.wait_for(first(), timeout=60))


def test_trigger_batches_many_snapshots_and_reports_error_reason(estate, ctx):
    points = [RecoveryPoint.from_dict(p) for p in snapshot(ctx, discover(ctx))]
    bad = next(p for p in points if p.kind == "ebs" and p.source_region == "us-east-1")
    _set_ebs_state("us-east-1", bad.snapshot_id, "error")
    trigger = RecoveryPointsTrigger(refs=[p.source_ref.to_dict() for p in points], poll_seconds=0.1)
    event = _first_event(trigger)
    assert event["status"] == "error"
    assert list(event["failed"]) == [f"ebs:us-east-1:{bad.snapshot_id}"]
    assert "state error" in event["failed"][f"ebs:us-east-1:{bad.snapshot_id}"]


def test_trigger_succeeds_when_all_complete_and_times_out_naming_pending(estate, ctx):
    points = [RecoveryPoint.from_dict(p) for p in snapshot(ctx, discover(ctx))]
    refs = [p.source_ref.to_dict() for p in points]
    assert _first_event(RecoveryPointsTrigger(refs=refs, poll_seconds=0.1))["status"] == "success"

    slow = next(p for p in points if p.kind == "ebs" and p.source_region == "eu-west-1")
    _set_ebs_state("eu-west-1", slow.snapshot_id, "pending")
    event = _first_event(RecoveryPointsTrigger(refs=refs, poll_seconds=0.1, timeout_seconds=0.3))
    assert event["status"] == "timeout"
    assert event["pending"] == [f"ebs:eu-west-1:{slow.snapshot_id}"]


def test_sensor_defers_with_the_plans_timeout_and_reports_timeout_by_name(estate, plan, ctx):
    points = snapshot(ctx, discover(ctx))
    sensor = RecoveryPointsSensor(task_id="wait", points=points, location="source")
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(ctx)
    trigger = deferred.value.trigger
    assert trigger.timeout_seconds == pytest.approx(plan.waits.snapshot_timeout_minutes * 60, abs=5)
    assert len(trigger.refs) == len(points)
    pending = [f"ebs:eu-west-1:{points[0]['snapshot_id']}"]
    with pytest.raises(AirflowFailException, match="still pending"):
        sensor.execute_complete(ctx, {"status": "timeout", "pending": pending, "completed": []})


def test_copies_come_out_encrypted_under_the_dr_key_with_lineage(estate, plan, ctx):
    points = snapshot(ctx, discover(ctx))
    copied = CopyToDrRegionOperator(task_id="copy", points=points).execute(ctx)
    dr_key = estate.key_arns[plan.regions.dr]
    assert all(p["dr_kms_key_arn"] == dr_key for p in copied)
    copies = managed_snapshots(plan.regions.dr, "dr-copy")
    assert len(copies) == 2
    for copy in copies:
        assert copy["Encrypted"] and copy["KmsKeyId"] == dr_key
    unencrypted_source = next(p for p in copied if not p["source_encrypted"])
    dr_snap = next(c for c in copies if c["SnapshotId"] == unencrypted_source["dr_snapshot_id"])
    tags = {t["Key"]: t["Value"] for t in dr_snap["Tags"]}
    assert tags["securedr:source-snapshot"] == unencrypted_source["snapshot_id"]
    db = boto3.client("rds", region_name=plan.regions.dr).describe_db_snapshots(
        SnapshotType="manual"
    )["DBSnapshots"]
    assert [d["KmsKeyId"] for d in db] == [dr_key]


def test_retried_copy_task_creates_no_duplicates(estate, plan, ctx):
    points = snapshot(ctx, discover(ctx))
    first = CopyToDrRegionOperator(task_id="copy", points=points).execute(ctx)
    second = CopyToDrRegionOperator(task_id="copy", points=points).execute(ctx)
    assert [p["dr_snapshot_id"] for p in first] == [p["dr_snapshot_id"] for p in second]
    assert len(managed_snapshots(plan.regions.dr, "dr-copy")) == 2
    assert len(securedr_db_snapshots(plan.regions.dr)) == 1


def _copied(ctx):
    points = snapshot(ctx, discover(ctx))
    return CopyToDrRegionOperator(task_id="copy", points=points).execute(ctx)


def test_public_copy_is_made_private_and_reported_as_an_incident(estate, plan, ctx):
    copied = _copied(ctx)
    target = next(p for p in copied if p["kind"] == "ebs")
    ec2 = boto3.client("ec2", region_name=plan.regions.dr)
    ec2.modify_snapshot_attribute(
        SnapshotId=target["dr_snapshot_id"],
        Attribute="createVolumePermission",
        OperationType="add",
        GroupNames=["all"],
    )
    verdicts = VerifyDrCopiesOperator(task_id="verify", points=copied).execute(ctx)
    verdict = next(v for v in verdicts if v["point"]["dr_snapshot_id"] == target["dr_snapshot_id"])
    assert verdict["passed"]
    assert "INCIDENT" in verdict["incidents"][0] and "made private" in verdict["incidents"][0]
    perms = ec2.describe_snapshot_attribute(
        SnapshotId=target["dr_snapshot_id"], Attribute="createVolumePermission"
    )["CreateVolumePermissions"]
    assert perms == []


def test_shared_rds_copy_is_unshared(estate, plan, ctx):
    copied = _copied(ctx)
    target = next(p for p in copied if p["kind"] == "rds")
    rds = boto3.client("rds", region_name=plan.regions.dr)
    rds.modify_db_snapshot_attribute(
        DBSnapshotIdentifier=target["dr_snapshot_id"],
        AttributeName="restore",
        ValuesToAdd=["111122223333"],
    )
    verdicts = VerifyDrCopiesOperator(task_id="verify", points=copied).execute(ctx)
    verdict = next(v for v in verdicts if v["point"]["kind"] == "rds")
    assert "111122223333" in verdict["incidents"][0]
    attrs = rds.describe_db_snapshot_attributes(DBSnapshotIdentifier=target["dr_snapshot_id"])
    values = attrs["DBSnapshotAttributesResult"]["DBSnapshotAttributes"][0]["AttributeValues"]
    assert values == []


def test_copy_under_another_key_fails_verification_and_the_run_by_name(estate, plan, ctx):
    from sandbox.estate import ensure_key

    copied = _copied(ctx)
    target = next(p for p in copied if p["kind"] == "ebs")
    rogue = ensure_key(plan.regions.dr, "alias/rogue", None)
    ec2_backend(plan.regions.dr).snapshots[target["dr_snapshot_id"]].kms_key_id = rogue
    verdicts = VerifyDrCopiesOperator(task_id="verify", points=copied).execute(ctx)
    verdict = next(v for v in verdicts if v["point"]["dr_snapshot_id"] == target["dr_snapshot_id"])
    assert not verdict["passed"]
    assert f"encrypted under {rogue}" in verdict["problems"][0]
    # Only good copies are marked verified; retention will not count the bad one.
    tags = {
        t["Key"]
        for t in boto3.client("ec2", region_name=plan.regions.dr).describe_snapshots(
            SnapshotIds=[target["dr_snapshot_id"]]
        )["Snapshots"][0]["Tags"]
    }
    assert "securedr:verified" not in tags

    class TI:
        def get_task_states(self, dag_id, run_ids):
            return {run_ids[0]: {"verify_dr_copies": "success"}}

    report = NightlyReportOperator(
        task_id="report_run", verifications=verdicts, manifest=None, retention=None
    )
    with pytest.raises(AirflowFailException) as err:
        report.execute({**ctx, "ti": TI()})
    assert target["dr_snapshot_id"] in str(err.value)
    assert "failed verification" in str(err.value)


def test_report_is_written_to_the_evidence_bucket(estate, plan, ctx):
    copied = _copied(ctx)
    verdicts = VerifyDrCopiesOperator(task_id="verify", points=copied).execute(ctx)

    class TI:
        def get_task_states(self, dag_id, run_ids):
            return {run_ids[0]: {}}

    report = NightlyReportOperator(
        task_id="report_run", verifications=verdicts, manifest=None, retention=None
    ).execute({**ctx, "ti": TI()})
    assert report["succeeded"] and report["verified"] == 3
    key = report["report_url"].split(f"{plan.evidence_bucket.name}/", 1)[1]
    s3 = boto3.client("s3", region_name=plan.regions.dr)
    head = s3.head_object(Bucket=plan.evidence_bucket.name, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["ObjectLockMode"] == plan.evidence_bucket.object_lock_mode
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=1)
