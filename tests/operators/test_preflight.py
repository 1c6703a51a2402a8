"""Pre-flight checks stop the run, with every reason, before anything is created."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import boto3
import pytest
import yaml
from airflow.sdk.exceptions import AirflowFailException

from securedr.core.plan import PlanError
from securedr.operators.preflight import PreflightChecksOperator
from tests.operators.helpers import task_context


def _snapshot_count(plan) -> int:
    return sum(
        len(
            boto3.client("ec2", region_name=r).describe_snapshots(
                OwnerIds=["self"], Filters=[{"Name": "tag:securedr:managed", "Values": ["true"]}]
            )["Snapshots"]
        )
        for r in plan.all_regions
    )


def test_healthy_estate_passes_and_resolves_every_key(estate, plan, ctx):
    result = PreflightChecksOperator(task_id="preflight").execute(ctx)
    assert result["key_arns"] == estate.key_arns
    assert result["signing_key_id"].startswith("ed25519:")


def _key_id(plan, region):
    kms = boto3.client("kms", region_name=region)
    return kms.describe_key(KeyId=plan.kms_key(region))["KeyMetadata"]["KeyId"]


def _disable_dr_key(plan):
    dr = plan.regions.dr
    boto3.client("kms", region_name=dr).disable_key(KeyId=_key_id(plan, dr))


def _schedule_deletion(plan):
    kms = boto3.client("kms", region_name="us-east-1")
    kms.schedule_key_deletion(KeyId=_key_id(plan, "us-east-1"), PendingWindowInDays=7)


def _rotation_off(plan):
    kms = boto3.client("kms", region_name="eu-west-1")
    kms.disable_key_rotation(KeyId=_key_id(plan, "eu-west-1"))


def _snapshot_bpa_off(plan):
    boto3.client("ec2", region_name="eu-west-1").disable_snapshot_block_public_access()


def _bucket_public_access_open(plan):
    boto3.client("s3", region_name=plan.regions.dr).delete_public_access_block(
        Bucket=plan.evidence_bucket.name
    )


def _untrusted_signing_key(plan):
    import os

    from securedr.core.signing import generate_signing_key

    _, other_public = generate_signing_key()
    bundle = Path(os.environ["SECUREDR_HOME"]) / "keys" / "trusted-signing-keys.pem"
    bundle.write_bytes(other_public)


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        (_disable_dr_key, "alias/securedr-dr in us-west-2 is Disabled"),
        (_schedule_deletion, "in us-east-1 is pending deletion"),
        (_rotation_off, "in eu-west-1 has automatic rotation off"),
        (_snapshot_bpa_off, "snapshot block-public-access in eu-west-1 is unblocked"),
        (_bucket_public_access_open, "does not block all public access"),
        (_untrusted_signing_key, "is not among the trusted keys"),
    ],
    ids=[
        "disabled-key",
        "key-pending-deletion",
        "rotation-off",
        "snapshot-bpa-off",
        "bucket-public-access",
        "untrusted-signing-key",
    ],
)
def test_failed_check_stops_the_run_with_its_reason(estate, plan, ctx, break_it, expected):
    break_it(plan)
    with pytest.raises(AirflowFailException, match="nothing was created") as err:
        PreflightChecksOperator(task_id="preflight").execute(ctx)
    assert expected in str(err.value)
    assert _snapshot_count(plan) == 0


def test_missing_signing_key_variable_is_reported(estate, ctx, monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_SECUREDR_SIGNING_PRIVATE_KEY")
    with pytest.raises(AirflowFailException, match="securedr_signing_private_key' is not set"):
        PreflightChecksOperator(task_id="preflight").execute(ctx)


def test_invalid_plan_fails_before_any_aws_call(tmp_path, monkeypatch):
    plan = yaml.safe_load(Path("include/dr_plan.yaml").read_text())
    plan["regions"]["dr"] = "us-east-1"  # the DR Region may not be a source Region
    plan["retention"]["min_copies"] = 0
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    # Nothing listens here: any AWS call would fail with a connection error, not a PlanError.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(PlanError) as err:
        PreflightChecksOperator(task_id="preflight", plan_path=str(path)).execute(task_context())
    message = str(err.value)
    assert "regions: the DR Region 'us-east-1' is also a source Region" in message
    assert "retention.min_copies" in message


def test_healthy_compliance_estate_has_no_lock_warning(estate, plan, ctx):
    assert plan.evidence_bucket.object_lock_mode == "COMPLIANCE"
    assert PreflightChecksOperator(task_id="preflight").execute(ctx)["warnings"] == []


def test_governance_opt_in_passes_with_a_warning(estate, plan, ctx, tmp_path, monkeypatch):
    data = yaml.safe_load(Path("include/dr_plan.yaml").read_text())
    data["evidence_bucket"].update(object_lock_mode="GOVERNANCE", allow_governance=True)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("SECUREDR_PLAN", str(path))
    log = mock.MagicMock()
    monkeypatch.setattr(PreflightChecksOperator, "log", log)
    # The bucket's default retention is COMPLIANCE in the seeded estate: only the plan warns.
    result = PreflightChecksOperator(task_id="preflight").execute(ctx)
    (warning,) = result["warnings"]
    assert "locked in GOVERNANCE mode" in warning and "s3:BypassGovernanceRetention" in warning
    log.warning.assert_any_call("Pre-flight warning: %s", warning)
