"""Section ``quotas``: AWS's quotas answer with AWS's codes and messages."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox import realism
from sandbox.realism import quotas, timing

NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"})
SOURCE, DR = "us-east-1", "us-west-2"


def client(service: str, url: str, region: str = SOURCE):
    return boto3.client(service, endpoint_url=url, region_name=region, config=NO_RETRIES)


def error_of(call, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as raised:
        call(**kwargs)
    return raised.value.response["Error"]["Code"], raised.value.response["Error"]["Message"]


def snapshots(url: str, count: int) -> list[str]:
    ec2 = client("ec2", url)
    volume = ec2.create_volume(AvailabilityZone=f"{SOURCE}a", Size=8)["VolumeId"]
    return [ec2.create_snapshot(VolumeId=volume)["SnapshotId"] for _ in range(count)]


def database(url: str) -> str:
    client("rds", url).create_db_instance(
        DBInstanceIdentifier="orders-db",
        DBInstanceClass="db.t4g.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="dbadmin",
        MasterUserPassword="sandbox-only-password",
    )
    return "orders-db"


def test_aws_numbers_are_the_defaults(aws):
    realism.configure("quotas")
    assert {name: quotas.limit(name) for name in quotas.DEFAULTS} == {
        "ebs_copies_per_region": 20,
        "rds_copies_per_region": 20,
        "rds_manual_snapshots": 100,
        "vpcs_per_region": 5,
    }


def test_ebs_copies_beyond_the_limit_answer_resource_limit_exceeded(aws):
    sources = snapshots(aws, 3)
    realism.configure("timing", copy_seconds=60)
    realism.configure("quotas", ebs_copies_per_region=2)
    dr = client("ec2", aws, DR)
    for source in sources[:2]:
        dr.copy_snapshot(SourceRegion=SOURCE, SourceSnapshotId=source)
    third = {"SourceRegion": SOURCE, "SourceSnapshotId": sources[2]}
    assert error_of(dr.copy_snapshot, **third) == (
        "ResourceLimitExceeded",
        "Too many snapshot copies in progress. The limit is 2 for this destination region.",
    )
    # Copies into another Region do not count against this one.
    client("ec2", aws, "eu-west-1").copy_snapshot(**third)
    realism.advance(60)  # a slot frees when a copy completes
    assert dr.copy_snapshot(**third)["SnapshotId"]


def test_rds_cross_region_copies_beyond_the_limit_answer_snapshot_quota_exceeded(aws):
    rds = client("rds", aws)
    db = database(aws)
    arns = [
        rds.create_db_snapshot(DBInstanceIdentifier=db, DBSnapshotIdentifier=f"orders-{i}")[
            "DBSnapshot"
        ]["DBSnapshotArn"]
        for i in range(3)
    ]
    realism.configure("timing", copy_seconds=60)
    realism.configure("quotas", rds_copies_per_region=2)
    dr = client("rds", aws, DR)

    def copy(i: int) -> dict:
        return dr.copy_db_snapshot(
            SourceDBSnapshotIdentifier=arns[i],
            TargetDBSnapshotIdentifier=f"orders-{i}",
            SourceRegion=SOURCE,
        )

    copy(0), copy(1)
    assert error_of(copy, i=2) == (
        "SnapshotQuotaExceeded",
        "Cannot copy more than 2 snapshots across regions",
    )
    realism.advance(60)
    assert copy(2)["DBSnapshot"]["DBSnapshotIdentifier"] == "orders-2"


def test_manual_db_snapshots_beyond_the_quota_answer_with_another_message(aws):
    rds = client("rds", aws)
    db = database(aws)
    realism.configure("quotas", rds_manual_snapshots=2)
    for i in range(2):
        rds.create_db_snapshot(DBInstanceIdentifier=db, DBSnapshotIdentifier=f"orders-{i}")
    assert error_of(
        rds.create_db_snapshot, DBInstanceIdentifier=db, DBSnapshotIdentifier="orders-2"
    ) == ("SnapshotQuotaExceeded", "Cannot create more than 2 manual snapshots")
    rds.delete_db_snapshot(DBSnapshotIdentifier="orders-0")
    rds.create_db_snapshot(DBInstanceIdentifier=db, DBSnapshotIdentifier="orders-2")


def test_a_region_holds_five_vpcs_the_default_one_included(aws):
    realism.configure("quotas")
    ec2 = client("ec2", aws)
    assert len(ec2.describe_vpcs()["Vpcs"]) == 1  # the default VPC
    for i in range(4):
        ec2.create_vpc(CidrBlock=f"10.{i}.0.0/16")
    assert error_of(ec2.create_vpc, CidrBlock="10.9.0.0/16") == (
        "VpcLimitExceeded",
        "The maximum number of VPCs has been reached.",
    )


def test_without_the_section_there_is_no_quota(aws):
    sources = snapshots(aws, 3)
    realism.configure("timing", copy_seconds=60)  # copies stay in flight, but no quota is on
    dr = client("ec2", aws, DR)
    for source in sources:
        dr.copy_snapshot(SourceRegion=SOURCE, SourceSnapshotId=source)
    assert timing.in_flight("ec2", DR) == 3
