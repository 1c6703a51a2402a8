"""Tests for securedr.core.status: EBS/RDS snapshot states and their classification."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securedr.core.status import (
    Progress,
    SnapshotStatus,
    ebs_status,
    evaluate,
    rds_status,
    status_of,
)

# --------------------------------------------------------------------------- EBS


def test_ebs_pending_carries_progress() -> None:
    status = ebs_status({"SnapshotId": "snap-1", "State": "pending", "Progress": "42%"})
    assert status == SnapshotStatus("pending", "state pending", "42%")


def test_ebs_pending_without_progress() -> None:
    status = ebs_status({"State": "pending"})
    assert status.state == "pending"
    assert status.progress == ""


def test_ebs_completed() -> None:
    status = ebs_status({"State": "completed", "Progress": "100%"})
    assert status.state == "completed"
    assert status.progress == "100%"


def test_ebs_error_gives_the_reason() -> None:
    status = ebs_status(
        {"State": "error", "StateMessage": "Snapshot failed: KMS key disabled", "Progress": "3%"}
    )
    assert status.state == "failed"
    assert "error" in status.detail
    assert "Snapshot failed: KMS key disabled" in status.detail


@pytest.mark.parametrize("message", [None, ""])
def test_ebs_error_without_a_reason(message: str | None) -> None:
    status = ebs_status({"State": "error", "StateMessage": message})
    assert status.state == "failed"
    assert status.detail == "state error: AWS gave no reason"


def test_ebs_recoverable_is_failed() -> None:
    # "recoverable": the snapshot was deleted into the Recycle Bin.
    status = ebs_status({"State": "recoverable"})
    assert status.state == "failed"
    assert "recoverable" in status.detail


def test_ebs_unknown_state_keeps_waiting() -> None:
    assert ebs_status({}).state == "pending"
    assert ebs_status({"State": "recovering"}).state == "pending"


# --------------------------------------------------------------------------- RDS


@pytest.mark.parametrize("state", ["creating", "copying", "pending"])
def test_rds_in_progress(state: str) -> None:
    status = rds_status({"DBSnapshotIdentifier": "s", "Status": state, "PercentProgress": 37})
    assert status == SnapshotStatus("pending", f"status {state}", "37%")


def test_rds_in_progress_without_percent() -> None:
    assert rds_status({"Status": "creating"}).progress == "0%"


def test_rds_available() -> None:
    status = rds_status({"Status": "available", "PercentProgress": 100})
    assert status.state == "completed"
    assert status.progress == "100%"


@pytest.mark.parametrize(
    "state",
    ["failed", "incompatible-restore", "incompatible-parameters", "deleted", "deleting"],
)
def test_rds_failure_states(state: str) -> None:
    status = rds_status({"Status": state})
    assert status.state == "failed"
    assert status.detail == f"status {state}"


def test_status_of_dispatches_on_kind() -> None:
    # The same dict means different things to EBS and RDS: each kind reads its own field.
    snapshot = {"State": "completed", "Status": "creating"}
    assert status_of("ebs", snapshot).state == "completed"
    assert status_of("rds", snapshot).state == "pending"


# --------------------------------------------------------------------------- evaluate

DONE = SnapshotStatus("completed", progress="100%")
WAITING = SnapshotStatus("pending", "state pending", "10%")


def test_evaluate_classifies() -> None:
    statuses = {
        "a": DONE,
        "b": WAITING,
        "c": SnapshotStatus("failed", "state error: boom"),
        "d": DONE,
    }
    progress = evaluate(["a", "b", "c", "d"], statuses)
    assert progress.completed == ["a", "d"]
    assert progress.pending == ["b"]
    assert progress.failed == {"c": "state error: boom"}
    assert progress.total == 4
    assert progress.summary() == "2/4 completed, 1 pending, 1 failed"


def test_absent_snapshot_has_failed() -> None:
    progress = evaluate(["gone", "here"], {"here": DONE})
    assert progress.completed == ["here"]
    assert list(progress.failed) == ["gone"]
    assert progress.failed["gone"].startswith("not found")


def test_missing_state_has_failed() -> None:
    progress = evaluate(["x"], {"x": SnapshotStatus("missing")})
    assert progress.failed["x"].startswith("not found")
    assert progress.pending == []


def test_statuses_not_expected_are_ignored() -> None:
    progress = evaluate(["a"], {"a": WAITING, "other": DONE})
    assert progress.pending == ["a"]
    assert progress.completed == []
    assert progress.total == 1


def test_nothing_expected() -> None:
    progress = evaluate([], {"a": DONE})
    assert progress == Progress()
    assert progress.summary() == "0/0 completed, 0 pending, 0 failed"


states = st.sampled_from(["completed", "pending", "failed", "missing", None])


@settings(max_examples=50)
@given(st.dictionaries(st.text(max_size=6), states, max_size=12))
def test_every_expected_snapshot_lands_in_exactly_one_bucket(
    plan: dict[str, str | None],
) -> None:
    expected = list(plan)
    statuses = {k: SnapshotStatus(s, f"detail of {k}") for k, s in plan.items() if s is not None}
    progress = evaluate(expected, statuses)
    assert progress.total == len(expected)
    assert set(progress.completed) == {k for k, s in plan.items() if s == "completed"}
    assert set(progress.pending) == {k for k, s in plan.items() if s == "pending"}
    assert set(progress.failed) == {k for k, s in plan.items() if s in ("failed", "missing", None)}
    for key, reason in progress.failed.items():
        if plan[key] == "failed":
            assert reason == f"detail of {key}"
        else:
            assert reason.startswith("not found")
