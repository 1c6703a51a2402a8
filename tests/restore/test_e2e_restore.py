"""dr_restore end to end on the real Airflow components: trigger as alice, approve as bob
through the HITL REST API, restore, confirm - and the refusals around it."""

from __future__ import annotations

import subprocess
import sys
import urllib.parse
from pathlib import Path

import boto3
import pytest

from sandbox.stack import StackError
from tests.restore.conftest import VALID_PARAMS

# The stack's sandbox AWS runs the realism layer's "e2e" profile (sandbox.stack.DEFAULT_REALISM).
pytestmark = [pytest.mark.e2e, pytest.mark.realism("e2e")]

DAG_ID = "dr_restore"


def _hitl_path(run_id: str, task_id: str = "approve_restore") -> str:
    quoted = urllib.parse.quote(run_id, safe="")
    return f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}/taskInstances/{task_id}/-1/hitlDetails"


def _trigger_and_wait_for_approval(restore_stack, conf) -> tuple[str, object]:
    alice = restore_stack.api("alice")
    code = restore_stack.stack.mfa_code("alice")  # read off alice's enrolled authenticator
    run_id = alice.trigger(DAG_ID, conf={**VALID_PARAMS, "mfa_code": code, **conf})
    state = alice.wait(DAG_ID, run_id, timeout=300, until=("awaiting_input",))
    assert alice.task_states(DAG_ID, run_id)["approve_restore"] == "awaiting_input", state
    # Airflow 3.3.2 race: an answer that arrives before the executor has reported the parked
    # process's exit re-queues the task and the scheduler then fails it. Wait for that report.
    restore_stack.stack.wait_parked(DAG_ID, run_id, "approve_restore")
    return run_id, alice


def _answer(api, run_id: str, choice: str, code: str | None = None):
    answer = {"chosen_options": [choice], "params_input": {"approver_mfa_code": code}}
    return api.patch(_hitl_path(run_id), answer)


def _ec2(restore_stack):
    return boto3.client("ec2", region_name="us-west-2", endpoint_url=restore_stack.state["aws_url"])


def _restored_volumes(restore_stack) -> list[dict]:
    return _ec2(restore_stack).describe_volumes(
        Filters=[{"Name": "tag:securedr:role", "Values": ["restored"]}]
    )["Volumes"]


def test_alice_requests_bob_approves_and_the_estate_is_restored(restore_stack):
    run_id, alice = _trigger_and_wait_for_approval(restore_stack, {})

    detail = restore_stack.api("bob").get(_hitl_path(run_id))
    assert {u["name"] for u in detail["assigned_users"]} == {"bob", "carol"}
    assert "Requested by | alice" in detail["body"]
    # The initiator is not assigned, and neither is anyone else: the API refuses them.
    for user in ("alice", "admin"):
        with pytest.raises(StackError, match="HTTP 403"):
            _answer(restore_stack.api(user), run_id, "Approve")

    bob_code = restore_stack.stack.mfa_code("bob")
    answer = _answer(restore_stack.api("bob"), run_id, "Approve", bob_code)
    assert answer["responded_by"]["name"] == "bob"
    assert alice.wait(DAG_ID, run_id, timeout=600) == "success"

    report = alice.xcom(DAG_ID, run_id, "confirm_restore")
    assert report["succeeded"] and report["initiator"] == "alice" and report["approver"] == "bob"
    assert report["manifest"]["run_id"] == restore_stack.nightly_run_id
    assert report["rto_met"] is True and report["rpo_met"] is True
    restored = {r["source_id"] for r in report["resources"]}
    estate = restore_stack.state["estate"]
    assert restored == {
        *(v for vols in estate["protected_volumes"].values() for v in vols),
        *(d for dbs in estate["protected_databases"].values() for d in dbs),
    }
    for volume in _restored_volumes(restore_stack):
        assert volume["Encrypted"] and volume["KmsKeyId"] == estate["key_arns"]["us-west-2"]

    # The audit trail in S3 verifies with the CLI, as an operator would run it.
    result = subprocess.run(
        [str(Path(sys.executable).parent / "securedr"), "audit-verify"],
        env=restore_stack.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Audit trail intact" in result.stdout


def test_rejection_ends_the_run_with_nothing_restored(restore_stack):
    before = len(_restored_volumes(restore_stack))
    run_id, alice = _trigger_and_wait_for_approval(restore_stack, {"resources": ["orders-db"]})
    _answer(restore_stack.api("carol"), run_id, "Reject")
    assert alice.wait(DAG_ID, run_id, timeout=300) == "failed"
    states = alice.task_states(DAG_ID, run_id)
    assert states["check_approval"] == "failed"
    assert states["retrieve_recovery_points"] == "upstream_failed"
    assert states["restore_volumes"] == "upstream_failed"
    assert len(_restored_volumes(restore_stack)) == before


def test_alice_s_password_without_her_code_gets_nothing_restored(restore_stack):
    """On the real components: the run fails at check_initiator, the audit trail says why."""
    before = len(_restored_volumes(restore_stack))
    alice = restore_stack.api("alice")  # whoever holds her password
    run_id = alice.trigger(DAG_ID, conf={**VALID_PARAMS, "mfa_code": "000000"})
    assert alice.wait(DAG_ID, run_id, timeout=300) == "failed"
    states = alice.task_states(DAG_ID, run_id)
    assert states["check_initiator"] == "failed"
    assert states["approve_restore"] == "upstream_failed"
    assert states["restore_volumes"] == "upstream_failed"
    assert len(_restored_volumes(restore_stack)) == before
    from securedr.aws.audit_store import S3AuditTrail
    from securedr.core.plan import load_plan

    plan = load_plan(restore_stack.plan_path)
    s3 = boto3.client("s3", region_name="us-west-2", endpoint_url=restore_stack.state["aws_url"])
    entries = (
        S3AuditTrail(
            s3,
            bucket=plan.evidence_bucket.name,
            evidence_prefix=plan.evidence_bucket.prefix,
            plan=plan.name,
        )
        .read()
        .entries
    )
    mine = [e for e in entries if e.run_id == run_id]
    assert [(e.action, e.outcome) for e in mine] == [
        ("mfa.initiate", "refused"),
        ("restore.initiate", "refused"),
    ]
    assert mine[0].details["result"] == "bad"


def test_a_user_who_is_not_an_initiator_is_refused_before_approval(restore_stack):
    admin = restore_stack.api("admin")
    run_id = admin.trigger(DAG_ID, conf={**VALID_PARAMS, "mfa_code": "123456"})
    assert admin.wait(DAG_ID, run_id, timeout=300) == "failed"
    states = admin.task_states(DAG_ID, run_id)
    assert states["initiate_restore"] == "success"
    assert states["check_initiator"] == "failed"
    assert states["approve_restore"] == "upstream_failed"


def test_a_viewer_cannot_even_trigger(restore_stack):
    with pytest.raises(StackError, match="HTTP 403"):
        restore_stack.api("mallory").trigger(DAG_ID, conf={**VALID_PARAMS, "mfa_code": "123456"})


def test_a_recovery_drill_on_the_real_components_passes_and_leaves_nothing(restore_stack):
    from sandbox.stack import run_drill

    result = run_drill(restore_stack.stack, restore_stack.state)

    assert result["state"] == "success", result["tasks"]
    record = result["record"]
    assert record["passed"] and record["resources"]
    assert {c["status"] for c in record["controls"]} == {"PASS"}
    ec2 = _ec2(restore_stack)
    tagged = [{"Name": "tag:securedr:drill", "Values": [record["sandbox_id"]]}]
    assert ec2.describe_vpcs(Filters=tagged)["Vpcs"] == []
    assert ec2.describe_volumes(Filters=tagged)["Volumes"] == []
    # The HTML report is in the evidence bucket and a local copy is next to the other reports.
    bucket, key = record["report_url"].removeprefix("s3://").split("/", 1)
    s3 = boto3.client("s3", region_name="us-west-2", endpoint_url=restore_stack.state["aws_url"])
    assert b"<svg" in s3.get_object(Bucket=bucket, Key=key)["Body"].read()
