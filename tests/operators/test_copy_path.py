"""The snapshot/copy path under AWS's real behaviour: quotas, refusals, consistency, throttling.

AWS errors are injected into the sandbox with the realism layer's core API (a ``before`` hook
answering with AWS's exact code and message), so every call still goes over real HTTP.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from airflow.sdk.exceptions import TaskDeferred
from botocore.exceptions import ClientError

from sandbox import realism
from securedr.aws import rds as rds_adapter
from securedr.core.manifest import ManifestError, build_manifest
from securedr.core.model import RecoveryPoint, Verification
from securedr.core.plan import DEFAULT_PLAN_PATH
from securedr.operators.dr_copy import CopyToDrRegionOperator
from securedr.operators.preflight import PreflightChecksOperator
from securedr.operators.recovery_points import (
    CreateRecoveryPointsOperator,
    DiscoverProtectedResourcesOperator,
)
from securedr.operators.verify import VerifyDrCopiesOperator
from securedr.triggers.recovery_points import RecoveryPointsTrigger
from tests.operators.helpers import ec2_backend, rds_backend

MANUAL_QUOTA_MESSAGE = (
    "The request would result in the user exceeding the allowed number of DB snapshots."
)
CONCURRENT_COPY_MESSAGE = "Cannot copy more than 5 snapshots across regions"


def write_plan(tmp_path: Path, **changes: Any) -> str:
    """The shipped plan with ``changes`` merged in (one level deep per section)."""
    data = yaml.safe_load(Path(DEFAULT_PLAN_PATH).read_text())
    for section, values in changes.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def inject(name: str, fn) -> None:
    realism.behaviour(name, before=fn)
    realism.configure(name)


def discover(ctx, plan_path=None):
    return DiscoverProtectedResourcesOperator(task_id="discover", plan_path=plan_path).execute(ctx)


def snapshot(ctx, plan_path=None):
    return CreateRecoveryPointsOperator(
        task_id="snapshot", protected_resources=discover(ctx, plan_path), plan_path=plan_path
    ).execute(ctx)


def copy_op(points, plan_path=None) -> CopyToDrRegionOperator:
    return CopyToDrRegionOperator(task_id="copy", points=points, plan_path=plan_path)


def dr_copies(region: str) -> list[dict]:
    return boto3.client("ec2", region_name=region).describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag:securedr:role", "Values": ["dr-copy"]}]
    )["Snapshots"]


def by_source(points: list[dict]) -> dict[str, dict]:
    return {p["source_id"]: p for p in points}


# --- Unique RDS copy names -------------------------------------------------------------------


def test_same_database_name_in_two_regions_gives_two_dr_copies(estate, plan, ctx):
    from sandbox.estate import create_database, ensure_key

    other = plan.regions.sources[1]
    key = ensure_key(other, plan.kms_key(other), None)
    create_database(other, "orders-db", plan=plan, kms_key_arn=key, endpoint_url=None)
    copied = copy_op(snapshot(ctx)).execute(ctx)
    rds_points = [p for p in copied if p["kind"] == "rds"]
    assert len(rds_points) == 2
    ids = {p["source_region"]: p["dr_snapshot_id"] for p in rds_points}
    assert len(set(ids.values())) == 2
    for region, identifier in ids.items():
        assert identifier.endswith(region)
    assert all(p["not_protected"] is None for p in rds_points)
    dr = rds_backend(plan.regions.dr).database_snapshots
    assert set(ids.values()) <= set(dr)


# --- OptionGroupName --------------------------------------------------------------------------


def _record_copy_requests(seen: list[dict]) -> None:
    def record(call):
        if call.service == "rds" and call.action == "CopyDBSnapshot":
            seen.append(dict(call.params))

    inject("test-record-copies", record)


def test_rds_copy_gets_the_plans_option_group(estate, ctx, tmp_path):
    plan_path = write_plan(
        tmp_path, rds={"option_groups": {"by_engine": {"postgres": "dr-postgres-options"}}}
    )
    seen: list[dict] = []
    _record_copy_requests(seen)
    copy_op(snapshot(ctx, plan_path), plan_path).execute(ctx)
    assert [s.get("OptionGroupName") for s in seen] == ["dr-postgres-options"]


def test_option_group_by_source_wins_and_none_is_sent_without_a_setting(estate, ctx, tmp_path):
    from securedr.core.plan import OptionGroups

    groups = OptionGroups(
        by_source={"tde-oracle": "dr-tde-oracle"}, by_engine={"oracle": "dr-oracle"}
    )
    assert groups.for_db("oracle-ee", "tde-oracle") == "dr-tde-oracle"
    assert groups.for_db("oracle-ee", "other") == "dr-oracle"  # engine family
    assert groups.for_db("postgres", "default:postgres-16") is None
    seen: list[dict] = []
    _record_copy_requests(seen)
    copy_op(snapshot(ctx)).execute(ctx)
    assert len(seen) == 1 and "OptionGroupName" not in seen[0]


# --- Quotas -----------------------------------------------------------------------------------


def test_manual_snapshot_quota_fails_that_database_fast_and_the_rest_is_copied(estate, ctx):
    def quota(call):
        if call.service == "rds" and call.action == "CopyDBSnapshot":
            raise realism.AWSError("SnapshotQuotaExceeded", MANUAL_QUOTA_MESSAGE)

    inject("test-manual-quota", quota)
    copied = by_source(copy_op(snapshot(ctx)).execute(ctx))  # returns: no wait, no loop
    db = copied["orders-db"]
    assert "manual DB snapshot quota" in db["not_protected"]
    assert "Service Quotas" in db["not_protected"] and "keep_days" in db["not_protected"]
    assert not db["dr_snapshot_id"]
    others = [p for p in copied.values() if p["kind"] == "ebs"]
    assert len(others) == 2 and all(p["dr_snapshot_id"] for p in others)


def test_manual_snapshot_quota_at_source_rules_out_that_database(estate, ctx):
    def quota(call):
        if call.service == "rds" and call.action == "CreateDBSnapshot":
            raise realism.AWSError("SnapshotQuotaExceeded", MANUAL_QUOTA_MESSAGE)

    inject("test-manual-quota-source", quota)
    points = by_source(snapshot(ctx))
    assert "manual DB snapshot quota" in points["orders-db"]["not_protected"]
    assert all(p["snapshot_id"] for p in points.values() if p["kind"] == "ebs")


def test_preflight_warns_when_retention_would_exceed_the_manual_snapshot_quota(
    estate, ctx, tmp_path
):
    plan_path = write_plan(tmp_path, rds={"manual_snapshot_quota": 10}, retention={"keep_days": 14})
    result = PreflightChecksOperator(task_id="preflight", plan_path=plan_path).execute(ctx)
    warnings = result["warnings"]
    assert len(warnings) == 2  # the source Region with the database, and the DR Region
    assert any("us-east-1" in w and "about 14 manual DB snapshots" in w for w in warnings)
    assert all("rds.manual_snapshot_quota" in w for w in warnings)
    quiet = PreflightChecksOperator(task_id="preflight").execute(ctx)
    assert quiet["warnings"] == []


# --- Per-resource isolation -------------------------------------------------------------------


def test_cluster_member_and_rds_custom_are_reported_unsupported(estate, plan, ctx):
    realism.configure("refusals", cluster_members=True)  # AWS refuses CreateDBSnapshot
    rds_backend("us-east-1").databases["orders-db"].db_cluster_identifier = "orders-cluster"
    found = {r["resource_id"]: r for r in discover(ctx)}
    assert "member of DB cluster 'orders-cluster'" in found["orders-db"]["unsupported"]
    assert all(r["unsupported"] is None for r in found.values() if r["kind"] == "ebs")
    assert "RDS Custom" in rds_adapter.unsupported_reason({"Engine": "custom-oracle-ee"})
    points = by_source(snapshot(ctx))
    assert "member of DB cluster" in points["orders-db"]["not_protected"]
    assert not [i for i in rds_backend("us-east-1").database_snapshots if i.startswith("securedr")]
    assert all(p["snapshot_id"] for p in points.values() if p["kind"] == "ebs")


def test_instance_not_available_is_tried_again_later_in_the_run(estate, ctx, tmp_path):
    plan_path = write_plan(tmp_path, waits={"poll_seconds": 1, "unavailable_retry_minutes": 1})
    calls = []

    def busy_once(call):
        if call.service == "rds" and call.action == "CreateDBSnapshot":
            calls.append(time.time())
            if len(calls) == 1:
                raise realism.AWSError(
                    "InvalidDBInstanceState",
                    "Cannot create a snapshot because the database instance orders-db is not "
                    "currently in the available state.",
                )

    inject("test-busy-once", busy_once)
    points = by_source(snapshot(ctx, plan_path))
    assert len(calls) == 2
    assert points["orders-db"]["snapshot_id"] and points["orders-db"]["not_protected"] is None


def test_instance_never_available_is_named_and_others_protected(estate, ctx, tmp_path):
    from sandbox.realism import refusals

    plan_path = write_plan(tmp_path, waits={"poll_seconds": 1, "unavailable_retry_minutes": 0})
    realism.configure("refusals", unavailable_instances=True)
    refusals.set_instance_status("orders-db", "backing-up", region="us-east-1")
    points = by_source(snapshot(ctx, plan_path))
    assert "not available" in points["orders-db"]["not_protected"]
    assert "InvalidDBInstanceState" in points["orders-db"]["not_protected"]
    assert all(p["snapshot_id"] for p in points.values() if p["kind"] == "ebs")


def test_ruled_out_resource_is_in_verify_and_manifest_as_not_protected(estate, plan, ctx):
    rds_backend("us-east-1").databases["orders-db"].db_cluster_identifier = "orders-cluster"
    copied = copy_op(snapshot(ctx)).execute(ctx)
    verdicts = VerifyDrCopiesOperator(task_id="verify", points=copied).execute(ctx)
    bad = next(v for v in verdicts if v["point"]["source_id"] == "orders-db")
    assert not bad["passed"] and "member of DB cluster" in bad["problems"][0]
    payload = build_manifest(
        plan=plan.name,
        run_id=ctx["run_id"],
        dag_id="dr_nightly_backup",
        created_at=datetime.now(UTC).isoformat(),
        dr_region=plan.regions.dr,
        dr_kms_key_arn="arn",
        verifications=[Verification.from_dict(v) for v in verdicts],
    )
    assert payload["summary"] == {"recovery_points": 2, "verified": 2, "not_protected": 1}
    assert payload["not_protected"][0]["source_id"] == "orders-db"
    assert "member of DB cluster" in payload["not_protected"][0]["reason"]


# --- Manifest times ---------------------------------------------------------------------------


def test_every_verified_entry_carries_its_dr_copys_aws_time(estate, plan, ctx):
    copied = copy_op(snapshot(ctx)).execute(ctx)
    for point in copied:
        point["dr_created_at"] = None  # copies started in the last pass had none
    verdicts = VerifyDrCopiesOperator(task_id="verify", points=copied).execute(ctx)
    ec2 = boto3.client("ec2", region_name=plan.regions.dr)
    for verdict in verdicts:
        point = verdict["point"]
        assert verdict["passed"] and point["dr_created_at"]
        if point["kind"] == "ebs":
            snap = ec2.describe_snapshots(SnapshotIds=[point["dr_snapshot_id"]])["Snapshots"][0]
            assert point["dr_created_at"] == snap["StartTime"].astimezone(UTC).isoformat()

    stripped = Verification.from_dict(verdicts[0])
    stripped.point = dict(stripped.point, dr_created_at=None)
    with pytest.raises(ManifestError, match="no AWS timestamp"):
        build_manifest(
            plan=plan.name,
            run_id=ctx["run_id"],
            dag_id="dr_nightly_backup",
            created_at=datetime.now(UTC).isoformat(),
            dr_region=plan.regions.dr,
            dr_kms_key_arn="arn",
            verifications=[stripped],
        )


def test_an_rds_point_taken_before_aws_showed_its_time_gets_it_from_its_dr_copy(estate, plan, ctx):
    # AWS omits SnapshotCreateTime until a DB snapshot is available, so the snapshot step can
    # record an RDS point without its time; without it a drill cannot measure the RPO.
    with realism.section("timing", db_snapshot_seconds=3600):
        points = snapshot(ctx)
    rds_points = [p for p in points if p["kind"] == "rds"]
    assert rds_points and all(p["created_at"] is None for p in rds_points)
    realism.advance(3600)
    copied = copy_op(points).execute(ctx)
    verdicts = VerifyDrCopiesOperator(task_id="verify", points=copied).execute(ctx)
    for verdict in verdicts:
        point = verdict["point"]
        if point["kind"] != "rds":
            continue
        source = boto3.client("rds", region_name=point["source_region"]).describe_db_snapshots(
            DBSnapshotIdentifier=point["snapshot_id"]
        )["DBSnapshots"][0]
        assert verdict["passed"]
        assert point["created_at"] == source["SnapshotCreateTime"].astimezone(UTC).isoformat()


# --- Eventual consistency ---------------------------------------------------------------------


def test_trigger_treats_missing_within_grace_as_pending(estate, ctx):
    ref = {"kind": "ebs", "region": "us-west-2", "snapshot_id": "snap-0123456789abcdef0"}
    fresh = RecoveryPointsTrigger(
        refs=[dict(ref, requested_at=time.time())], poll_seconds=0.05, timeout_seconds=0.3
    )
    assert _first_event(fresh)["status"] == "timeout"
    stale = RecoveryPointsTrigger(
        refs=[dict(ref, requested_at=time.time() - 3600)], poll_seconds=0.05
    )
    assert _first_event(stale)["status"] == "error"


# --- Triggers: clients once per run, polling through throttling -------------------------------


def _first_event(trigger: RecoveryPointsTrigger) -> dict:
    async def first():
        async for event in trigger.run():
            return event.payload
        return None

    return asyncio.run(asyncio.wait_for(first(), timeout=60))


def test_trigger_builds_clients_once_and_polls_through_throttling(estate, ctx, monkeypatch):
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    import securedr.triggers.recovery_points as trigger_module
    from securedr.aws.clients import AwsClients

    points = [RecoveryPoint.from_dict(p) for p in snapshot(ctx)]
    slow = next(p for p in points if p.kind == "ebs" and p.source_region == "eu-west-1")
    ec2_backend("eu-west-1").snapshots[slow.snapshot_id].status = "pending"

    builds = []
    real_conn = AwsBaseHook.get_async_conn

    async def counting_conn(self):
        builds.append((self.client_type, self.region_name))
        return await real_conn(self)

    monkeypatch.setattr(AwsBaseHook, "get_async_conn", counting_conn)
    polls = []
    real_statuses = trigger_module.statuses_async

    async def throttled_then_real(pool, refs):
        polls.append(1)
        if len(polls) in (2, 3):
            raise ClientError(
                {"Error": {"Code": "RequestLimitExceeded", "Message": "Request limit exceeded."}},
                "DescribeSnapshots",
            )
        if len(polls) == 5:
            ec2_backend("eu-west-1").snapshots[slow.snapshot_id].status = "completed"
        return await real_statuses(pool, refs)

    monkeypatch.setattr(trigger_module, "statuses_async", throttled_then_real)
    refs = [p.source_ref.to_dict() for p in points]
    event = _first_event(RecoveryPointsTrigger(refs=refs, poll_seconds=0.05))
    assert event["status"] == "success"
    assert len(polls) >= 5
    # One client per (service, Region) for the whole run, not one per poll.
    assert sorted(builds) == sorted(set(builds))
    assert len(builds) == 3  # ec2 in two Regions, rds in one
    config = AwsClients().hook("ec2", "us-east-1").config
    assert config.retries["mode"] == "standard" and config.retries["total_max_attempts"] == 10


def test_rds_snapshot_quota_is_told_apart_by_its_message():
    from securedr.aws.limits import classify_limit

    def error(code: str, message: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": message}}, "CopyDBSnapshot")

    assert classify_limit(error("SnapshotQuotaExceeded", MANUAL_QUOTA_MESSAGE)) == "quota"
    assert (
        classify_limit(
            error("SnapshotQuotaExceeded", "Cannot create more than 100 manual snapshots")
        )
        == "quota"
    )
    assert classify_limit(error("SnapshotQuotaExceeded", CONCURRENT_COPY_MESSAGE)) == "concurrency"
    assert classify_limit(error("ResourceLimitExceeded", "Too many copies")) == "concurrency"
    assert classify_limit(error("InvalidParameterValue", "nope")) is None


def test_sensor_names_a_failed_copy_and_keeps_waiting_for_the_others(estate, ctx):
    from securedr.sensors.recovery_points import RecoveryPointsSensor

    points = snapshot(ctx)
    sensor = RecoveryPointsSensor(task_id="wait", points=points, location="source")
    bad = next(p for p in points if p["kind"] == "ebs")
    key = f"ebs:{bad['source_region']}:{bad['snapshot_id']}"
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute_complete(
            ctx, {"status": "error", "failed": {key: "state error: boom"}, "completed": []}
        )
    refs = deferred.value.trigger.refs
    assert len(refs) == len(points) - 1
    assert bad["snapshot_id"] not in {r["snapshot_id"] for r in refs}
    assert deferred.value.kwargs["excluded"] == [key]


def test_volume_in_error_is_reported_unsupported(estate, ctx, monkeypatch):
    from moto.ec2.models.elastic_block_store import Volume

    volume = estate.protected_volumes["us-east-1"][0]
    real = Volume.status
    monkeypatch.setattr(
        Volume, "status", property(lambda v: "error" if v.id == volume else real.fget(v))
    )
    points = by_source(snapshot(ctx))
    assert "'error' state" in points[volume]["not_protected"]
    assert points["orders-db"]["snapshot_id"]
