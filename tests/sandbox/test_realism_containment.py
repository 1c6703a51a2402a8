"""Section containment: containment calls recorded with their time and resource, nothing else."""

from __future__ import annotations

import json
import time
import urllib.request

import boto3

from sandbox import realism
from sandbox.realism import containment


def test_records_containment_calls_only(aws):
    ec2 = boto3.client("ec2", region_name="us-west-2", endpoint_url=aws)
    kms = boto3.client("kms", region_name="us-west-2", endpoint_url=aws)
    rds = boto3.client("rds", region_name="us-west-2", endpoint_url=aws)
    volume = ec2.create_volume(AvailabilityZone="us-west-2a", Size=1)["VolumeId"]
    snapshot = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    rds.create_db_instance(
        DBInstanceIdentifier="db",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="admin1",
        MasterUserPassword="password123",
    )
    rds.create_db_snapshot(DBInstanceIdentifier="db", DBSnapshotIdentifier="db-snap")
    urllib.request.urlopen(
        urllib.request.Request(f"{aws}{containment.ENDPOINT}", method="POST")
    ).close()
    before = time.time()
    # the attack: not recorded
    ec2.modify_snapshot_attribute(
        SnapshotId=snapshot,
        Attribute="createVolumePermission",
        OperationType="add",
        UserIds=["999988887777"],
    )
    rds.modify_db_snapshot_attribute(
        DBSnapshotIdentifier="db-snap", AttributeName="restore", ValuesToAdd=["999988887777"]
    )
    kms.disable_key(KeyId=key)
    # the containment: recorded
    ec2.modify_snapshot_attribute(
        SnapshotId=snapshot,
        Attribute="createVolumePermission",
        OperationType="remove",
        UserIds=["999988887777"],
    )
    rds.modify_db_snapshot_attribute(
        DBSnapshotIdentifier="db-snap", AttributeName="restore", ValuesToRemove=["999988887777"]
    )
    kms.enable_key(KeyId=key)
    ec2.enable_snapshot_block_public_access(State="block-all-sharing")
    with urllib.request.urlopen(f"{aws}{containment.ENDPOINT}") as response:
        served = json.loads(response.read())["calls"]
    assert [(c["action"], c["resource"]) for c in served] == [
        ("ModifySnapshotAttribute", snapshot),
        ("ModifyDBSnapshotAttribute", "db-snap"),
        ("EnableKey", key),
        ("EnableSnapshotBlockPublicAccess", "snapshot-bpa:us-west-2"),
    ]
    assert all(before <= c["time"] <= time.time() for c in served)
    realism.disable(containment.NAME)
    kms.disable_key(KeyId=key)
    kms.enable_key(KeyId=key)
    assert containment.calls() == []  # off: forgotten, and nothing more recorded
