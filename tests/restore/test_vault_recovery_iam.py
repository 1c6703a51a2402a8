"""A restore from the vault needs nothing the shipped recovery role lacks: every call it makes,
judged at resource level with the vault's documents (recovery role policy, vault key policy,
vault bucket policy, SCP)."""

from __future__ import annotations

import pytest

from sandbox.iam_judge import Principal, authorizations, judge, vault_world
from securedr.core import iam
from tests.iam_eval import recorded_requests
from tests.restore.conftest import Harness
from tests.restore.vault import VAULT_ACCOUNT, WORKLOAD_ACCOUNT, lose_the_workload_account

#: Needs no permission: "No permissions are required to perform this operation."
#: https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html
NO_PERMISSION = {("sts", "GetCallerIdentity")}


def test_every_call_of_a_restore_from_the_vault_is_allowed_to_the_recovery_role(
    vault, vault_backup, estate
):
    plan = vault.plan
    lose_the_workload_account(plan, vault_backup, estate)
    with recorded_requests() as requests:
        report = Harness(params={"source": "vault"}).run_all()
    assert report["succeeded"] is True, report

    values = _values(plan)
    assert values["RecoveryRoleArn"] == vault.recovery_role_arn
    copies = [e["snapshot_id"] for e in vault.copies.values() if e["kind"] == "ebs"]
    world = vault_world(values, vault_snapshots=copies)
    role = Principal(values["RecoveryRoleArn"])
    copy_tags = {"securedr:managed": "true", "securedr:plan": plan.name}
    judged = set()
    denied = set()
    _judge_all(requests, world, role, copy_tags, denied, judged)
    assert denied == set()
    assert {"ec2:CreateVolume", "rds:RestoreDBInstanceFromDBSnapshot", "s3:PutObject"} <= judged


def _values(plan):
    return iam.vault_policy_values(
        plan,
        workload_account_id=WORKLOAD_ACCOUNT,
        dr_key_arn=f"arn:aws:kms:{plan.regions.dr}:{WORKLOAD_ACCOUNT}:key/gone",
        airflow_principal_arn=f"arn:aws:iam::{WORKLOAD_ACCOUNT}:root",
        external_id="x",
        retention_principal_arn=f"arn:aws:iam::{VAULT_ACCOUNT}:root",
        recovery_principal_arns=[f"arn:aws:iam::{VAULT_ACCOUNT}:root"],
        recovery_external_id="y",
        break_glass_principal_arn=f"arn:aws:iam::{VAULT_ACCOUNT}:role/securedr-break-glass",
    )


def _judge_all(requests, world, role, copy_tags, denied, judged):
    for request in requests:
        if (request.service, request.operation) in NO_PERMISSION | {("sts", "AssumeRole")}:
            continue  # AssumeRole is the recovery connection's own call (the trust decides)
        for action, resource, context in authorizations(
            request.service,
            request.operation,
            request.params,
            region=request.region,
            account=VAULT_ACCOUNT,
            resource_tags=copy_tags,
        ):
            decision = judge(
                world, role, action, resource, {"aws:RequestedRegion": request.region, **context}
            )
            if not decision.allowed:
                denied.add((request.operation, action, resource, decision.reason))
            judged.add(action)


@pytest.mark.usefixtures("airflow_db")
def test_every_call_of_a_drill_from_the_vault_is_allowed_to_the_recovery_role(
    vault, vault_backup, estate
):
    from tests.dagrun import run_dag

    plan = vault.plan
    lose_the_workload_account(plan, vault_backup, estate)
    with recorded_requests() as requests:
        result = run_dag("dr_recovery_drill")
    assert result.state == "success", result.states
    drill_id = result.xcom("start_drill")["drill_id"]

    values = _values(plan)
    copies = [e["snapshot_id"] for e in vault.copies.values() if e["kind"] == "ebs"]
    world = vault_world(values, vault_snapshots=copies)
    role = Principal(values["RecoveryRoleArn"])
    copy_tags = {"securedr:managed": "true", "securedr:plan": plan.name}
    # What the drill tags its own sandbox with (checked by tests/restore/test_vault_drill.py).
    drill_tags = {**copy_tags, "securedr:drill": drill_id}
    denied, judged = set(), set()
    for request in requests:
        if (request.service, request.operation) in NO_PERMISSION | {("sts", "AssumeRole")}:
            continue
        on_copy = "SnapshotId" in request.params or "DBSnapshotIdentifier" in request.params
        for action, resource, context in authorizations(
            request.service,
            request.operation,
            request.params,
            region=request.region,
            account=VAULT_ACCOUNT,
            resource_tags=copy_tags if on_copy else drill_tags,
        ):
            decision = judge(
                world, role, action, resource, {"aws:RequestedRegion": request.region, **context}
            )
            if not decision.allowed:
                denied.add((request.operation, action, resource, decision.reason))
            judged.add(action)
    assert denied == set()
    assert {"ec2:CreateVpc", "ec2:DeleteVpc", "rds:DeleteDBInstance", "ec2:CreateVolume"} <= judged
