"""The plan's incident_response section: defaults, and bad values named before anything runs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from securedr.core.plan import PlanError, parse_plan

PLAN = Path(__file__).resolve().parents[2] / "include" / "dr_plan.yaml"


def shipped() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(PLAN.read_text(encoding="utf-8")))


def problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(PlanError) as info:
        parse_plan(data, base_dir=PLAN.parent)
    return dict(info.value.problems)


def test_shipped_plan_names_the_queue_and_defaults_the_rest() -> None:
    section = parse_plan(shipped(), base_dir=PLAN.parent).incident_response
    assert (
        section.queue_url == "https://sqs.us-west-2.amazonaws.com/123456789012/securedr-incidents"
    )
    assert section.backup_role_arn == "arn:aws:iam::123456789012:role/securedr-backup"
    assert section.own_session_prefixes[:2] == ["securedr-restore-", "securedr-vault-"]
    assert section.block_public_access_state == "block-all-sharing"


def test_a_plan_without_the_section_has_no_watcher() -> None:
    data = shipped()
    del data["incident_response"]
    assert parse_plan(data, base_dir=PLAN.parent).incident_response.queue_url is None


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("queue_url", "securedr-incidents", "SQS queue URL"),
        ("queue_url", "https://sqs.us-west-2.amazonaws.com/1234/q", "SQS queue URL"),
        ("backup_role_arn", "arn:aws:iam::123456789012:user/x", "IAM role ARN"),
        ("own_principal_arns", ["securedr"], "IAM role or user ARNs"),
        ("trusted_accounts", ["12345"], "12-digit"),
        ("own_session_prefixes", ["s"], "at least 4 characters"),
        ("block_public_access_state", "unblocked", "block-all-sharing"),
    ],
)
def test_bad_values_are_refused_by_field(field: str, value: Any, fragment: str) -> None:
    data = shipped()
    data["incident_response"][field] = value
    found = problems(data)
    [(path, message)] = [(p, m) for p, m in found.items() if p.startswith("incident_response")]
    assert path.startswith(f"incident_response.{field}")
    assert fragment in message
