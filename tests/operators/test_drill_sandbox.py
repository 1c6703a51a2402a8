"""The drill sandbox: isolated on creation, idempotent, and gone after teardown."""

from __future__ import annotations

import boto3

from securedr.aws import drill_sandbox

DR = "us-west-2"


def clients():
    return boto3.client("ec2", region_name=DR), boto3.client("rds", region_name=DR)


def test_sandbox_is_isolated_idempotent_and_torn_down_completely(aws):
    ec2, rds = clients()
    sandbox = drill_sandbox.create_sandbox(ec2, rds, region=DR, plan="demo", drill_id="d1")
    again = drill_sandbox.create_sandbox(ec2, rds, region=DR, plan="demo", drill_id="d1")
    assert again == sandbox
    assert len(set(sandbox.availability_zones)) == 2
    assert drill_sandbox.isolation_problems(ec2, sandbox) == []
    group = ec2.describe_security_groups(GroupIds=[sandbox.security_group_id])["SecurityGroups"][0]
    assert group["IpPermissions"] == [] and group["IpPermissionsEgress"] == []

    volume = ec2.create_volume(
        AvailabilityZone=sandbox.availability_zones[0],
        Size=1,
        TagSpecifications=[
            {"ResourceType": "volume", "Tags": [{"Key": "securedr:drill", "Value": "d1"}]}
        ],
    )["VolumeId"]
    other = ec2.create_volume(AvailabilityZone=f"{DR}a", Size=1)["VolumeId"]
    before = drill_sandbox.leftovers(ec2, rds, drill_id="d1")
    assert f"ec2:volume/{volume}" in before and f"ec2:vpc/{sandbox.vpc_id}" in before

    result = drill_sandbox.teardown(ec2, rds, drill_id="d1", poll=0.1)
    assert result.errors == []
    assert f"ec2:volume/{volume}" in result.deleted
    assert f"ec2:vpc/{sandbox.vpc_id}" in result.deleted
    assert drill_sandbox.leftovers(ec2, rds, drill_id="d1") == []
    # Nothing outside the drill is touched, and a second teardown is harmless.
    assert ec2.describe_volumes(VolumeIds=[other])["Volumes"]
    assert drill_sandbox.teardown(ec2, rds, drill_id="d1", poll=0.1) == drill_sandbox.Teardown(
        [], []
    )


def test_internet_gateway_breaks_isolation(aws):
    ec2, rds = clients()
    sandbox = drill_sandbox.create_sandbox(ec2, rds, region=DR, plan="demo", drill_id="d2")
    gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=sandbox.vpc_id)
    assert any("internet gateway" in p for p in drill_sandbox.isolation_problems(ec2, sandbox))


def test_a_protected_database_is_left_over_by_name_and_the_rest_is_still_deleted(aws):
    ec2, rds = clients()
    sandbox = drill_sandbox.create_sandbox(ec2, rds, region=DR, plan="demo", drill_id="d3")
    rds.create_db_instance(
        DBInstanceIdentifier="drill-protected",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="admin",
        MasterUserPassword="not-a-real-secret-1",
        AllocatedStorage=20,
        DBSubnetGroupName=sandbox.db_subnet_group,
        DeletionProtection=True,
        Tags=[{"Key": "securedr:drill", "Value": "d3"}],
    )
    volume = ec2.create_volume(
        AvailabilityZone=sandbox.availability_zones[0],
        Size=1,
        TagSpecifications=[
            {"ResourceType": "volume", "Tags": [{"Key": "securedr:drill", "Value": "d3"}]}
        ],
    )["VolumeId"]

    result = drill_sandbox.teardown(ec2, rds, drill_id="d3", poll=0.1)

    assert [e.split(":", 2)[:2] for e in result.errors] == [["rds", "db/drill-protected"]]
    assert f"ec2:volume/{volume}" in result.deleted  # one failure does not stop the rest
    assert "rds:db/drill-protected" in drill_sandbox.leftovers(ec2, rds, drill_id="d3")
    rds.modify_db_instance(DBInstanceIdentifier="drill-protected", DeletionProtection=False)
    assert drill_sandbox.teardown(ec2, rds, drill_id="d3", poll=0.1).errors == []
    assert drill_sandbox.leftovers(ec2, rds, drill_id="d3") == []
