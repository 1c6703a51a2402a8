"""Section ``refusals``: what AWS refuses and moto allows, with AWS's codes and messages."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox import realism
from sandbox.realism import refusals

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
REGION = "us-east-1"


def _client(service: str):
    return boto3.client(service, region_name=REGION, config=NO_RETRIES)


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response = exc.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


# --- AMI ---------------------------------------------------------------------------------------


def _snapshot_used_by_ami(ec2) -> tuple[str, str]:
    volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=1)["VolumeId"]
    snapshot = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    ami = ec2.register_image(
        Name="golden",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snapshot}}],
    )["ImageId"]
    return snapshot, ami


def test_snapshot_of_a_registered_ami_cannot_be_deleted(aws):
    realism.configure("refusals")
    ec2 = _client("ec2")
    snapshot, ami = _snapshot_used_by_ami(ec2)
    with pytest.raises(ClientError) as exc:
        ec2.delete_snapshot(SnapshotId=snapshot)
    assert _error(exc) == (
        "InvalidSnapshot.InUse",
        f"The snapshot {snapshot} is currently in use by {ami}",
        400,
    )
    ec2.deregister_image(ImageId=ami)
    ec2.delete_snapshot(SnapshotId=snapshot)  # free once the AMI is gone


def test_ami_refusal_can_be_switched_off(aws):
    realism.configure("refusals", ami_in_use=False)
    ec2 = _client("ec2")
    snapshot, _ami = _snapshot_used_by_ami(ec2)
    ec2.delete_snapshot(SnapshotId=snapshot)


# --- RDS snapshots -----------------------------------------------------------------------------


def _db_instance(rds, name: str = "orders-db", **kwargs) -> str:
    rds.create_db_instance(
        DBInstanceIdentifier=name,
        DBInstanceClass="db.t3.micro",
        Engine=kwargs.pop("Engine", "postgres"),
        MasterUsername="admin_user",
        MasterUserPassword="not-a-real-password-1",
        AllocatedStorage=20,
        **kwargs,
    )
    return name


def test_cluster_member_cannot_be_snapshotted_as_an_instance(aws):
    realism.configure("refusals")
    rds = _client("rds")
    rds.create_db_cluster(
        DBClusterIdentifier="orders-cluster",
        Engine="aurora-postgresql",
        MasterUsername="admin_user",
        MasterUserPassword="not-a-real-password-1",
    )
    rds.create_db_instance(
        DBInstanceIdentifier="orders-cluster-1",
        DBInstanceClass="db.r6g.large",
        Engine="aurora-postgresql",
        DBClusterIdentifier="orders-cluster",
    )
    with pytest.raises(ClientError) as exc:
        rds.create_db_snapshot(
            DBInstanceIdentifier="orders-cluster-1", DBSnapshotIdentifier="orders-snap"
        )
    assert _error(exc) == (
        "InvalidParameterValue",
        "The specified instance is a member of a cluster and a snapshot cannot be created "
        "directly. Please use the CreateDBClusterSnapshot API instead.",
        400,
    )
    manual = rds.describe_db_snapshots(
        DBInstanceIdentifier="orders-cluster-1", SnapshotType="manual"
    )
    assert manual["DBSnapshots"] == []


def test_instance_not_available_cannot_be_snapshotted_until_it_is(aws):
    realism.configure("refusals")
    rds = _client("rds")
    db = _db_instance(rds)
    refusals.set_instance_status(db, "modifying")
    with pytest.raises(ClientError) as exc:
        rds.create_db_snapshot(DBInstanceIdentifier=db, DBSnapshotIdentifier="orders-snap")
    assert _error(exc) == (
        "InvalidDBInstanceState",
        f"Cannot create a snapshot because the database instance {db} is not currently in the "
        "available state.",
        400,
    )
    refusals.set_instance_status(db, "available", region=REGION)
    rds.create_db_snapshot(DBInstanceIdentifier=db, DBSnapshotIdentifier="orders-snap")


def test_set_instance_status_names_a_missing_instance(aws):
    with pytest.raises(KeyError, match="no-such-db"):
        refusals.set_instance_status("no-such-db", "stopped", region=REGION)


def test_rds_refusals_can_be_switched_off_one_by_one(aws):
    realism.configure("refusals", unavailable_instances=False)
    rds = _client("rds")
    db = _db_instance(rds)
    refusals.set_instance_status(db, "stopped")
    rds.create_db_snapshot(DBInstanceIdentifier=db, DBSnapshotIdentifier="orders-snap")


# --- network interfaces lingering after DeleteDBInstance ---------------------------------------


@pytest.fixture
def private_db(aws):
    """A DB instance in its own VPC: two subnets, a DB subnet group and a security group."""
    ec2, rds = _client("ec2"), _client("rds")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"{REGION}{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in ((1, "a"), (2, "b"))
    ]
    group = ec2.create_security_group(GroupName="drill-db", Description="drill", VpcId=vpc)[
        "GroupId"
    ]
    rds.create_db_subnet_group(
        DBSubnetGroupName="drill-subnets", DBSubnetGroupDescription="drill", SubnetIds=subnets
    )
    db = _db_instance(
        rds,
        "drill-db",
        DBSubnetGroupName="drill-subnets",
        VpcSecurityGroupIds=[group],
        AvailabilityZone=f"{REGION}a",
    )
    return {"vpc": vpc, "subnets": subnets, "group": group, "db": db}


def _teardown_errors(private_db) -> dict[str, tuple[str, str, int] | None]:
    """Try every teardown step once; the error each answered (None: it succeeded)."""
    ec2, rds = _client("ec2"), _client("rds")
    steps = {
        "subnet_group": lambda: rds.delete_db_subnet_group(DBSubnetGroupName="drill-subnets"),
        "group": lambda: ec2.delete_security_group(GroupId=private_db["group"]),
        "subnet_a": lambda: ec2.delete_subnet(SubnetId=private_db["subnets"][0]),
        "subnet_b": lambda: ec2.delete_subnet(SubnetId=private_db["subnets"][1]),
        "vpc": lambda: ec2.delete_vpc(VpcId=private_db["vpc"]),
    }
    outcome: dict[str, tuple[str, str, int] | None] = {}
    for name, step in steps.items():
        try:
            step()
            outcome[name] = None
        except ClientError as exc:
            response = exc.response
            outcome[name] = (
                response["Error"]["Code"],
                response["Error"]["Message"],
                response["ResponseMetadata"]["HTTPStatusCode"],
            )
    return outcome


def _rds_interfaces(vpc: str) -> list[dict]:
    return _client("ec2").describe_network_interfaces(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}]
    )["NetworkInterfaces"]


def test_network_of_a_deleted_instance_stays_in_use_while_its_interfaces_linger(private_db):
    realism.configure("refusals", eni_linger_seconds=600)
    _client("rds").delete_db_instance(DBInstanceIdentifier=private_db["db"], SkipFinalSnapshot=True)

    (eni,) = _rds_interfaces(private_db["vpc"])
    assert eni["Description"] == "RDSNetworkInterface"
    assert eni["RequesterManaged"] is True
    assert eni["RequesterId"] == "amazon-rds"
    assert eni["SubnetId"] == private_db["subnets"][0]  # the instance's zone
    assert [g["GroupId"] for g in eni["Groups"]] == [private_db["group"]]

    realism.advance(300)
    group, subnet_a, vpc = private_db["group"], private_db["subnets"][0], private_db["vpc"]
    assert _teardown_errors(private_db) == {
        "subnet_group": (
            "InvalidDBSubnetGroupStateFault",
            "Cannot delete the subnet group 'drill-subnets' because at least one database "
            "instance: drill-db is still using it.",
            400,
        ),
        "group": ("DependencyViolation", f"resource {group} has a dependent object", 400),
        "subnet_a": (
            "DependencyViolation",
            f"The subnet '{subnet_a}' has dependencies and cannot be deleted.",
            400,
        ),
        "subnet_b": None,  # no interface there
        "vpc": (
            "DependencyViolation",
            f"The vpc '{vpc}' has dependencies and cannot be deleted.",
            400,
        ),
    }

    realism.advance(301)  # AWS has cleaned up: the interfaces are gone and teardown goes through
    assert _rds_interfaces(private_db["vpc"]) == []
    assert refusals.lingering_interfaces(REGION) == []
    second_try = _teardown_errors(private_db)
    assert second_try.pop("subnet_b")[0] == "InvalidSubnetID.NotFound"  # went the first time
    assert set(second_try.values()) == {None}


def test_without_linger_the_network_is_free_at_once(private_db):
    realism.configure("refusals")
    _client("rds").delete_db_instance(DBInstanceIdentifier=private_db["db"], SkipFinalSnapshot=True)
    assert _rds_interfaces(private_db["vpc"]) == []
    assert set(_teardown_errors(private_db).values()) == {None}


def test_e2e_profile_turns_the_correctness_refusals_on(aws):
    realism.use_profile("e2e")
    assert realism.settings("refusals") == {
        "ami_in_use": True,
        "cluster_members": True,
        "unavailable_instances": True,
        "eni_linger_seconds": 10,
    }
    assert realism.settings("s3") == {"max_parts": 10000, "conflict_every": 7}
    ec2 = _client("ec2")
    snapshot, _ami = _snapshot_used_by_ami(ec2)
    with pytest.raises(ClientError) as exc:
        ec2.delete_snapshot(SnapshotId=snapshot)
    assert _error(exc)[0] == "InvalidSnapshot.InUse"
