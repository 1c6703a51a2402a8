"""dr_nightly_backup with a DR vault, end to end on the multi-account sandbox (real HTTP, the
e2e realism profile: copies take time, so the vault handshake defers and runs in the trigger)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from securedr.core import signing
from securedr.core.manifest import check_manifest
from securedr.core.plan import load_plan
from tests.dagrun import run_dag

pytestmark = pytest.mark.usefixtures("airflow_db")

VAULT_PLAN = Path(__file__).resolve().parents[2] / "include" / "dr_plan.vault.yaml"
VAULT = "222222222222"


@pytest.mark.realism("e2e")
def test_nightly_with_a_vault_ends_with_every_dr_copy_in_the_vault(aws, signing_keys, monkeypatch):
    from sandbox.accounts import SANDBOX_EXTERNAL_ID, seed_vault, session
    from sandbox.estate import seed

    monkeypatch.setenv("SECUREDR_PLAN", str(VAULT_PLAN))
    monkeypatch.setenv("AIRFLOW_VAR_SECUREDR_VAULT_EXTERNAL_ID", SANDBOX_EXTERNAL_ID)
    plan = load_plan(VAULT_PLAN)
    seed(plan, aws)
    seed_vault(plan, aws)
    dr = plan.regions.dr

    result = run_dag("dr_nightly_backup")
    assert result.state == "success", result.states

    # Every DR copy is in the vault, under the vault CMK, and the intermediates are gone.
    vault_ec2 = session(VAULT, None).client("ec2", region_name=dr)
    vault_copies = vault_ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag:securedr:role", "Values": ["vault-copy"]}]
    )["Snapshots"]
    assert len(vault_copies) == 2
    assert {s["KmsKeyId"] for s in vault_copies} == {plan.vault.kms_key(dr)}
    locks = vault_ec2.describe_locked_snapshots(
        SnapshotIds=[s["SnapshotId"] for s in vault_copies]
    )["Snapshots"]
    assert {lock["LockState"] for lock in locks} <= {"compliance-cooloff", "compliance"}
    assert len(locks) == 2
    workload = boto3.client("ec2", region_name=dr).describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag:securedr:role", "Values": ["dr-copy"]}]
    )["Snapshots"]
    assert workload == []
    vault_rds = session(VAULT, None).client("rds", region_name=dr)
    (db_copy,) = vault_rds.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]
    assert db_copy["KmsKeyId"] == plan.vault.kms_key(dr)

    # The signed manifest records the vault copies; the same bytes are in the vault.
    info = result.xcom("sign_run_manifest")
    body = (
        boto3.client("s3", region_name=dr)
        .get_object(Bucket=plan.evidence_bucket.name, Key=info["key"])["Body"]
        .read()
    )
    _, public = signing_keys
    payload = check_manifest(signing.verify_document(json.loads(body), [public]), plan=plan.name)
    assert payload["vault"]["account_id"] == VAULT
    assert all(p["vault"]["verified"] for p in payload["recovery_points"])
    assert payload["summary"]["vault_verified"] == 3
    vault_key = plan.vault.evidence_prefix + "/" + info["key"].split("/", 1)[1]
    stored = (
        session(VAULT, None)
        .client("s3", region_name=dr)
        .get_object(Bucket=plan.vault.evidence_bucket, Key=vault_key)
    )
    assert stored["ObjectLockMode"] == "COMPLIANCE" and stored["Body"].read() == body

    report = result.xcom("report_run")
    assert report["succeeded"] and report["not_in_vault"] == []
    assert len(result.xcom("release_dr_intermediates")["deleted"]) == 3
