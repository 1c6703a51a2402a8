"""Restores decide from signed manifests: SecureDR's tags on a snapshot vouch for nothing."""

from __future__ import annotations

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException

from securedr.core.model import TAG_VERIFIED, lineage_tags
from tests.restore.conftest import Harness, approval


def test_a_snapshot_with_forged_securedr_tags_is_not_restored(
    restore_plan, estate, backup, signing_keys
):
    dr = restore_plan.regions.dr
    ec2 = boto3.client("ec2", region_name=dr)
    volume = ec2.create_volume(AvailabilityZone=f"{dr}a", Size=1)
    tags = lineage_tags(
        plan=restore_plan.name,
        run_id=backup.run_id,
        kind="ebs",
        source_id=backup.point("ebs")["source_id"],
        source_region=backup.point("ebs")["source_region"],
        role="dr-copy",
    )
    tags[TAG_VERIFIED] = backup.run_id
    forged = ec2.create_snapshot(
        VolumeId=volume["VolumeId"],
        TagSpecifications=[
            {"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )["SnapshotId"]
    h = Harness(params={"recovery_point": forged})
    h.initiate()
    h.check_initiator()
    h.check_approval(approval("bob"))
    with pytest.raises(AirflowFailException, match="no signed manifest lists"):
        h.retrieve()
