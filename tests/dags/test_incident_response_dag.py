"""dr_incident_response: event-driven on the plan's queue, one fixed task, no AWS at parse."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def dag():
    import botocore.client
    from airflow.dag_processing.dagbag import DagBag

    def no_aws(*args, **kwargs):
        raise AssertionError("a DAG file called AWS while being parsed")

    original = botocore.client.BaseClient._make_api_call
    botocore.client.BaseClient._make_api_call = no_aws
    try:
        bag = DagBag()
    finally:
        botocore.client.BaseClient._make_api_call = original
    assert not {k: v for k, v in bag.import_errors.items() if "incident" in k}
    return bag.dags["dr_incident_response"]


def test_scheduled_on_an_asset_watched_on_the_incident_queue(dag, plan):
    from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger
    from airflow.triggers.base import BaseEventTrigger

    [asset] = dag.timetable.asset_condition.objects
    [watcher] = asset.watchers
    trigger = watcher.trigger
    assert isinstance(trigger, SqsSensorTrigger) and isinstance(trigger, BaseEventTrigger)
    assert trigger.sqs_queue == plan.incident_response.queue_url
    assert trigger.region_name == "us-west-2"
    assert trigger.waiter_delay <= 2  # seconds an event may wait between polls
    assert trigger.num_batches * trigger.wait_time_seconds <= 5  # seconds spent gathering
    # messages are deleted by the run once handled, and come back if it never does
    assert not trigger.delete_message_on_reception
    assert trigger.visibility_timeout == 120


def test_one_fixed_task_with_retries_and_a_timeout(dag):
    assert [t.task_id for t in dag.tasks] == ["respond_to_incidents"]
    task = dag.tasks[0]
    assert task.retries >= 1 and task.execution_timeout is not None
    assert "securedr" in dag.tags and not dag.catchup and dag.doc_md


def test_survives_serialization(dag):
    from airflow.serialization.serialized_objects import DagSerialization

    again = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    [asset] = again.timetable.asset_condition.objects
    assert asset.name == "securedr-incident-events"
