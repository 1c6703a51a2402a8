"""The copy slots model: how many copies may start, which kind waits, how long the loop sleeps."""

from __future__ import annotations

import pytest

from securedr.core.copy_slots import MIN_POLL_SECONDS, CopySlots


def slots(ebs: int = 3, rds: int = 2, limit: int = 2, wait: float = 60) -> CopySlots:
    kinds = {f"rds-{i}": "rds" for i in range(rds)} | {f"ebs-{i}": "ebs" for i in range(ebs)}
    return CopySlots(limit=limit, quota_wait_seconds=wait, kinds=kinds)


def test_never_more_than_the_limit_start_and_a_finished_copy_frees_its_slot():
    s = slots()
    assert s.startable(0) == ["rds-0", "rds-1"]
    for label in s.startable(0):
        s.started(label)
    assert s.startable(0) == [] and s.in_flight == 2
    s.finished("rds-0")
    assert s.startable(0) == ["ebs-0"]


def test_a_kind_without_a_slot_waits_while_the_other_kind_goes_on():
    s = slots(limit=4)
    s.no_slot("rds", now=100)
    assert s.startable(100) == ["ebs-0", "ebs-1", "ebs-2"]
    assert s.startable(161)[:2] == ["rds-0", "rds-1"]  # after quota_wait_seconds


def test_one_of_our_copies_of_that_kind_finishing_unblocks_it_early():
    s = slots(limit=4)
    s.started("rds-0")
    s.no_slot("rds", now=100)
    assert "rds-1" not in s.startable(101)
    s.finished("rds-0")
    assert "rds-1" in s.startable(101)


def test_with_nothing_in_flight_the_loop_sleeps_until_a_blocked_kind_may_ask_again():
    s = slots(ebs=0, rds=1)
    s.no_slot("rds", now=100)
    assert s.sleep_seconds(130, poll_seconds=30) == pytest.approx(30)
    assert s.sleep_seconds(170, poll_seconds=30) == 0


def test_with_copies_in_flight_the_loop_wakes_when_the_first_should_finish():
    s = slots()
    s.started("rds-0")
    assert s.sleep_seconds(0, poll_seconds=30) == 30  # no progress figure yet
    s.progressed("rds-0", started_at=100, now=110, percent=50)  # ends about 120
    assert s.sleep_seconds(110, poll_seconds=30) == pytest.approx(10.5)
    assert s.sleep_seconds(125, poll_seconds=30) == MIN_POLL_SECONDS  # overdue: poll soon
    s.progressed("rds-0", started_at=100, now=110, percent=0)  # 0 % says nothing
    assert s.sleep_seconds(110, poll_seconds=30) == 30
    s.finished("rds-0")
    assert s.eta == {}


def test_all_started_and_state_round_trips():
    s = slots(ebs=1, rds=1)
    s.started("rds-0")
    s.progressed("rds-0", started_at=1, now=2, percent=10)
    s.no_slot("ebs", now=5)
    again = CopySlots.from_dict(s.to_dict())
    assert again == s and not again.all_started
    again.ruled_out("ebs-0")
    assert again.all_started


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        CopySlots(limit=0, quota_wait_seconds=1, kinds={})


def test_a_kind_never_exceeds_its_own_limit_and_the_other_kind_fills_the_rest():
    s = CopySlots(
        limit=4,
        quota_wait_seconds=60,
        kinds={"rds-0": "rds", "rds-1": "rds", "rds-2": "rds", "ebs-0": "ebs", "ebs-1": "ebs"},
        kind_limits={"rds": 2},
    )
    assert s.startable(0) == ["rds-0", "rds-1", "ebs-0", "ebs-1"]
    for label in s.startable(0):
        s.started(label)
    s.finished("ebs-0")
    assert s.startable(0) == []  # a free slot, but RDS is at its own limit
    s.finished("rds-0")
    assert s.startable(0) == ["rds-2"]
