"""Pre-flight checks of a plan with a vault: the vault's evidence is locked in COMPLIANCE mode,
and the workload DR key lets the vault's intake role copy what is shared with it."""

from __future__ import annotations

import pytest

from securedr.core.checks import key_policy_grant_problems, vault_evidence_problems

INTAKE = "arn:aws:iam::222222222222:role/securedr-vault-intake"
NEEDED = ["kms:DescribeKey", "kms:Decrypt", "kms:CreateGrant", "kms:ReEncryptFrom"]
LOCK = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE"}}}


def test_a_compliance_locked_versioned_vault_bucket_passes() -> None:
    assert vault_evidence_problems("v", exists=True, versioning="Enabled", object_lock=LOCK) == []


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"exists": False, "versioning": None, "object_lock": None}, "does not exist"),
        ({"exists": True, "versioning": "Suspended", "object_lock": LOCK}, "not versioned"),
        ({"exists": True, "versioning": "Enabled", "object_lock": None}, "Object Lock enabled"),
        (
            {
                "exists": True,
                "versioning": "Enabled",
                "object_lock": {
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE"}},
                },
            },
            "is GOVERNANCE, not COMPLIANCE",
        ),
        (
            {
                "exists": True,
                "versioning": "Enabled",
                "object_lock": {"ObjectLockEnabled": "Enabled"},
            },
            "is unset, not COMPLIANCE",
        ),
    ],
)
def test_vault_bucket_problems_say_what_to_do(kwargs: dict, fragment: str) -> None:
    problems = vault_evidence_problems("securedr-vault", **kwargs)
    assert len(problems) == 1 and fragment in problems[0], problems


def statement(principal: object, actions: object, effect: str = "Allow") -> dict:
    return {"Effect": effect, "Principal": principal, "Action": actions, "Resource": "*"}


def test_a_key_policy_granting_the_intake_role_every_action_passes() -> None:
    policy = {
        "Statement": [
            statement({"AWS": "arn:aws:iam::123456789012:root"}, "kms:*"),
            statement({"AWS": [INTAKE]}, ["kms:DescribeKey", "kms:Decrypt", "kms:ReEncrypt*"]),
            statement({"AWS": INTAKE}, "kms:CreateGrant"),
        ]
    }
    assert key_policy_grant_problems("DR key", policy, {INTAKE}, NEEDED) == []


def test_missing_actions_are_named_and_the_fix_pointed_to() -> None:
    policy = {
        "Statement": [
            statement({"AWS": INTAKE}, ["kms:DescribeKey"]),
            # Another principal's grant and a Deny do not count.
            statement({"AWS": "arn:aws:iam::999999999999:root"}, "kms:*"),
            statement({"AWS": INTAKE}, "kms:Decrypt", effect="Deny"),
        ]
    }
    (problem,) = key_policy_grant_problems("DR key", policy, {INTAKE}, NEEDED)
    assert "kms:Decrypt, kms:CreateGrant, kms:ReEncryptFrom" in problem
    assert "securedr-dr-key-vault-statement.json" in problem


def test_an_unreadable_key_policy_is_a_problem() -> None:
    (problem,) = key_policy_grant_problems("DR key", None, {INTAKE}, NEEDED)
    assert "kms:GetKeyPolicy" in problem


def test_action_wildcards_are_iams_not_globs() -> None:
    # "[" is literal in IAM; a glob would read it as a character class.
    policy = {"Statement": [statement({"AWS": INTAKE}, ["kms:[DE]ecrypt", "kms:Describe?ey"])]}
    (problem,) = key_policy_grant_problems(
        "k", policy, {INTAKE}, ["kms:Decrypt", "kms:DescribeKey"]
    )
    assert "kms:Decrypt" in problem and "kms:DescribeKey" not in problem
