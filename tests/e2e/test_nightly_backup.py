"""dr_nightly_backup end to end on the sandbox AWS (real HTTP, deferrals run in-process)."""

from __future__ import annotations

import json

import boto3
import pytest

from securedr.core import signing
from securedr.core.manifest import check_manifest
from tests.dagrun import run_dag

pytestmark = pytest.mark.usefixtures("airflow_db")


@pytest.mark.realism("e2e")
def test_nightly_backup_copies_exactly_the_selected_resources(estate, plan, signing_keys):
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

    manifest_info = result.xcom("sign_run_manifest")
    body = (
        boto3.client("s3", region_name=dr)
        .get_object(Bucket=plan.evidence_bucket.name, Key=manifest_info["key"])["Body"]
        .read()
    )
    _, public = signing_keys
    payload = check_manifest(signing.verify_document(json.loads(body), [public]), plan=plan.name)
    assert payload["summary"] == {"recovery_points": 3, "verified": 3}
    assert {p["dr_kms_key_arn"] for p in payload["recovery_points"]} == {dr_key}
    # The demo plan's file sets are in the signed manifest, file by file, under the DR key.
    assert sorted(f["name"] for f in payload["file_sets"]) == sorted(
        s.name for s in plan.file_sets.sets
    )
    for file_set in payload["file_sets"]:
        assert file_set["files"] and file_set["kms_key_arn"] == dr_key
        for entry in file_set["files"]:
            assert len(entry["sha256"]) == 64 and entry["file_id"] and entry["version_id"]

    # The report says how long tonight's copies took (the demo prints it).
    copy_time = result.xcom("report_run")["dr_copy_seconds"]
    assert copy_time["count"] + copy_time["unknown"] == 3

    # Every retained copy of earlier nights is re-checked; the first night has only its own.
    reverified = result.xcom("reverify_retained_copies")
    assert reverified["manifests"] == 1 and reverified["checked"] == 0
    assert reverified["incidents"] == [] and reverified["problems"] == []

    retention = result.xcom("apply_retention")
    assert retention["considered"] == 6  # 3 recovery points + 3 DR copies, all kept
    assert retention["deleted"] == []
    report = result.xcom("report_run")
    assert report["succeeded"] and report["incidents"] == []
    # Pre-flight's copy-window estimate reaches the report; the first night has no history.
    assert report["copy_window"]["fits"] is None and report["warnings"] == []
