"""Tests for securedr.core.checks: KMS keys, snapshot public access, the evidence bucket."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from securedr.core.checks import (
    evidence_bucket_problems,
    kms_key_problems,
    snapshot_block_public_access_problems,
)

ALIAS = "alias/securedr-dr"
REGION = "us-west-2"


def key_metadata(**overrides: Any) -> dict[str, Any]:
    """DescribeKey metadata of a healthy customer-managed symmetric key."""
    metadata: dict[str, Any] = {
        "KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab",
        "Arn": "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "Enabled": True,
        "KeyState": "Enabled",
        "KeyManager": "CUSTOMER",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "KeyUsage": "ENCRYPT_DECRYPT",
    }
    metadata.update(overrides)
    return metadata


# --------------------------------------------------------------------------- KMS keys


def test_healthy_key_has_no_problems() -> None:
    assert kms_key_problems(REGION, ALIAS, key_metadata(), True) == []


def test_healthy_key_without_keyspec_field_is_symmetric() -> None:
    metadata = key_metadata()
    del metadata["KeySpec"]
    assert kms_key_problems(REGION, ALIAS, metadata, True) == []


def test_rotation_status_unknown_is_not_reported() -> None:
    assert kms_key_problems(REGION, ALIAS, key_metadata(), None) == []


def test_missing_key() -> None:
    problems = kms_key_problems(REGION, ALIAS, None, None)
    assert len(problems) == 1
    assert f"KMS key {ALIAS} in {REGION}" in problems[0]
    assert "does not exist" in problems[0]
    assert "kms_keys" in problems[0]


def test_pending_deletion_gives_the_date() -> None:
    when = datetime(2025, 4, 1, 9, 30, tzinfo=UTC)
    metadata = key_metadata(KeyState="PendingDeletion", Enabled=False, DeletionDate=when)
    problems = kms_key_problems(REGION, ALIAS, metadata, True)
    assert len(problems) == 1
    assert f"KMS key {ALIAS} in {REGION}" in problems[0]
    assert "pending deletion" in problems[0]
    assert str(when) in problems[0]
    assert "cancel-key-deletion" in problems[0]


def test_disabled_key() -> None:
    problems = kms_key_problems(
        REGION, ALIAS, key_metadata(KeyState="Disabled", Enabled=False), True
    )
    assert len(problems) == 1
    assert "is Disabled" in problems[0]
    assert "enable-key" in problems[0]


@pytest.mark.parametrize("state", ["PendingImport", "Unavailable", "Creating"])
def test_other_unusable_states(state: str) -> None:
    problems = kms_key_problems(REGION, ALIAS, key_metadata(KeyState=state, Enabled=False), True)
    assert any(f"is {state}" in p for p in problems)


def test_enabled_state_but_enabled_flag_false() -> None:
    problems = kms_key_problems(REGION, ALIAS, key_metadata(Enabled=False), True)
    assert len(problems) == 1
    assert "enable it" in problems[0]


def test_aws_managed_key() -> None:
    problems = kms_key_problems(REGION, "alias/aws/ebs", key_metadata(KeyManager="AWS"), None)
    assert len(problems) == 1
    assert "managed by AWS" in problems[0]
    assert "customer-managed key" in problems[0]


def test_aws_managed_key_is_not_blamed_for_rotation() -> None:
    # Rotation of AWS-managed keys is not the customer's to turn on; only the manager is wrong.
    problems = kms_key_problems(REGION, "alias/aws/ebs", key_metadata(KeyManager="AWS"), False)
    assert len(problems) == 1
    assert "rotation" not in problems[0]


def test_key_manager_unknown() -> None:
    metadata = key_metadata()
    del metadata["KeyManager"]
    problems = kms_key_problems(REGION, ALIAS, metadata, True)
    assert problems == [
        f"KMS key {ALIAS} in {REGION} is managed by unknown, not the customer; "
        "use a customer-managed key"
    ]


@pytest.mark.parametrize("spec", ["RSA_2048", "ECC_NIST_P256", "HMAC_256"])
def test_asymmetric_or_hmac_key(spec: str) -> None:
    problems = kms_key_problems(REGION, ALIAS, key_metadata(KeySpec=spec), True)
    assert len(problems) == 1
    assert spec in problems[0]
    assert "symmetric key" in problems[0]


def test_rotation_off() -> None:
    problems = kms_key_problems(REGION, ALIAS, key_metadata(), False)
    assert len(problems) == 1
    assert "rotation off" in problems[0]
    assert "enable-key-rotation" in problems[0]


def test_every_problem_is_reported_at_once() -> None:
    metadata = key_metadata(KeyState="Disabled", Enabled=False, KeySpec="RSA_4096")
    problems = kms_key_problems(REGION, ALIAS, metadata, False)
    assert len(problems) == 3
    assert all(p.startswith(f"KMS key {ALIAS} in {REGION} ") for p in problems)


# --------------------------------------------------------------------------- snapshot BPA


@pytest.mark.parametrize("state", ["block-all-sharing", "block-new-sharing"])
def test_snapshot_public_access_blocked(state: str) -> None:
    assert snapshot_block_public_access_problems("eu-west-1", state) == []


@pytest.mark.parametrize(("state", "shown"), [("unblocked", "unblocked"), (None, "unknown")])
def test_snapshot_public_access_not_blocked(state: str | None, shown: str) -> None:
    problems = snapshot_block_public_access_problems("eu-west-1", state)
    assert len(problems) == 1
    assert "eu-west-1" in problems[0]
    assert f"is {shown};" in problems[0]
    assert "enable-snapshot-block-public-access --state block-all-sharing" in problems[0]


# --------------------------------------------------------------------------- evidence bucket

BUCKET = "securedr-evidence-demo"
ALL_BLOCKED = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
KMS_RULES = [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]


def bucket(**overrides: Any) -> list[str]:
    settings: dict[str, Any] = {
        "exists": True,
        "versioning": "Enabled",
        "object_lock": {"ObjectLockEnabled": "Enabled"},
        "encryption_rules": KMS_RULES,
        "public_access_block": dict(ALL_BLOCKED),
    }
    settings.update(overrides)
    return evidence_bucket_problems(BUCKET, **settings)


def test_good_bucket() -> None:
    assert bucket() == []


def test_dsse_kms_is_accepted() -> None:
    rules = [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms:dsse"}}]
    assert bucket(encryption_rules=rules) == []


def test_missing_bucket() -> None:
    problems = evidence_bucket_problems(
        BUCKET,
        exists=False,
        versioning=None,
        object_lock=None,
        encryption_rules=None,
        public_access_block=None,
    )
    assert len(problems) == 1
    assert BUCKET in problems[0]
    assert "does not exist" in problems[0]
    assert "Object Lock" in problems[0]


@pytest.mark.parametrize(("versioning", "shown"), [(None, "off"), ("Suspended", "Suspended")])
def test_not_versioned(versioning: str | None, shown: str) -> None:
    problems = bucket(versioning=versioning)
    assert problems == [f"bucket {BUCKET} is not versioned (versioning {shown})"]


@pytest.mark.parametrize("lock", [None, {}, {"ObjectLockEnabled": "Disabled"}])
def test_no_object_lock(lock: dict[str, Any] | None) -> None:
    problems = bucket(object_lock=lock)
    assert len(problems) == 1
    assert "Object Lock" in problems[0]
    assert BUCKET in problems[0]


@pytest.mark.parametrize(
    "rules",
    [
        None,
        [],
        [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}],
        [{"ApplyServerSideEncryptionByDefault": None}],
        [{"BucketKeyEnabled": True}],
    ],
)
def test_no_sse_kms(rules: list[dict[str, Any]] | None) -> None:
    assert bucket(encryption_rules=rules) == [f"bucket {BUCKET} has no default SSE-KMS encryption"]


@pytest.mark.parametrize("flag", sorted(ALL_BLOCKED))
def test_public_access_not_fully_blocked(flag: str) -> None:
    pab = dict(ALL_BLOCKED)
    pab[flag] = False
    assert bucket(public_access_block=pab) == [f"bucket {BUCKET} does not block all public access"]


@pytest.mark.parametrize("pab", [None, {}, {"BlockPublicAcls": True}])
def test_public_access_block_missing(pab: dict[str, Any] | None) -> None:
    assert bucket(public_access_block=pab) == [f"bucket {BUCKET} does not block all public access"]


def test_every_bucket_problem_at_once() -> None:
    problems = bucket(
        versioning=None, object_lock=None, encryption_rules=None, public_access_block=None
    )
    assert len(problems) == 4
    assert all(BUCKET in p for p in problems)
