"""Every DAG loads cleanly, fast, without touching AWS, and follows the house rules."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

DAGS = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "dags").glob("dr_*.py"))


@pytest.fixture(scope="module")
def dagbag():
    import botocore.client
    from airflow.dag_processing.dagbag import DagBag

    def no_aws(*args, **kwargs):
        raise AssertionError("a DAG file called AWS while being parsed")

    original = botocore.client.BaseClient._make_api_call
    botocore.client.BaseClient._make_api_call = no_aws
    try:
        return DagBag()
    finally:
        botocore.client.BaseClient._make_api_call = original


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_every_dag_file_defines_its_dag(dagbag):
    assert "dr_nightly_backup" in DAGS
    assert set(DAGS) <= set(dagbag.dag_ids)


@pytest.mark.parametrize("dag_id", DAGS)
def test_house_rules(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert "securedr" in dag.tags
    assert dag.doc_md, "the DAG explains itself in the UI"
    assert not dag.catchup
    for task in dag.tasks:
        assert task.retries is not None


def test_nightly_schedule_and_order(dagbag):
    dag = dagbag.dags["dr_nightly_backup"]
    assert dag.timetable.expression == "0 2 * * *"
    assert dag.max_active_runs == 1
    order = [
        "preflight_security_checks",
        "discover_protected_resources",
        "create_recovery_points",
        "wait_for_recovery_points",
        "copy_to_dr_region",
        "wait_for_dr_copies",
        "verify_dr_copies",
        "copy_to_vault",
        "verify_vault_copies",
        "sign_run_manifest",
        "release_dr_intermediates",
        "reverify_retained_copies",
        "apply_retention",
        "report_run",
    ]
    for upstream, downstream in itertools.pairwise(order):
        assert upstream in dag.get_task(downstream).upstream_task_ids
    assert dag.get_task("report_run").trigger_rule == "all_done"
    # A failed vault copy step still ends in a verdict per point and a signed manifest.
    assert dag.get_task("verify_vault_copies").trigger_rule == "all_done"
    assert dag.get_task("copy_to_vault").deferrable
    assert dag.get_task("preflight_security_checks").retries == 0


def test_drill_schedule_setup_teardown_and_order(dagbag):
    dag = dagbag.dags["dr_recovery_drill"]
    assert dag.timetable.expression == "0 3 1 1,4,7,10 *"
    assert dag.max_active_runs == 1
    # A run-level timeout would kill tasks without running the teardown.
    assert dag.dagrun_timeout is None
    sandbox, teardown = dag.get_task("create_sandbox"), dag.get_task("teardown_sandbox")
    assert sandbox.is_setup and teardown.is_teardown
    assert teardown.on_failure_fail_dagrun  # a leftover fails the drill
    assert "create_sandbox" in teardown.upstream_task_ids
    order = [
        "start_drill",
        "create_sandbox",
        "retrieve_recovery_points",
        "restore_databases",
        "wait_for_restored_resources",
        "verify_restores",
        "teardown_sandbox",
        "report_drill",
    ]
    for upstream, downstream in itertools.pairwise(order):
        assert upstream in dag.get_task(downstream).upstream_task_ids
    for task_id in ("verify_restores", "report_drill"):
        assert dag.get_task(task_id).trigger_rule == "all_done"
    for task_id in ("restore_volumes", "restore_databases"):
        assert dag.get_task(task_id).sandbox is not None
    for task in dag.tasks:
        if task.task_id not in ("wait_for_restored_resources",):
            assert task.execution_timeout is not None, task.task_id


@pytest.mark.parametrize(
    ("dag_id", "just_after"),
    [
        # 1 minute after tonight's 02:00 and 2 days into a quarter: both inside the 10% window in
        # which Airflow's default cron timetable starts the missed run on deployment.
        ("dr_nightly_backup", "2026-11-27T02:01:00+00:00"),
        ("dr_recovery_drill", "2026-10-03T03:00:00+00:00"),
    ],
)
def test_deploying_never_starts_a_run_for_the_past(dagbag, monkeypatch, dag_id, just_after):
    """A fresh deployment (no runs yet) waits for the next scheduled time, also once serialized."""
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables import trigger
    from airflow.timetables.base import TimeRestriction
    from pendulum import parse

    now = parse(just_after)
    monkeypatch.setattr(trigger, "utcnow", lambda: now)
    # The scheduler works on the serialized DAG, as the dag-processor stored it.
    as_scheduled = DagSerialization.from_dict(DagSerialization.to_dict(dagbag.dags[dag_id]))
    first = as_scheduled.timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=None, latest=None, catchup=False),
    )
    assert first.run_after > now, f"{dag_id} would start a run for {first.run_after}"
