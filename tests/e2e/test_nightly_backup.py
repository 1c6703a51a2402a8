"""dr_nightly_backup end to end on the sandbox AWS (real HTTP, deferrals run in-process)."""

from __future__ import annotations

import boto3
import pytest

from tests.dagrun import run_dag

pytestmark = pytest.mark.usefixtures("airflow_db")


def test_nightly_backup_copies_exactly_the_selected_resources(estate, plan):
    result = run_dag("dr_nightly_backup")
    assert result.state == "success", result.states
    dr = plan.regions.dr
    dr_key = estate.key_arns[dr]
    ec2 = boto3.client("ec2", region_name=dr)
    copies = ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag:securedr:role", "Values": ["dr-copy"]}]
    )["Snapshots"]
    sources = sorted(
        {t["Value"] for s in copies for t in s["Tags"] if t["Key"] == "securedr:source-id"}
    )
    expected = sorted(v for vols in estate.protected_volumes.values() for v in vols)
    assert sources == expected
    for snap in copies:
        assert snap["Encrypted"] is True
        assert snap["KmsKeyId"] == dr_key
    rds = boto3.client("rds", region_name=dr)
    db_copies = rds.describe_db_snapshots()["DBSnapshots"]
    assert len(db_copies) == 1
    assert db_copies[0]["Encrypted"] and db_copies[0]["KmsKeyId"] == dr_key
