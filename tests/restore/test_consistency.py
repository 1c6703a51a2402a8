"""Retried restore tasks under eventual consistency: they find what they started, never twice.

Right after a create, AWS describes may not list the new volume or DB instance yet
(https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html). A retried restore
task must then neither fail nor create a second copy: volumes carry an EC2 client token (the
retried CreateVolume returns the first volume), DB instances have deterministic identifiers
(the retried restore meets DBInstanceAlreadyExists and adopts its own instance once visible).
"""

from __future__ import annotations

import boto3

from tests.restore.conftest import Harness, approval
from tests.restore.consistency import hide


def _retrieved() -> Harness:
    h = Harness()
    h.initiate()
    h.check_initiator()
    h.check_approval(approval("bob"))
    h.retrieve()
    return h


def _restored_volumes(plan) -> list[dict]:
    ec2 = boto3.client("ec2", region_name=plan.regions.dr)
    return ec2.describe_volumes(Filters=[{"Name": "tag:securedr:role", "Values": ["restored"]}])[
        "Volumes"
    ]


def test_a_retried_volume_restore_that_cannot_see_its_volumes_yet_creates_none_twice(
    restore_plan, backup
):
    h = _retrieved()
    first = h.restore("ebs")
    ids = {r["resource_id"] for r in first}
    hidden = hide(ids, describes=1)

    again = h.restore("ebs")

    assert hidden["hidden_calls"] == 1  # the retry's lookup by tag saw none of them
    assert {r["resource_id"] for r in again} == ids
    assert len(_restored_volumes(restore_plan)) == len(ids)


def test_a_retried_db_restore_adopts_its_instance_once_it_is_visible(
    restore_plan, backup, monkeypatch
):
    from securedr.aws import errors

    monkeypatch.setattr(errors, "NOT_FOUND_POLL_SECONDS", 0.05)
    h = _retrieved()
    (first,) = h.restore("rds")
    hidden = hide({first["resource_id"]}, describes=2)

    (again,) = h.restore("rds")

    assert hidden["hidden_calls"] == 2
    assert again["resource_id"] == first["resource_id"]
    assert again["created"] is False
    rds = boto3.client("rds", region_name=restore_plan.regions.dr)
    assert len(rds.describe_db_instances()["DBInstances"]) == 1


def test_the_restore_wait_sees_through_the_sandboxs_consistency_section(restore_plan, backup):
    """With the sandbox's ``consistency`` section on, restored volumes and the DB instance are
    missing from describes right after their creation: the wait defers instead of failing, and
    its trigger completes once they show up."""
    import asyncio

    import pytest
    from airflow.sdk.exceptions import TaskDeferred

    from sandbox import realism

    realism.configure("consistency", seconds=3)
    h = _retrieved()
    h.restore("ebs")
    h.restore("rds")

    with pytest.raises(TaskDeferred) as deferred:
        h.wait()

    trigger = deferred.value.trigger
    trigger.poll_seconds = 0.5

    async def first_event():
        async for event in trigger.run():
            return event.payload

    event = asyncio.run(first_event())
    assert event["status"] == "success", event
    assert len(event["completed"]) == len(backup.points)
