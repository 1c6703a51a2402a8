"""Containment against the sandbox: each action undoes only the incident, and is idempotent."""

from __future__ import annotations

import boto3
import pytest

from securedr.aws import containment as c
from securedr.aws.clients import AwsClients
from securedr.core import incident as inc

REGION = "us-west-2"
OURS = [
    {"Key": "securedr:plan", "Value": "demo-estate"},
    {"Key": "securedr:role", "Value": "dr-copy"},
]
OUTSIDER = "999988887777"
PARTNER = "111122223333"


def _client(service, aws):
    return boto3.client(service, region_name=REGION, endpoint_url=aws)


def _snapshot(ec2, tags):
    volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=1)["VolumeId"]
    spec = [{"ResourceType": "snapshot", "Tags": tags}] if tags else []
    return ec2.create_snapshot(VolumeId=volume, TagSpecifications=spec)["SnapshotId"]


def _shares(ec2, snapshot):
    got = ec2.describe_snapshot_attribute(SnapshotId=snapshot, Attribute="createVolumePermission")
    return sorted(p.get("Group") or p["UserId"] for p in got["CreateVolumePermissions"])


def _incident(action, **params):
    return inc.Incident(
        kind="test",
        resource="r",
        region=REGION,
        actor="a",
        event_time="t",
        event_name="n",
        event_id="e",
        summary="s",
        containment=inc.Containment(action, REGION, params),
    )


def test_unshare_ebs_removes_only_what_the_incident_added(aws):
    ec2 = _client("ec2", aws)
    snapshot = _snapshot(ec2, OURS)
    ec2.modify_snapshot_attribute(
        SnapshotId=snapshot,
        Attribute="createVolumePermission",
        OperationType="add",
        UserIds=[OUTSIDER, PARTNER],
        GroupNames=["all"],
    )
    incident = _incident(
        inc.UNSHARE_EBS_SNAPSHOT, snapshot_id=snapshot, group_names=["all"], user_ids=[OUTSIDER]
    )
    result = c.contain(AwsClients(), incident, "demo-estate")
    assert result.outcome == c.CONTAINED, result
    assert _shares(ec2, snapshot) == [PARTNER]  # a share the incident did not add stays
    again = c.contain(AwsClients(), incident, "demo-estate")
    assert again.outcome == c.ALREADY_CONTAINED


def test_a_snapshot_that_is_not_securedrs_is_left_alone(aws):
    ec2 = _client("ec2", aws)
    snapshot = _snapshot(ec2, [])
    ec2.modify_snapshot_attribute(
        SnapshotId=snapshot,
        Attribute="createVolumePermission",
        OperationType="add",
        UserIds=[OUTSIDER],
    )
    incident = _incident(
        inc.UNSHARE_EBS_SNAPSHOT, snapshot_id=snapshot, group_names=[], user_ids=[OUTSIDER]
    )
    assert c.contain(AwsClients(), incident, "demo-estate").outcome == c.SKIPPED
    assert _shares(ec2, snapshot) == [OUTSIDER]


def test_unshare_db_snapshot(aws):
    rds = _client("rds", aws)
    rds.create_db_instance(
        DBInstanceIdentifier="orders",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="admin1",
        MasterUserPassword="password123",
    )
    rds.create_db_snapshot(
        DBInstanceIdentifier="orders", DBSnapshotIdentifier="orders-dr", Tags=OURS
    )
    rds.modify_db_snapshot_attribute(
        DBSnapshotIdentifier="orders-dr", AttributeName="restore", ValuesToAdd=[OUTSIDER, PARTNER]
    )
    incident = _incident(inc.UNSHARE_DB_SNAPSHOT, snapshot_id="orders-dr", values=[OUTSIDER])
    assert c.contain(AwsClients(), incident, "demo-estate").outcome == c.CONTAINED
    attrs = rds.describe_db_snapshot_attributes(DBSnapshotIdentifier="orders-dr")
    values = attrs["DBSnapshotAttributesResult"]["DBSnapshotAttributes"][0]["AttributeValues"]
    assert values == [PARTNER]
    assert c.contain(AwsClients(), incident, "demo-estate").outcome == c.ALREADY_CONTAINED


def test_snapshot_block_public_access_back_on(aws):
    ec2 = _client("ec2", aws)
    ec2.enable_snapshot_block_public_access(State="block-all-sharing")
    ec2.disable_snapshot_block_public_access()
    incident = _incident(inc.BLOCK_SNAPSHOT_PUBLIC_ACCESS, state="block-all-sharing")
    assert c.contain(AwsClients(), incident, "demo-estate").outcome == c.CONTAINED
    assert ec2.get_snapshot_block_public_access_state()["State"] == "block-all-sharing"
    assert c.contain(AwsClients(), incident, "demo-estate").outcome == c.ALREADY_CONTAINED


@pytest.mark.parametrize("attack", ["disable", "schedule", "both"])
def test_key_back_to_enabled(aws, attack):
    kms = _client("kms", aws)
    created = kms.create_key()["KeyMetadata"]
    key, key_id = created["Arn"], created["KeyId"]
    if attack in ("disable", "both"):
        kms.disable_key(KeyId=key_id)
    if attack in ("schedule", "both"):
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    action = inc.ENABLE_KEY if attack == "disable" else inc.CANCEL_KEY_DELETION
    result = c.contain(AwsClients(), _incident(action, key_id=key), "demo-estate")
    assert result.outcome == c.CONTAINED, result
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"
    again = c.contain(AwsClients(), _incident(action, key_id=key), "demo-estate")
    assert again.outcome == c.ALREADY_CONTAINED


def test_bucket_versioning_and_public_access_block_back_on(aws):
    s3 = _client("s3", aws)
    s3.create_bucket(Bucket="evidence", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket="evidence", VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_versioning(Bucket="evidence", VersioningConfiguration={"Status": "Suspended"})
    versioning = _incident(inc.ENABLE_BUCKET_VERSIONING, bucket="evidence")
    assert c.contain(AwsClients(), versioning, "demo-estate").outcome == c.CONTAINED
    assert s3.get_bucket_versioning(Bucket="evidence")["Status"] == "Enabled"
    assert c.contain(AwsClients(), versioning, "demo-estate").outcome == c.ALREADY_CONTAINED

    block = _incident(inc.BLOCK_BUCKET_PUBLIC_ACCESS, bucket="evidence")
    assert c.contain(AwsClients(), block, "demo-estate").outcome == c.CONTAINED  # none at all
    config = s3.get_public_access_block(Bucket="evidence")["PublicAccessBlockConfiguration"]
    assert all(config.values()) and len(config) == 4
    assert c.contain(AwsClients(), block, "demo-estate").outcome == c.ALREADY_CONTAINED


def test_aws_refusal_is_a_failed_outcome_with_the_code(aws):
    incident = _incident(
        inc.UNSHARE_EBS_SNAPSHOT, snapshot_id="snap-00000000", group_names=["all"], user_ids=[]
    )
    result = c.contain(AwsClients(), incident, "demo-estate")
    assert result.outcome == c.FAILED
    assert result.detail.startswith("InvalidSnapshot.NotFound")


def test_alert_only_incidents_change_nothing(aws):
    incident = inc.Incident(
        kind=inc.KEY_POLICY_CHANGED,
        resource="k",
        region=REGION,
        actor="a",
        event_time="t",
        event_name="PutKeyPolicy",
        event_id="e",
        summary="s",
        containment=None,
    )
    assert c.contain(AwsClients(), incident, "demo-estate").outcome == c.ALERT_ONLY
