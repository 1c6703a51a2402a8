"""dr_recovery_drill end to end on the sandbox AWS: pass, missed target, failure midway, leftover.

Each test runs the real DAG in-process (``dag.test``) against moto in server mode, starting from
what a nightly run leaves behind (the ``backup`` fixture), under the restore role.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import pytest
import yaml

from securedr.aws import drill_sandbox
from securedr.core.drill import CONTROLS
from tests.dagrun import run_dag
from tests.restore.conftest import audit_entries
from tests.restore.test_iam_policy import ASSUME, POLICY, iam_actions, policy_actions, static_calls

# Every test runs the whole DAG against the sandbox as AWS behaves (sandbox.realism "e2e").
pytestmark = [pytest.mark.usefixtures("airflow_db"), pytest.mark.realism("e2e")]


def set_targets(plan, **targets: float):
    """Rewrite the test plan's targets (``SECUREDR_PLAN``) and return the reloaded plan."""
    from securedr.core.plan import load_plan

    path = Path(os.environ["SECUREDR_PLAN"])
    data = yaml.safe_load(path.read_text())
    data["targets"].update(targets)
    path.write_text(yaml.safe_dump(data))
    return load_plan(path)


def drill_objects(plan) -> dict[str, bytes]:
    s3 = boto3.client("s3", region_name=plan.regions.dr)
    prefix = f"{plan.evidence_bucket.prefix}/drills/{plan.name}/"
    found = {}
    for obj in s3.list_objects_v2(Bucket=plan.evidence_bucket.name, Prefix=prefix).get(
        "Contents", []
    ):
        found[obj["Key"]] = s3.get_object(Bucket=plan.evidence_bucket.name, Key=obj["Key"])[
            "Body"
        ].read()
    return found


def latest_record(plan) -> dict:
    records = [json.loads(v) for k, v in sorted(drill_objects(plan).items()) if k.endswith(".json")]
    assert records, "no drill record was written"
    return records[-1]


def drill_id_of(result) -> str:
    return result.xcom("start_drill")["drill_id"]


def assert_nothing_left(plan, drill_id: str) -> None:
    dr = plan.regions.dr
    ec2, rds = boto3.client("ec2", region_name=dr), boto3.client("rds", region_name=dr)
    assert drill_sandbox.leftovers(ec2, rds, drill_id=drill_id) == []
    # Independently of the adapter: no volume, VPC or DB instance carries the drill's tag.
    tagged = [{"Name": "tag:securedr:drill", "Values": [drill_id]}]
    assert ec2.describe_volumes(Filters=tagged)["Volumes"] == []
    assert ec2.describe_vpcs(Filters=tagged)["Vpcs"] == []
    assert not [
        d
        for d in rds.describe_db_instances()["DBInstances"]
        if d["DBInstanceIdentifier"].startswith("drill-")
    ]


def test_drill_restores_into_an_isolated_sandbox_passes_and_tears_down(
    restore_plan, backup, api_calls
):
    result = run_dag("dr_recovery_drill")
    assert result.state == "success", result.states
    # Every AWS call of the drill ran under the restore role and is one its policy allows.
    base_key = os.environ["AWS_ACCESS_KEY_ID"]
    recorded = {(c.service, c.operation) for c in api_calls if c.access_key != base_key}
    assert ("ec2", "CreateVpc") in recorded and ("rds", "DeleteDBInstance") in recorded
    assert recorded - static_calls() == set()
    assert iam_actions(recorded - {ASSUME}) <= policy_actions(POLICY)
    base = {(c.service, c.operation) for c in api_calls if c.access_key == base_key}
    assert base <= {ASSUME}, base

    record = result.xcom("report_drill")
    assert record["passed"] is True and record["failures"] == []
    labels = sorted(r["label"] for r in record["resources"])
    expected = [f"{p['kind']}:{p['source_region']}/{p['source_id']}" for p in backup.points]
    # File sets too: every object decrypted and checked against the signed manifest's SHA-256.
    expected += [
        f"fileset:{f.get('source_region') or 'local'}/{f['name']}" for f in backup.file_sets
    ]
    assert backup.file_sets and labels == sorted(expected)
    for file_set in backup.file_sets:
        checked = next(
            r["result"] for r in record["resources"] if r["result"]["source_id"] == file_set["name"]
        )
        assert checked["restored_id"] == f"{len(file_set['files'])} files verified"
    for resource in record["resources"]:
        assert resource["result"]["verified"] is True
        assert resource["measurement"]["rto_met"] and resource["measurement"]["rpo_met"]
        # RPO is the recovery point's age at drill start: the backup is three hours old.
        assert 3 * 3600 - 60 <= resource["measurement"]["rpo_seconds"] <= 3 * 3600 + 600
    assert [c["control"] for c in record["controls"]] == list(CONTROLS)
    assert {c["status"] for c in record["controls"]} == {"PASS"}
    assert record["leftovers"] == []

    # Restores went into the sandbox, not the plan's restore network.
    sandbox = result.xcom("create_sandbox")
    started = {e.action: e.details for e in audit_entries(restore_plan) if e.outcome == "started"}
    assert started["restore.rds"]["subnet_group"] == sandbox["db_subnet_group"]
    assert started["restore.rds"]["security_group_ids"] == [sandbox["security_group_id"]]
    assert started["restore.ebs"]["availability_zone"] == sandbox["availability_zones"][0]
    assert_nothing_left(restore_plan, drill_id_of(result))

    # Evidence: the JSON record and the HTML report, in the evidence bucket.
    objects = drill_objects(restore_plan)
    html = next(v.decode() for k, v in objects.items() if k.endswith(".html"))
    assert "<svg" in html and "CP-4" in html and "PASS" in html
    assert record["report_url"].endswith(".html") and record["report_url"].startswith("s3://")

    # The audit trail records the drill from start to verdict and still verifies.
    actions = [e.action for e in audit_entries(restore_plan)]
    for action in ("drill.start", "drill.sandbox", "drill.verify", "drill.teardown"):
        assert action in actions
    assert actions[-1] == "drill.report"

    # A second drill charts the first one's record from the bucket as its trend.
    second = run_dag("dr_recovery_drill")
    assert second.state == "success", second.states
    pages = [
        v.decode() for k, v in sorted(drill_objects(restore_plan).items()) if k.endswith(".html")
    ]
    assert len(pages) == 2
    assert sum("No earlier drills are recorded" in page for page in pages) == 1


def test_a_missed_rpo_target_fails_the_drill_and_names_every_resource(restore_plan, backup):
    plan = set_targets(restore_plan, rpo_hours=1)  # the recovery points are three hours old

    result = run_dag("dr_recovery_drill")

    assert result.state == "failed"
    assert result.states["report_drill"] == "failed"
    assert result.states["teardown_sandbox"] == "success"
    record = latest_record(plan)
    assert record["passed"] is False
    assert record["overall"]["rpo_met"] is False and record["overall"]["rto_met"] is True
    for point in backup.points:
        label = f"{point['kind']}:{point['source_region']}/{point['source_id']}"
        assert any(f.startswith(label) and "RPO" in f for f in record["failures"]), label
    rpo_check = next(c for c in record["checks"] if c["name"] == "recovery-points-within-rpo")
    assert rpo_check["passed"] is False
    assert next(c for c in record["controls"] if c["control"] == "CP-9")["status"] == "FAIL"
    assert_nothing_left(plan, drill_id_of(result))


def test_a_restore_failing_midway_still_tears_everything_down(
    restore_plan, backup, monkeypatch: pytest.MonkeyPatch
):
    from botocore.exceptions import ClientError

    from securedr.aws import restore as restore_adapter

    def no_capacity(*args, **kwargs):
        raise ClientError(
            {
                "Error": {
                    "Code": "InsufficientDBInstanceCapacity",
                    "Message": "Cannot create a DB instance in the requested zone",
                }
            },
            "RestoreDBInstanceFromDBSnapshot",
        )

    monkeypatch.setattr(restore_adapter, "restore_db_instance", no_capacity)

    result = run_dag("dr_recovery_drill")

    assert result.state == "failed"
    assert result.states["restore_volumes"] == "success"
    assert result.states["restore_databases"] == "failed"
    assert result.states["teardown_sandbox"] == "success"
    # The volumes restored before the failure existed, and are gone now.
    restored = [v["resource_id"] for v in result.xcom("restore_volumes")]
    assert restored and all(restored)
    ec2 = boto3.client("ec2", region_name=restore_plan.regions.dr)
    remaining = ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": restored}])
    assert remaining["Volumes"] == []
    assert_nothing_left(restore_plan, drill_id_of(result))

    record = latest_record(restore_plan)
    assert record["passed"] is False
    rds_point = backup.point("rds")
    assert any(
        f.startswith(f"rds:{rds_point['source_region']}/{rds_point['source_id']}")
        and "not restored" in f
        for f in record["failures"]
    )
    assert "step restore_databases failed" in record["failures"]


def test_a_leftover_fails_the_drill_loudly_and_names_the_resource(
    restore_plan, backup, monkeypatch: pytest.MonkeyPatch
):
    from securedr.aws import restore as restore_adapter

    original = restore_adapter.restore_db_instance
    protected: list[str] = []

    def restore_then_protect(rds, **kwargs):
        # Someone turns on deletion protection on the drill's database while the drill runs.
        db, created = original(rds, **kwargs)
        boto3.client("rds", region_name=restore_plan.regions.dr).modify_db_instance(
            DBInstanceIdentifier=kwargs["identifier"], DeletionProtection=True
        )
        protected.append(kwargs["identifier"])
        return db, created

    monkeypatch.setattr(restore_adapter, "restore_db_instance", restore_then_protect)

    result = run_dag("dr_recovery_drill")

    assert result.state == "failed"
    assert result.states["teardown_sandbox"] == "failed"
    assert result.states["report_drill"] == "failed"
    [identifier] = protected
    record = latest_record(restore_plan)
    assert f"rds:db/{identifier}" in record["leftovers"]
    assert any(f"rds:db/{identifier}" in f for f in record["failures"])
    teardown = next(e for e in audit_entries(restore_plan) if e.action == "drill.teardown")
    assert teardown.outcome == "failed" and f"rds:db/{identifier}" in teardown.details["leftovers"]
    # The other resources were still deleted.
    dr = restore_plan.regions.dr
    ec2 = boto3.client("ec2", region_name=dr)
    drill_id = drill_id_of(result)
    tagged = [{"Name": "tag:securedr:drill", "Values": [drill_id]}]
    assert ec2.describe_volumes(Filters=tagged)["Volumes"] == []

    rds = boto3.client("rds", region_name=dr)
    rds.modify_db_instance(DBInstanceIdentifier=identifier, DeletionProtection=False)
    drill_sandbox.teardown(ec2, rds, drill_id=drill_id, poll=0.1)
    assert drill_sandbox.leftovers(ec2, rds, drill_id=drill_id) == []
