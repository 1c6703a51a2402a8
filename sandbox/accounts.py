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
from pathlib import Path
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
#: Sid of the workload DR key's statement that lets the vault account copy shared snapshots.
DR_KEY_VAULT_SID = "SecureDRVaultAccountCopiesSharedSnapshots"
DR_KEY_VAULT_GRANT_SID = "SecureDRVaultAccountGrantsForSharedSnapshotCopies"

IAM_DIR = Path(__file__).resolve().parents[1] / "include" / "iam"


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


def _template(name: str) -> str | None:
    path = IAM_DIR / name
    return path.read_text() if path.is_file() else None


def _render(name: str, values: dict[str, Any], fallback: dict[str, Any]) -> dict[str, Any]:
    """The shipped document ``include/iam/<name>`` rendered for the sandbox, or ``fallback``."""
    text = _template(name)
    if text is None:
        return fallback
    from securedr.core import iam

    try:
        return iam.render(text, values)
    except iam.TemplateError as exc:
        raise iam.TemplateError(
            f"include/iam/{name}: {exc}; sandbox.accounts.template_values() names every value "
            "the sandbox can fill"
        ) from exc


#: The vault-account role that may still change the vault's key and bucket (never SecureDR).
BREAK_GLASS_ROLE = "securedr-vault-break-glass"


def template_values(
    plan: Any,
    *,
    vault_account: str,
    kms_keys: dict[str, str],
    evidence_bucket: str,
    evidence_prefix: str,
    workload_dr_key_arn: str,
    external_id: str,
    recovery_external_id: str,
    workload_principal_arn: str,
    recovery_principal_arns: list[str],
) -> dict[str, Any]:
    """The values the vault's policy templates (include/iam/securedr-vault-*.json) may name."""
    dr = plan.regions.dr
    roles = {
        "IntakeRoleArn": f"arn:aws:iam::{vault_account}:role/{INTAKE_ROLE}",
        "RetentionRoleArn": f"arn:aws:iam::{vault_account}:role/{RETENTION_ROLE}",
        "RecoveryRoleArn": f"arn:aws:iam::{vault_account}:role/{RECOVERY_ROLE}",
    }
    return {
        "AccountId": vault_account,
        "VaultAccountId": vault_account,
        "WorkloadAccountId": WORKLOAD_ACCOUNT,
        "DrRegion": dr,
        "Plan": plan.name,
        "VaultKeyArn": kms_keys[dr],
        "VaultKeyArns": sorted(kms_keys.values()),
        "EvidenceBucket": evidence_bucket,
        "VaultEvidenceBucket": evidence_bucket,
        "EvidencePrefix": evidence_prefix,
        "VaultEvidencePrefix": evidence_prefix,
        "WorkloadDrKeyArn": workload_dr_key_arn,
        "DrKeyArn": workload_dr_key_arn,
        "ExternalId": external_id,
        "RecoveryExternalId": recovery_external_id,
        "WorkloadPrincipalArn": workload_principal_arn,
        "AirflowPrincipalArn": workload_principal_arn,
        "RecoveryPrincipalArn": recovery_principal_arns[0],
        "RecoveryPrincipalArns": recovery_principal_arns,
        # The recovery role lives where restores land (the vault account unless the plan
        # names a role elsewhere); retention runs as the vault's own principal, and so does the
        # one break-glass principal that may still change the vault's key and bucket.
        "RecoveryAccountId": _recovery_account(plan, vault_account),
        "RetentionPrincipalArn": f"arn:aws:iam::{vault_account}:root",
        "BreakGlassPrincipalArn": f"arn:aws:iam::{vault_account}:role/{BREAK_GLASS_ROLE}",
        # Same rule as securedr.core.iam.vault_policy_values: locks at least as long as kept.
        "LockMinDays": str(plan.retention.keep_days),
        **roles,
    }


def _recovery_account(plan: Any, vault_account: str) -> str:
    vault = getattr(plan, "vault", None)
    if vault is None:
        return vault_account
    return vault.recovery.role_arn.split(":")[4]


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
    s3.put_object_lock_configuration(
        Bucket=name,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": days}},
        },
    )
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": key_arn,
                    },
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )


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
    region: str, key_id: str, vault_account: str, endpoint_url: str | None = None
) -> str:
    """Add (or refresh) the vault statements in a workload key's policy; returns the key ARN."""
    kms = boto3.client("kms", region_name=region, endpoint_url=_endpoint(endpoint_url))
    arn = str(kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"])
    policy = json.loads(kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"])
    ours = dr_key_vault_statements(vault_account)
    sids = {s["Sid"] for s in ours}
    policy["Statement"] = [s for s in policy.get("Statement", []) if s.get("Sid") not in sids]
    policy["Statement"].extend(ours)
    kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=json.dumps(policy))
    return arn


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
    recovery_principal_arns: list[str] | None = None,
) -> dict[str, Any]:
    """Build ``plan``'s DR vault in the vault account; idempotent. Returns what it holds.

    In the vault account (``plan.vault`` or the arguments; defaults per /work VAULT contract):
    the roles ``securedr-vault-intake`` (trusted by the workload principal with ``external_id``),
    ``securedr-vault-retention`` (trusted by the vault account only) and
    ``securedr-vault-recovery`` (trusted by ``recovery_principal_arns``: the vault and third
    accounts by default, never the workload); a customer managed key per DR Region (with the key
    id of the ARN the plan names); the vault evidence bucket in the DR Region (versioned, Object
    Lock with a COMPLIANCE default retention of ``plan.evidence_bucket.object_lock_days``,
    SSE-KMS under the vault key, public access blocked). In the workload account: the DR key's
    policy gains :func:`dr_key_vault_statements`. Policies come from
    ``include/iam/securedr-vault-<intake|retention|recovery>[-trust]-policy.json`` and
    ``include/iam/securedr-vault-key-policy.json`` when they exist, else from minimal stand-ins.
    """
    from sandbox.estate import ensure_key

    vault = getattr(plan, "vault", None)
    account = account_id or (vault.account_id if vault else VAULT_ACCOUNT)
    dr = plan.regions.dr
    wanted_keys = dict(kms_keys or (vault.kms_keys if vault else {}) or {dr: ""})
    bucket = evidence_bucket or (
        vault.evidence_bucket if vault else f"securedr-vault-evidence-{account}"
    )
    prefix = evidence_prefix or (vault.evidence_prefix if vault else "securedr")
    workload_principal = workload_principal_arn or f"arn:aws:iam::{WORKLOAD_ACCOUNT}:root"
    recovery_principals = recovery_principal_arns or [
        f"arn:aws:iam::{account}:root",
        f"arn:aws:iam::{THIRD_ACCOUNT}:root",
    ]
    if account == WORKLOAD_ACCOUNT:
        raise ValueError(f"the vault account must not be the workload account {account}")

    # Workload side: the DR key the intermediate copies are made under lets the vault use it.
    dr_key_arn = allow_vault_on_key(
        dr, ensure_key(dr, plan.kms_key(dr), endpoint_url), account, endpoint_url
    )

    vault_session = session(account, endpoint_url)
    endpoint = _endpoint(endpoint_url)
    common = {
        "vault_account": account,
        "evidence_bucket": bucket,
        "evidence_prefix": prefix,
        "workload_dr_key_arn": dr_key_arn,
        "external_id": external_id,
        "recovery_external_id": recovery_external_id,
        "workload_principal_arn": workload_principal,
        "recovery_principal_arns": recovery_principals,
    }
    # A key policy may name the key itself: before it exists, by the ARN pattern of the account.
    named = {r: a or f"arn:aws:kms:{r}:{account}:key/*" for r, a in wanted_keys.items()}
    key_policy = _render(
        "securedr-vault-key-policy.json",
        template_values(plan, kms_keys=named, **common),
        _default_key_policy(account),
    )
    key_arns: dict[str, str] = {}
    for region, arn in wanted_keys.items():
        kms = vault_session.client("kms", region_name=region, endpoint_url=endpoint)
        key_arns[region] = _ensure_vault_key(kms, account, region, arn or None, key_policy)

    values = template_values(plan, kms_keys=key_arns, **common)
    s3 = vault_session.client("s3", region_name=dr, endpoint_url=endpoint)
    _ensure_vault_bucket(
        s3,
        bucket,
        dr,
        key_arns.get(dr) or next(iter(key_arns.values())),
        plan.evidence_bucket.object_lock_days,
    )

    iam = vault_session.client("iam", region_name=dr, endpoint_url=endpoint)
    fallbacks = {
        INTAKE_ROLE: (
            _trust([workload_principal], external_id),
            _placeholder_policy(
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
        ),
        RETENTION_ROLE: (
            _trust([f"arn:aws:iam::{account}:root"], None),
            _placeholder_policy(
                "DeleteExpiredCopies",
                ["ec2:DeleteSnapshot", "ec2:Describe*", "rds:DeleteDBSnapshot", "rds:Describe*"],
            ),
        ),
        RECOVERY_ROLE: (
            _trust(recovery_principals, recovery_external_id),
            _placeholder_policy(
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
        ),
    }
    role_arns: dict[str, str] = {}
    for name, (trust, policy) in fallbacks.items():
        trust = _render(f"{name}-trust-policy.json", values, trust)
        policy = _render(f"{name}-policy.json", values, policy)
        role_arns[name] = _ensure_role(iam, name, trust, policy)

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
    }
