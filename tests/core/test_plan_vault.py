"""The plan's optional ``vault`` section: a separate account, its own keys, locks that outlast
retention, and a recovery role the workload account does not hold."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from securedr.core.plan import PlanError, parse_plan

VAULT_PLAN = Path(__file__).resolve().parents[2] / "include" / "dr_plan.vault.yaml"


@pytest.fixture(autouse=True)
def _home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SECUREDR_HOME", str(tmp_path))


def vault_plan() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(VAULT_PLAN.read_text(encoding="utf-8")))


def problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(PlanError) as info:
        parse_plan(data)
    return dict(info.value.problems)


def test_shipped_vault_plan_is_valid_and_defaults_the_lock() -> None:
    plan = parse_plan(vault_plan())
    assert plan.vault is not None
    assert plan.vault.account_id == "222222222222"
    assert plan.vault.kms_key("us-west-2").startswith("arn:aws:kms:us-west-2:222222222222:key/")
    assert plan.vault.lock.cool_off_hours == 1
    # No duration given: one day beyond retention, so a copy is never unlocked while kept.
    assert plan.vault.lock.duration_days_for(plan.retention) == plan.retention.keep_days + 1
    assert plan.vault.recovery.aws_conn_id == "aws_vault_recovery"


def test_a_plan_without_vault_has_none() -> None:
    data = vault_plan()
    del data["vault"]
    assert parse_plan(data).vault is None


def test_the_vault_must_be_another_account() -> None:
    data = vault_plan()
    data["vault"]["account_id"] = "123456789012"  # restore.role_arn's account: the workload
    found = problems(data)
    assert "workload account" in found["vault.account_id"]


def test_intake_role_must_be_in_the_vault_account() -> None:
    data = vault_plan()
    data["vault"]["role_arn"] = "arn:aws:iam::333333333333:role/securedr-vault-intake"
    assert "not in the vault account 222222222222" in problems(data)["vault.role_arn"]


def test_recovery_role_must_not_be_in_the_workload_account() -> None:
    data = vault_plan()
    data["vault"]["recovery"]["role_arn"] = "arn:aws:iam::123456789012:role/securedr-restore"
    assert "workload account" in problems(data)["vault.recovery.role_arn"]


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("alias/securedr-vault", "full ARN of a key in the vault account"),
        (
            "arn:aws:kms:us-west-2:123456789012:key/5ec0dd00-0000-4000-8000-00000000a001",
            "belongs to account 123456789012, not the vault account",
        ),
        (
            "arn:aws:kms:us-east-1:222222222222:key/5ec0dd00-0000-4000-8000-00000000a001",
            "is in Region us-east-1, not us-west-2",
        ),
    ],
)
def test_vault_keys_are_full_arns_of_the_vault_in_their_region(key: str, fragment: str) -> None:
    data = vault_plan()
    data["vault"]["kms_keys"] = {"us-west-2": key}
    assert fragment in problems(data)["vault.kms_keys.us-west-2"]


def test_the_dr_region_needs_a_vault_key() -> None:
    data = vault_plan()
    data["vault"]["kms_keys"] = {
        "eu-west-1": "arn:aws:kms:eu-west-1:222222222222:key/5ec0dd00-0000-4000-8000-00000000a001"
    }
    assert "no key for the DR Region us-west-2" in problems(data)["vault.kms_keys"]


def test_lock_shorter_than_retention_is_refused() -> None:
    data = vault_plan()
    data["vault"]["lock"]["duration_days"] = data["retention"]["keep_days"] - 1
    assert "shorter than retention.keep_days" in problems(data)["vault.lock.duration_days"]


@pytest.mark.parametrize("hours", [0, 73])
def test_cool_off_within_aws_limits(hours: int) -> None:
    data = vault_plan()
    data["vault"]["lock"]["cool_off_hours"] = hours
    assert "vault.lock.cool_off_hours" in problems(data)


def test_account_id_must_be_a_quoted_twelve_digit_string() -> None:
    data = vault_plan()
    data["vault"]["account_id"] = 222222222222  # unquoted YAML: an int
    assert "vault.account_id" in problems(data)
    data["vault"]["account_id"] = "2222"
    assert "12-digit" in problems(data)["vault.account_id"]


def test_vault_evidence_is_not_the_workload_bucket() -> None:
    data = vault_plan()
    data["vault"]["evidence_bucket"] = data["evidence_bucket"]["name"]
    assert "workload's evidence bucket" in problems(data)["vault.evidence_bucket"]
