"""The nightly's vault handshake needs nothing the shipped documents do not grant: every call it
makes, judged at resource level with the vault's documents (intake role policy and trust, vault
key policy, DR key statement, vault bucket policy, SCP) and the workload's backup policy."""

from __future__ import annotations

import os

import boto3

from sandbox.iam_judge import Principal, authorizations, judge, vault_world
from securedr.core import iam
from securedr.core.plan import load_plan
from tests.conftest import REPO
from tests.iam_eval import recorded_requests
from tests.operators.test_vault_copy import (  # noqa: F401 - fixtures
    DR,
    VAULT,
    WORKLOAD,
    release,
    sign,
    to_vault,
    vault_plan,
    vault_session,
    verified_dr_copies,
    verify_vault,
)

#: "No permissions are required to perform this operation."
#: https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html
NO_PERMISSION = {("sts", "GetCallerIdentity")}


def _tags(items) -> dict[str, dict[str, str]]:
    return {s["SnapshotId"]: {t["Key"]: t["Value"] for t in s.get("Tags", [])} for s in items}


def test_every_call_of_the_vault_handshake_is_allowed_by_the_shipped_documents(
    vault_plan,  # noqa: F811 - the fixture imported above
    ctx,
):
    from sandbox.accounts import SANDBOX_EXTERNAL_ID

    plan = load_plan(vault_plan)
    verifications = verified_dr_copies(ctx, vault_plan)
    workload_ec2 = boto3.client("ec2", region_name=DR)
    tags = _tags(workload_ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"])
    with recorded_requests() as requests:
        copies = to_vault(ctx, vault_plan, verifications)
        result = verify_vault(ctx, vault_plan, verifications, copies)
        manifest = sign(ctx, vault_plan, verifications, result)
        release(ctx, vault_plan, verifications, result, manifest)
    vault_ec2 = vault_session().client("ec2", region_name=DR)
    vault_copies = vault_ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    tags.update(_tags(vault_copies))

    dr_key = boto3.client("kms", region_name=DR).describe_key(KeyId=plan.kms_key(DR))
    dr_key_arn = dr_key["KeyMetadata"]["Arn"]
    airflow = f"arn:aws:iam::{WORKLOAD}:root"  # the sandbox's workload identity
    values = iam.vault_policy_values(
        plan,
        workload_account_id=WORKLOAD,
        dr_key_arn=dr_key_arn,
        airflow_principal_arn=airflow,
        external_id=SANDBOX_EXTERNAL_ID,
        retention_principal_arn=f"arn:aws:iam::{VAULT}:root",
        recovery_principal_arns=[f"arn:aws:iam::{VAULT}:root"],
        recovery_external_id="x",
        break_glass_principal_arn=f"arn:aws:iam::{VAULT}:role/securedr-break-glass",
    )
    dr_copies = [v["point"]["dr_snapshot_id"] for v in verifications if v["passed"]]
    world = vault_world(
        values,
        vault_snapshots=[s["SnapshotId"] for s in vault_copies],
        workload_snapshots=[s for s in dr_copies if s.startswith("snap-")],
        shared_with_vault=[
            *(f"arn:aws:ec2:{DR}::snapshot/{s}" for s in dr_copies if s.startswith("snap-")),
            f"arn:aws:rds:{DR}:{WORKLOAD}:snapshot:securedr-*",
        ],
    )
    backup = iam.render(
        (REPO / "include" / "iam" / "securedr-backup-policy.json").read_text(),
        iam.backup_policy_values(plan, account_id=WORKLOAD, dr_key_arn=dr_key_arn),
    )
    # The workload identity is judged by the shipped backup policy, not as an administrator.
    world.identities[airflow] = [backup]

    workload_key = os.environ["AWS_ACCESS_KEY_ID"]
    judged: dict[str, set[str]] = {"workload": set(), "intake": set()}
    for request in requests:
        if (request.service, request.operation) in NO_PERMISSION:
            continue
        who, account = (
            ("workload", WORKLOAD) if request.access_key == workload_key else ("intake", VAULT)
        )
        principal = Principal(airflow if who == "workload" else values["IntakeRoleArn"])
        for action, resource, context in authorizations(
            request.service,
            request.operation,
            request.params,
            region=request.region,
            account=account,
            resource_tags=tags.get(
                str(request.params.get("SnapshotId") or request.params.get("SourceSnapshotId"))
            )
            or _one_tagged(request, tags),
            aliases={f"arn:aws:kms:{DR}:{WORKLOAD}:{plan.kms_key(DR)}": dr_key_arn},
        ):
            decision = judge(
                world,
                principal,
                action,
                resource,
                {"aws:RequestedRegion": request.region, **context},
            )
            assert decision.allowed, (who, request.operation, action, resource, decision.reason)
            judged[who].add(action)
    assert {"ec2:CopySnapshot", "ec2:LockSnapshot", "rds:CopyDBSnapshot", "s3:PutObject"} <= (
        judged["intake"]
    )
    assert {"sts:AssumeRole", "ec2:ModifySnapshotAttribute", "ec2:DeleteSnapshot"} <= judged[
        "workload"
    ]


def _one_tagged(request, tags):
    resources = request.params.get("Resources") or []
    return tags.get(resources[0]) if resources else None
