"""Tests for securedr.core.retention: rules, clock defences, rendering and invariants."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securedr.core.retention import (
    Copy,
    Decision,
    RetentionPlan,
    RetentionPolicy,
    plan_retention,
    render_plan,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
POLICY = RetentionPolicy(keep_days=14, min_copies=3)


def mk(
    copy_id: str,
    age: float | timedelta,
    *,
    verified: bool = True,
    managed: bool = True,
    locked: bool = False,
    source: str = "vol-1",
    location: str = "dr",
    kind: str = "ebs",
) -> Copy:
    delta = age if isinstance(age, timedelta) else timedelta(days=age)
    return Copy(
        copy_id=copy_id,
        source_id=source,
        kind=kind,
        location=location,
        created_at=NOW - delta,
        verified=verified,
        managed=managed,
        locked=locked,
    )


def actions(plan: RetentionPlan) -> dict[str, str]:
    return {d.copy.copy_id: d.action for d in plan.decisions}


def reasons(plan: RetentionPlan) -> dict[str, str]:
    return {d.copy.copy_id: d.reason for d in plan.decisions}


# --------------------------------------------------------------------------- rules


def test_typical_plan_keeps_recent_and_minimum_and_deletes_the_rest() -> None:
    copies = [mk(f"snap-{d:02d}", d) for d in (1, 5, 10, 16, 20, 30)]
    plan = plan_retention(copies, POLICY, now=NOW)
    assert plan.refused is None
    assert actions(plan) == {
        "snap-01": "keep",
        "snap-05": "keep",
        "snap-10": "keep",
        "snap-16": "delete",
        "snap-20": "delete",
        "snap-30": "delete",
    }
    assert reasons(plan) == {
        "snap-01": "newest verified copy of vol-1 (always kept)",
        "snap-05": "within 14 days (5 days old)",
        "snap-10": "within 14 days (10 days old)",
        "snap-16": "expired: 16 days old > 14 days",
        "snap-20": "expired: 20 days old > 14 days",
        "snap-30": "expired: 30 days old > 14 days",
    }
    assert [c.copy_id for c in plan.to_delete] == ["snap-16", "snap-20", "snap-30"]
    assert [c.copy_id for c in plan.to_keep] == ["snap-01", "snap-05", "snap-10"]


def test_keep_days_boundary_is_inclusive() -> None:
    policy = RetentionPolicy(keep_days=14, min_copies=1)
    copies = [
        mk("new", 1),
        mk("exactly", 14),
        mk("just-over", timedelta(days=14, seconds=1)),
        mk("a-hair-over", timedelta(days=14, microseconds=1)),
    ]
    plan = plan_retention(copies, policy, now=NOW)
    assert actions(plan) == {
        "new": "keep",
        "exactly": "keep",
        "just-over": "delete",
        "a-hair-over": "delete",
    }
    assert reasons(plan)["exactly"] == "within 14 days (14 days old)"
    assert reasons(plan)["just-over"] == "expired: 14 days 1 s old > 14 days"
    assert reasons(plan)["a-hair-over"] == "expired: 14 days 1e-06 s old > 14 days"


def test_all_expired_keeps_the_newest_min_copies() -> None:
    copies = [mk(f"s{d}", d) for d in (40, 50, 60, 70, 80)]
    plan = plan_retention(copies, POLICY, now=NOW)
    assert actions(plan) == {
        "s40": "keep",
        "s50": "keep",
        "s60": "keep",
        "s70": "delete",
        "s80": "delete",
    }
    assert reasons(plan)["s40"] == "newest verified copy of vol-1 (always kept)"
    assert reasons(plan)["s50"] == "kept to hold the minimum of 3 verified copies (50 days old)"


def test_newest_verified_copy_is_kept_even_with_min_copies_one() -> None:
    plan = plan_retention([mk("old", 400), mk("older", 500)], RetentionPolicy(1, 1), now=NOW)
    assert actions(plan) == {"old": "keep", "older": "delete"}


def test_all_unverified_deletes_nothing() -> None:
    copies = [mk(f"u{d}", d, verified=False) for d in (1, 30, 90)]
    plan = plan_retention(copies, POLICY, now=NOW)
    assert plan.to_delete == []
    assert set(reasons(plan).values()) == {
        "no verified copy of vol-1 in dr: retention skipped for this source"
    }


def test_min_copies_greater_than_count_keeps_every_verified_copy() -> None:
    copies = [mk("a", 100), mk("b", 200), mk("u", 300, verified=False)]
    plan = plan_retention(copies, RetentionPolicy(keep_days=7, min_copies=10), now=NOW)
    assert actions(plan) == {"a": "keep", "b": "keep", "u": "delete"}
    assert reasons(plan)["b"] == "kept to hold the minimum of 10 verified copies (200 days old)"


def test_unverified_copies_never_count_towards_the_minimum() -> None:
    copies = [
        mk("v-new", 1),
        mk("u-mid", 20, verified=False),
        mk("v-old", 30),
        mk("v-older", 40),
        mk("u-recent", 3, verified=False),
    ]
    plan = plan_retention(copies, RetentionPolicy(keep_days=14, min_copies=2), now=NOW)
    assert actions(plan) == {
        "v-new": "keep",
        "u-recent": "keep",
        "u-mid": "delete",
        "v-old": "keep",
        "v-older": "delete",
    }
    assert reasons(plan)["u-recent"] == "unverified, within 14 days (3 days old)"
    assert reasons(plan)["u-mid"] == (
        "expired unverified copy: 20 days old > 14 days (a verified copy of vol-1 is kept)"
    )


def test_newer_unverified_copy_does_not_replace_the_newest_verified_one() -> None:
    copies = [mk("u-fresh", 0.5, verified=False), mk("v-old", 60)]
    plan = plan_retention(copies, RetentionPolicy(keep_days=7, min_copies=1), now=NOW)
    assert actions(plan) == {"u-fresh": "keep", "v-old": "keep"}
    assert reasons(plan)["v-old"] == "newest verified copy of vol-1 (always kept)"
    assert reasons(plan)["u-fresh"] == "unverified, within 7 days (12 h old)"


def test_unmanaged_copies_are_never_touched_and_do_not_count() -> None:
    copies = [
        mk("theirs-new", 1, managed=False),
        mk("theirs-old", 365, managed=False),
        mk("ours-old", 60),
        mk("ours-older", 90),
    ]
    plan = plan_retention(copies, RetentionPolicy(keep_days=14, min_copies=1), now=NOW)
    assert actions(plan) == {
        "theirs-new": "keep",
        "ours-old": "keep",
        "ours-older": "delete",
        "theirs-old": "keep",
    }
    assert reasons(plan)["theirs-old"] == "not created by SecureDR: never touched"
    # Someone else's copy may vanish any time: ours stays the protected newest verified one.
    assert reasons(plan)["ours-old"] == "newest verified copy of vol-1 (always kept)"


def test_only_unmanaged_verified_copies_means_no_verified_copy() -> None:
    copies = [mk("theirs", 1, managed=False), mk("ours-unverified", 90, verified=False)]
    plan = plan_retention(copies, POLICY, now=NOW)
    assert plan.to_delete == []


def test_locked_copies_are_never_deleted() -> None:
    copies = [mk("new", 1), mk("locked-old", 300, locked=True), mk("old", 200)]
    plan = plan_retention(copies, RetentionPolicy(keep_days=14, min_copies=1), now=NOW)
    assert actions(plan) == {"new": "keep", "old": "delete", "locked-old": "keep"}
    assert reasons(plan)["locked-old"] == "locked (snapshot lock or legal hold): never deleted"


def test_locations_and_sources_are_planned_independently() -> None:
    copies = [
        mk("dr-new", 1),
        mk("dr-old", 100),
        mk("src-old", 100, location="source"),
        mk("db-old", 100, source="db-1", kind="rds"),
        mk("db-unverified", 200, source="db-1", kind="rds", verified=False),
    ]
    plan = plan_retention(copies, RetentionPolicy(keep_days=14, min_copies=1), now=NOW)
    assert actions(plan) == {
        "db-old": "keep",
        "db-unverified": "delete",
        "dr-new": "keep",
        "dr-old": "delete",
        "src-old": "keep",
    }
    # Order: by source, then location, then newest first.
    assert [d.copy.copy_id for d in plan.decisions] == [
        "db-old",
        "db-unverified",
        "dr-new",
        "dr-old",
        "src-old",
    ]


def test_equal_timestamps_are_ordered_by_copy_id() -> None:
    copies = [mk("b", 30), mk("a", 30), mk("c", 30)]
    plan = plan_retention(copies, RetentionPolicy(keep_days=14, min_copies=1), now=NOW)
    assert [d.copy.copy_id for d in plan.decisions] == ["a", "b", "c"]
    assert actions(plan) == {"a": "keep", "b": "delete", "c": "delete"}


def test_empty_input_gives_an_empty_plan() -> None:
    plan = plan_retention([], POLICY, now=NOW, trusted_time=NOW)
    assert plan == RetentionPlan(decisions=[], refused=None)
    assert render_plan(plan).endswith("(no copies)")


# --------------------------------------------------------------------------- clock defences


def test_local_clock_ahead_of_aws_time_refuses_the_plan() -> None:
    copies = [mk("new", 1), mk("old", 100)]
    # A forged clock 30 days ahead would make "new" look 31 days old.
    forged_now = NOW + timedelta(days=30)
    plan = plan_retention(copies, RetentionPolicy(14, 1), now=forged_now, trusted_time=NOW)
    assert plan.refused is not None
    assert "is 30 days ahead of the time attested by AWS" in plan.refused
    assert plan.to_delete == []
    assert all(d.action == "keep" for d in plan.decisions)
    assert {d.reason for d in plan.decisions} == {"kept: plan refused (clock check failed)"}
    assert render_plan(plan).startswith("Retention plan REFUSED, nothing will be deleted: ")


def test_clock_skew_boundary() -> None:
    copies = [mk("new", 1), mk("old", 100)]
    policy = RetentionPolicy(14, 1)
    skew = timedelta(minutes=5)
    at_limit = plan_retention(copies, policy, now=NOW, trusted_time=NOW - skew, max_clock_skew=skew)
    assert at_limit.refused is None
    assert [c.copy_id for c in at_limit.to_delete] == ["old"]
    over = plan_retention(
        copies,
        policy,
        now=NOW,
        trusted_time=NOW - skew - timedelta(seconds=1),
        max_clock_skew=skew,
    )
    assert over.refused is not None and over.to_delete == []


def test_local_clock_far_behind_aws_time_refuses() -> None:
    plan = plan_retention([mk("a", 1)], POLICY, now=NOW, trusted_time=NOW + timedelta(hours=3))
    assert plan.refused is not None and "behind the time attested by AWS" in plan.refused


def test_copy_from_the_future_refuses_the_plan() -> None:
    copies = [mk("old", 100), mk("old2", 200), mk("future", -timedelta(days=2))]
    plan = plan_retention(copies, RetentionPolicy(14, 1), now=NOW)
    assert plan.refused is not None
    assert plan.refused.startswith("copy future of vol-1 was created at 2025-03-03T12:00:00+00:00")
    assert "the local clock is behind or the timestamp is forged" in plan.refused
    assert plan.to_delete == []
    assert len(plan.to_keep) == 3


def test_copy_slightly_in_the_future_within_skew_is_accepted() -> None:
    copies = [mk("fresh", -timedelta(minutes=10)), mk("old", 100)]
    plan = plan_retention(copies, RetentionPolicy(14, 1), now=NOW)
    assert plan.refused is None
    assert reasons(plan)["fresh"] == "newest verified copy of vol-1 (always kept)"
    assert actions(plan) == {"fresh": "keep", "old": "delete"}


def test_unmanaged_copy_from_the_future_also_refuses() -> None:
    copies = [mk("theirs", -timedelta(days=1), managed=False), mk("a", 1), mk("b", 100)]
    assert plan_retention(copies, RetentionPolicy(14, 1), now=NOW).refused is not None


# --------------------------------------------------------------------------- validation


def test_naive_datetimes_are_rejected() -> None:
    naive = datetime(2025, 3, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        Copy("x", "vol-1", "ebs", "dr", naive, verified=True, managed=True)
    with pytest.raises(ValueError, match="now must be a timezone-aware"):
        plan_retention([], POLICY, now=naive)
    with pytest.raises(ValueError, match="trusted_time must be"):
        plan_retention([], POLICY, now=NOW, trusted_time=naive)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keep_days": 0, "min_copies": 1}, "keep_days must be an integer >= 1"),
        ({"keep_days": 7, "min_copies": 0}, "min_copies must be an integer >= 1"),
        ({"keep_days": True, "min_copies": 1}, "keep_days"),
        ({"keep_days": 7.5, "min_copies": 1}, "keep_days"),
    ],
)
def test_policy_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetentionPolicy(**kwargs)


def test_copy_validation() -> None:
    with pytest.raises(ValueError, match="kind 'ami'"):
        mk("x", 1, kind="ami")
    with pytest.raises(ValueError, match="location 'elsewhere'"):
        mk("x", 1, location="elsewhere")


def test_duplicate_copies_are_rejected() -> None:
    # Counted twice, one copy could satisfy the minimum on its own and let another go.
    with pytest.raises(ValueError, match=r"snap-1 of vol-1 \(dr\) is listed more than once"):
        plan_retention([mk("snap-1", 1), mk("snap-1", 1)], POLICY, now=NOW)
    # The same id in the two locations, or for two sources (RDS names are per Region), is
    # two different copies.
    plan = plan_retention(
        [mk("snap-1", 1), mk("snap-1", 1, location="source"), mk("snap-1", 1, source="vol-2")],
        POLICY,
        now=NOW,
    )
    assert len(plan.decisions) == 3


def test_negative_skew_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_clock_skew"):
        plan_retention([], POLICY, now=NOW, max_clock_skew=timedelta(seconds=-1))


# --------------------------------------------------------------------------- rendering


def test_render_plan_is_a_readable_table() -> None:
    plan = plan_retention(
        [mk("snap-new", 1), mk("snap-old", 100), mk("theirs", 5, managed=False)],
        RetentionPolicy(14, 1),
        now=NOW,
    )
    lines = render_plan(plan).splitlines()
    assert lines[0] == "Retention plan: 3 copies, 1 to delete, 2 to keep"
    assert lines[1].split() == [
        "ACTION",
        "SOURCE",
        "LOCATION",
        "KIND",
        "COPY",
        "CREATED",
        "VERIFIED",
        "REASON",
    ]
    assert lines[2].startswith("KEEP    vol-1   dr        ebs   snap-new")
    assert lines[3].split()[0:5] == ["KEEP", "vol-1", "dr", "ebs", "theirs"]
    assert lines[4].endswith("expired: 100 days old > 14 days")
    # Columns line up: every row has the reason at the same offset.
    offset = lines[1].index("REASON")
    assert lines[2][offset:].startswith("newest verified copy")


# --------------------------------------------------------------------------- properties

copy_strategy = st.builds(
    Copy,
    copy_id=st.text("abcdef0123456789", min_size=1, max_size=6),
    source_id=st.sampled_from(["vol-1", "vol-2", "db-1"]),
    kind=st.just("ebs"),
    location=st.sampled_from(["dr", "source"]),
    created_at=st.integers(min_value=-3600, max_value=120 * 86400).map(
        lambda s: NOW - timedelta(seconds=s)
    ),
    verified=st.booleans(),
    managed=st.sampled_from([True, True, False]),
    locked=st.sampled_from([False, False, True]),
)


def _unique(copies: list[Copy]) -> list[Copy]:
    seen: dict[tuple[str, str, str], Copy] = {}
    for c in copies:
        seen.setdefault((c.source_id, c.location, c.copy_id), c)
    return list(seen.values())


copies_strategy = st.lists(copy_strategy, max_size=25).map(_unique)
policy_strategy = st.builds(
    RetentionPolicy, keep_days=st.integers(1, 60), min_copies=st.integers(1, 6)
)


@settings(max_examples=150, deadline=None)
@given(copies_strategy, policy_strategy)
def test_retention_invariants(copies: list[Copy], policy: RetentionPolicy) -> None:
    plan = plan_retention(copies, policy, now=NOW)
    assert plan.refused is None
    assert sorted(map(repr, (d.copy for d in plan.decisions))) == sorted(map(repr, copies))
    deleted = {id(c) for c in plan.to_delete}
    for d in plan.decisions:
        assert d.action in ("keep", "delete") and d.reason
        if d.action == "delete":
            assert d.copy.managed and not d.copy.locked
            assert NOW - d.copy.created_at > timedelta(days=policy.keep_days)

    groups: dict[tuple[str, str], list[Copy]] = defaultdict(list)
    for c in copies:
        groups[(c.source_id, c.location)].append(c)
    for group in groups.values():
        verified = sorted(
            (c for c in group if c.verified and c.managed),
            key=lambda c: c.created_at,
            reverse=True,
        )
        kept_verified = [c for c in group if c.verified and id(c) not in deleted]
        all_verified = [c for c in group if c.verified]
        assert len(kept_verified) >= min(policy.min_copies, len(all_verified))
        if verified:
            newest = verified[0].created_at
            # Every copy tied for "newest verified" cannot all be deleted; the chosen one is kept.
            assert any(id(c) not in deleted for c in verified if c.created_at == newest)
        else:
            assert not any(id(c) in deleted for c in group), "no verified copy: nothing deleted"
        if any(id(c) in deleted and not c.verified for c in group):
            assert any(c.verified and c.managed and id(c) not in deleted for c in group)


@settings(max_examples=50, deadline=None)
@given(copies_strategy, policy_strategy, st.randoms())
def test_plan_does_not_depend_on_input_order(
    copies: list[Copy], policy: RetentionPolicy, rnd: random.Random
) -> None:
    shuffled = list(copies)
    rnd.shuffle(shuffled)
    assert plan_retention(shuffled, policy, now=NOW) == plan_retention(copies, policy, now=NOW)


@settings(max_examples=50, deadline=None)
@given(copies_strategy, policy_strategy, st.integers(1, 400))
def test_forged_clock_never_deletes(copies: list[Copy], policy: RetentionPolicy, days: int) -> None:
    plan = plan_retention(
        copies, policy, now=NOW + timedelta(days=days), trusted_time=NOW + timedelta(minutes=1)
    )
    assert plan.refused is not None
    assert plan.to_delete == []
    assert all(isinstance(d, Decision) and d.action == "keep" for d in plan.decisions)
