"""The sandbox's AWS accounts: the workload, the DR vault and a third (recovery) account.

Moto keeps one backend per account and tells accounts apart by the access key that signs a
request; temporary credentials from ``AssumeRole`` belong to the account of the role's ARN
(moto's multi-account documentation, "Multi-Account support": an assumed role's credentials
act in that role's account). :func:`credentials` hands out such credentials for a principal of
any sandbox account, and :func:`seed_vault` builds the vault of a plan in the vault account.

What one account may do with another's snapshots and keys: :mod:`sandbox.cross_account`.
Credentials are good until the sandbox is reset (a reset forgets every access key; moto then
maps an unknown key to the default, workload, account: ask again after a reset).
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3

from sandbox.cross_account import SANDBOX_KEY_ID_TAG

WORKLOAD_ACCOUNT = "123456789012"  #: moto's default account: everything the estate seeds
VAULT_ACCOUNT = "222222222222"
THIRD_ACCOUNT = "333333333333"

#: The role AWS Organizations creates in member accounts for the management account's admins;
#: the sandbox's stand-in for "an administrator of that account".
ADMIN_ROLE_NAME = "OrganizationAccountAccessRole"
INTAKE_ROLE = "securedr-vault-intake"
RETENTION_ROLE = "securedr-vault-retention"
RECOVERY_ROLE = "securedr-vault-recovery"
VAULT_KEY_ALIAS = "alias/securedr-vault"
#: External ids the sandbox's vault roles expect (Variables named by the plan's vault section).
SANDBOX_EXTERNAL_ID = "securedr-sandbox-vault-intake"
SANDBOX_RECOVERY_EXTERNAL_ID = "securedr-sandbox-vault-recovery"
#: The vault-account role that may still change the vault's key and bucket (never SecureDR).
BREAK_GLASS_ROLE = "securedr-vault-break-glass"
#: Sid of the workload DR key's statement that lets the vault account copy shared snapshots.
DR_KEY_VAULT_SID = "SecureDRVaultAccountCopiesSharedSnapshots"
DR_KEY_VAULT_GRANT_SID = "SecureDRVaultAccountGrantsForSharedSnapshotCopies"


def _endpoint(endpoint_url: str | None) -> str | None:
    return endpoint_url or os.environ.get("AWS_ENDPOINT_URL")


def credentials(
    account_id: str,
    endpoint_url: str | None = None,
    *,
    role_name: str = ADMIN_ROLE_NAME,
    session_name: str = "securedr-sandbox",
    duration_seconds: int = 3600,
) -> dict[str, str]:
    """Working credentials of a principal in ``account_id`` (an assumed-role session).

    Returns ``aws_access_key_id``, ``aws_secret_access_key`` and ``aws_session_token``, ready
    for ``boto3.client(..., **credentials(...))``. The session's role is
    ``arn:aws:iam::<account_id>:role/<role_name>``; sts ``GetCallerIdentity`` with them answers
    ``account_id``.
    """
    if not (len(account_id) == 12 and account_id.isdigit()):
        raise ValueError(f"expected a 12-digit AWS account id, got {account_id!r}")
    sts = boto3.client("sts", region_name="us-east-1", endpoint_url=_endpoint(endpoint_url))
    answer = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/{role_name}",
        RoleSessionName=session_name,
        DurationSeconds=duration_seconds,
    )["Credentials"]
    return {
        "aws_access_key_id": answer["AccessKeyId"],
        "aws_secret_access_key": answer["SecretAccessKey"],
        "aws_session_token": answer["SessionToken"],
    }


def session(
    account_id: str, endpoint_url: str | None = None, region_name: str | None = None
) -> boto3.Session:
    """A boto3 session acting in ``account_id`` (see :func:`credentials`)."""
    return boto3.Session(region_name=region_name, **credentials(account_id, endpoint_url))


# -- the vault ---------------------------------------------------------------------------------


def _trust(principals: list[str], external_id: str | None) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"AWS": principals if len(principals) > 1 else principals[0]},
        "Action": "sts:AssumeRole",
    }
    if external_id:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return {"Version": "2012-10-17", "Statement": [statement]}


def _placeholder_policy(sid: str, actions: list[str]) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": "*"}],
    }


def _ensure_role(iam: Any, name: str, trust: dict[str, Any], policy: dict[str, Any]) -> str:
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(trust),
            Description=f"SecureDR DR vault: {name}",
            MaxSessionDuration=3600,
        )["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
    return str(arn)


def _default_key_policy(account: str) -> dict[str, Any]:
    # AWS's default key policy: the account (its IAM policies) controls the key.
    # https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html
    return {
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [
            {
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }


def _ensure_vault_key(kms: Any, account: str, region: str, arn: str | None, policy: Any) -> str:
    """The vault's CMK in ``region`` (with the ARN the plan names, when it names one)."""
    if arn:
        parts = arn.split(":")
        if len(parts) != 6 or parts[3] != region or parts[4] != account:
            raise ValueError(
                f"vault.kms_keys.{region} is {arn!r}: expected a key ARN in {region} of the vault "
                f"account {account}"
            )
        try:
            found = kms.describe_key(KeyId=arn)["KeyMetadata"]["Arn"]
        except kms.exceptions.NotFoundException:
            found = None
    else:
        try:
            found = kms.describe_key(KeyId=VAULT_KEY_ALIAS)["KeyMetadata"]["Arn"]
        except kms.exceptions.NotFoundException:
            found = None
    if found is None:
        tags = [{"TagKey": "securedr:role", "TagValue": "vault"}]
        if arn:
            tags.append({"TagKey": SANDBOX_KEY_ID_TAG, "TagValue": arn.rsplit("/", 1)[1]})
        found = kms.create_key(
            Description=f"SecureDR DR vault ({region})",
            KeyUsage="ENCRYPT_DECRYPT",
            Policy=json.dumps(policy),
            Tags=tags,
        )["KeyMetadata"]["Arn"]
        kms.enable_key_rotation(KeyId=found)
        aliases = {a["AliasName"] for a in kms.list_aliases()["Aliases"]}
        if VAULT_KEY_ALIAS not in aliases:
            kms.create_alias(AliasName=VAULT_KEY_ALIAS, TargetKeyId=found)
    else:
        kms.put_key_policy(KeyId=found, PolicyName="default", Policy=json.dumps(policy))
    return str(found)


def _ensure_vault_bucket(s3: Any, name: str, region: str, key_arn: str, days: int) -> None:
    try:
        s3.head_bucket(Bucket=name)
    except s3.exceptions.ClientError:
        s3.create_bucket(
            Bucket=name,
            CreateBucketConfiguration={"LocationConstraint": region},
            ObjectLockEnabledForBucket=True,
        )
    # Object Lock needs versioning (it is switched on with the lock); said explicitly anyway.
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    wanted = {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": days}},
    }
    current = s3.get_object_lock_configuration(Bucket=name).get("ObjectLockConfiguration", {})
    retention = (current.get("Rule") or {}).get("DefaultRetention") or {}
    same = (retention.get("Mode"), retention.get("Days"), retention.get("Years") or 0) == (
        "COMPLIANCE",
        days,
        0,
    )
    if not same:  # moto refuses any change once the bucket holds objects
        s3.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration=wanted)
    from sandbox.estate import harden_bucket

    harden_bucket(s3, name, key_arn)


def dr_key_vault_statements(vault_account: str) -> list[dict[str, Any]]:
    """What the workload's DR key policy says so the vault account can copy shared snapshots.

    A shared encrypted EBS snapshot's user needs kms:DescribeKey, kms:CreateGrant,
    kms:GenerateDataKey, kms:GenerateDataKeyWithoutPlaintext, kms:ReEncrypt and kms:Decrypt on
    its key (https://docs.aws.amazon.com/ebs/latest/userguide/share-kms-key.html); RDS asks the
    same of a shared encrypted DB snapshot's key
    (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_ShareSnapshot.html#USER_ShareSnapshot.Encrypted).
    Grants only for AWS services acting for the vault (kms:GrantIsForAWSResource), as both pages
    advise.
    """
    root = f"arn:aws:iam::{vault_account}:root"
    return [
        {
            "Sid": DR_KEY_VAULT_SID,
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": [
                "kms:Decrypt",
                "kms:DescribeKey",
                "kms:ReEncrypt*",
                "kms:GenerateDataKey*",
            ],
            "Resource": "*",
        },
        {
            "Sid": DR_KEY_VAULT_GRANT_SID,
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": "kms:CreateGrant",
            "Resource": "*",
            "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
        },
    ]


def allow_vault_on_key(
    region: str,
    key_id: str,
    vault_account: str,
    endpoint_url: str | None = None,
    *,
    statements: list[dict[str, Any]] | None = None,
) -> str:
    """Add (or refresh, by Sid) the vault's statements in a workload key's policy.

    ``statements`` default to :func:`dr_key_vault_statements` (the whole vault account);
    :func:`seed_vault` passes the shipped ``include/iam/securedr-dr-key-vault-statement.json``
    (the intake role only, through EBS and RDS). Returns the key ARN.
    """
    kms = boto3.client("kms", region_name=region, endpoint_url=_endpoint(endpoint_url))
    arn = str(kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"])
    policy = json.loads(kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"])
    ours = statements if statements is not None else dr_key_vault_statements(vault_account)
    sids = {s["Sid"] for s in ours} | {DR_KEY_VAULT_SID, DR_KEY_VAULT_GRANT_SID}
    policy["Statement"] = [s for s in policy.get("Statement", []) if s.get("Sid") not in sids]
    policy["Statement"].extend(ours)
    kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=json.dumps(policy))
    return arn


def _stand_in_documents(
    account: str,
    workload_principal: str,
    external_id: str,
    recovery_principals: list[str],
    recovery_external_id: str,
) -> dict[str, dict[str, Any]]:
    """Minimal documents for a plan without a vault section (the contract's defaults)."""
    return {
        "intake-trust-policy": _trust([workload_principal], external_id),
        "intake-policy": _placeholder_policy(
            "BringCopiesIn",
            [
                "ec2:CopySnapshot",
                "ec2:CreateTags",
                "ec2:LockSnapshot",
                "ec2:Describe*",
                "rds:CopyDBSnapshot",
                "rds:AddTagsToResource",
                "rds:Describe*",
                "kms:DescribeKey",
                "kms:CreateGrant",
                "kms:Encrypt",
                "kms:GenerateDataKey*",
                "kms:ReEncrypt*",
                "s3:PutObject",
                "s3:PutObjectRetention",
                "s3:GetObject*",
                "s3:ListBucket*",
            ],
        ),
        "retention-trust-policy": _trust([f"arn:aws:iam::{account}:root"], None),
        "retention-policy": _placeholder_policy(
            "DeleteExpiredCopies",
            ["ec2:DeleteSnapshot", "ec2:Describe*", "rds:DeleteDBSnapshot", "rds:Describe*"],
        ),
        "recovery-trust-policy": _trust(recovery_principals, recovery_external_id),
        "recovery-policy": _placeholder_policy(
            "RestoreFromVaultCopies",
            [
                "ec2:CreateVolume",
                "ec2:CreateTags",
                "ec2:Describe*",
                "rds:RestoreDBInstanceFromDBSnapshot",
                "rds:AddTagsToResource",
                "rds:Describe*",
                "kms:DescribeKey",
                "kms:CreateGrant",
                "kms:Decrypt",
                "kms:GenerateDataKey*",
                "kms:ReEncrypt*",
                "s3:GetObject*",
                "s3:ListBucket*",
            ],
        ),
        "key-policy": _default_key_policy(account),
        "dr-key-vault-statement": {"Statement": dr_key_vault_statements(account)},
    }


def seed_vault(
    plan: Any,
    endpoint_url: str | None = None,
    *,
    account_id: str | None = None,
    kms_keys: dict[str, str] | None = None,
    evidence_bucket: str | None = None,
    evidence_prefix: str | None = None,
    external_id: str = SANDBOX_EXTERNAL_ID,
    recovery_external_id: str = SANDBOX_RECOVERY_EXTERNAL_ID,
    workload_principal_arn: str | None = None,
    retention_principal_arn: str | None = None,
    recovery_principal_arn: str | None = None,
    break_glass_principal_arn: str | None = None,
) -> dict[str, Any]:
    """Build ``plan``'s DR vault in the vault account; idempotent. Returns what it holds.

    With a ``vault`` section, everything comes from the plan and the documents shipped in
    ``include/iam`` (rendered by :func:`securedr.core.iam.vault_policy_values`, which refuses a
    vault that the workload account could reach); ``account_id``, ``kms_keys``,
    ``evidence_bucket`` and ``evidence_prefix`` are then refused. Without one, the contract's
    defaults (vault account 222222222222, a new key per DR Region, bucket
    ``securedr-vault-evidence-<account>``) and minimal stand-in documents are used.

    Built in the vault account: the roles ``securedr-vault-intake`` (trusted by
    ``workload_principal_arn``, default the workload account's root, with ``external_id``),
    ``securedr-vault-retention`` (trusted by ``retention_principal_arn``, default the vault
    account's root) and ``securedr-vault-recovery`` (trusted by ``recovery_principal_arn``,
    default the vault's ``OrganizationAccountAccessRole``, never the workload); a customer
    managed key per DR Region (with the key id of the ARN the plan names) under the vault key
    policy; the vault evidence bucket in the DR Region (versioned, Object Lock with a COMPLIANCE
    default retention of ``plan.evidence_bucket.object_lock_days``, SSE-KMS under the vault key,
    public access blocked). The vault bucket policy is returned, not put on the bucket (see the
    comment below). In the workload account: the DR key's policy gains the vault statement.
    """
    from sandbox.estate import ensure_key
    from securedr.core import iam as iam_docs

    vault = getattr(plan, "vault", None)
    if vault is not None and (account_id or kms_keys or evidence_bucket or evidence_prefix):
        raise ValueError(
            "the plan has a vault section: its account, keys and bucket come from the plan; "
            "pass account_id/kms_keys/evidence_bucket/evidence_prefix only for a plan without one"
        )
    account = vault.account_id if vault else (account_id or VAULT_ACCOUNT)
    if account == WORKLOAD_ACCOUNT:
        raise ValueError(f"the vault account must not be the workload account {account}")
    dr = plan.regions.dr
    wanted_keys = dict(vault.kms_keys if vault else (kms_keys or {dr: ""}))
    bucket = (
        vault.evidence_bucket if vault else evidence_bucket or f"securedr-vault-evidence-{account}"
    )
    prefix = vault.evidence_prefix if vault else (evidence_prefix or "securedr")
    admin = f"arn:aws:iam::{account}:role/{ADMIN_ROLE_NAME}"
    workload_principal = workload_principal_arn or f"arn:aws:iam::{WORKLOAD_ACCOUNT}:root"
    recovery_principal = recovery_principal_arn or admin
    for region, arn in wanted_keys.items():
        parts = arn.split(":") if arn else []
        if arn and (len(parts) != 6 or parts[3] != region or parts[4] != account):
            raise ValueError(
                f"vault.kms_keys.{region} is {arn!r}: expected a key ARN in {region} of the vault "
                f"account {account}"
            )

    dr_key_arn = str(
        boto3.client("kms", region_name=dr, endpoint_url=_endpoint(endpoint_url)).describe_key(
            KeyId=ensure_key(dr, plan.kms_key(dr), endpoint_url)
        )["KeyMetadata"]["Arn"]
    )
    if vault is not None:
        values = iam_docs.vault_policy_values(
            plan,
            workload_account_id=WORKLOAD_ACCOUNT,
            dr_key_arn=dr_key_arn,
            airflow_principal_arn=workload_principal,
            external_id=external_id,
            # Retention runs as the vault's own principal; one break-glass role of the vault
            # may still change the vault's key and bucket.
            retention_principal_arn=retention_principal_arn or f"arn:aws:iam::{account}:root",
            recovery_principal_arn=recovery_principal,
            recovery_external_id=recovery_external_id,
            break_glass_principal_arn=break_glass_principal_arn
            or f"arn:aws:iam::{account}:role/{BREAK_GLASS_ROLE}",
        )
        documents = {name: iam_docs.render_vault(name, values) for name in iam_docs.VAULT_TEMPLATES}
    else:
        documents = _stand_in_documents(
            account, workload_principal, external_id, [recovery_principal], recovery_external_id
        )

    # Workload side: the DR key the intermediate copies are made under lets the vault use it.
    allow_vault_on_key(
        dr,
        dr_key_arn,
        account,
        endpoint_url,
        statements=documents["dr-key-vault-statement"]["Statement"],
    )

    vault_session = session(account, endpoint_url)
    endpoint = _endpoint(endpoint_url)
    key_arns = {
        region: _ensure_vault_key(
            vault_session.client("kms", region_name=region, endpoint_url=endpoint),
            account,
            region,
            arn or None,
            documents["key-policy"],
        )
        for region, arn in wanted_keys.items()
    }
    s3 = vault_session.client("s3", region_name=dr, endpoint_url=endpoint)
    _ensure_vault_bucket(
        s3,
        bucket,
        dr,
        key_arns.get(dr) or next(iter(key_arns.values())),
        plan.evidence_bucket.object_lock_days,
    )
    # The vault bucket policy is not put on the sandbox bucket: moto judges a bucket policy's
    # statements on object requests without their conditions, so "DenyInsecureTransport" (the
    # sandbox speaks plain HTTP) would refuse every request. The shipped policy is returned for
    # the IAM evaluator of the shipped documents (tests/iam_eval) to judge instead.

    iam = vault_session.client("iam", region_name=dr, endpoint_url=endpoint)
    role_arns = {
        name: _ensure_role(
            iam,
            name,
            documents[f"{short}-trust-policy"],
            documents[f"{short}-policy"],
        )
        for name, short in (
            (INTAKE_ROLE, "intake"),
            (RETENTION_ROLE, "retention"),
            (RECOVERY_ROLE, "recovery"),
        )
    }
    return {
        "account_id": account,
        "role_arn": role_arns[INTAKE_ROLE],
        "retention_role_arn": role_arns[RETENTION_ROLE],
        "recovery_role_arn": role_arns[RECOVERY_ROLE],
        "roles": {
            "intake": role_arns[INTAKE_ROLE],
            "retention": role_arns[RETENTION_ROLE],
            "recovery": role_arns[RECOVERY_ROLE],
        },
        "kms_keys": key_arns,
        "evidence_bucket": bucket,
        "evidence_bucket_arn": f"arn:aws:s3:::{bucket}",
        "evidence_prefix": prefix,
        "workload_dr_key_arn": dr_key_arn,
        "external_id": external_id,
        "recovery_external_id": recovery_external_id,
        "evidence_bucket_policy": documents.get("evidence-bucket-policy"),
    }


def ensure_recovery_environment(
    plan: Any, endpoint_url: str | None = None, account_id: str | None = None
) -> dict[str, Any]:
    """What a restore from the vault needs where it lands, built once; idempotent by name.

    In the recovery account (the account of ``plan.vault.recovery.role_arn`` unless
    ``account_id`` says otherwise): a private VPC with two subnets in the DR Region, a security
    group, and the DB subnet group the plan's ``restore.db_subnet_group`` names - as a platform
    team would prepare its recovery account before it needs it.
    """
    from sandbox.estate import ensure_restore_network

    vault = getattr(plan, "vault", None)
    account = account_id or (vault.recovery.role_arn.split(":")[4] if vault else VAULT_ACCOUNT)
    name, group_id = ensure_restore_network(
        plan,
        _endpoint(endpoint_url),
        name=plan.restore.db_subnet_group or "securedr-restore",
        credentials=credentials(account, endpoint_url),
    )
    return {"account_id": account, "db_subnet_group": name, "security_group_id": group_id}
