"""dr_recovery_drill from the vault: sandbox in the recovery account, vault copies restored,
verified, measured and torn down - with the workload account gone.

Runs the real DAG in-process (``dag.test``) against the sandbox as AWS behaves (realism "e2e").
"""

from __future__ import annotations

import json

import boto3
import pytest

from securedr.aws import drill_sandbox
from tests.dagrun import run_dag
from tests.iam_eval import recorded_requests
from tests.restore.vault import (
    DR,
    VAULT_ACCOUNT,
    client,
    lose_the_workload_account,
    recovery_sessions,
)

pytestmark = [pytest.mark.usefixtures("airflow_db"), pytest.mark.realism("e2e")]


def _drill_records(vault) -> list[dict]:
    s3 = client("s3", VAULT_ACCOUNT)
    prefix = f"securedr/drills/{vault.plan.name}/"
    keys = sorted(
        o["Key"]
        for o in s3.list_objects_v2(Bucket=vault.bucket, Prefix=prefix).get("Contents", [])
        if o["Key"].endswith(".json")
    )
    return [json.loads(s3.get_object(Bucket=vault.bucket, Key=k)["Body"].read()) for k in keys]


def test_a_drill_from_the_vault_passes_in_the_recovery_account_and_tears_down(
    vault, vault_backup, estate
):
    lose_the_workload_account(vault.plan, vault_backup, estate)

    with recorded_requests() as calls:
        result = run_dag("dr_recovery_drill")

    assert result.state == "success", result.states
    assert result.xcom("start_drill")["request"]["source"] == "vault"
    record = result.xcom("report_drill")
    assert record["passed"] is True and record["failures"] == []
    labels = sorted(r["label"] for r in record["resources"])
    assert labels == sorted(
        f"{p['kind']}:{p['source_region']}/{p['source_id']}" for p in vault_backup.points
    )
    copies = {
        e.get("snapshot_id") or e.get("db_snapshot_identifier") for e in vault.copies.values()
    }
    for resource in record["resources"]:
        assert resource["result"]["verified"] is True
        assert resource["result"]["recovery_point_id"] in copies
        # RTO measured; RPO is the source point's age at drill start (three hours).
        assert resource["measurement"]["rto_met"] and resource["measurement"]["rpo_met"]
        assert 3 * 3600 - 60 <= resource["measurement"]["rpo_seconds"] <= 3 * 3600 + 600
    assert record["leftovers"] == []

    # The sandbox was built in the recovery (vault) account, and nothing of it is left there.
    sandbox = result.xcom("create_sandbox")
    drill_id = result.xcom("start_drill")["drill_id"]
    ec2, rds = client("ec2", VAULT_ACCOUNT), client("rds", VAULT_ACCOUNT)
    assert drill_sandbox.leftovers(ec2, rds, drill_id=drill_id) == []
    workload_vpcs = boto3.client("ec2", region_name=DR).describe_vpcs()["Vpcs"]
    assert sandbox["vpc_id"] not in {v["VpcId"] for v in workload_vpcs}

    # Every call of the drill ran under the vault recovery role (the recovery connection's
    # principal only assumed it), none under the workload's identity.
    sessions = recovery_sessions()
    work = [c for c in calls if (c.service, c.operation) != ("sts", "AssumeRole")]
    assert ("ec2", "CreateVpc") in {(c.service, c.operation) for c in work}
    assert {sessions.get(c.access_key) for c in work} == {vault.recovery_role_arn}
    assumed = [c for c in calls if (c.service, c.operation) == ("sts", "AssumeRole")]
    assert {c.access_key for c in assumed} == {vault.recovery_user_key}

    # The drill record is in the vault evidence bucket.
    [stored] = _drill_records(vault)
    assert stored["passed"] is True and stored["record_url"].startswith(f"s3://{vault.bucket}/")
