"""Pre-flight security checks, as pure functions over what AWS reported.

Each check returns a list of problems; an empty list means the check passed. The messages say
what is wrong and what to do about it, because they are what an operator reads at 2 a.m.
"""

from __future__ import annotations

import re
from typing import Any


def kms_key_problems(
    region: str, configured: str, metadata: dict[str, Any] | None, rotation_enabled: bool | None
) -> list[str]:
    """A plan key: exists, enabled, customer-managed, symmetric, rotated, not being deleted."""
    where = f"KMS key {configured} in {region}"
    if metadata is None:
        return [f"{where} does not exist; create it or fix kms_keys in the plan"]
    problems: list[str] = []
    state = metadata.get("KeyState")
    if state == "PendingDeletion":
        problems.append(
            f"{where} is pending deletion (scheduled for {metadata.get('DeletionDate')}); "
            "cancel the deletion (kms cancel-key-deletion) or point the plan at another key"
        )
    elif state != "Enabled" or not metadata.get("Enabled", False):
        problems.append(f"{where} is {state or 'not enabled'}; enable it (kms enable-key)")
    if metadata.get("KeyManager") != "CUSTOMER":
        problems.append(
            f"{where} is managed by {metadata.get('KeyManager', 'unknown')}, not the customer; "
            "use a customer-managed key"
        )
    if metadata.get("KeySpec", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT":
        problems.append(f"{where} is {metadata.get('KeySpec')}; EBS and RDS need a symmetric key")
    if metadata.get("KeyManager") == "CUSTOMER" and rotation_enabled is False:
        problems.append(f"{where} has automatic rotation off; turn it on (kms enable-key-rotation)")
    return problems


def snapshot_block_public_access_problems(region: str, state: str | None) -> list[str]:
    """The account-level EBS setting must block public sharing of snapshots."""
    if state in ("block-all-sharing", "block-new-sharing"):
        return []
    return [
        f"EBS snapshot block-public-access in {region} is {state or 'unknown'}; turn it on "
        "(ec2 enable-snapshot-block-public-access --state block-all-sharing)"
    ]


def evidence_bucket_problems(
    bucket: str,
    *,
    exists: bool,
    versioning: str | None,
    object_lock: dict[str, Any] | None,
    encryption_rules: list[dict[str, Any]] | None,
    public_access_block: dict[str, Any] | None,
) -> list[str]:
    """The evidence bucket must be versioned, Object-Locked, KMS-encrypted and never public."""
    if not exists:
        return [
            f"evidence bucket {bucket} does not exist; create it in the DR Region with Object Lock "
            "(see README, 'Evidence bucket')"
        ]
    problems = []
    if versioning != "Enabled":
        problems.append(f"bucket {bucket} is not versioned (versioning {versioning or 'off'})")
    if not object_lock or object_lock.get("ObjectLockEnabled") != "Enabled":
        problems.append(
            f"bucket {bucket} does not have Object Lock enabled; manifests and audit entries "
            "must be immutable - create a new bucket with Object Lock on"
        )
    algorithms = {
        (r.get("ApplyServerSideEncryptionByDefault") or {}).get("SSEAlgorithm")
        for r in encryption_rules or []
    }
    if not algorithms & {"aws:kms", "aws:kms:dsse"}:
        problems.append(f"bucket {bucket} has no default SSE-KMS encryption")
    pab = public_access_block or {}
    flags = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
    if not all(pab.get(flag) for flag in flags):
        problems.append(f"bucket {bucket} does not block all public access")
    return problems


def evidence_lock_warnings(
    bucket: str, plan_mode: str, object_lock: dict[str, Any] | None
) -> list[str]:
    """Warnings (not failures) about how weakly the evidence is locked.

    GOVERNANCE retention can be lifted by anyone granted ``s3:BypassGovernanceRetention``
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html#object-lock-retention-modes),
    so a plan that opted into it (``evidence_bucket.allow_governance``) hears about it on every
    run, and so does a COMPLIANCE plan whose bucket's default retention is GOVERNANCE.
    """
    warnings: list[str] = []
    if plan_mode == "GOVERNANCE":
        warnings.append(
            f"evidence in bucket {bucket} is locked in GOVERNANCE mode "
            "(evidence_bucket.allow_governance: true): anyone granted "
            "s3:BypassGovernanceRetention can delete manifests, reports and audit entries; "
            "switch evidence_bucket.object_lock_mode to COMPLIANCE"
        )
    default = ((object_lock or {}).get("Rule") or {}).get("DefaultRetention") or {}
    if plan_mode == "COMPLIANCE" and default.get("Mode") == "GOVERNANCE":
        warnings.append(
            f"bucket {bucket}'s default retention is GOVERNANCE: objects written without "
            "SecureDR's COMPLIANCE headers can be deleted by anyone granted "
            "s3:BypassGovernanceRetention; set the default retention to COMPLIANCE"
        )
    return warnings


def vault_evidence_problems(
    bucket: str, *, exists: bool, versioning: str | None, object_lock: dict[str, Any] | None
) -> list[str]:
    """The vault's evidence bucket: versioned, Object-Locked, default retention COMPLIANCE.

    COMPLIANCE is required, with no opt-out: in GOVERNANCE mode anyone granted
    ``s3:BypassGovernanceRetention`` could remove the vault's manifests
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html#object-lock-retention-modes).
    """
    if not exists:
        return [
            f"vault evidence bucket {bucket} does not exist or the vault intake role cannot "
            "reach it; create it in the vault account's DR Region with Object Lock (README, "
            "'A DR vault in another account')"
        ]
    problems = []
    if versioning != "Enabled":
        problems.append(
            f"vault bucket {bucket} is not versioned (versioning {versioning or 'off'})"
        )
    if not object_lock or object_lock.get("ObjectLockEnabled") != "Enabled":
        problems.append(
            f"vault bucket {bucket} does not have Object Lock enabled; create a new bucket with "
            "Object Lock on"
        )
    else:
        default = (object_lock.get("Rule") or {}).get("DefaultRetention") or {}
        if default.get("Mode") != "COMPLIANCE":
            problems.append(
                f"vault bucket {bucket}'s default retention is {default.get('Mode') or 'unset'}"
                ", not COMPLIANCE; set it to COMPLIANCE (s3api put-object-lock-configuration) so "
                "that nobody, the vault's own administrators included, can delete evidence early"
            )
    return problems


#: What the vault account needs on the key of a snapshot shared with it, to copy the snapshot
#: under its own key ("you must also share the customer managed key used to encrypt the
#: snapshot": https://docs.aws.amazon.com/ebs/latest/userguide/ebs-modifying-snapshot-permissions.html;
#: the statement SecureDR ships is include/iam/securedr-dr-key-vault-statement.json).
VAULT_SOURCE_KEY_ACTIONS = [
    "kms:DescribeKey",
    "kms:Decrypt",
    "kms:CreateGrant",
    "kms:ReEncryptFrom",
]


def key_policy_grant_problems(
    where: str,
    policy: dict[str, Any] | None,
    principals: set[str],
    actions: list[str],
) -> list[str]:
    """A key policy must allow one of ``principals`` every action in ``actions``.

    Used for the workload DR key, which the vault's intake role must be able to use to copy the
    shared DR copies (https://docs.aws.amazon.com/ebs/latest/userguide/ebs-modifying-snapshot-permissions.html:
    "you must also share the customer managed key used to encrypt the snapshot"). Conditions
    are not evaluated: the statement shipped in include/iam/ carries them.
    """
    if policy is None:
        return [f"{where}: its key policy cannot be read; allow kms:GetKeyPolicy to SecureDR"]
    allowed: set[str] = set()
    for statement in _as_list(policy.get("Statement")):
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        named = (
            {"*"}
            if principal == "*"
            else set(_as_list((principal or {}).get("AWS")) if isinstance(principal, dict) else [])
        )
        if not named & (principals | {"*"}):
            continue
        for action in _as_list(statement.get("Action")):
            allowed |= {a for a in actions if _action_matches(str(action), a)}
    missing = [a for a in actions if a not in allowed]
    if not missing:
        return []
    return [
        f"{where}: its key policy does not let {' or '.join(sorted(principals))} "
        f"{', '.join(missing)}; add the statement in "
        "include/iam/securedr-dr-key-vault-statement.json, or the vault cannot copy the DR copies"
    ]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _action_matches(pattern: str, action: str) -> bool:
    """IAM action wildcards (``*`` and ``?``, nothing else), case-insensitive."""
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.fullmatch(regex, action, flags=re.IGNORECASE) is not None
