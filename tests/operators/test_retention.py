"""Retention against the sandbox AWS: only SecureDR's own, expired, non-last copies go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException

from securedr.core.model import lineage_tags
from securedr.operators.retention import ApplyRetentionOperator
from tests.operators.helpers import ec2_backend

DR = "us-west-2"


def _snapshot(volume_id: str, age_days: float, *, tags: dict[str, str]) -> str:
    ec2 = boto3.client("ec2", region_name=DR)
    snap = ec2.create_snapshot(
        VolumeId=volume_id,
        TagSpecifications=[
            {"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )
    ec2_backend(DR).snapshots[snap["SnapshotId"]].start_time = datetime.now(UTC) - timedelta(
        days=age_days
    )
    return snap["SnapshotId"]


def _dr_copy_tags(plan, source_id: str, verified: bool, plan_name: str | None = None) -> dict:
    tags = lineage_tags(
        plan=plan_name or plan.name,
        run_id="scheduled__old",
        kind="ebs",
        source_id=source_id,
        source_region="us-east-1",
        role="dr-copy",
    )
    if verified:
        tags["securedr:verified"] = "scheduled__old"
    return tags


@pytest.fixture
def history(estate, plan):
    """Copies of two sources in the DR Region, plus snapshots SecureDR must never touch."""
    volume = boto3.client("ec2", region_name=DR).create_volume(AvailabilityZone=f"{DR}a", Size=1)
    vid = volume["VolumeId"]
    ages = [1, 10, 20, 30, 40]
    good = {age: _snapshot(vid, age, tags=_dr_copy_tags(plan, "vol-good", True)) for age in ages}
    unverified_only = [
        _snapshot(vid, age, tags=_dr_copy_tags(plan, "vol-never-verified", False))
        for age in (30, 40)
    ]
    foreign = _snapshot(vid, 100, tags={"Name": "made by another tool"})
    other_plan = _snapshot(vid, 100, tags=_dr_copy_tags(plan, "vol-good", True, "other-plan"))
    return {
        "good": good,
        "unverified": unverified_only,
        "foreign": foreign,
        "other_plan": other_plan,
    }


def _existing() -> set[str]:
    return {s.id for s in ec2_backend(DR).snapshots.values()}


def _verdict(created_at: datetime) -> dict:
    point = {
        "kind": "ebs",
        "source_id": "vol-good",
        "source_region": "us-east-1",
        "snapshot_id": "snap-src",
        "size_gib": 1,
        "source_encrypted": True,
        "run_id": "r",
        "dr_region": DR,
        "dr_snapshot_id": "snap-x",
        "dr_created_at": created_at.isoformat(),
    }
    return {"point": point, "passed": True, "problems": [], "incidents": []}


def test_expired_copies_go_but_the_minimum_and_outsiders_stay(history, plan, ctx):
    assert plan.retention.keep_days == 14 and plan.retention.min_copies == 3
    result = ApplyRetentionOperator(
        task_id="retention", verifications=[_verdict(datetime.now(UTC))]
    ).execute(ctx)
    remaining = _existing()
    good = history["good"]
    assert good[30] not in remaining and good[40] not in remaining
    # 1 and 10 days are within 14; the 20-day copy is kept to hold the minimum of 3.
    assert {good[1], good[10], good[20]} <= remaining
    assert set(history["unverified"]) <= remaining
    assert history["foreign"] in remaining and history["other_plan"] in remaining
    assert sorted(result["deleted"]) == sorted(f"{DR}/{good[a]}" for a in (30, 40))
    reasons = {d["copy"]: d["reason"] for d in result["decisions"]}
    assert "minimum" in reasons[good[20]]
    assert "no verified copy" in reasons[history["unverified"][0]]


def test_dry_run_deletes_nothing_and_says_what_it_would_delete(history, plan, ctx):
    before = _existing()
    result = ApplyRetentionOperator(
        task_id="retention", verifications=[_verdict(datetime.now(UTC))], dry_run="True"
    ).execute(ctx)
    assert _existing() == before
    assert result["dry_run"] is True and result["deleted"] == []
    assert sorted(result["would_delete"]) == sorted(history["good"][a] for a in (30, 40))


def test_local_clock_ahead_of_aws_time_deletes_nothing(history, plan, ctx):
    before = _existing()
    # AWS stamped tonight's copy three hours before what the local clock claims is now.
    aws_time = datetime.now(UTC) - timedelta(hours=3)
    with pytest.raises(AirflowFailException, match="Retention refused"):
        ApplyRetentionOperator(task_id="retention", verifications=[_verdict(aws_time)]).execute(ctx)
    assert _existing() == before
