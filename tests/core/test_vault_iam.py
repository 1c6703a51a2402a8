"""The DR vault's shipped IAM documents, judged the way IAM decides across accounts: the intake
role can bring copies in and nothing else, nobody in the workload account can touch the vault's
keys, bucket or copies, and in the vault account only the retention role deletes."""

from __future__ import annotations

import json

import pytest

from sandbox.iam_judge import ADMIN_POLICY, Principal, judge_call, vault_world
from securedr.core import iam
from securedr.core.plan import load_plan
from tests.conftest import REPO

WORKLOAD = "123456789012"
VAULT = "222222222222"
THIRD = "333333333333"
DR = "us-west-2"
AIRFLOW = f"arn:aws:iam::{WORKLOAD}:role/securedr-airflow"
WORKLOAD_ADMIN = f"arn:aws:iam::{WORKLOAD}:role/Admin"
VAULT_ADMIN = f"arn:aws:iam::{VAULT}:role/Admin"
RETENTION_OPERATOR = f"arn:aws:iam::{VAULT}:role/securedr-vault-operations"
RECOVERY_OPERATOR = f"arn:aws:iam::{THIRD}:role/securedr-recovery-operator"
BREAK_GLASS = f"arn:aws:iam::{VAULT}:role/securedr-break-glass"
DR_KEY = f"arn:aws:kms:{DR}:{WORKLOAD}:key/0000dead-0000-4000-8000-00000000beef"
VAULT_COPY = "snap-0vault00000000001"
SHARED_DR_COPY = "snap-0workload0000001"
#: Tags every SecureDR vault copy carries (set by the copy itself).
PLAN_NAME = "demo-estate-vault"
COPY_TAGS = {"securedr:managed": "true", "securedr:plan": PLAN_NAME}


@pytest.fixture(scope="module")
def plan():
    loaded = load_plan(REPO / "include" / "dr_plan.vault.yaml")
    assert loaded.name == PLAN_NAME
    return loaded


def _values(plan, **overrides):
    arguments = {
        "workload_account_id": WORKLOAD,
        "dr_key_arn": DR_KEY,
        "airflow_principal_arn": AIRFLOW,
        "external_id": "ext-intake",
        "retention_principal_arn": RETENTION_OPERATOR,
        "recovery_principal_arn": RECOVERY_OPERATOR,
        "recovery_external_id": "ext-recovery",
        "break_glass_principal_arn": BREAK_GLASS,
        **overrides,
    }
    return iam.vault_policy_values(plan, **arguments)


@pytest.fixture(scope="module")
def values(plan):
    return _values(plan)


@pytest.fixture(scope="module")
def world(plan, values):
    backup = iam.render(
        (REPO / "include" / "iam" / "securedr-backup-policy.json").read_text(),
        iam.backup_policy_values(plan, account_id=WORKLOAD, dr_key_arn=DR_KEY),
    )
    world = vault_world(
        values,
        airflow_policy=backup,
        workload_admins=[WORKLOAD_ADMIN],
        vault_admins=[VAULT_ADMIN],
        vault_snapshots=[VAULT_COPY],
        workload_snapshots=[SHARED_DR_COPY],
        shared_with_vault=[
            f"arn:aws:ec2:{DR}::snapshot/{SHARED_DR_COPY}",
            f"arn:aws:rds:{DR}:{WORKLOAD}:snapshot:securedr-*",
        ],
    )
    # The recovery operator lives in a third account: its own policy must allow the AssumeRole.
    world.add_identity(
        RECOVERY_OPERATOR,
        {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "sts:AssumeRole",
                    "Resource": values["RecoveryRoleArn"],
                }
            ]
        },
    )
    return world


@pytest.fixture(scope="module")
def roles(values):
    return {
        "intake": Principal(values["IntakeRoleArn"]),
        "retention": Principal(values["RetentionRoleArn"]),
        "recovery": Principal(values["RecoveryRoleArn"]),
    }


def _call(world, who, service, operation, params, tags=None, account=VAULT):
    principal = who if isinstance(who, Principal) else Principal(who)
    return judge_call(
        world,
        principal,
        service,
        operation,
        params,
        region=DR,
        account=account,
        resource_tags=tags,
    )


def _key(values):
    return values["VaultKeyArns"][0]


def _kms(world, who, operation, key, **context):
    from sandbox.iam_judge import judge

    return judge(world, who, f"kms:{operation}", key, context)


# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("name", sorted(iam.VAULT_TEMPLATES))
def test_every_vault_template_renders_completely(values, name):
    text = iam.VAULT_TEMPLATES[name].read_text()
    assert iam.placeholders(text) <= set(values), name
    rendered = json.dumps(iam.render_vault(name, values))
    assert "${" not in rendered
    assert WORKLOAD not in rendered or name in (
        "intake-policy",  # copies FROM the workload's shared snapshots and DR key
        "intake-trust-policy",  # trusts the workload's Airflow principal
        "recovery-trust-policy",  # names the workload account to exclude it
        "dr-key-vault-statement",
    ), f"{name} names the workload account"


def test_the_vault_must_be_another_account_and_its_trusts_outside_the_workload(plan):
    with pytest.raises(iam.VaultPolicyError, match=r"retention_principal_arn .* vault account"):
        _values(plan, retention_principal_arn=WORKLOAD_ADMIN)
    with pytest.raises(iam.VaultPolicyError, match=r"recovery_principal_arn .* workload account"):
        _values(plan, recovery_principal_arn=WORKLOAD_ADMIN)
    with pytest.raises(iam.VaultPolicyError, match="break_glass_principal_arn"):
        _values(plan, break_glass_principal_arn=WORKLOAD_ADMIN)
    with pytest.raises(iam.VaultPolicyError, match="vault must be another account"):
        _values(plan, workload_account_id=VAULT, airflow_principal_arn=VAULT_ADMIN)
    with pytest.raises(iam.VaultPolicyError, match="full key ARN"):
        _values(plan, dr_key_arn="alias/securedr-dr")
    no_vault = plan.model_copy(update={"vault": None})
    with pytest.raises(iam.VaultPolicyError, match="no vault section"):
        _values(no_vault)


def test_the_lock_minimum_is_the_retention_period(plan, values):
    assert values["LockMinDays"] == str(plan.retention.keep_days)
    assert plan.vault.lock.duration_days_for(plan.retention) >= int(values["LockMinDays"])


# --------------------------------------------------------------------------- intake


def _handshake(values):
    """Every call the vault handshake makes as the intake role (EBS and RDS)."""
    vault_key = _key(values)
    bucket, prefix = values["VaultEvidenceBucket"], values["VaultEvidencePrefix"]
    tag_spec = [
        {"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in COPY_TAGS.items()]}
    ]
    source_db = f"arn:aws:rds:{DR}:{WORKLOAD}:snapshot:securedr-orders-db-20261126"
    return [
        ("ec2", "DescribeSnapshots", {"SnapshotIds": [SHARED_DR_COPY]}, None),
        (
            "ec2",
            "CopySnapshot",
            {
                "SourceSnapshotId": SHARED_DR_COPY,
                "SourceRegion": DR,
                "Encrypted": True,
                "KmsKeyId": vault_key,
                "TagSpecifications": tag_spec,
            },
            None,
        ),
        (
            "ec2",
            "CreateTags",
            {"Resources": [VAULT_COPY], "Tags": [{"Key": "securedr:verified", "Value": "run"}]},
            COPY_TAGS,
        ),
        (
            "ec2",
            "LockSnapshot",
            {
                "SnapshotId": VAULT_COPY,
                "LockMode": "compliance",
                "CoolOffPeriod": 24,
                "LockDuration": 15,
            },
            COPY_TAGS,
        ),
        ("ec2", "DescribeLockedSnapshots", {"SnapshotIds": [VAULT_COPY]}, None),
        (
            "rds",
            "CopyDBSnapshot",
            {
                "SourceDBSnapshotIdentifier": source_db,
                "TargetDBSnapshotIdentifier": "securedr-orders-db-20261126",
                "KmsKeyId": vault_key,
                "Tags": [{"Key": "securedr:plan", "Value": PLAN_NAME}],
            },
            None,
        ),
        (
            "rds",
            "AddTagsToResource",
            {
                "ResourceName": f"arn:aws:rds:{DR}:{VAULT}:snapshot:securedr-orders-db-20261126",
                "Tags": [{"Key": "securedr:verified", "Value": "run"}],
            },
            None,
        ),
        (
            "rds",
            "DescribeDBSnapshots",
            {"DBSnapshotIdentifier": "securedr-orders-db-20261126"},
            None,
        ),
        (
            "s3",
            "PutObject",
            {
                "Bucket": bucket,
                "Key": f"{prefix}/manifests/{PLAN_NAME}/m.json",
                "ObjectLockMode": "COMPLIANCE",
            },
            None,
        ),
        (
            "s3",
            "GetObject",
            {"Bucket": bucket, "Key": f"{prefix}/manifests/{PLAN_NAME}/m.json", "VersionId": "v1"},
            None,
        ),
        ("s3", "ListObjectVersions", {"Bucket": bucket, "Prefix": f"{prefix}/manifests/"}, None),
    ]


def test_the_intake_role_can_make_every_call_of_the_vault_handshake(world, values, roles):
    for service, operation, params, tags in _handshake(values):
        decision = _call(world, roles["intake"], service, operation, params, tags)
        assert decision.allowed, (operation, decision.reason)
    # EBS and RDS use the keys on the role's behalf: the vault key to encrypt the copy, the
    # workload's DR key (cross-account: its key policy AND the role's policy) to read the share.
    via_ec2 = {"kms:ViaService": f"ec2.{DR}.amazonaws.com"}
    grant = {**via_ec2, "kms:GrantIsForAWSResource": "true"}
    for key in (_key(values), DR_KEY):
        for operation, context in (
            ("DescribeKey", {}),
            ("CreateGrant", grant),
            ("Decrypt", via_ec2),
            ("ReEncryptFrom", via_ec2),
            ("GenerateDataKeyWithoutPlaintext", via_ec2),
        ):
            decision = _kms(world, roles["intake"], operation, key, **context)
            assert decision.allowed, (key, operation, decision.reason)
    assert _kms(
        world,
        roles["intake"],
        "GenerateDataKey",
        _key(values),
        **{"kms:ViaService": f"s3.{DR}.amazonaws.com"},
    ).allowed


def test_the_intake_role_may_not_delete_unlock_share_or_weaken_anything(world, values, roles):
    bucket, prefix = values["VaultEvidenceBucket"], values["VaultEvidencePrefix"]
    db = "securedr-orders-db-20261126"
    refused = [
        ("ec2", "DeleteSnapshot", {"SnapshotId": VAULT_COPY}),
        ("ec2", "UnlockSnapshot", {"SnapshotId": VAULT_COPY}),
        ("ec2", "ModifySnapshotAttribute", {"SnapshotId": VAULT_COPY}),
        # Governance mode takes no cooling-off period, and governance locks can be lifted.
        (
            "ec2",
            "LockSnapshot",
            {"SnapshotId": VAULT_COPY, "LockMode": "governance", "LockDuration": 15},
        ),
        # Shortening a compliance lock during its cooling-off period below the retention.
        (
            "ec2",
            "LockSnapshot",
            {
                "SnapshotId": VAULT_COPY,
                "LockMode": "compliance",
                "CoolOffPeriod": 1,
                "LockDuration": 1,
            },
        ),
        ("rds", "DeleteDBSnapshot", {"DBSnapshotIdentifier": db}),
        ("rds", "ModifyDBSnapshotAttribute", {"DBSnapshotIdentifier": db}),
        ("kms", "ScheduleKeyDeletion", {"KeyId": _key(values)}),
        ("kms", "DisableKey", {"KeyId": _key(values)}),
        ("kms", "PutKeyPolicy", {"KeyId": _key(values)}),
        (
            "s3",
            "DeleteObject",
            {"Bucket": bucket, "Key": f"{prefix}/manifests/m.json", "VersionId": "v1"},
        ),
        ("s3", "DeleteObject", {"Bucket": bucket, "Key": f"{prefix}/manifests/m.json"}),
        ("s3", "PutBucketPolicy", {"Bucket": bucket}),
        ("s3", "PutObjectLockConfiguration", {"Bucket": bucket}),
        (
            "s3",
            "PutObject",
            {"Bucket": bucket, "Key": f"{prefix}/x", "ObjectLockMode": "GOVERNANCE"},
        ),
    ]
    for service, operation, params in refused:
        decision = _call(world, roles["intake"], service, operation, params, COPY_TAGS)
        assert not decision.allowed, (operation, params, decision.reason)


def test_the_intake_policy_names_no_destructive_action():
    text = iam.VAULT_TEMPLATES["intake-policy"].read_text()
    document = json.loads(text)
    actions = {a for s in document["Statement"] for a in s["Action"]}
    assert {s["Effect"] for s in document["Statement"]} == {"Allow"}
    assert not [a for a in actions if "*" in a]
    for forbidden in (
        "Delete",
        "Unlock",
        "Modify",
        "PutKeyPolicy",
        "ScheduleKeyDeletion",
        "DisableKey",
        "PutBucket",
        "BypassGovernanceRetention",
        "Share",
    ):
        assert not [a for a in actions if forbidden in a], forbidden


def test_an_over_granted_intake_role_is_still_stopped_by_scp_key_and_bucket_policy(values):
    """Defence in depth: if someone attached AdministratorAccess to the intake role, the SCP,
    the key policy's denies and the bucket policy's denies still hold."""
    world = vault_world(values, vault_snapshots=[VAULT_COPY])
    world.add_identity(values["IntakeRoleArn"], ADMIN_POLICY)
    intake = Principal(values["IntakeRoleArn"])
    bucket = values["VaultEvidenceBucket"]
    for service, operation, params in (
        ("ec2", "DeleteSnapshot", {"SnapshotId": VAULT_COPY}),
        ("ec2", "UnlockSnapshot", {"SnapshotId": VAULT_COPY}),
        ("rds", "DeleteDBSnapshot", {"DBSnapshotIdentifier": "securedr-x"}),
        ("kms", "PutKeyPolicy", {"KeyId": _key(values)}),
        ("kms", "ScheduleKeyDeletion", {"KeyId": _key(values)}),
        ("s3", "DeleteObject", {"Bucket": bucket, "Key": "securedr/m.json", "VersionId": "1"}),
        ("s3", "PutBucketPolicy", {"Bucket": bucket}),
    ):
        decision = _call(world, intake, service, operation, params, COPY_TAGS)
        assert not decision.allowed, operation
        assert "explicit deny" in decision.reason, decision.reason


# --------------------------------------------------------------------------- the workload


@pytest.mark.parametrize("who", [f"arn:aws:iam::{WORKLOAD}:root", WORKLOAD_ADMIN, AIRFLOW])
def test_nobody_in_the_workload_account_touches_the_vault_key_bucket_or_copies(world, values, who):
    bucket, prefix = values["VaultEvidenceBucket"], values["VaultEvidencePrefix"]
    for operation in (
        "ScheduleKeyDeletion",
        "DisableKey",
        "PutKeyPolicy",
        "Decrypt",
        "CreateGrant",
        "DescribeKey",
    ):
        assert not _kms(world, who, operation, _key(values)).allowed, (who, operation)
    for service, operation, params in (
        ("s3", "DeleteObject", {"Bucket": bucket, "Key": f"{prefix}/m.json", "VersionId": "1"}),
        ("s3", "PutBucketPolicy", {"Bucket": bucket}),
        ("s3", "GetObject", {"Bucket": bucket, "Key": f"{prefix}/m.json"}),
        ("s3", "PutObject", {"Bucket": bucket, "Key": f"{prefix}/m.json"}),
        ("ec2", "DeleteSnapshot", {"SnapshotId": VAULT_COPY}),
        ("ec2", "UnlockSnapshot", {"SnapshotId": VAULT_COPY}),
        (
            "rds",
            "DeleteDBSnapshot",
            {"DBSnapshotIdentifier": f"arn:aws:rds:{DR}:{VAULT}:snapshot:securedr-x"},
        ),
    ):
        decision = _call(world, who, service, operation, params, COPY_TAGS, account=WORKLOAD)
        assert not decision.allowed, (who, operation, decision.reason)


def test_only_the_airflow_principal_with_the_external_id_assumes_the_intake_role(world, values):
    assume = {"RoleArn": values["IntakeRoleArn"], "ExternalId": "ext-intake"}
    assert _call(world, AIRFLOW, "sts", "AssumeRole", assume).allowed
    assert not _call(world, AIRFLOW, "sts", "AssumeRole", {**assume, "ExternalId": "x"}).allowed
    assert not _call(world, AIRFLOW, "sts", "AssumeRole", {"RoleArn": assume["RoleArn"]}).allowed
    assert not _call(world, WORKLOAD_ADMIN, "sts", "AssumeRole", assume).allowed


@pytest.mark.parametrize("role", ["retention", "recovery"])
@pytest.mark.parametrize("who", [f"arn:aws:iam::{WORKLOAD}:root", WORKLOAD_ADMIN, AIRFLOW])
def test_the_workload_account_cannot_assume_the_retention_or_recovery_role(world, roles, who, role):
    for external_id in (None, "ext-recovery", "ext-intake"):
        params = {"RoleArn": roles[role].arn}
        if external_id:
            params["ExternalId"] = external_id
        decision = _call(world, who, "sts", "AssumeRole", params, account=WORKLOAD)
        assert not decision.allowed, (who, role, external_id)


def test_the_retention_and_recovery_roles_trust_only_their_principals(world, roles):
    assert _call(
        world, RETENTION_OPERATOR, "sts", "AssumeRole", {"RoleArn": roles["retention"].arn}
    ).allowed
    assert _call(
        world,
        RECOVERY_OPERATOR,
        "sts",
        "AssumeRole",
        {"RoleArn": roles["recovery"].arn, "ExternalId": "ext-recovery"},
    ).allowed
    assert not _call(
        world, RECOVERY_OPERATOR, "sts", "AssumeRole", {"RoleArn": roles["recovery"].arn}
    ).allowed
    trust = json.loads(iam.VAULT_TEMPLATES["retention-trust-policy"].read_text())
    (statement,) = trust["Statement"]
    assert statement["Condition"] == {"StringEquals": {"aws:PrincipalAccount": "${VaultAccountId}"}}


# --------------------------------------------------------------------------- the vault account


@pytest.mark.parametrize(
    ("service", "operation", "params"),
    [
        ("ec2", "DeleteSnapshot", {"SnapshotId": VAULT_COPY}),
        ("ec2", "UnlockSnapshot", {"SnapshotId": VAULT_COPY}),
        ("ec2", "ModifySnapshotAttribute", {"SnapshotId": VAULT_COPY}),
        ("rds", "DeleteDBSnapshot", {"DBSnapshotIdentifier": "securedr-x"}),
        ("rds", "ModifyDBSnapshotAttribute", {"DBSnapshotIdentifier": "securedr-x"}),
    ],
)
def test_the_scp_denies_delete_unlock_and_share_to_everyone_but_the_retention_role(
    world, roles, service, operation, params
):
    for who in (f"arn:aws:iam::{VAULT}:root", VAULT_ADMIN, BREAK_GLASS, roles["recovery"]):
        decision = _call(world, who, service, operation, params, COPY_TAGS)
        assert not decision.allowed, (who, operation)
        if who != roles["recovery"]:
            assert "SCP" in decision.reason, decision.reason


def test_the_retention_role_deletes_vault_copies_and_nothing_else(world, values, roles):
    retention = roles["retention"]
    assert _call(
        world, retention, "ec2", "DeleteSnapshot", {"SnapshotId": VAULT_COPY}, COPY_TAGS
    ).allowed
    assert _call(
        world,
        retention,
        "rds",
        "DeleteDBSnapshot",
        {"DBSnapshotIdentifier": "securedr-orders-db-1"},
    ).allowed
    # Only SecureDR's copies of this plan.
    assert not _call(
        world,
        retention,
        "ec2",
        "DeleteSnapshot",
        {"SnapshotId": VAULT_COPY},
        {"securedr:plan": "another"},
    ).allowed
    assert not _call(
        world, retention, "rds", "DeleteDBSnapshot", {"DBSnapshotIdentifier": "prod-db-manual"}
    ).allowed
    for service, operation, params in (
        ("ec2", "UnlockSnapshot", {"SnapshotId": VAULT_COPY}),
        ("ec2", "ModifySnapshotAttribute", {"SnapshotId": VAULT_COPY}),
        ("ec2", "LockSnapshot", {"SnapshotId": VAULT_COPY, "LockMode": "governance"}),
        ("kms", "ScheduleKeyDeletion", {"KeyId": _key(values)}),
        ("kms", "PutKeyPolicy", {"KeyId": _key(values)}),
        ("s3", "PutObject", {"Bucket": values["VaultEvidenceBucket"], "Key": "securedr/x"}),
    ):
        assert not _call(world, retention, service, operation, params, COPY_TAGS).allowed
    bucket = values["VaultEvidenceBucket"]
    manifests = f"{values['VaultEvidencePrefix']}/manifests/{PLAN_NAME}/"
    for operation, params in (
        ("HeadBucket", {"Bucket": bucket}),
        ("ListObjectVersions", {"Bucket": bucket, "Prefix": manifests}),
        ("GetObject", {"Bucket": bucket, "Key": manifests + "m.json", "VersionId": "v1"}),
    ):
        assert _call(world, retention, "s3", operation, params).allowed, operation
    assert _call(world, retention, "ec2", "DescribeLockedSnapshots", {}).allowed


def test_vault_keys_and_evidence_are_changed_only_by_break_glass(world, values):
    bucket = values["VaultEvidenceBucket"]
    for who in (f"arn:aws:iam::{VAULT}:root", VAULT_ADMIN):
        for operation in ("ScheduleKeyDeletion", "DisableKey", "PutKeyPolicy"):
            assert not _kms(world, who, operation, _key(values)).allowed
        assert not _call(world, who, "s3", "PutBucketPolicy", {"Bucket": bucket}).allowed
    for operation in ("ScheduleKeyDeletion", "PutKeyPolicy"):
        assert _kms(world, BREAK_GLASS, operation, _key(values)).allowed
    assert _call(world, BREAK_GLASS, "s3", "PutBucketPolicy", {"Bucket": bucket}).allowed
    # COMPLIANCE retention still holds against break-glass: S3 refuses, whatever IAM says.


def test_the_recovery_role_restores_from_vault_copies_but_never_deletes_or_shares(
    world, values, roles
):
    recovery = roles["recovery"]
    restored = {"securedr:managed": "true", "securedr:plan": PLAN_NAME, "securedr:role": "restored"}
    volume = {
        "SnapshotId": VAULT_COPY,
        "Encrypted": True,
        "AvailabilityZone": f"{DR}a",
        "TagSpecifications": [
            {
                "ResourceType": "volume",
                "Tags": [{"Key": k, "Value": v} for k, v in restored.items()],
            }
        ],
    }
    assert _call(world, recovery, "ec2", "CreateVolume", volume, COPY_TAGS).allowed
    db = {
        "DBInstanceIdentifier": "restored-orders-db",
        "DBSnapshotIdentifier": f"arn:aws:rds:{DR}:{VAULT}:snapshot:securedr-orders-db-1",
        "Tags": [{"Key": k, "Value": v} for k, v in restored.items()],
    }
    assert _call(world, recovery, "rds", "RestoreDBInstanceFromDBSnapshot", db).allowed
    via_ec2 = {"kms:ViaService": f"ec2.{DR}.amazonaws.com"}
    assert _kms(world, recovery, "Decrypt", _key(values), **via_ec2).allowed
    assert _kms(
        world,
        recovery,
        "CreateGrant",
        _key(values),
        **via_ec2,
        **{"kms:GrantIsForAWSResource": "true"},
    ).allowed
    assert not _kms(world, recovery, "CreateGrant", _key(values), **via_ec2).allowed
    assert not _kms(world, recovery, "Decrypt", _key(values)).allowed  # never directly
    for service, operation, params in (
        ("ec2", "DeleteSnapshot", {"SnapshotId": VAULT_COPY}),
        ("ec2", "UnlockSnapshot", {"SnapshotId": VAULT_COPY}),
        ("ec2", "ModifySnapshotAttribute", {"SnapshotId": VAULT_COPY}),
        ("rds", "DeleteDBSnapshot", {"DBSnapshotIdentifier": "securedr-orders-db-1"}),
        ("rds", "ModifyDBSnapshotAttribute", {"DBSnapshotIdentifier": "securedr-orders-db-1"}),
    ):
        assert not _call(world, recovery, service, operation, params, COPY_TAGS).allowed


def test_the_dr_key_statement_lets_only_the_intake_role_use_the_key_through_ebs_and_rds(
    world, values
):
    statement = iam.render_vault("dr-key-vault-statement", values)
    # The actions AWS lists for using a shared snapshot's key:
    # https://docs.aws.amazon.com/ebs/latest/userguide/share-kms-key.html
    actions = {
        a
        for s in statement["Statement"]
        for a in json.loads(
            json.dumps(s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        )
    }
    assert actions == {
        "kms:DescribeKey",
        "kms:CreateGrant",
        "kms:GenerateDataKey",
        "kms:GenerateDataKeyWithoutPlaintext",
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
        "kms:Decrypt",
    }
    principals = {json.dumps(s["Principal"]) for s in statement["Statement"]}
    assert principals == {json.dumps({"AWS": values["IntakeRoleArn"]})}
    intake = Principal(values["IntakeRoleArn"])
    assert not _kms(world, intake, "Decrypt", DR_KEY).allowed  # only via EBS / RDS
    assert not _kms(
        world, intake, "CreateGrant", DR_KEY, **{"kms:ViaService": f"ec2.{DR}.amazonaws.com"}
    ).allowed
    # Other principals of the vault account get nothing from the statement.
    assert not _kms(
        world, VAULT_ADMIN, "Decrypt", DR_KEY, **{"kms:ViaService": f"ec2.{DR}.amazonaws.com"}
    ).allowed
    # The workload still administers its own key.
    assert _kms(world, WORKLOAD_ADMIN, "PutKeyPolicy", DR_KEY).allowed


def test_the_scp_is_deny_only_and_exempts_by_principal_arn():
    scp = json.loads(iam.VAULT_TEMPLATES["scp"].read_text())
    assert {s["Effect"] for s in scp["Statement"]} == {"Deny"}
    by_sid = {s["Sid"]: s for s in scp["Statement"]}
    copies = by_sid["DenyDeletingUnlockingOrSharingVaultCopiesExceptRetention"]
    assert {
        "ec2:DeleteSnapshot",
        "ec2:UnlockSnapshot",
        "ec2:ModifySnapshotAttribute",
        "rds:DeleteDBSnapshot",
        "rds:ModifyDBSnapshotAttribute",
    } <= set(copies["Action"])
    assert copies["Condition"] == {"ArnNotLike": {"aws:PrincipalArn": "${RetentionRoleArn}"}}
    keys = by_sid["DenyDestroyingVaultKeysAndEvidenceExceptBreakGlass"]
    assert {
        "kms:ScheduleKeyDeletion",
        "kms:DisableKey",
        "kms:PutKeyPolicy",
        "s3:DeleteObjectVersion",
        "s3:PutBucketObjectLockConfiguration",
    } <= set(keys["Action"])


def test_the_workload_connection_may_assume_the_intake_role_only_with_a_vault(plan, world):
    backup = (REPO / "include" / "iam" / "securedr-backup-policy.json").read_text()

    def assumable(p):
        rendered = iam.render(
            backup, iam.backup_policy_values(p, account_id=WORKLOAD, dr_key_arn=DR_KEY)
        )
        return sorted(
            r
            for s in rendered["Statement"]
            if "sts:AssumeRole" in s["Action"]
            for r in s["Resource"]
        )

    assert plan.vault.role_arn in assumable(plan)
    assert plan.vault.role_arn not in assumable(plan.model_copy(update={"vault": None}))
