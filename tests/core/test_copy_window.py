"""The nightly copy window, estimated from signed history, against the RPO target."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from securedr.core.copy_window import (
    HEADROOM,
    CopyHistory,
    copy_history,
    copy_slots,
    estimate_copy_window,
)

NIGHT = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
H = 3600.0


def _point(kind: str, *, taken: float, started: float, checked: float, verified=True) -> dict:
    """A manifest point; times in hours after the night's start."""
    return {
        "kind": kind,
        "created_at": (NIGHT + timedelta(hours=taken)).isoformat(),
        "dr_created_at": (NIGHT + timedelta(hours=started)).isoformat(),
        "verified_at": (NIGHT + timedelta(hours=checked)).isoformat(),
        "verified": verified,
    }


def _history(ebs: list[float] = (), rds: list[float] = (), snapshot: list[float] = ()):
    """Per-night samples in hours."""
    return CopyHistory(
        copy_seconds={"ebs": [h * H for h in ebs], "rds": [h * H for h in rds]},
        snapshot_seconds=[h * H for h in snapshot],
        nights=max(len(ebs), len(rds), len(snapshot)),
    )


def test_slots_are_capped_by_the_plan_and_by_aws():
    assert copy_slots(20) == {"ebs": 20, "rds": 20}
    assert copy_slots(8) == {"ebs": 8, "rds": 8}
    assert copy_slots(20, 5) == {"ebs": 20, "rds": 5}


def test_a_window_that_fits_names_its_figures():
    # 30 volumes / 20 slots = 2 waves x 30 min = 1 h; RPO 26 h - 24 h - 0.1 h = 1.9 h x 0.8
    result = estimate_copy_window(
        {"us-west-2": {"ebs": 30, "rds": 3}},
        max_copies_in_flight=20,
        history=_history(ebs=[0.5, 0.4, 0.6], rds=[0.25, 0.25, 0.3], snapshot=[0.1] * 3),
        rpo_hours=26,
    )
    assert result.fits is True
    assert result.window_hours == 1.0
    assert result.budget_hours == pytest.approx(HEADROOM * 1.9, abs=0.01)
    ebs = next(k for k in result.kinds if k.kind == "ebs")
    assert (ebs.waves, ebs.copy_hours, ebs.slowest_hours, ebs.nights) == (2, 0.5, 0.6, 3)
    assert "2 wave(s) x 30 min" in result.message and "fits" in result.message
    assert result.advice == ()


def test_a_window_that_does_not_fit_warns_with_what_to_do():
    # 100 volumes / 10 slots = 10 waves x 1 h = 10 h, far beyond the 2 h an RPO of 26 h leaves.
    result = estimate_copy_window(
        {"us-west-2": {"ebs": 100}},
        max_copies_in_flight=10,
        history=_history(ebs=[1.0, 1.0, 1.2]),
        rpo_hours=26,
    )
    assert result.fits is False
    assert result.window_hours == 10.0
    assert "does NOT fit" in result.message and "10 wave(s) x 60 min" in result.message
    assert "RPO target of 26 h" in result.message
    raise_it = next(a for a in result.advice if "waits.max_copies_in_flight" in a)
    assert "from 10 to 20" in raise_it and "about 5.0 h" in raise_it
    assert any("targets.rpo_hours" in a for a in result.advice)
    assert any("different DR Regions or accounts" in a for a in result.advice)


def test_no_history_makes_no_estimate_and_says_so():
    result = estimate_copy_window(
        {"us-west-2": {"ebs": 3, "rds": 2}},
        max_copies_in_flight=20,
        history=CopyHistory(),
        rpo_hours=26,
    )
    assert result.fits is None and result.window_hours is None
    assert "not estimated" in result.message and "no signed manifest" in result.message
    assert all(k.copy_hours is None for k in result.kinds)


def test_a_kind_without_history_leaves_the_verdict_open_unless_the_others_already_fail():
    open_ = estimate_copy_window(
        {"us-west-2": {"ebs": 3, "rds": 2}},
        max_copies_in_flight=20,
        history=_history(ebs=[0.2]),
        rpo_hours=26,
    )
    assert open_.fits is None and "Not estimated (no history yet): rds" in open_.message
    failing = estimate_copy_window(
        {"us-west-2": {"ebs": 3, "rds": 2}},
        max_copies_in_flight=20,
        history=_history(ebs=[5.0]),
        rpo_hours=26,
    )
    assert failing.fits is False


def test_the_rds_limit_dominates_when_databases_outnumber_its_slots():
    # EBS: 20 volumes, 1 wave x 30 min. RDS: 12 databases / 5 slots = 3 waves x 40 min = 2 h.
    result = estimate_copy_window(
        {"us-west-2": {"ebs": 20, "rds": 12}},
        max_copies_in_flight=20,
        rds_copy_quota=5,
        history=_history(ebs=[0.5], rds=[40 / 60]),
        rpo_hours=26,
    )
    rds = next(k for k in result.kinds if k.kind == "rds")
    assert (rds.slots, rds.waves) == (5, 3)
    assert result.window_hours == pytest.approx(2.0, abs=0.02)
    assert result.fits is False
    assert any("rds.concurrent_copy_quota" in a and "now 5" in a for a in result.advice)
    assert not any("waits.max_copies_in_flight" in a for a in result.advice)
    # With AWS's limit of today (20) the same estate fits.
    assert (
        estimate_copy_window(
            {"us-west-2": {"ebs": 20, "rds": 12}},
            max_copies_in_flight=20,
            history=_history(ebs=[0.5], rds=[40 / 60]),
            rpo_hours=26,
        ).fits
        is True
    )


def test_an_rpo_a_nightly_run_cannot_meet_is_named():
    result = estimate_copy_window(
        {"us-west-2": {"ebs": 1}},
        max_copies_in_flight=20,
        history=_history(ebs=[0.1]),
        rpo_hours=12,
    )
    assert result.fits is False
    assert "cannot meet an RPO of 12 h" in result.advice[0]


def test_the_median_night_counts_not_one_late_verification():
    result = estimate_copy_window(
        {"us-west-2": {"ebs": 5}},
        max_copies_in_flight=20,
        history=_history(ebs=[0.5, 0.5, 9.0]),  # one night verified hours late
        rpo_hours=26,
    )
    assert result.fits is True and result.kinds[0].slowest_hours == 9.0


def test_nothing_to_copy_fits():
    result = estimate_copy_window(
        {"us-west-2": {}}, max_copies_in_flight=20, history=CopyHistory(), rpo_hours=26
    )
    assert result.fits is True and result.window_hours == 0.0


def test_history_takes_the_latest_started_copy_of_each_night_as_one_wave():
    # Two waves of EBS copies: the first wave's copies waited for the second to be verified.
    night = {
        "run_id": "n1",
        "recovery_points": [
            _point("ebs", taken=0, started=0.5, checked=2.5),
            _point("ebs", taken=0, started=0.5, checked=2.5),
            _point("ebs", taken=0.1, started=1.5, checked=2.5),  # the second wave: 1 h
            _point("rds", taken=0.2, started=0.6, checked=2.5),
            _point("ebs", taken=0, started=2.0, checked=2.5, verified=False),  # not counted
        ],
    }
    history = copy_history([("k1", night)])
    assert history.copy_seconds["ebs"] == [1.0 * H]
    assert history.copy_seconds["rds"] == [pytest.approx(1.9 * H)]
    assert history.snapshot_seconds == [0.5 * H]  # first copy start - first point taken
    assert history.nights == 1


def test_history_skips_tonight_and_copies_reused_from_earlier_nights():
    tonight = {"run_id": "t", "recovery_points": [_point("ebs", taken=0, started=1, checked=2)]}
    reused = {
        "run_id": "n2",
        "recovery_points": [_point("ebs", taken=-240, started=-240, checked=2)],  # 10 days
    }
    history = copy_history([("k1", tonight), ("k2", reused)], skip_run_id="t")
    assert history.nights == 1 and history.copy_seconds["ebs"] == []


def test_ebs_and_rds_copies_share_the_runs_slots():
    # One wave of each kind (1 h) would fit, but the copy step runs at most 20 copies of the
    # run at once, EBS and RDS together: 40 one-hour copies over 20 slots take 2 h.
    result = estimate_copy_window(
        {"us-west-2": {"ebs": 20, "rds": 20}},
        max_copies_in_flight=20,
        history=_history(ebs=[1.0], rds=[1.0]),
        rpo_hours=26,
    )
    assert [k.window_hours for k in result.kinds] == [1.0, 1.0]
    assert result.shared_hours == 2.0 and result.window_hours == 2.0
    assert result.fits is False
    assert "share the run's 20 slot(s)" in result.message
    assert not any("rds.concurrent_copy_quota" in a for a in result.advice)
    # Fewer databases: 18 + 2 copies are one wave again.
    small = estimate_copy_window(
        {"us-west-2": {"ebs": 18, "rds": 2}},
        max_copies_in_flight=20,
        history=_history(ebs=[1.0], rds=[1.0]),
        rpo_hours=26,
    )
    assert small.shared_hours == 1.0 and small.window_hours == 1.0 and small.fits is True
