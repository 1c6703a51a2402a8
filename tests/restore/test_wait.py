"""Waiting for restored resources: the deferrable sensor and its trigger."""

from __future__ import annotations

import asyncio

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from securedr.sensors.restore import RestoredResourcesSensor
from securedr.triggers.restore import RestoredResourcesTrigger
from tests.restore.conftest import EXTERNAL_ID, audit_entries, make_context

RUN_ID = "manual__2026-11-26T10:00:00+00:00"


def _trigger(plan, refs, **kwargs):
    return RestoredResourcesTrigger(
        refs=refs,
        run_id=RUN_ID,
        role_arn=plan.restore.role_arn,
        external_id_variable=plan.restore.external_id_variable,
        sts_region=plan.regions.dr,
        poll_seconds=0.01,
        **kwargs,
    )


def _first_event(trigger):
    async def run():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(run())


def _volume(plan) -> dict:
    dr = plan.regions.dr
    volume = boto3.client("ec2", region_name=dr).create_volume(
        AvailabilityZone=f"{dr}a", Size=1, Encrypted=True
    )
    return {"kind": "ebs", "region": dr, "resource_id": volume["VolumeId"]}


def test_trigger_reports_success_under_the_role_with_aiobotocore(restore_plan):
    ref = _volume(restore_plan)
    event = _first_event(_trigger(restore_plan, [ref]))
    assert event["status"] == "success"
    assert event["completed"] == [f"ebs:{ref['region']}:{ref['resource_id']}"]


def test_trigger_fails_fast_naming_a_resource_that_disappeared(restore_plan):
    gone = {"kind": "rds", "region": restore_plan.regions.dr, "resource_id": "restored-gone-1"}
    event = _first_event(_trigger(restore_plan, [_volume(restore_plan), gone]))
    assert event["status"] == "error"
    assert "not found" in event["failed"]["rds:us-west-2:restored-gone-1"]


def test_trigger_times_out_with_the_pending_names(restore_plan, monkeypatch):
    import securedr.triggers.restore as module

    async def pending(clients, refs):
        return {"ebs:us-west-2:vol-1": ("pending", "state creating")}

    monkeypatch.setattr(module, "restored_states_async", pending)
    event = _first_event(_trigger(restore_plan, [_volume(restore_plan)], timeout_seconds=0))
    assert event == {
        "status": "timeout",
        "completed": [],
        "pending": ["ebs:us-west-2:vol-1"],
        "failed": {},
    }


def test_trigger_serializes_no_secret(restore_plan):
    _, kwargs = _trigger(restore_plan, []).serialize()
    assert EXTERNAL_ID not in repr(kwargs)
    assert set(kwargs) >= {"role_arn", "external_id_variable", "run_id", "started_at"}


def test_sensor_returns_at_once_when_everything_is_available(restore_plan):
    sensor = RestoredResourcesSensor(task_id="wait", restored=[[{**_volume(restore_plan)}], []])
    assert sensor.execute(make_context(run_id=RUN_ID)) is None


def test_sensor_defers_while_pending(restore_plan, monkeypatch):
    import securedr.sensors.restore as module

    monkeypatch.setattr(
        module, "restored_states", lambda clients, refs: {"k": ("pending", "state creating")}
    )
    sensor = RestoredResourcesSensor(task_id="wait", restored=[[_volume(restore_plan)]])
    with pytest.raises(TaskDeferred) as info:
        sensor.execute(make_context(run_id=RUN_ID))
    assert isinstance(info.value.trigger, RestoredResourcesTrigger)
    assert info.value.trigger.run_id == RUN_ID


def test_sensor_fails_naming_the_failed_resource(restore_plan):
    sensor = RestoredResourcesSensor(
        task_id="wait",
        restored=[[{"kind": "ebs", "region": "us-west-2", "resource_id": "vol-0000000000000000a"}]],
    )
    with pytest.raises(AirflowFailException, match="vol-0000000000000000a: not found"):
        sensor.execute(make_context(run_id=RUN_ID))
    last = audit_entries(restore_plan)[-1]
    assert (last.action, last.outcome) == ("restore.wait", "failed")
    assert last.resource == "ebs:us-west-2:vol-0000000000000000a"
    with pytest.raises(AirflowFailException, match="still not available: ebs:x"):
        sensor.execute_complete(make_context(), {"status": "timeout", "pending": ["ebs:x"]})


# --------------------------------------------------------------------------- eventual consistency


def test_trigger_treats_a_just_created_volume_missing_from_describes_as_pending(restore_plan):
    from datetime import UTC, datetime

    from tests.restore.consistency import hide

    ref = {**_volume(restore_plan), "requested_at": datetime.now(UTC).isoformat()}
    hidden = hide({ref["resource_id"]}, describes=3)

    event = _first_event(_trigger(restore_plan, [ref]))

    assert hidden["hidden_calls"] == 3
    assert event["status"] == "success", event


def test_sensor_defers_rather_than_fails_on_a_just_created_missing_resource(restore_plan):
    from datetime import UTC, datetime

    from tests.restore.consistency import hide

    volume = _volume(restore_plan)
    hide({volume["resource_id"]}, describes=1)
    restored = [[{**volume, "requested_at": datetime.now(UTC).isoformat()}]]
    sensor = RestoredResourcesSensor(task_id="wait", restored=restored)

    with pytest.raises(TaskDeferred) as info:
        sensor.execute(make_context(run_id=RUN_ID))

    # The trigger gets the creation time too, so it keeps the same grace period.
    assert info.value.trigger.refs[0]["requested_at"] == restored[0][0]["requested_at"]


def test_a_resource_still_missing_after_the_grace_period_fails(restore_plan):
    from datetime import UTC, datetime, timedelta

    from securedr.core.restore import NOT_FOUND_GRACE_SECONDS

    long_ago = datetime.now(UTC) - timedelta(seconds=NOT_FOUND_GRACE_SECONDS + 5)
    gone = {
        "kind": "rds",
        "region": restore_plan.regions.dr,
        "resource_id": "restored-gone-2",
        "requested_at": long_ago.isoformat(),
    }
    event = _first_event(_trigger(restore_plan, [gone]))
    assert event["status"] == "error"
    assert "not found" in event["failed"]["rds:us-west-2:restored-gone-2"]
