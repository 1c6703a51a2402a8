"""The evidence bucket is locked in COMPLIANCE mode unless the plan opts into GOVERNANCE."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from securedr.core.plan import PlanError, load_plan

SHIPPED = Path(__file__).resolve().parents[2] / "include" / "dr_plan.yaml"


def _load(tmp_path: Path, **evidence: object):
    data = copy.deepcopy(yaml.safe_load(SHIPPED.read_text()))
    data["evidence_bucket"] = {"name": "securedr-evidence-demo", **evidence}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_plan(path)


def test_compliance_is_the_default_and_the_shipped_mode(tmp_path: Path) -> None:
    assert _load(tmp_path).evidence_bucket.object_lock_mode == "COMPLIANCE"
    assert load_plan(SHIPPED).evidence_bucket.object_lock_mode == "COMPLIANCE"


def test_governance_without_the_opt_in_is_refused_naming_the_flag(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as error:
        _load(tmp_path, object_lock_mode="GOVERNANCE")
    text = str(error.value)
    assert "evidence_bucket" in text and "allow_governance: true" in text
    assert "s3:BypassGovernanceRetention" in text


def test_governance_with_the_opt_in_is_accepted(tmp_path: Path) -> None:
    bucket = _load(tmp_path, object_lock_mode="GOVERNANCE", allow_governance=True).evidence_bucket
    assert bucket.object_lock_mode == "GOVERNANCE" and bucket.allow_governance is True
