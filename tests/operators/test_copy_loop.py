"""The DR copy loop under AWS's real behaviour: copies take time, slots are limited, describes lag.

The loop's first pass runs in the worker; the rest runs in :class:`DrCopyTrigger`, which these
tests run the way the triggerer does (its ``run`` generator, over real HTTP to the sandbox).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import boto3
import pytest
from airflow.sdk.exceptions import TaskDeferred

from sandbox import realism
from sandbox.realism import timing
from securedr.operators.dr_copy import CopyToDrRegionOperator
from securedr.triggers.dr_copy import DrCopyTrigger
from tests.operators.test_copy_path import (
    CONCURRENT_COPY_MESSAGE,
    by_source,
    copy_op,
    dr_copies,
    inject,
    snapshot,
    write_plan,
)

DR = "us-west-2"
FAST = {"poll_seconds": 1, "quota_wait_seconds": 1}


def run_trigger(trigger: DrCopyTrigger, timeout: float = 90) -> dict[str, Any]:
    """The trigger's one event, as the triggerer gets it."""

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first(), timeout=timeout))


def add_volumes(estate, plan, count: int, region: str = "us-east-1") -> None:
    from sandbox.estate import create_volume

    for i in range(count):
        create_volume(
            region,
            f"bulk-{i}",
            plan=plan,
            protected=True,
            kms_key_arn=estate.key_arns[region],
            endpoint_url=None,
        )


def record_in_flight(seen: list[int]) -> None:
    """After every CopySnapshot, how many EBS copies are pending in the DR Region."""

    def after(call, result):
        if call.service == "ec2" and call.action == "CopySnapshot":
            seen.append(timing.in_flight("ec2", DR))
        return result

    realism.behaviour("test-in-flight", after=after)
    realism.configure("test-in-flight")


def ebs_points(ctx, plan_path: str) -> list[dict]:
    return [p for p in snapshot(ctx, plan_path) if p["kind"] == "ebs"]


def test_a_freed_slot_is_filled_in_the_triggerer_and_never_more_than_twenty_fly(
    estate, plan, ctx, tmp_path
):
    add_volumes(estate, plan, 22)
    # A 30 s poll interval: the trigger still refills the slots about when AWS's progress
    # figure says the first copies end, well before the next regular poll.
    plan_path = write_plan(tmp_path, waits=dict(FAST, poll_seconds=30))
    points = ebs_points(ctx, plan_path)
    assert len(points) == 24
    realism.configure("timing", copy_seconds=2)
    realism.configure("quotas")  # AWS's 20 concurrent EBS copies per destination Region
    seen: list[int] = []
    record_in_flight(seen)

    operator = copy_op(points, plan_path)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(ctx)
    trigger = deferred.value.trigger
    assert isinstance(trigger, DrCopyTrigger)
    assert len(dr_copies(DR)) == 20  # the worker's first pass filled every slot

    event = run_trigger(trigger, timeout=20)  # one deferral: the triggerer starts the other 4
    assert event["status"] == "done"
    assert len(dr_copies(DR)) == 24
    assert max(seen) <= 20 and len(seen) == 24  # never refused, never over the quota
    done = operator.resume(ctx, event)
    assert len({p["dr_snapshot_id"] for p in done}) == 24
    assert all(p["not_protected"] is None and p["dr_requested_at"] for p in done)


def test_without_a_triggerer_the_loop_runs_to_the_end_in_the_worker(estate, plan, ctx, tmp_path):
    add_volumes(estate, plan, 4)
    plan_path = write_plan(tmp_path, waits=dict(FAST, max_copies_in_flight=2))
    realism.configure("timing", copy_seconds=1)
    points = ebs_points(ctx, plan_path)
    operator = CopyToDrRegionOperator(
        task_id="copy", points=points, plan_path=plan_path, deferrable=False
    )
    done = operator.execute(ctx)
    assert len({p["dr_snapshot_id"] for p in done}) == 6
    assert len(dr_copies(DR)) == 6


def test_slots_held_by_other_tools_are_a_timed_wait_inside_the_trigger(estate, plan, ctx, tmp_path):
    plan_path = write_plan(tmp_path, waits=FAST)
    attempts: list[float] = []
    refusals = {"left": 3}

    def slots_taken(call):
        if call.service == "ec2" and call.action == "CopySnapshot":
            attempts.append(time.monotonic())
            if refusals["left"] > 0:
                refusals["left"] -= 1
                raise realism.AWSError(
                    "ResourceLimitExceeded",
                    "Too many snapshot copies in progress. The limit is 20 for this destination "
                    "region.",
                )

    inject("test-slots-taken", slots_taken)
    points = snapshot(ctx, plan_path)
    operator = copy_op(points, plan_path)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(ctx)
    loop = deferred.value.trigger.loop
    # The absolute deadline is fixed when the try starts and travels with the loop's state.
    assert loop["deadline"] == pytest.approx(before + 2880 * 60, abs=30)
    assert loop["slots"]["blocked_until"]["ebs"] > before
    # The database is not held up by the EBS limit: its copy started in the first pass.
    assert set(loop["slots"]["status"].values()) == {"waiting", "in_flight"}

    event = run_trigger(deferred.value.trigger)
    copied = by_source(operator.resume(ctx, event))
    assert all(p["dr_snapshot_id"] and p["not_protected"] is None for p in copied.values())
    assert len(dr_copies(DR)) == 2
    # One refusal per pass, a quota_wait apart: a timed wait, not a busy loop.
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(attempts) == 5  # 3 refused (1 in the worker, 2 in the trigger) + 2 copies
    assert min(gaps[:2]) >= 0.9


def test_the_deadline_rules_out_by_name_what_never_got_a_slot(estate, ctx, tmp_path):
    plan_path = write_plan(tmp_path, waits=FAST)

    def slots_taken(call):
        if call.service == "ec2" and call.action == "CopySnapshot":
            raise realism.AWSError(
                "ResourceLimitExceeded", "Too many snapshot copies in progress. The limit is 20."
            )

    inject("test-slots-taken-forever", slots_taken)
    operator = copy_op(snapshot(ctx, plan_path), plan_path)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(ctx)
    loop = dict(deferred.value.trigger.loop, deadline=time.time() + 2)
    event = run_trigger(DrCopyTrigger(loop=loop))
    assert event["status"] == "deadline"
    copied = by_source(operator.resume(ctx, event))
    ebs = [p for p in copied.values() if p["kind"] == "ebs"]
    assert ebs and all("copy deadline" in p["not_protected"] for p in ebs)
    assert copied["orders-db"]["dr_snapshot_id"] and copied["orders-db"]["not_protected"] is None


def test_a_restarted_triggerer_reuses_the_copies_already_started(estate, plan, ctx, tmp_path):
    add_volumes(estate, plan, 3)
    plan_path = write_plan(tmp_path, waits=dict(FAST, max_copies_in_flight=2))
    realism.configure("timing", copy_seconds=1)
    points = ebs_points(ctx, plan_path)
    operator = copy_op(points, plan_path)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(ctx)
    kwargs = deferred.value.trigger.serialize()[1]
    first = run_trigger(DrCopyTrigger(**kwargs))
    assert len(dr_copies(DR)) == 5
    # The triggerer died before its event was stored: the trigger runs again from its kwargs.
    again = run_trigger(DrCopyTrigger(**kwargs))
    assert len(dr_copies(DR)) == 5
    ids = lambda event: {k: v["dr_snapshot_id"] for k, v in event["results"].items()}  # noqa: E731
    assert ids(again) == ids(first)


def test_a_copy_describes_do_not_show_yet_is_waited_for_not_copied_again(estate, ctx, tmp_path):
    plan_path = write_plan(tmp_path, waits=dict(FAST, max_copies_in_flight=1))
    realism.configure("consistency", seconds=3)  # new snapshots missing from describes for 3 s
    points = ebs_points(ctx, plan_path)
    operator = copy_op(points, plan_path)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(ctx)
    assert len(dr_copies_all()) == 1
    event = run_trigger(deferred.value.trigger)
    assert event["status"] == "done"
    done = operator.resume(ctx, event)
    assert all(p["not_protected"] is None for p in done)
    assert len(dr_copies_all()) == 2  # not "failed: not found", and no duplicate


def dr_copies_all() -> list[dict]:
    """SecureDR's DR copies as the sandbox holds them (describes may not show them yet)."""
    from tests.operators.helpers import ec2_backend

    snapshots = ec2_backend(DR).snapshots.values()
    return [s for s in snapshots if (s.description or "").startswith("SecureDR DR copy")]


def test_rds_refused_for_its_own_limit_waits_while_ebs_goes_on(estate, ctx, tmp_path):
    plan_path = write_plan(tmp_path, waits=FAST)
    refusals = {"left": 2}

    def rds_slots_taken(call):
        if call.service == "rds" and call.action == "CopyDBSnapshot" and refusals["left"]:
            refusals["left"] -= 1
            raise realism.AWSError("SnapshotQuotaExceeded", CONCURRENT_COPY_MESSAGE)

    inject("test-rds-slots", rds_slots_taken)
    operator = copy_op(snapshot(ctx, plan_path), plan_path)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(ctx)
    assert len(dr_copies(DR)) == 2  # EBS copies started despite the RDS limit
    copied = by_source(operator.resume(ctx, run_trigger(deferred.value.trigger)))
    assert copied["orders-db"]["dr_snapshot_id"] and copied["orders-db"]["not_protected"] is None
    rds = boto3.client("rds", region_name=DR).describe_db_snapshots(SnapshotType="manual")
    assert len(rds["DBSnapshots"]) == 1
