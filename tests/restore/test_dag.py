"""The dr_restore DAG: parses without AWS, reads like the sequence, validates its form."""

from __future__ import annotations

import itertools

import pytest

from tests.restore.conftest import VALID_PARAMS

#: What the initiator submits: the request plus their current MFA code.
FORM = {**VALID_PARAMS, "mfa_code": "123 456"}


@pytest.fixture(scope="module")
def dag(airflow_db):
    from botocore.client import BaseClient

    from tests.dagrun import load_dag

    original = BaseClient._make_api_call

    def forbidden(self, operation_name, api_params):
        raise AssertionError(f"AWS call {operation_name} while parsing the DAG")

    BaseClient._make_api_call = forbidden
    try:
        return load_dag("dr_restore")
    finally:
        BaseClient._make_api_call = original


def test_reads_like_the_sequence(dag):
    order = [
        "initiate_restore",
        "check_initiator",
        "approve_restore",
        "check_approval",
        "retrieve_recovery_points",
    ]
    for upstream, downstream in itertools.pairwise(order):
        assert upstream in dag.get_task(downstream).upstream_task_ids
    for restore in ("restore_volumes", "restore_databases"):
        assert "retrieve_recovery_points" in dag.get_task(restore).upstream_task_ids
        assert "wait_for_restored_resources" in dag.get_task(restore).downstream_task_ids
    assert "wait_for_restored_resources" in dag.get_task("confirm_restore").upstream_task_ids
    # Nothing that touches a recovery point can run unless both access checks passed.
    for task_id in [*order[4:], "restore_volumes", "restore_databases", "confirm_restore"]:
        ancestors = dag.get_task(task_id).get_flat_relative_ids(upstream=True)
        assert {"check_initiator", "check_approval"} <= ancestors, task_id
    assert type(dag.timetable).__name__ == "NullTimetable"  # manual runs only
    assert dag.max_active_runs == 1


def test_access_steps_never_retry(dag):
    for task_id in ("initiate_restore", "check_initiator", "approve_restore", "check_approval"):
        assert dag.get_task(task_id).retries == 0, task_id


def test_failures_notify_except_a_refused_request_which_must_not_touch_aws(dag):
    assert not dag.get_task("initiate_restore").on_failure_callback
    for task_id in ("check_initiator", "check_approval", "confirm_restore"):
        assert dag.get_task(task_id).on_failure_callback, task_id


def test_form_has_titles_descriptions_and_validation(dag):
    for name, param in dag.params.items():
        assert param.schema.get("title") and param.description, name
    assert dag.params.get_param("reason").schema["minLength"] >= 15
    assert dag.params.get_param("dry_run").value is False
    assert dag.params.get_param("recovery_point").value == "latest"


@pytest.mark.parametrize(
    "changes",
    [
        {"reason": "short"},
        {"resources": []},
        {"ticket": "has space"},
        {"dry_run": "yes"},
        {"mfa_code": None},
        {"mfa_code": "12345"},
        {"mfa_code": "12345a"},
    ],
)
def test_form_refuses_bad_values_at_trigger_time(dag, changes):
    from airflow.sdk.definitions.param import ParamsDict

    params = ParamsDict(dag.params)
    with pytest.raises(Exception, match=r"Invalid input for param|Param .* is required|not valid"):
        for key, value in {**FORM, **changes}.items():
            params[key] = value
        params.validate()


def test_form_accepts_the_documented_example(dag):
    from airflow.sdk.definitions.param import ParamsDict

    params = ParamsDict(dag.params)
    for key, value in FORM.items():
        params[key] = value
    assert params.validate()["reason"] == VALID_PARAMS["reason"]


def test_the_trigger_form_and_the_approval_form_ask_for_mfa_codes(dag):
    assert "mfa_code" in dag.params
    assert dag.params.get_param("mfa_code").schema["type"] == "string"  # required
    approval_form = dag.get_task("approve_restore").serialized_params
    assert list(approval_form) == ["approver_mfa_code"]
    # No task renders the codes into its (stored, displayed) template fields.
    for task in dag.tasks:
        for name in task.template_fields:
            assert "mfa" not in str(getattr(task, name, "")), (task.task_id, name)
