"""dr_nightly_backup on the real Airflow components, driven through the REST API."""

from __future__ import annotations

import pytest

from sandbox.stack import AirflowApi, StackError

pytestmark = pytest.mark.e2e


def test_nightly_backup_runs_on_scheduler_and_triggerer(stack, stack_nightly):
    assert stack_nightly["state"] == "success", stack_nightly["task_states"]
    report = stack_nightly["report"]
    assert report["succeeded"]
    protected = {p["source"] for p in report["recovery_points"]}
    estate = stack["estate"]
    expected = {f"{r}/{v}" for r, vols in estate["protected_volumes"].items() for v in vols}
    expected |= {f"{r}/{d}" for r, dbs in estate["protected_databases"].items() for d in dbs}
    assert protected == expected
    assert all(
        p["verified"] and p["dr_key"] == estate["key_arns"]["us-west-2"]
        for p in report["recovery_points"]
    )
    assert set(stack_nightly["task_states"].values()) == {"success"}


def test_a_viewer_cannot_trigger_a_backup(stack):
    api = AirflowApi(stack["api_url"]).login("mallory", stack["passwords"]["mallory"])
    with pytest.raises(StackError, match="HTTP 403"):
        api.trigger("dr_nightly_backup")
