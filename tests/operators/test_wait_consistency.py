"""Waiting for snapshots copes with AWS's eventual consistency (sandbox realism on)."""

from __future__ import annotations

import asyncio

import boto3

from sandbox import realism
from securedr.triggers.recovery_points import RecoveryPointsTrigger


def _first_event(trigger: RecoveryPointsTrigger) -> dict:
    async def first():
        async for event in trigger.run():
            return event.payload
        return None

    return asyncio.run(asyncio.wait_for(first(), timeout=60))


def _copy_not_visible_yet(url: str) -> dict:
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=url)
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8)["VolumeId"]
    source = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    realism.configure("consistency", seconds=1)
    dr = boto3.client("ec2", region_name="us-west-2", endpoint_url=url)
    copy = dr.copy_snapshot(SourceRegion="us-east-1", SourceSnapshotId=source)["SnapshotId"]
    return {"kind": "ebs", "region": "us-west-2", "snapshot_id": copy}


def test_a_copy_that_aws_does_not_show_yet_is_waited_for(aws):
    ref = _copy_not_visible_yet(aws)
    event = _first_event(RecoveryPointsTrigger(refs=[ref], poll_seconds=0.2))
    assert event["status"] == "success", event
    assert event["completed"] == [f"ebs:us-west-2:{ref['snapshot_id']}"]


def test_a_snapshot_still_missing_after_the_grace_period_has_failed(aws):
    ref = _copy_not_visible_yet(aws)
    trigger = RecoveryPointsTrigger(refs=[ref], poll_seconds=0.2, missing_grace_seconds=0)
    event = _first_event(trigger)
    assert event["status"] == "error"
    assert event["failed"][f"ebs:us-west-2:{ref['snapshot_id']}"].startswith("not found")
    _, kwargs = trigger.serialize()
    assert kwargs["missing_grace_seconds"] == 0
