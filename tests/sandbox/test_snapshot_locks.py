"""EBS snapshot lock in the sandbox: AWS's calls and shapes; deletes of locked snapshots refused."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox import realism

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
HOUR = 3600
DAY = 24 * HOUR


@pytest.fixture
def ec2(aws):
    return boto3.client("ec2", region_name="us-east-1", config=NO_RETRIES)


@pytest.fixture
def snapshot_id(ec2):
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    return ec2.create_snapshot(VolumeId=volume)["SnapshotId"]


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_governance_lock_refuses_delete_until_unlocked(ec2, snapshot_id):
    lock = ec2.lock_snapshot(SnapshotId=snapshot_id, LockMode="governance", LockDuration=7)
    assert lock["SnapshotId"] == snapshot_id
    assert lock["LockState"] == "governance"
    assert lock["LockDuration"] == 7
    assert lock["LockExpiresOn"] - lock["LockCreatedOn"] == dt.timedelta(days=7)

    with pytest.raises(ClientError) as exc:
        ec2.delete_snapshot(SnapshotId=snapshot_id)
    assert _error(exc) == ("InvalidSnapshot.InUse", 400)
    assert snapshot_id in exc.value.response["Error"]["Message"]
    assert "locked in governance mode" in exc.value.response["Error"]["Message"]

    assert ec2.unlock_snapshot(SnapshotId=snapshot_id)["SnapshotId"] == snapshot_id
    ec2.delete_snapshot(SnapshotId=snapshot_id)
    assert ec2.describe_locked_snapshots()["Snapshots"] == []


def test_compliance_lock_cooling_off_then_permanent_until_expiry(ec2, snapshot_id):
    lock = ec2.lock_snapshot(
        SnapshotId=snapshot_id, LockMode="compliance", CoolOffPeriod=2, LockDuration=1
    )
    assert lock["LockState"] == "compliance-cooloff"
    assert lock["CoolOffPeriod"] == 2
    assert lock["CoolOffPeriodExpiresOn"] - lock["LockCreatedOn"] == dt.timedelta(hours=2)

    realism.advance(3 * HOUR)  # cooling-off over: the lock can no longer be removed
    (info,) = ec2.describe_locked_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    assert info["LockState"] == "compliance"
    with pytest.raises(ClientError) as exc:
        ec2.unlock_snapshot(SnapshotId=snapshot_id)
    assert _error(exc) == ("OperationNotPermitted", 400)
    with pytest.raises(ClientError) as exc:
        ec2.lock_snapshot(SnapshotId=snapshot_id, LockMode="governance", LockDuration=1)
    assert _error(exc) == ("OperationNotPermitted", 400)
    with pytest.raises(ClientError) as exc:
        ec2.delete_snapshot(SnapshotId=snapshot_id)
    assert _error(exc) == ("InvalidSnapshot.InUse", 400)

    extended = ec2.lock_snapshot(SnapshotId=snapshot_id, LockMode="compliance", LockDuration=3)
    assert extended["LockState"] == "compliance"

    realism.advance(4 * DAY)
    (info,) = ec2.describe_locked_snapshots()["Snapshots"]
    assert info["LockState"] == "expired"
    ec2.delete_snapshot(SnapshotId=snapshot_id)  # an expired lock protects nothing


def test_compliance_lock_can_be_removed_during_cooling_off(ec2, snapshot_id):
    ec2.lock_snapshot(
        SnapshotId=snapshot_id, LockMode="compliance", CoolOffPeriod=1, LockDuration=1
    )
    ec2.unlock_snapshot(SnapshotId=snapshot_id)
    ec2.delete_snapshot(SnapshotId=snapshot_id)


def test_lock_until_an_expiration_date(ec2, snapshot_id):
    until = realism.now().replace(microsecond=0) + dt.timedelta(days=30)
    lock = ec2.lock_snapshot(SnapshotId=snapshot_id, LockMode="governance", ExpirationDate=until)
    assert lock["LockExpiresOn"] == until
    assert "LockDuration" not in lock


def test_describe_filters_by_id_and_lock_state(ec2, snapshot_id):
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    other = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    unlocked = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    ec2.lock_snapshot(SnapshotId=snapshot_id, LockMode="governance", LockDuration=1)
    ec2.lock_snapshot(SnapshotId=other, LockMode="compliance", LockDuration=1)

    everything = ec2.describe_locked_snapshots()["Snapshots"]
    assert {s["SnapshotId"] for s in everything} == {snapshot_id, other}
    assert all(s["OwnerId"] for s in everything)
    governance = ec2.describe_locked_snapshots(
        Filters=[{"Name": "lock-state", "Values": ["governance"]}]
    )["Snapshots"]
    assert [s["SnapshotId"] for s in governance] == [snapshot_id]
    assert ec2.describe_locked_snapshots(SnapshotIds=[unlocked])["Snapshots"] == []


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"LockMode": "governance"}, "InvalidParameterCombination"),
        (
            {
                "LockMode": "governance",
                "LockDuration": 1,
                "ExpirationDate": dt.datetime(2999, 1, 1),
            },
            "InvalidParameterCombination",
        ),
        (
            {"LockMode": "governance", "LockDuration": 1, "CoolOffPeriod": 1},
            "InvalidParameterCombination",
        ),
        ({"LockMode": "forever", "LockDuration": 1}, "InvalidParameterValue"),
        ({"LockMode": "governance", "LockDuration": 36501}, "InvalidParameterValue"),
        (
            {"LockMode": "compliance", "LockDuration": 1, "CoolOffPeriod": 73},
            "InvalidParameterValue",
        ),
    ],
)
def test_invalid_lock_requests_are_refused(ec2, snapshot_id, kwargs, code):
    with pytest.raises(ClientError) as exc:
        ec2.lock_snapshot(SnapshotId=snapshot_id, **kwargs)
    assert _error(exc) == (code, 400)
    assert ec2.describe_locked_snapshots()["Snapshots"] == []


def test_locking_a_missing_snapshot_is_not_found(ec2):
    with pytest.raises(ClientError) as exc:
        ec2.lock_snapshot(
            SnapshotId="snap-0123456789abcdef0", LockMode="governance", LockDuration=1
        )
    assert _error(exc)[0] == "InvalidSnapshot.NotFound"


def test_reset_forgets_locks(ec2, snapshot_id):
    from sandbox import moto_ext

    ec2.lock_snapshot(SnapshotId=snapshot_id, LockMode="compliance", LockDuration=1)
    moto_ext.reset()
    assert ec2.describe_locked_snapshots()["Snapshots"] == []
    ec2.delete_snapshot(SnapshotId=snapshot_id)


def test_registered_ami_shows_and_protects_its_snapshot(ec2, snapshot_id):
    ami = ec2.register_image(
        Name="restore-test",
        RootDeviceName="/dev/sda1",
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": snapshot_id}}],
    )["ImageId"]
    (image,) = ec2.describe_images(ImageIds=[ami])["Images"]
    assert image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] == snapshot_id
    # moto's own stand-in snapshot for the AMI does not linger in the account
    owned = ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    assert not [s for s in owned if ami in s.get("Description", "")]
    found = ec2.describe_images(
        Owners=["self"],
        Filters=[{"Name": "block-device-mapping.snapshot-id", "Values": [snapshot_id]}],
    )["Images"]
    assert [i["ImageId"] for i in found] == [ami]


def test_a_lock_on_a_pending_snapshot_starts_when_it_completes(ec2):
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    realism.configure("timing", snapshot_seconds=2 * HOUR)
    snapshot_id = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    lock = ec2.lock_snapshot(
        SnapshotId=snapshot_id, LockMode="compliance", CoolOffPeriod=1, LockDuration=7
    )
    # Until the snapshot completes the lock has no start and no end, and protects it anyway.
    assert lock["LockState"] == "compliance-cooloff"
    assert "LockExpiresOn" not in lock and "LockDurationStartTime" not in lock
    with pytest.raises(ClientError) as exc:
        ec2.delete_snapshot(SnapshotId=snapshot_id)
    assert _error(exc) == ("InvalidSnapshot.InUse", 400)

    realism.advance(3 * HOUR)  # completed an hour ago; cooling-off over
    (info,) = ec2.describe_locked_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    (snapshot,) = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    completed = snapshot["StartTime"] + dt.timedelta(hours=2)
    assert info["LockState"] == "compliance"
    assert abs(info["LockDurationStartTime"] - completed) < dt.timedelta(seconds=5)
    assert info["LockExpiresOn"] - info["LockDurationStartTime"] == dt.timedelta(days=7)
    with pytest.raises(ClientError) as exc:  # no shortening after the cooling-off period
        ec2.lock_snapshot(SnapshotId=snapshot_id, LockMode="compliance", LockDuration=6)
    assert _error(exc) == ("OperationNotPermitted", 400)
    with pytest.raises(ClientError) as exc:
        ec2.unlock_snapshot(SnapshotId=snapshot_id)
    assert _error(exc) == ("OperationNotPermitted", 400)


def test_a_compliance_lock_without_cooling_off_is_final_at_once(ec2, snapshot_id):
    lock = ec2.lock_snapshot(SnapshotId=snapshot_id, LockMode="compliance", LockDuration=2)
    assert lock["LockState"] == "compliance"
    assert "CoolOffPeriod" not in lock
    with pytest.raises(ClientError) as exc:
        ec2.unlock_snapshot(SnapshotId=snapshot_id)
    assert _error(exc) == ("OperationNotPermitted", 400)
    with pytest.raises(ClientError) as exc:
        ec2.lock_snapshot(
            SnapshotId=snapshot_id,
            LockMode="compliance",
            ExpirationDate=realism.now() + dt.timedelta(days=1),
        )
    assert _error(exc) == ("OperationNotPermitted", 400)
    (info,) = ec2.describe_locked_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    assert info["LockDuration"] == 2
