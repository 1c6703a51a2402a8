"""One resource that cannot be protected does not cost the night for every other resource."""

from __future__ import annotations

import json

import boto3
import pytest

from securedr.core import signing
from securedr.core.manifest import check_manifest
from tests.dagrun import run_dag
from tests.operators.helpers import rds_backend

pytestmark = pytest.mark.usefixtures("airflow_db")


@pytest.mark.realism("e2e")  # AWS's refusals on: CreateDBSnapshot of a cluster member fails
def test_unsnapshotable_database_is_named_and_everything_else_is_protected(
    estate, plan, signing_keys
):
    # CreateDBSnapshot refuses cluster members; discovery must report it, not snapshot it.
    rds_backend("us-east-1").databases["orders-db"].db_cluster_identifier = "orders-cluster"

    result = run_dag("dr_nightly_backup")

    assert result.state == "failed"
    assert result.states["report_run"] == "failed"  # the run ends failed, naming it...
    for task in (
        "create_recovery_points",
        "wait_for_recovery_points",
        "copy_to_dr_region",
        "wait_for_dr_copies",
        "verify_dr_copies",
        "sign_run_manifest",
        "apply_retention",
    ):
        assert result.states[task] == "success", (task, result.states)

    # ... while every other resource is protected, verified and in the signed manifest.
    dr = plan.regions.dr
    s3 = boto3.client("s3", region_name=dr)
    manifest_info = result.xcom("sign_run_manifest")
    body = s3.get_object(Bucket=plan.evidence_bucket.name, Key=manifest_info["key"])["Body"].read()
    _, public = signing_keys
    payload = check_manifest(signing.verify_document(json.loads(body), [public]), plan=plan.name)
    assert payload["summary"] == {"recovery_points": 2, "verified": 2, "not_protected": 1}
    assert sorted(p["source_id"] for p in payload["recovery_points"]) == sorted(
        v for vols in estate.protected_volumes.values() for v in vols
    )
    assert all(p["verified"] and p["dr_created_at"] for p in payload["recovery_points"])
    [unprotected] = payload["not_protected"]
    assert unprotected["source_id"] == "orders-db"
    assert "member of DB cluster 'orders-cluster'" in unprotected["reason"]
    assert not [i for i in rds_backend("us-east-1").database_snapshots if i.startswith("securedr-")]

    # The report (written before the step failed) names it with the reason.
    listing = s3.list_objects_v2(
        Bucket=plan.evidence_bucket.name,
        Prefix=f"{plan.evidence_bucket.prefix}/reports/nightly/{plan.name}/",
    )
    [report_key] = [o["Key"] for o in listing["Contents"] if o["Key"].endswith(".json")]
    report = json.loads(
        s3.get_object(Bucket=plan.evidence_bucket.name, Key=report_key)["Body"].read()
    )
    assert report["succeeded"] is False
    assert [n["source"] for n in report["not_protected"]] == ["us-east-1/orders-db"]
    assert report["verified"] == 2 and report["failed_verification"] == []
