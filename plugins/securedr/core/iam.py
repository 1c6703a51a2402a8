"""The IAM documents SecureDR ships, rendered for one plan and account: the restore role's, and
the evidence bucket's policy.

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

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z]+)\}")


class TemplateError(ValueError):
    """A template placeholder has no value."""


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
