"""Pre-flight with a vault: nothing starts unless the vault can take tonight's copies and keeps
its evidence in COMPLIANCE mode; every problem is named with its fix."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowFailException

from securedr.core.plan import load_plan
from securedr.operators.preflight import PreflightChecksOperator
from tests.operators.test_vault_copy import DR, vault_plan, vault_session  # noqa: F401


def run(plan_path: str, ctx) -> dict:
    return PreflightChecksOperator(task_id="preflight", plan_path=plan_path).execute(ctx)


def failure(plan_path: str, ctx) -> str:
    with pytest.raises(AirflowFailException) as info:
        run(plan_path, ctx)
    return str(info.value)


def test_a_ready_vault_passes(vault_plan, ctx):  # noqa: F811
    result = run(vault_plan, ctx)
    assert result["signing_key_id"] and result["key_arns"][DR]


def test_a_dr_key_the_vault_may_not_use_stops_the_night(vault_plan, ctx):  # noqa: F811
    import boto3

    plan = load_plan(vault_plan)
    kms = boto3.client("kms", region_name=DR)
    default = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    key_id = kms.describe_key(KeyId=plan.kms_key(DR))["KeyMetadata"]["KeyId"]
    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps(default))
    message = failure(vault_plan, ctx)
    assert "its key policy does not let" in message
    assert "securedr-dr-key-vault-statement.json" in message


def test_vault_evidence_in_governance_mode_stops_the_night(vault_plan, ctx):  # noqa: F811
    plan = load_plan(vault_plan)
    vault_session().client("s3", region_name=DR).put_object_lock_configuration(
        Bucket=plan.vault.evidence_bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}},
        },
    )
    assert "is GOVERNANCE, not COMPLIANCE" in failure(vault_plan, ctx)


def test_a_disabled_vault_key_stops_the_night(vault_plan, ctx):  # noqa: F811
    plan = load_plan(vault_plan)
    vault_session().client("kms", region_name=DR).disable_key(KeyId=plan.vault.kms_key(DR))
    message = failure(vault_plan, ctx)
    assert f"KMS key {plan.vault.kms_key(DR)} in {DR} is Disabled" in message


def test_a_missing_external_id_is_named(vault_plan, ctx, monkeypatch):  # noqa: F811
    monkeypatch.delenv("AIRFLOW_VAR_SECUREDR_VAULT_EXTERNAL_ID")
    message = failure(vault_plan, ctx)
    assert "the vault:" in message and "securedr_vault_external_id" in message
