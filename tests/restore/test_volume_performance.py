"""Restored volumes keep the source volume's type, IOPS and throughput (recorded at backup)."""

from __future__ import annotations

import boto3

from securedr.aws import ebs
from securedr.core.manifest import build_manifest
from securedr.core.model import RecoveryPoint, Verification
from securedr.core.restore import restored_problems, volume_performance
from tests.restore.conftest import Harness, approval, make_backup


def test_performance_passed_only_where_create_volume_accepts_it():
    assert volume_performance({"volume_type": "io2", "iops": 16000, "throughput": None}) == (
        {"VolumeType": "io2", "Iops": 16000},
        None,
    )
    assert volume_performance({"volume_type": "gp3", "iops": 6000, "throughput": 500})[0] == {
        "VolumeType": "gp3",
        "Iops": 6000,
        "Throughput": 500,
    }
    # gp2 / st1 / sc1 take neither Iops nor Throughput (CreateVolume rejects them).
    assert volume_performance({"volume_type": "gp2", "iops": 300, "throughput": None})[0] == {
        "VolumeType": "gp2"
    }
    assert volume_performance({"volume_type": "st1", "iops": None, "throughput": 40})[0] == {
        "VolumeType": "st1"
    }
    kwargs, note = volume_performance({"kind": "ebs", "source_id": "vol-1"})
    assert kwargs == {"VolumeType": "gp3"}
    assert note and "gp3" in note and "type" in note


def test_discovery_and_the_manifest_record_the_source_volumes_performance(aws):
    ec2 = boto3.client("ec2", region_name="us-east-1")
    volume = ec2.create_volume(
        AvailabilityZone="us-east-1a",
        Size=8,
        VolumeType="io2",
        Iops=7000,
        TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "dr", "Value": "yes"}]}],
    )["VolumeId"]

    (found,) = ebs.discover_volumes(ec2, "us-east-1", "dr", "yes")

    assert (found.volume_type, found.iops) == ("io2", 7000)
    point = RecoveryPoint(
        kind="ebs",
        source_id=volume,
        source_region="us-east-1",
        snapshot_id="snap-1",
        size_gib=8,
        source_encrypted=True,
        run_id="r",
        dr_region="us-west-2",
        dr_snapshot_id="snap-dr",
        dr_created_at="2026-11-25T02:10:00+00:00",
        volume_type=found.volume_type,
        iops=found.iops,
        throughput=found.throughput,
    )
    manifest = build_manifest(
        plan="demo",
        run_id="r",
        dag_id="dr_nightly_backup",
        created_at="2026-11-25T02:00:00+00:00",
        dr_region="us-west-2",
        dr_kms_key_arn="arn:aws:kms:us-west-2:123456789012:key/k",
        verifications=[Verification(point=point.to_dict(), passed=True)],
    )
    (entry,) = manifest["recovery_points"]
    assert (entry["volume_type"], entry["iops"], entry["throughput"]) == ("io2", 7000, None)
    # An older point (no performance recorded) still loads.
    old = {k: v for k, v in point.to_dict().items() if k not in ("volume_type", "iops")}
    assert RecoveryPoint.from_dict(old).volume_type is None


def _restore_ebs(restore_plan) -> tuple[Harness, list[dict]]:
    h = Harness()
    h.initiate()
    h.check_initiator()
    h.check_approval(approval("bob"))
    h.retrieve()
    return h, h.restore("ebs")


def test_restore_keeps_the_recorded_type_iops_and_throughput(restore_plan, estate, signing_keys):
    make_backup(
        restore_plan,
        estate,
        signing_keys[0],
        volume_performance={"volume_type": "io2", "iops": 12000},
    )
    _, restored = _restore_ebs(restore_plan)

    ec2 = boto3.client("ec2", region_name=restore_plan.regions.dr)
    volumes = restore_volumes(ec2, [r["resource_id"] for r in restored])
    assert restored and all(v["VolumeType"] == "io2" and v["Iops"] == 12000 for v in volumes)
    point = restored[0]["point"]
    assert (point["volume_type"], point["iops"]) == ("io2", 12000)
    # Verification checks it too: a gp3 volume for an io2 point is a problem.
    wrong = {**volumes[0], "VolumeType": "gp3"}
    problems = restored_problems(
        "ebs", wrong, point=point, expected_key_arn="k", plan="p", run_id="r"
    )
    assert any("VolumeType is gp3" in p for p in problems)


def test_a_point_recorded_without_performance_restores_as_gp3_and_says_so(
    restore_plan, estate, signing_keys, capsys
):
    make_backup(restore_plan, estate, signing_keys[0])
    capsys.readouterr()
    _, restored = _restore_ebs(restore_plan)
    output = "".join(capsys.readouterr())

    ec2 = boto3.client("ec2", region_name=restore_plan.regions.dr)
    volumes = restore_volumes(ec2, [r["resource_id"] for r in restored])
    assert restored and all(v["VolumeType"] == "gp3" for v in volumes)
    warnings = [line for line in output.splitlines() if "warning" in line]
    assert sum("does not record its source volume's type" in w for w in warnings) == len(volumes)


def restore_volumes(ec2, ids: list[str]) -> list[dict]:
    return ec2.describe_volumes(VolumeIds=ids)["Volumes"]
