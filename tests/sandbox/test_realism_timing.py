"""Section ``timing``: snapshots and copies stay in progress on the sandbox clock, as on AWS."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from botocore.config import Config

from sandbox import realism
from sandbox.realism import timing

NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"})
SOURCE, DR = "us-east-1", "us-west-2"


def client(service: str, url: str, region: str = SOURCE):
    return boto3.client(service, endpoint_url=url, region_name=region, config=NO_RETRIES)


def volume_snapshot(url: str) -> str:
    ec2 = client("ec2", url)
    volume = ec2.create_volume(AvailabilityZone=f"{SOURCE}a", Size=8)["VolumeId"]
    return ec2.create_snapshot(VolumeId=volume)["SnapshotId"]


def database(url: str, name: str = "orders-db") -> str:
    client("rds", url).create_db_instance(
        DBInstanceIdentifier=name,
        DBInstanceClass="db.t4g.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="dbadmin",
        MasterUserPassword="sandbox-only-password",
    )
    return name


def about(progress: str | int, percent: int) -> bool:
    """Progress as expected, give or take the real seconds the test itself took."""
    return percent <= int(str(progress).rstrip("%")) <= percent + 3


def describe(url: str, snapshot_id: str, region: str = SOURCE) -> dict:
    return client("ec2", url, region).describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]


def describe_db(url: str, identifier: str, region: str = SOURCE) -> dict:
    rds = client("rds", url, region)
    return rds.describe_db_snapshots(DBSnapshotIdentifier=identifier)["DBSnapshots"][0]


def test_ebs_snapshot_is_pending_with_progress_until_its_duration_passed(aws):
    realism.configure("timing", snapshot_seconds=600)
    ec2 = client("ec2", aws)
    volume = ec2.create_volume(AvailabilityZone=f"{SOURCE}a", Size=8)["VolumeId"]
    before = realism.now().replace(microsecond=0)
    created = ec2.create_snapshot(VolumeId=volume)
    assert created["State"] == "pending"
    assert created["Progress"] == "0%"
    realism.advance(240)
    seen = describe(aws, created["SnapshotId"])
    assert seen["State"] == "pending"
    assert about(seen["Progress"], 40)
    assert seen["StartTime"] >= before  # when it began, not when it will complete
    realism.advance(360)
    done = describe(aws, created["SnapshotId"])
    assert (done["State"], done["Progress"]) == ("completed", "100%")
    assert done["StartTime"] == seen["StartTime"]
    waiter_filter = [{"Name": "status", "Values": ["pending"]}]
    assert ec2.describe_snapshots(Filters=waiter_filter, OwnerIds=["self"])["Snapshots"] == []


def test_ebs_copy_is_pending_from_when_it_began_and_counts_in_flight(aws):
    source = volume_snapshot(aws)
    realism.configure("timing", copy_seconds=100)
    dr = client("ec2", aws, DR)
    realism.advance(50)  # the copy begins later than its source
    began = realism.now().replace(microsecond=0)
    copy = dr.copy_snapshot(SourceRegion=SOURCE, SourceSnapshotId=source)["SnapshotId"]
    assert timing.in_flight("ec2", DR) == 1
    assert timing.in_flight("ec2", SOURCE) == 0
    realism.advance(37)
    seen = describe(aws, copy, DR)
    assert seen["State"] == "pending"
    assert about(seen["Progress"], 37)
    assert seen["StartTime"] >= began
    assert seen["StartTime"] > describe(aws, source)["StartTime"]
    realism.advance(63)
    assert describe(aws, copy, DR)["State"] == "completed"
    assert timing.in_flight("ec2", DR) == 0


def test_db_snapshot_is_creating_without_a_create_time_until_available(aws):
    realism.configure("timing", db_snapshot_seconds=300)
    rds = client("rds", aws)
    began = realism.now().replace(microsecond=0)
    created = rds.create_db_snapshot(
        DBInstanceIdentifier=database(aws), DBSnapshotIdentifier="orders-db-1"
    )["DBSnapshot"]
    assert (created["Status"], created["PercentProgress"]) == ("creating", 0)
    assert "SnapshotCreateTime" not in created  # AWS omits it until the snapshot is available
    realism.advance(150)
    seen = describe_db(aws, "orders-db-1")
    assert seen["Status"] == "creating"
    assert about(seen["PercentProgress"], 50)
    assert "SnapshotCreateTime" not in seen
    realism.advance(150)
    done = describe_db(aws, "orders-db-1")
    assert (done["Status"], done["PercentProgress"]) == ("available", 100)
    assert began <= done["SnapshotCreateTime"] < began + dt.timedelta(seconds=5)


def test_cross_region_db_copy_is_pending_then_copying_then_available(aws):
    arn = client("rds", aws).create_db_snapshot(
        DBInstanceIdentifier=database(aws), DBSnapshotIdentifier="orders-db-1"
    )["DBSnapshot"]["DBSnapshotArn"]
    realism.configure("timing", copy_seconds=1000)
    realism.advance(30)
    began = realism.now().replace(microsecond=0)
    rds_dr = client("rds", aws, DR)
    copy = rds_dr.copy_db_snapshot(
        SourceDBSnapshotIdentifier=arn,
        TargetDBSnapshotIdentifier="orders-db-1",
        SourceRegion=SOURCE,
    )["DBSnapshot"]
    assert (copy["Status"], copy["PercentProgress"]) == ("pending", 0)
    assert timing.in_flight("rds", DR) == 1
    realism.advance(500)
    seen = describe_db(aws, "orders-db-1", DR)
    assert seen["Status"] == "copying"
    assert about(seen["PercentProgress"], 50)
    assert "SnapshotCreateTime" not in seen
    realism.advance(500)
    done = describe_db(aws, "orders-db-1", DR)
    assert done["Status"] == "available"
    assert done["SnapshotCreateTime"] >= began  # "changes for the copy when it is copied"
    assert done["OriginalSnapshotCreateTime"] < began
    assert timing.in_flight("rds", DR) == 0


def test_a_copy_takes_three_hours_on_an_advanced_clock(aws):
    """The documented way to make a copy take 3 hours: copy_seconds=10800, then advance."""
    source = volume_snapshot(aws)
    realism.configure("timing", copy_seconds=10800)
    dr = client("ec2", aws, DR)
    copy = dr.copy_snapshot(SourceRegion=SOURCE, SourceSnapshotId=source)["SnapshotId"]
    realism.advance(10800 - 60)  # a minute to go (more than the real seconds the test takes)
    assert describe(aws, copy, DR)["State"] == "pending"
    realism.advance(60)
    finished = describe(aws, copy, DR)
    assert finished["State"] == "completed"
    # Every AWS timestamp issued afterwards is 3 hours after the copy began.
    later = volume_snapshot(aws)
    assert describe(aws, later)["StartTime"] - finished["StartTime"] >= dt.timedelta(hours=3)


def test_one_copy_can_be_given_its_own_duration(aws):
    first, second = volume_snapshot(aws), volume_snapshot(aws)
    realism.configure("timing", copy_seconds=10, overrides={first: 3600})
    dr = client("ec2", aws, DR)
    slow = dr.copy_snapshot(SourceRegion=SOURCE, SourceSnapshotId=first)["SnapshotId"]
    fast = dr.copy_snapshot(SourceRegion=SOURCE, SourceSnapshotId=second)["SnapshotId"]
    realism.advance(10)
    assert describe(aws, fast, DR)["State"] == "completed"
    assert describe(aws, slow, DR)["State"] == "pending"
    timing.set_duration(slow, 10)  # a copy already running can be sped up (or slowed down)
    assert describe(aws, slow, DR)["State"] == "completed"
    with pytest.raises(KeyError):
        timing.set_duration(slow, 5)


def test_without_the_section_moto_completes_everything_at_once(aws):
    realism.configure("consistency", seconds=0)  # another section on: timing stays off
    ec2 = client("ec2", aws)
    volume = ec2.create_volume(AvailabilityZone=f"{SOURCE}a", Size=8)["VolumeId"]
    assert ec2.create_snapshot(VolumeId=volume)["State"] == "completed"
    assert timing.in_flight("ec2", SOURCE) == 0


def test_switching_the_section_off_completes_what_was_in_progress(aws):
    realism.configure("timing", snapshot_seconds=600)
    snapshot = volume_snapshot(aws)
    assert describe(aws, snapshot)["State"] == "pending"
    realism.disable("timing")
    assert describe(aws, snapshot)["State"] == "completed"
