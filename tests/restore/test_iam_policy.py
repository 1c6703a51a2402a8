"""The restore role's policy allows exactly what the restore code calls, scoped as tightly as
AWS allows - proven from the code (static scan) and from a run (recorded calls)."""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterable
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name

from securedr.core import iam
from tests.conftest import REPO
from tests.restore.conftest import Harness, approval

PLUGINS = REPO / "plugins" / "securedr"
POLICY_TEXT = iam.POLICY_TEMPLATE.read_text()
TRUST_TEXT = iam.TRUST_TEMPLATE.read_text()
POLICY = json.loads(POLICY_TEXT)
TRUST = json.loads(TRUST_TEXT)

#: Modules that exist only for restores: every AWS call in them is a restore call.
RESTORE_MODULES = [
    "aws/restore.py",
    "aws/drill_sandbox.py",
    "operators/drill.py",
    "aws/sts.py",
    "aws/audit_store.py",
    "aws/mfa_store.py",
    "notifiers/sns.py",
    "operators/restore.py",
    "operators/filesets.py",
    "operators/access.py",
    "operators/audit.py",
    "sensors/restore.py",
    "triggers/restore.py",
]
#: Shared helpers the restore code calls (by qualified name inside their module).
SHARED_HELPERS = {
    "aws/ebs.py": ["describe_snapshots", "describe_requests", "sharing"],
    "aws/rds.py": ["describe_snapshots", "describe_requests", "sharing"],
    "aws/evidence.py": [
        "EvidenceStore.put",
        "EvidenceStore.get",
        "EvidenceStore.list",
        "EvidenceStore.hidden",
        "EvidenceStore.versions",
        "list_versions",
    ],
    "aws/kms.py": ["describe_key"],
    "aws/filesets.py": [
        "restore_file",
        "verify_file_set_objects",
        "verify_object",
        "_get",
        "_data_key",
    ],
    "operators/base.py": ["SecureDrMixin.key_arn", "SecureDrMixin.evidence"],
}
SERVICES = ("ec2", "rds", "s3", "kms", "sns", "sts")
#: Called with the Airflow connection's identity to obtain the role: the trust policy's job.
ASSUME = ("sts", "AssumeRole")

#: IAM actions whose name differs from the API operation.
RENAMED = {
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "HeadObject"): "s3:GetObject",
    # https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectVersions.html
    ("s3", "ListObjectVersions"): "s3:ListBucketVersions",
}
#: Actions AWS checks on top of the call itself, with the request parameter that triggers them.
IMPLIED = {
    "ec2:CreateVolume": {
        "TagSpecifications": {"ec2:CreateTags"},
        # EBS creates an encrypted volume with a grant on the key and re-encrypts the snapshot's
        # data key under it (AWS docs: "Permissions to use AWS KMS keys" for EBS).
        "KmsKeyId": {
            "kms:CreateGrant",
            "kms:Decrypt",
            "kms:DescribeKey",
            "kms:GenerateDataKeyWithoutPlaintext",
            "kms:ReEncryptFrom",
            "kms:ReEncryptTo",
        },
    },
    "ec2:CreateVpc": {"TagSpecifications": {"ec2:CreateTags"}},
    "ec2:CreateSubnet": {"TagSpecifications": {"ec2:CreateTags"}},
    "ec2:CreateSecurityGroup": {"TagSpecifications": {"ec2:CreateTags"}},
    "rds:CreateDBSubnetGroup": {"Tags": {"rds:AddTagsToResource"}},
    "rds:RestoreDBInstanceFromDBSnapshot": {
        "Tags": {"rds:AddTagsToResource"},
        # An encrypted snapshot restores under its own key through an RDS grant.
        "DBSnapshotIdentifier": {"kms:CreateGrant", "kms:DescribeKey"},
    },
    "s3:PutObject": {
        "ObjectLockMode": {"s3:PutObjectRetention"},
        "SSEKMSKeyId": {"kms:GenerateDataKey"},
    },
    # SSE-KMS objects are decrypted on read; reading a given version is its own permission.
    "s3:GetObject": {"Bucket": {"kms:Decrypt"}, "VersionId": {"s3:GetObjectVersion"}},
}
#: EC2 Describe* calls support no resource-level permissions: "*" is the only option.
NO_RESOURCE_LEVEL = {
    "ec2:DescribeSnapshots",
    "ec2:DescribeVolumes",
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeInternetGateways",
    "ec2:DescribeNatGateways",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcs",
}
#: Method names that are also AWS operation names but are called on SecureDR objects, by module.
NOT_AWS_CALLS = {
    # S3AuditTrail.verify (hash chain and Ed25519 signatures), not kms:Verify.
    "operators/drill.py": {"verify"},
}


# --------------------------------------------------------------------------- static scan


def _operations() -> dict[str, set[tuple[str, str]]]:
    """snake_case method name -> {(IAM prefix, operation)} for the services SecureDR uses."""
    session = botocore.session.get_session()
    names: dict[str, set[tuple[str, str]]] = {}
    for service in SERVICES:
        model = session.get_service_model(service)
        for operation in model.operation_names:
            names.setdefault(xform_name(operation), set()).add((model.signing_name, operation))
    return names


def _nodes(path: Path, qualnames: Iterable[str] | None) -> list[ast.AST]:
    tree = ast.parse(path.read_text())
    if qualnames is None:
        return [tree]
    found = []
    for qualname in qualnames:
        scope: list[ast.AST] = [tree]
        for part in qualname.split("."):
            scope = [
                n
                for s in scope
                for n in ast.iter_child_nodes(s)
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                and n.name == part
            ]
        assert scope, f"{path.name}: {qualname} not found - update SHARED_HELPERS"
        found.extend(scope)
    return found


def static_calls() -> set[tuple[str, str]]:
    """Every AWS operation the restore code can call: ``x.<operation>(...)`` and
    ``x.get_paginator("<operation>")``."""
    operations = _operations()
    calls: set[tuple[str, str]] = set()
    sources = [(m, None) for m in RESTORE_MODULES] + list(SHARED_HELPERS.items())
    for module, qualnames in sources:
        for root in _nodes(PLUGINS / module, qualnames):
            for node in ast.walk(root):
                if not isinstance(node, ast.Call):
                    continue
                if isinstance(node.func, ast.Attribute):
                    name = node.func.attr
                elif isinstance(node.func, ast.Name) and node.func.id == "describe_all":
                    name = node.func.id
                else:
                    continue
                if name in NOT_AWS_CALLS.get(module, set()):
                    continue
                if name == "get_paginator" and node.args:
                    arg = node.args[0]
                    assert isinstance(arg, ast.Constant), f"{module}: dynamic paginator name"
                    name = arg.value
                if name == "describe_all" and len(node.args) > 1:
                    # describe_all(client, "<operation>", ...) pages through that operation.
                    arg = node.args[1]
                    assert isinstance(arg, ast.Constant), f"{module}: dynamic describe name"
                    name = arg.value
                candidates = operations.get(name, set())
                assert len(candidates) <= 1, f"{module}: {name} is ambiguous: {candidates}"
                calls |= candidates
    return calls


def iam_actions(calls: Iterable[tuple[str, str]]) -> set[str]:
    return {RENAMED.get(c, f"{c[0]}:{c[1]}") for c in calls}


def required_actions(calls: set[tuple[str, str]]) -> set[str]:
    direct = iam_actions(calls - {ASSUME})
    implied = {a for action in direct for extra in IMPLIED.get(action, {}).values() for a in extra}
    return direct | implied


def policy_actions(document: dict) -> set[str]:
    actions: set[str] = set()
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        value = statement["Action"]
        actions |= {value} if isinstance(value, str) else set(value)
    return actions


# --------------------------------------------------------------------------- the tests


def test_policy_grants_exactly_what_the_restore_code_calls():
    calls = static_calls()
    assert ASSUME in calls
    assert ("ec2", "CreateVolume") in calls
    assert ("rds", "RestoreDBInstanceFromDBSnapshot") in calls
    granted = policy_actions(POLICY)
    required = required_actions(calls)
    assert required - granted == set(), "the restore code calls what the policy does not allow"
    assert granted - required == set(), "the policy allows more than the restore code calls"


def test_no_wildcard_actions_and_no_wildcard_resources_where_aws_can_scope():
    for statement in POLICY["Statement"]:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        for action in actions:
            assert "*" not in action, f"{statement['Sid']}: wildcard action {action}"
        for resource in statement["Resource"]:
            if resource == "*":
                assert set(actions) <= NO_RESOURCE_LEVEL, (
                    f"{statement['Sid']}: '*' for {actions}, which AWS can scope"
                )
                # Still limited to the DR Region.
                assert statement["Condition"]["StringEquals"]["aws:RequestedRegion"]
                continue
            assert resource.startswith(("arn:aws:", "${")), resource
            parts = resource.split(":")
            if resource.startswith("arn:aws:") and parts[2] != "s3":
                assert parts[3] == "${DrRegion}", f"{statement['Sid']}: {resource} not scoped to DR"
                assert parts[4] in ("${AccountId}", ""), f"{resource}: account not scoped"
        assert "NotAction" not in statement and "NotResource" not in statement


def test_mutating_actions_are_bound_to_securedr_tags_and_encryption():
    by_sid = {s["Sid"]: s for s in POLICY["Statement"]}
    volumes = by_sid["CreateOnlyEncryptedTaggedVolumes"]["Condition"]
    assert volumes["Bool"] == {"ec2:Encrypted": "true"}
    assert volumes["StringEquals"]["aws:RequestTag/securedr:role"] == "restored"
    sources = by_sid["RestoreVolumesOnlyFromSecureDrCopies"]["Condition"]["StringEquals"]
    assert sources["aws:ResourceTag/securedr:managed"] == "true"
    assert sources["aws:ResourceTag/securedr:role"] == "dr-copy"
    writes = by_sid["WriteAuditEntriesAndRestoreReports"]["Condition"]["StringEquals"]
    assert writes["s3:x-amz-server-side-encryption-aws-kms-key-id"] == "${DrKeyArn}"
    assert by_sid["GrantDrKeyToEbsAndRdsOnly"]["Condition"]["Bool"] == {
        "kms:GrantIsForAWSResource": "true"
    }


def test_drill_deletions_reach_only_drill_tagged_resources_never_real_restores():
    by_sid = {s["Sid"]: s for s in POLICY["Statement"]}
    deleting = [
        s
        for s in POLICY["Statement"]
        if any(a.split(":")[1].startswith(("Delete", "Revoke")) for a in s["Action"])
    ]
    assert {s["Sid"] for s in deleting} == {
        "DrillCloseAndDeleteOnlyDrillTaggedResources",
        "DrillSubnetGroups",
        "DrillDeleteOnlyDrillDatabases",
    }
    for sid in ("DrillCloseAndDeleteOnlyDrillTaggedResources", "DrillDeleteOnlyDrillDatabases"):
        condition = by_sid[sid]["Condition"]
        assert condition["Null"] == {"aws:ResourceTag/securedr:drill": "false"}
        assert condition["StringEquals"] == {"aws:ResourceTag/securedr:plan": "${Plan}"}
    # Databases restored by dr_restore are named restored-*: a drill can never delete them.
    assert by_sid["DrillDeleteOnlyDrillDatabases"]["Resource"] == [
        "arn:aws:rds:${DrRegion}:${AccountId}:db:drill-*"
    ]
    assert by_sid["DrillSubnetGroups"]["Resource"] == [
        "arn:aws:rds:${DrRegion}:${AccountId}:subgrp:securedr-drill-*"
    ]
    created = by_sid["DrillCreateTaggedSandbox"]["Condition"]
    assert created["Null"] == {"aws:RequestTag/securedr:drill": "false"}


def test_trust_policy_requires_the_external_id_and_a_run_session_name():
    (statement,) = TRUST["Statement"]
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Principal"] == {"AWS": "${AirflowPrincipalArn}"}
    assert statement["Condition"]["StringEquals"] == {"sts:ExternalId": "${ExternalId}"}
    assert statement["Condition"]["StringLike"] == {"sts:RoleSessionName": "securedr-restore-*"}


def test_templates_render_completely_for_the_plan(plan):
    values = iam.policy_values(
        plan, account_id="123456789012", dr_key_arn="arn:aws:kms:us-west-2:123456789012:key/x"
    )
    assert iam.placeholders(POLICY_TEXT) <= set(values)
    values["SnsTopicArn"] = None  # as for a plan with notifications off
    rendered = json.dumps(iam.render(POLICY_TEXT, values))
    assert "${" not in rendered
    # No topic configured: the Notify statement is dropped, never widened.
    assert "sns:Publish" not in rendered
    with_topic = iam.render(
        POLICY_TEXT, {**values, "SnsTopicArn": "arn:aws:sns:us-west-2:123456789012:t"}
    )
    assert "sns:Publish" in json.dumps(with_topic)
    with pytest.raises(iam.TemplateError, match="AirflowPrincipalArn"):
        iam.render(TRUST_TEXT, {"ExternalId": "x"})


def test_a_real_run_calls_nothing_the_static_scan_missed(restore_plan, backup, api_calls):
    """Recorded calls of a restore (and of a retried restore) are all in the scanned set, and
    they carry the parameters the implied permissions are derived from."""
    h = Harness()
    h.run_all(approver="carol")
    assert h.restore_file_sets()
    h.restore("ebs")
    h.restore("rds")
    base_key = os.environ["AWS_ACCESS_KEY_ID"]
    recorded = {(c.service, c.operation) for c in api_calls}
    assert recorded - static_calls() == set()
    assert {(c.service, c.operation) for c in api_calls if c.access_key == base_key} == {ASSUME}
    params: dict[str, set[str]] = {}
    for c in api_calls:
        params.setdefault(f"{c.service}:{c.operation}", set()).update(c.params)
    for action, triggers in IMPLIED.items():
        if action in params:
            assert set(triggers) <= params[action], (action, params[action])
    assert iam_actions(recorded - {ASSUME}) <= policy_actions(POLICY)
    h.check_approval(approval("bob"))  # and the role can still audit after a completed run


# --------------------------------------------------------------------------- resource level


def _rendered_policies(plan, estate) -> tuple[dict, dict]:
    """(restore role policy, backup policy = the Airflow identity's) rendered for the sandbox."""
    from securedr.core.iam import backup_policy_values
    from tests.operators.test_iam_backup_policy import POLICY as BACKUP_POLICY
    from tests.restore.conftest import ACCOUNT

    dr_key = estate.key_arns[plan.regions.dr]
    restore = iam.render(
        POLICY_TEXT, iam.policy_values(plan, account_id=ACCOUNT, dr_key_arn=dr_key)
    )
    backup = iam.render(
        BACKUP_POLICY.read_text(),
        backup_policy_values(plan, account_id=ACCOUNT, dr_key_arn=dr_key),
    )
    return restore, backup


def test_every_action_on_every_resource_of_a_restore_and_a_drill_is_allowed(
    restore_plan, estate, backup
):
    """Resource-level check: each (action, resource ARN) a restore, its retries, a file-set
    restore (versioned reads) and a drill's sandbox and teardown ask AWS for is allowed by the
    shipped restore policy; the AssumeRole that gets the role is allowed by the policy of the
    identity that calls it (the backup policy, attached to aws_default's identity)."""
    from securedr.operators.drill import CreateDrillSandboxOperator, TeardownDrillSandboxOperator
    from securedr.operators.restore import RestoreRecoveryPointsOperator
    from tests.iam_eval import authorizations, denied, kms_aliases, recorded_requests

    with recorded_requests() as requests:
        # A run id of its own: file sets restored by another test's run would be found on disk,
        # verified, and not read again.
        h = Harness(run_id="manual__2026-11-26T11:11:11+00:00")
        h.run_all(approver="carol")
        assert h.restore_file_sets()
        h.restore("ebs")
        h.restore("rds")
        drill = {**h.outputs["initiate"], "drill_id": "iamcheck"}
        sandbox = CreateDrillSandboxOperator(task_id="create_sandbox", initiation=drill).execute(
            h.context
        )
        for kind in ("ebs", "rds"):
            RestoreRecoveryPointsOperator(
                task_id=f"restore_{kind}",
                kind=kind,  # type: ignore[arg-type]
                initiation=h.outputs["initiate"],
                retrieval=h.outputs["retrieve"],
                sandbox=sandbox,
            ).execute(h.context)
        TeardownDrillSandboxOperator(task_id="teardown_sandbox", initiation=drill).execute(
            h.context
        )

    restore_policy, backup_policy = _rendered_policies(restore_plan, estate)
    base_key = os.environ["AWS_ACCESS_KEY_ID"]
    as_role = [r for r in requests if r.access_key != base_key]
    as_connection = [r for r in requests if r.access_key == base_key]
    assert {(r.service, r.operation) for r in as_connection} == {ASSUME}
    aliases = kms_aliases(sorted({r.region for r in requests}))
    assert denied(backup_policy, as_connection, aliases) == []
    assert denied(restore_policy, as_role, aliases) == []
    pairs = {pair for r in as_role for pair in authorizations(r)}
    actions = {a for a, _ in pairs}
    # The run exercised what this test is about.
    assert "s3:GetObjectVersion" in actions, "file sets are read at their manifest's version"
    assert ("ec2:DescribeNetworkInterfaces", "*") in pairs
    assert {"ec2:DeleteVpc", "rds:DeleteDBInstance", "ec2:CreateVolume"} <= actions
    assert ("sts:AssumeRole", restore_plan.restore.role_arn) in {
        pair for r in as_connection for pair in authorizations(r)
    }


def test_the_evaluator_matches_action_and_resource_not_only_the_action():
    from tests.iam_eval import Request, allowed, authorizations, denied

    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": ["arn:aws:s3:::b/p/*"],
            }
        ]
    }
    read = Request("s3", "GetObject", {"Bucket": "b", "Key": "p/x"}, "us-west-2", "k")
    versioned = Request(
        "s3", "GetObject", {"Bucket": "b", "Key": "p/x", "VersionId": "v1"}, "us-west-2", "k"
    )
    elsewhere = Request("s3", "GetObject", {"Bucket": "b", "Key": "q/x"}, "us-west-2", "k")
    assert denied(policy, [read]) == []
    assert denied(policy, [versioned]) == [
        ("s3:GetObject", "s3:GetObjectVersion", "arn:aws:s3:::b/p/x")
    ]
    assert denied(policy, [elsewhere]) == [("s3:GetObject", "s3:GetObject", "arn:aws:s3:::b/q/x")]
    assert allowed(policy, "S3:getobject", "arn:aws:s3:::b/p/deep/key")  # actions: any case
    assert not allowed(policy, "s3:GetObject", "arn:aws:s3:::B/p/x")  # resources: exact case
    volume = Request(
        "ec2",
        "CreateVolume",
        {"SnapshotId": "snap-1", "TagSpecifications": [{}]},
        "us-west-2",
        "k",
    )
    assert authorizations(volume) == [
        ("ec2:CreateVolume", "arn:aws:ec2:us-west-2:123456789012:volume/*"),
        ("ec2:CreateVolume", "arn:aws:ec2:us-west-2::snapshot/snap-1"),
        ("ec2:CreateTags", "arn:aws:ec2:us-west-2:123456789012:volume/*"),
    ]
