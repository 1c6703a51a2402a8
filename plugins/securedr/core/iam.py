"""The IAM documents SecureDR ships, rendered for one plan and account: the restore role's, the
evidence bucket's policy, and with a ``vault`` section the documents of the DR vault account.

``include/iam/securedr-restore-policy.json`` (permissions) and
``include/iam/securedr-restore-trust-policy.json`` (who may assume the role) are templates with
``${Name}`` placeholders. :func:`render` fills them; a placeholder without a value is an error,
never left in a live policy. A statement whose only resource is an unset optional value (the
SNS topic when notifications are off) is dropped rather than widened.

Pure module: no Airflow, no boto3.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from securedr.core.plan import Plan

IAM_DIR = Path(__file__).resolve().parents[3] / "include" / "iam"
POLICY_TEMPLATE = IAM_DIR / "securedr-restore-policy.json"
TRUST_TEMPLATE = IAM_DIR / "securedr-restore-trust-policy.json"
#: Bucket policy of the evidence bucket: nobody but a break-glass principal deletes evidence.
EVIDENCE_BUCKET_POLICY_TEMPLATE = IAM_DIR / "securedr-evidence-bucket-policy.json"

#: The DR vault in another account (README "A DR vault in another account"): three roles, the
#: vault keys' policy, the statement the workload's DR key gains, the vault evidence bucket's
#: policy and an example SCP for the vault account's OU.
VAULT_TEMPLATES = {
    "intake-policy": IAM_DIR / "securedr-vault-intake-policy.json",
    "intake-trust-policy": IAM_DIR / "securedr-vault-intake-trust-policy.json",
    "retention-policy": IAM_DIR / "securedr-vault-retention-policy.json",
    "retention-trust-policy": IAM_DIR / "securedr-vault-retention-trust-policy.json",
    "recovery-policy": IAM_DIR / "securedr-vault-recovery-policy.json",
    "recovery-trust-policy": IAM_DIR / "securedr-vault-recovery-trust-policy.json",
    "key-policy": IAM_DIR / "securedr-vault-key-policy.json",
    "dr-key-vault-statement": IAM_DIR / "securedr-dr-key-vault-statement.json",
    "evidence-bucket-policy": IAM_DIR / "securedr-vault-evidence-bucket-policy.json",
    "scp": IAM_DIR / "securedr-vault-scp.json",
}
#: Role names in the vault account; the intake and recovery role ARNs come from the plan.
VAULT_RETENTION_ROLE = "securedr-vault-retention"

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z]+)\}")


class TemplateError(ValueError):
    """A template placeholder has no value."""


class VaultPolicyError(ValueError):
    """The vault's documents cannot be rendered as asked; the message says what to fix."""


def backup_policy_values(
    plan: Plan, *, account_id: str, dr_key_arn: str
) -> dict[str, str | list[str] | None]:
    """The placeholder values of the backup policy (the Airflow connection's identity) for
    ``plan`` in ``account_id``.

    The file sets' S3 sources become lists (bucket ARNs, object ARNs under each prefix, and the
    prefixes ``ListBucket`` may be asked for); with no S3 source their statements are dropped.
    """
    sources = [f for f in (plan.file_sets.sets if plan.file_sets else []) if f.is_s3]
    return {
        "AccountId": account_id,
        "Plan": plan.name,
        "EvidenceBucket": plan.evidence_bucket.name,
        "EvidencePrefix": plan.evidence_bucket.prefix.strip("/"),
        "DrKeyArn": dr_key_arn,
        "FileSetSourceBuckets": sorted({f"arn:aws:s3:::{f.bucket}" for f in sources}) or None,
        "FileSetSourceObjects": sorted({f"arn:aws:s3:::{f.bucket}/{f.prefix}*" for f in sources})
        or None,
        "FileSetSourcePrefixes": sorted({f"{f.prefix}*" for f in sources}) or None,
        # Incidents on retained DR copies (re-verification) go to the plan's topic.
        "SnsTopicArn": plan.notifications.sns_topic_arn,
        # dr_restore and the drill run under the same Airflow connection, which assumes the
        # restore role: without this grant on the caller, AssumeRole is denied on real AWS
        # whatever the role's trust policy says. No restore role: the statement is dropped.
        "RestoreRoleArn": plan.restore.role_arn,
        # With a vault, the nightly assumes the vault's intake role (cross-account: the trust
        # policy alone is not enough). No vault: the statement is dropped.
        "VaultIntakeRoleArn": plan.vault.role_arn if plan.vault else None,
    }


def policy_values(
    plan: Plan, *, account_id: str, dr_key_arn: str, sns_topic_arn: str | None = None
) -> dict[str, str | None]:
    """The placeholder values of the permissions policy for ``plan`` in ``account_id``."""
    return {
        "AccountId": account_id,
        "DrRegion": plan.regions.dr,
        "Plan": plan.name,
        "EvidenceBucket": plan.evidence_bucket.name,
        "EvidencePrefix": plan.evidence_bucket.prefix.strip("/"),
        "DrKeyArn": dr_key_arn,
        # RDS names the default subnet group "default" when none is given.
        "DbSubnetGroup": plan.restore.db_subnet_group or "default",
        "SnsTopicArn": sns_topic_arn or plan.notifications.sns_topic_arn,
    }


def evidence_bucket_policy_values(plan: Plan, *, break_glass_principal_arn: str) -> dict[str, str]:
    """The placeholder values of the evidence bucket policy for ``plan``.

    ``break_glass_principal_arn`` is the one IAM role (or user) still allowed to delete evidence
    versions once their retention has passed and to change the bucket's protection; keep it
    behind MFA and out of day-to-day use.
    """
    return {
        "EvidenceBucket": plan.evidence_bucket.name,
        "EvidencePrefix": plan.evidence_bucket.prefix.strip("/"),
        "BreakGlassPrincipalArn": break_glass_principal_arn,
    }


def _account_of(arn: str) -> str:
    match = re.match(r"^arn:aws[a-z-]*:(?:iam|sts)::(\d{12}):", arn)
    if not match:
        raise VaultPolicyError(
            f"{arn!r} is not an IAM principal ARN (arn:aws:iam::<12-digit account>:role/<name>)"
        )
    return match[1]


def vault_policy_values(
    plan: Plan,
    *,
    workload_account_id: str,
    dr_key_arn: str,
    airflow_principal_arn: str,
    external_id: str,
    retention_principal_arn: str,
    recovery_principal_arn: str,
    recovery_external_id: str,
    break_glass_principal_arn: str,
) -> dict[str, str | list[str] | None]:
    """The placeholder values of every vault template (:data:`VAULT_TEMPLATES`) for ``plan``.

    ``dr_key_arn`` is the workload's DR key (by ARN: aliases do not work across accounts),
    ``airflow_principal_arn`` the workload identity that assumes the intake role with
    ``external_id``; ``retention_principal_arn`` the vault-account principal behind the
    ``aws_vault_retention`` connection; ``recovery_principal_arn`` the principal that assumes
    the recovery role with ``recovery_external_id``; ``break_glass_principal_arn`` the one
    vault-account principal that may still change the vault's keys and evidence bucket.

    Guarantees, checked here before anything is rendered (:class:`VaultPolicyError`): the vault
    is another account than the workload's; the intake and recovery roles live outside the
    workload account; the retention and break-glass principals are the vault account's own and
    the recovery principal is not the workload's, so nobody holding the workload's credentials
    is trusted by a role that can delete, restore or change anything in the vault.
    """
    vault = plan.vault
    if vault is None:
        raise VaultPolicyError(
            f"plan {plan.name} has no vault section; add one (README, 'A DR vault in another "
            "account') before rendering the vault's policies"
        )
    workload = workload_account_id
    problems = []
    if vault.account_id == workload:
        problems.append(
            f"vault.account_id is the workload account {workload}: the vault must be another "
            "account, or a compromised workload account reaches it"
        )
    for name, arn, want in (
        ("vault.role_arn", vault.role_arn, vault.account_id),
        ("retention_principal_arn", retention_principal_arn, vault.account_id),
        ("break_glass_principal_arn", break_glass_principal_arn, vault.account_id),
    ):
        if _account_of(arn) != want:
            problems.append(f"{name} {arn} is not in the vault account {want}")
    if _account_of(airflow_principal_arn) != workload:
        problems.append(
            f"airflow_principal_arn {airflow_principal_arn} is not in the workload account "
            f"{workload}"
        )
    for name, arn in (
        ("vault.recovery.role_arn", vault.recovery.role_arn),
        ("recovery_principal_arn", recovery_principal_arn),
    ):
        if _account_of(arn) == workload:
            problems.append(
                f"{name} {arn} is in the workload account: whoever holds the workload's "
                "credentials could restore (and read) the vault's copies; use the vault "
                "account or a third one"
            )
    if ":alias/" in dr_key_arn or not dr_key_arn.startswith("arn:"):
        problems.append(
            f"dr_key_arn {dr_key_arn!r} must be the DR key's full key ARN (another account "
            "cannot use an alias)"
        )
    if problems:
        raise VaultPolicyError("; ".join(problems))
    dr = plan.regions.dr
    return {
        "VaultAccountId": vault.account_id,
        "WorkloadAccountId": workload,
        "RecoveryAccountId": _account_of(vault.recovery.role_arn),
        "DrRegion": dr,
        "Plan": plan.name,
        "VaultKeyArns": sorted(set(vault.kms_keys.values())),
        "WorkloadDrKeyArn": dr_key_arn,
        "VaultEvidenceBucket": vault.evidence_bucket,
        "VaultEvidencePrefix": vault.evidence_prefix.strip("/"),
        "IntakeRoleArn": vault.role_arn,
        "RetentionRoleArn": f"arn:aws:iam::{vault.account_id}:role/{VAULT_RETENTION_ROLE}",
        "RecoveryRoleArn": vault.recovery.role_arn,
        "AirflowPrincipalArn": airflow_principal_arn,
        "ExternalId": external_id,
        "RetentionPrincipalArn": retention_principal_arn,
        "RecoveryPrincipalArn": recovery_principal_arn,
        "RecoveryExternalId": recovery_external_id,
        "BreakGlassPrincipalArn": break_glass_principal_arn,
        # The intake role may only lock for at least the retention period: during the
        # cooling-off period a compliance lock can still be shortened by whoever may lock.
        "LockMinDays": str(plan.retention.keep_days),
    }


def render_vault(name: str, values: Mapping[str, str | list[str] | None]) -> dict[str, Any]:
    """Render the vault template ``name`` (a key of :data:`VAULT_TEMPLATES`) with ``values``."""
    return render(VAULT_TEMPLATES[name].read_text(), values)


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


def render(template: str, values: Mapping[str, str | list[str] | None]) -> dict[str, Any]:
    """Fill ``template`` (policy JSON text) with ``values``; return the policy document.

    A list value fills a list element that is exactly its placeholder with all its items.
    Statements whose resources all depend on a value that is ``None`` are removed; any other
    placeholder without a value raises :class:`TemplateError`.
    """
    document = json.loads(template)
    kept = []
    for statement in document["Statement"]:
        text = json.dumps(statement)
        names = placeholders(text)
        unset = {n for n in names if n in values and values[n] is None}
        if unset and all(
            placeholders(json.dumps(r)) & unset for r in _as_list(statement.get("Resource"))
        ):
            continue
        missing = sorted(n for n in names if values.get(n) is None)
        if missing:
            raise TemplateError(
                f"no value for {', '.join(missing)} in statement {statement.get('Sid')}"
            )
        for name, value in values.items():
            if isinstance(value, list):
                text = text.replace(f'"${{{name}}}"', ", ".join(json.dumps(v) for v in value))
        kept.append(json.loads(_PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)))
    document["Statement"] = kept
    return dict(document)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
