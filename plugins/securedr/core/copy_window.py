"""Will tonight's DR copies land in time? The nightly copy window estimated against the RPO.

The copy step never runs more than a fixed number of copies at once per destination Region
(the *slots*), so ``n`` resources of a kind need ``ceil(n / slots)`` waves, each as long as the
copies of recent nights took:

    window(kind, Region) = ceil(resources / slots) x copy time(kind)
    shared(Region)       = ceil(all resources / waits.max_copies_in_flight) x their mean copy
                           time (the copy step never runs more than that many of one run's
                           copies at once, EBS and RDS together)
    window               = max over kinds, the shared figure and DR Regions (EBS and RDS
                           copies run side by side, and every destination Region has its own
                           limits)

Slots: EBS ``min(waits.max_copies_in_flight, 20)`` - "There is a limit of 20 concurrent snapshot
copy requests per destination Region" (https://docs.aws.amazon.com/ebs/latest/userguide/ebs-copy-snapshot.html);
RDS ``min(waits.max_copies_in_flight, rds.concurrent_copy_quota)`` - "You can have up to 20
snapshot copy requests in progress to a single destination Region per account" (RDS User Guide,
Copying a DB snapshot, Limitations: https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_CopySnapshot.html;
older accounts and older versions of the guide say five, hence the plan setting).

The rule (what "fits" means). A DR copy becomes usable when its night's copy has been verified;
until then the newest usable one is the previous night's. So just before tonight's copies land,
the newest recovery point in the DR Region is ``interval + snapshot time + copy window`` old
(interval: 24 h between nightly runs). The window fits when

    window <= HEADROOM x (targets.rpo_hours - interval - snapshot time)

with ``HEADROOM`` = 0.8, so a night 25 % slower than usual (a bigger change set, a busy AWS
Region) still meets the RPO. The snapshot time is measured the same way as the copy time.

Copy time, from the signed manifests of recent nights only (tags could be forged by anybody
allowed to tag; manifests only by the signing key's holder). Per night and kind the sample is
``verified_at - dr_created_at`` of the *latest-started* verified copy: ``dr_created_at`` is the
copy's start as AWS reports it (EBS ``StartTime``, RDS ``SnapshotCreateTime``) and
``verified_at`` is when verification checked it, after every copy had completed. The
latest-started copy began when the last slot was taken, so no copy queued behind it: from its
start to verification is one wave. (Every copy's own ``verified_at - dr_created_at`` would
count the waves that came after it too: on a two-wave night the first wave would look twice
as slow.) The copy time used is the **median** over the nights: one night whose
verification ran hours late (a retried task, a paused DAG) must not raise the alarm for a week,
and the slowest night is reported next to it. The sample is an upper bound of a wave: it
includes waiting for the slower kind and the sensor's polling. The snapshot time per night is
``earliest dr_created_at - earliest created_at`` (the copy step starts once every recovery point
is complete), also as a median.

With no usable history the estimate says so (``fits`` is None) and passes nothing silently.
Pure: the caller reads and verifies the manifests.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "EBS_COPY_LIMIT",
    "HEADROOM",
    "NIGHTLY_INTERVAL_HOURS",
    "RDS_COPY_LIMIT",
    "CopyHistory",
    "CopyWindow",
    "KindWindow",
    "copy_history",
    "copy_slots",
    "estimate_copy_window",
]

#: AWS: concurrent EBS snapshot copies per destination Region (not adjustable).
EBS_COPY_LIMIT = 20
#: AWS today: RDS snapshot copy requests in progress per destination Region and account.
RDS_COPY_LIMIT = 20
#: Hours between two nightly runs (``dr_nightly_backup`` runs daily at 02:00 UTC).
NIGHTLY_INTERVAL_HOURS = 24.0
#: The estimated window must fit in this share of the time the RPO leaves for copying.
HEADROOM = 0.8
#: A "copy" longer than this was not copied that night (a copy reused from an earlier run).
_MAX_SAMPLE = timedelta(days=7)
KINDS = ("ebs", "rds")


@dataclass(frozen=True)
class CopyHistory:
    """Durations seen in recent nights, in seconds: per kind one wave time per night, and the
    snapshot phase per night. ``nights``: signed manifests read."""

    copy_seconds: Mapping[str, list[float]] = field(default_factory=dict)
    snapshot_seconds: list[float] = field(default_factory=list)
    nights: int = 0


@dataclass(frozen=True)
class KindWindow:
    """One kind in one DR Region: ``waves`` x ``copy_hours`` = ``window_hours``."""

    kind: str
    region: str
    resources: int
    slots: int
    waves: int
    copy_hours: float | None  # median over ``nights``; None = no history
    slowest_hours: float | None
    nights: int
    window_hours: float | None


@dataclass(frozen=True)
class CopyWindow:
    """The estimate. ``fits``: True / False, or None when it cannot be said (no history)."""

    fits: bool | None
    window_hours: float | None
    budget_hours: float | None  # HEADROOM x (rpo - interval - snapshot time)
    rpo_hours: float
    interval_hours: float
    snapshot_hours: float | None
    nights: int
    kinds: tuple[KindWindow, ...]
    message: str
    advice: tuple[str, ...] = ()
    #: EBS and RDS copies together over the run's ``waits.max_copies_in_flight`` slots.
    shared_hours: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kinds"] = [asdict(k) for k in self.kinds]
        data["advice"] = list(self.advice)
        return data


def copy_slots(max_copies_in_flight: int, rds_copy_quota: int = RDS_COPY_LIMIT) -> dict[str, int]:
    """Copies that can run at once per destination Region, per kind (see the module docstring)."""
    return {
        "ebs": max(1, min(max_copies_in_flight, EBS_COPY_LIMIT)),
        "rds": max(1, min(max_copies_in_flight, rds_copy_quota)),
    }


def _utc(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else None


def copy_history(
    manifests: Iterable[tuple[str, Mapping[str, Any]]], *, skip_run_id: str | None = None
) -> CopyHistory:
    """Per-night samples from verified manifest payloads (see the module docstring).

    Only verified points with both AWS's copy start (``dr_created_at``) and a verification time
    count; a sample below zero (clocks) or above seven days (a copy reused from an earlier
    night) is left out. ``skip_run_id``'s manifest (tonight's) is left out.
    """
    copies: dict[str, list[float]] = {k: [] for k in KINDS}
    snapshots: list[float] = []
    nights = 0
    for _key, payload in manifests:
        if skip_run_id is not None and payload.get("run_id") == skip_run_id:
            continue
        nights += 1
        latest: dict[str, tuple[datetime, datetime]] = {}
        first_copy: datetime | None = None
        first_point: datetime | None = None
        for p in payload.get("recovery_points") or []:
            started, checked = _utc(p.get("dr_created_at")), _utc(p.get("verified_at"))
            if not p.get("verified") or started is None or checked is None:
                continue
            if not timedelta(0) <= checked - started <= _MAX_SAMPLE:
                continue
            kind = str(p.get("kind"))
            if kind in copies and (kind not in latest or started > latest[kind][0]):
                latest[kind] = (started, checked)
            first_copy = started if first_copy is None else min(first_copy, started)
            taken = _utc(p.get("created_at"))
            if taken is not None and taken <= started:
                first_point = taken if first_point is None else min(first_point, taken)
        for kind, (started, checked) in latest.items():
            copies[kind].append((checked - started).total_seconds())
        if first_copy is not None and first_point is not None:
            snapshots.append((first_copy - first_point).total_seconds())
    return CopyHistory(copy_seconds=copies, snapshot_seconds=snapshots, nights=nights)


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 2)


def _show(hours: float) -> str:
    return f"{hours * 60:.0f} min" if hours < 2 else f"{hours:.1f} h"


def estimate_copy_window(
    resources: Mapping[str, Mapping[str, int]],
    *,
    max_copies_in_flight: int,
    rds_copy_quota: int = RDS_COPY_LIMIT,
    history: CopyHistory,
    rpo_hours: float,
    interval_hours: float = NIGHTLY_INTERVAL_HOURS,
) -> CopyWindow:
    """Estimate tonight's copy window and compare it with the RPO target.

    ``resources``: DR Region -> kind -> resources to copy there; ``max_copies_in_flight``
    (``waits.``) and ``rds_copy_quota`` (``rds.concurrent_copy_quota``) give the slots
    (:func:`copy_slots`); ``history``: :func:`copy_history` of the last nights. The message
    names the numbers and, when the window does not fit, what to do.
    """
    slots = copy_slots(max_copies_in_flight, rds_copy_quota)
    limits = {"ebs": EBS_COPY_LIMIT, "rds": rds_copy_quota}
    windows: list[KindWindow] = []
    for region in sorted(resources):
        for kind in KINDS:
            count = int(resources[region].get(kind, 0))
            if count <= 0:
                continue
            samples = list(history.copy_seconds.get(kind) or [])
            kind_slots = max(1, int(slots[kind]))
            waves = math.ceil(count / kind_slots)
            copy = _hours(statistics.median(samples)) if samples else None
            windows.append(
                KindWindow(
                    kind=kind,
                    region=region,
                    resources=count,
                    slots=kind_slots,
                    waves=waves,
                    copy_hours=copy,
                    slowest_hours=_hours(max(samples)) if samples else None,
                    nights=len(samples),
                    window_hours=None if copy is None else round(waves * copy, 2),
                )
            )
    snapshot = (
        _hours(statistics.median(history.snapshot_seconds)) if history.snapshot_seconds else None
    )
    room = rpo_hours - interval_hours - (snapshot or 0.0)
    budget = round(HEADROOM * room, 2) if room > 0 else 0.0
    known = [w for w in windows if w.window_hours is not None]
    unknown = [w for w in windows if w.window_hours is None]
    window = max((w.window_hours or 0.0 for w in known), default=None)
    # The copy step caps the run's copies of both kinds together at max_copies_in_flight, so
    # all of them also take ceil(all / max_copies_in_flight) waves of their mean copy time.
    shared: float | None = None
    for region in sorted({w.region for w in known}):
        here = [w for w in known if w.region == region]
        count = sum(w.resources for w in here)
        mean = sum(w.resources * (w.copy_hours or 0.0) for w in here) / count
        waves = math.ceil(count / max(1, max_copies_in_flight))
        shared = max(shared or 0.0, round(waves * mean, 2))
    shared_sets_it = window is not None and shared is not None and shared > window
    if shared_sets_it:
        window = shared
    common = dict(
        shared_hours=shared,
        rpo_hours=rpo_hours,
        interval_hours=interval_hours,
        snapshot_hours=snapshot,
        nights=history.nights,
        kinds=tuple(windows),
    )
    if not windows:
        return CopyWindow(
            fits=True,
            window_hours=0.0,
            budget_hours=budget,
            message="copy window: nothing to copy tonight",
            **common,
        )
    missing = ", ".join(f"{w.kind} ({w.resources} in {w.region})" for w in unknown)
    if window is None:
        why = (
            "no signed manifest of a recent night"
            if not history.nights
            else f"no verified copy of that kind in the signed manifests of the last "
            f"{history.nights} night(s)"
        )
        return CopyWindow(
            fits=None,
            window_hours=None,
            budget_hours=budget,
            message=f"copy window not estimated: {why} to learn copy times from, for {missing}. "
            "No estimate is made until a night has been verified and signed",
            **common,
        )
    worst = max(known, key=lambda w: w.window_hours or 0.0)
    figures = "; ".join(
        f"{w.kind} into {w.region}: {w.resources} resource(s) / {w.slots} slot(s) = "
        f"{w.waves} wave(s) x {_show(w.copy_hours or 0.0)} (median of {w.nights} night(s), "
        f"slowest {_show(w.slowest_hours or 0.0)}) = {_show(w.window_hours or 0.0)}"
        for w in windows
        if w.window_hours is not None
    )
    if shared_sets_it:
        figures += (
            f"; EBS and RDS copies together share the run's {max_copies_in_flight} slot(s) "
            f"(waits.max_copies_in_flight): "
            + f"{sum(w.resources for w in known)} copies / {max_copies_in_flight} slot(s) = "
            f"{math.ceil(sum(w.resources for w in known) / max_copies_in_flight)} wave(s) of "
            f"their mean copy time = {_show(shared or 0.0)}"
        )
    rule = (
        f"the RPO target of {rpo_hours:g} h leaves {_show(max(room, 0.0))} for copying after "
        f"{interval_hours:g} h between nightly runs and "
        + (
            f"{_show(snapshot)} of snapshots (median)"
            if snapshot is not None
            else "the snapshots (their time unknown, counted as 0)"
        )
        + f", {_show(budget)} with {100 - HEADROOM * 100:.0f} % headroom"
    )
    fits = window <= budget and room > 0
    if not fits:
        advice = _advice(
            worst, limits, max_copies_in_flight, rpo_hours, window, room, snapshot, shared_sets_it
        )
        message = (
            f"the nightly copy window does NOT fit the RPO: about {_show(window)} of copies "
            f"({figures}), but {rule}. Copies of tonight would land too late to meet "
            f"targets.rpo_hours. What to do: {'; '.join(advice)}"
        )
        return CopyWindow(
            fits=False,
            window_hours=window,
            budget_hours=budget,
            message=message,
            advice=tuple(advice),
            **common,
        )
    message = f"copy window about {_show(window)} ({figures}); fits: {rule}"
    if unknown:
        message += f". Not estimated (no history yet): {missing}"
    return CopyWindow(
        fits=None if unknown else True,
        window_hours=window,
        budget_hours=budget,
        message=message,
        **common,
    )


def _advice(
    worst: KindWindow,
    limits: Mapping[str, int],
    max_copies_in_flight: int,
    rpo_hours: float,
    window: float,
    room: float,
    snapshot: float | None,
    shared: bool = False,
) -> list[str]:
    """What would make the window fit, most effective first, for what sets it: one kind's
    slots, or (``shared``) the run's slots both kinds share."""
    advice: list[str] = []
    if room <= 0:
        advice.append(
            f"a nightly run cannot meet an RPO of {rpo_hours:g} h: runs are "
            f"{NIGHTLY_INTERVAL_HOURS:g} h apart, before any snapshot or copy time"
        )
    aws_limit = limits[worst.kind]
    if shared and max_copies_in_flight < EBS_COPY_LIMIT:
        advice.append(
            f"raise waits.max_copies_in_flight from {max_copies_in_flight} to {EBS_COPY_LIMIT}: "
            "EBS and RDS copies share these slots"
        )
    elif not shared and max_copies_in_flight < aws_limit:
        better = math.ceil(worst.resources / aws_limit) * (worst.copy_hours or 0.0)
        advice.append(
            f"raise waits.max_copies_in_flight from {max_copies_in_flight} to {aws_limit} "
            f"(AWS's {worst.kind} limit): the {worst.kind} window becomes about {_show(better)}"
        )
    if worst.kind == "rds" and not shared:
        advice.append(
            "ask AWS Support for more concurrent cross-Region DB snapshot copies into "
            f"{worst.region} (now {aws_limit}) and set rds.concurrent_copy_quota to what they "
            "grant"
        )
    advice.append(
        "split the protected resources over plans that copy into different DR Regions or "
        "accounts (the copy limits are per destination Region and account)"
    )
    needed = NIGHTLY_INTERVAL_HOURS + (snapshot or 0.0) + window / HEADROOM
    advice.append(
        f"or, if the business accepts it, raise targets.rpo_hours from {rpo_hours:g} to at "
        f"least {math.ceil(needed)}"
    )
    return advice
