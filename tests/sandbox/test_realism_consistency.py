"""Section ``consistency``: new resources are missing from describes for a while, as on AWS."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox import realism

NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"})
REGION = "us-east-1"


def client(service: str, url: str, region: str = REGION):
    return boto3.client(service, endpoint_url=url, region_name=region, config=NO_RETRIES)


def error_of(call, **kwargs) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as raised:
        call(**kwargs)
    response = raised.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def test_security_group_by_id_right_after_create_is_not_found(aws):
    realism.configure("consistency", seconds=2)
    ec2 = client("ec2", aws)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    group = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    assert error_of(ec2.describe_security_groups, GroupIds=[group]) == (
        "InvalidGroup.NotFound",
        f"The security group '{group}' does not exist",
        400,
    )
    by_name = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["web"]}])
    assert by_name["SecurityGroups"] == []
    realism.advance(2)
    assert ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["GroupId"] == group


def test_new_snapshot_and_volume_are_missing_by_id_and_from_listings(aws):
    ec2 = client("ec2", aws)
    old = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=8)["VolumeId"]
    realism.configure("consistency", seconds=1)
    volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=8)["VolumeId"]
    snapshot = ec2.create_snapshot(VolumeId=old)["SnapshotId"]
    assert error_of(ec2.describe_volumes, VolumeIds=[volume]) == (
        "InvalidVolume.NotFound",
        f"The volume '{volume}' does not exist.",
        400,
    )
    assert error_of(ec2.describe_snapshots, SnapshotIds=[snapshot]) == (
        "InvalidSnapshot.NotFound",
        f"The snapshot '{snapshot}' does not exist.",
        400,
    )
    listed = [v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]]
    assert listed == [old]  # the older one is there, the new one simply absent
    by_filter = ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snapshot]}])
    assert by_filter["Snapshots"] == []
    realism.advance(1)
    assert ec2.describe_snapshots(SnapshotIds=[snapshot])["Snapshots"][0]["SnapshotId"] == snapshot
    assert {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]} == {old, volume}


def test_a_copy_is_missing_in_its_destination_region(aws):
    source = client("ec2", aws).create_volume(AvailabilityZone=f"{REGION}a", Size=8)["VolumeId"]
    snapshot = client("ec2", aws).create_snapshot(VolumeId=source)["SnapshotId"]
    realism.configure("consistency", seconds=1)
    dr = client("ec2", aws, "us-west-2")
    copy = dr.copy_snapshot(SourceRegion=REGION, SourceSnapshotId=snapshot)["SnapshotId"]
    assert error_of(dr.describe_snapshots, SnapshotIds=[copy])[0] == "InvalidSnapshot.NotFound"
    realism.advance(1)
    assert dr.describe_snapshots(SnapshotIds=[copy])["Snapshots"][0]["SnapshotId"] == copy


def test_new_db_instance_and_db_snapshot_are_not_found(aws):
    realism.configure("consistency", seconds=3)
    rds = client("rds", aws)
    rds.create_db_instance(
        DBInstanceIdentifier="Orders-DB",
        DBInstanceClass="db.t4g.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="dbadmin",
        MasterUserPassword="sandbox-only-password",
    )
    assert error_of(rds.describe_db_instances, DBInstanceIdentifier="orders-db") == (
        "DBInstanceNotFound",
        "DBInstance orders-db not found.",
        404,
    )
    assert rds.describe_db_instances()["DBInstances"] == []
    realism.advance(3)
    rds.create_db_snapshot(DBInstanceIdentifier="orders-db", DBSnapshotIdentifier="orders-1")
    assert error_of(rds.describe_db_snapshots, DBSnapshotIdentifier="orders-1") == (
        "DBSnapshotNotFound",
        "DBSnapshot not found: orders-1",
        404,
    )
    filtered = rds.describe_db_snapshots(
        Filters=[{"Name": "db-snapshot-id", "Values": ["orders-1"]}]
    )
    assert filtered["DBSnapshots"] == []
    assert [d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]] == [
        "orders-db"
    ]
    realism.advance(3)
    assert rds.describe_db_snapshots(DBSnapshotIdentifier="orders-1")["DBSnapshots"]


def test_without_the_section_new_resources_are_visible_at_once(aws):
    realism.configure("timing", snapshot_seconds=0)  # another section on: consistency stays off
    ec2 = client("ec2", aws)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    group = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    assert ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]


def test_the_estate_is_handed_over_only_once_it_is_visible(aws, plan):
    from sandbox.estate import ensure_restore_network, seed

    realism.configure("consistency", seconds=2)
    estate = seed(plan, aws)
    for region, volumes in estate.protected_volumes.items():
        listed = {v["VolumeId"] for v in client("ec2", aws, region).describe_volumes()["Volumes"]}
        assert set(volumes) <= listed
    for region, names in estate.protected_databases.items():
        listed = client("rds", aws, region).describe_db_instances()["DBInstances"]
        assert set(names) <= {d["DBInstanceIdentifier"] for d in listed}
    _, group = ensure_restore_network(plan, aws)
    ec2 = client("ec2", aws, plan.regions.dr)
    assert ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
    assert ensure_restore_network(plan, aws)[1] == group  # found again, not created twice
