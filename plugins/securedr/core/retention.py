"""Retention planning that never loses the last good copy.

:func:`plan_retention` decides, for every backup copy it is given, whether to keep or delete
it, with a readable reason. It is pure: it deletes nothing itself and reads no clock.

Guarantees of every plan (checked by property tests):

* copies not created by SecureDR (``managed=False``) and ``locked`` copies are never deleted;
* within each ``(source_id, location)`` group, the newest verified managed copy is kept and
  at least ``min_copies`` verified managed copies are kept (or all of them if fewer exist);
* unverified copies never count towards the minimum, and are deleted only when expired while
  a verified copy of the same source is kept;
* a group with no verified managed copy is left untouched;
* only copies strictly older than ``keep_days`` are ever deleted;
* if the local clock disagrees with AWS-attested time by more than ``max_clock_skew``, or a
  copy claims to be from the future, the whole plan is refused and nothing is deleted.

Only managed copies count towards "newest verified" and the minimum: a copy someone else
created can disappear at any time without SecureDR knowing, so it must not stand in for one
of ours.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "KINDS",
    "LOCATIONS",
    "Copy",
    "Decision",
    "RetentionPlan",
    "RetentionPolicy",
    "plan_retention",
    "render_plan",
]

KINDS = frozenset({"ebs", "rds", "fileset"})
LOCATIONS = frozenset({"dr", "source"})
KEEP = "keep"
DELETE = "delete"


def _is_aware(moment: datetime) -> bool:
    return moment.tzinfo is not None and moment.utcoffset() is not None


@dataclass(frozen=True)
class Copy:
    """A backup copy (snapshot, DB snapshot, file set) as reported by AWS."""

    copy_id: str
    source_id: str
    kind: str
    location: str
    created_at: datetime
    verified: bool
    managed: bool
    locked: bool = False

    def __post_init__(self) -> None:
        if not self.copy_id or not self.source_id:
            raise ValueError("copy_id and source_id must be non-empty")
        if self.kind not in KINDS:
            raise ValueError(f"copy {self.copy_id}: kind {self.kind!r} not in {sorted(KINDS)}")
        if self.location not in LOCATIONS:
            raise ValueError(
                f"copy {self.copy_id}: location {self.location!r} not in {sorted(LOCATIONS)}"
            )
        if not isinstance(self.created_at, datetime) or not _is_aware(self.created_at):
            # A naive datetime would be compared in an unknown zone: ages off by hours.
            raise ValueError(f"copy {self.copy_id}: created_at must be a timezone-aware datetime")


@dataclass(frozen=True)
class RetentionPolicy:
    """Keep copies for ``keep_days`` days, and never fewer than ``min_copies`` verified ones."""

    keep_days: int
    min_copies: int

    def __post_init__(self) -> None:
        for name in ("keep_days", "min_copies"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class Decision:
    """What to do with one copy, and why (``action`` is ``"keep"`` or ``"delete"``)."""

    copy: Copy
    action: str
    reason: str


@dataclass(frozen=True)
class RetentionPlan:
    """Decisions for every input copy, in deterministic order.

    When ``refused`` is set, every decision is ``keep`` and :attr:`to_delete` is empty.
    """

    decisions: list[Decision]
    refused: str | None = None

    @property
    def to_delete(self) -> list[Copy]:
        if self.refused is not None:
            return []
        return [d.copy for d in self.decisions if d.action == DELETE]

    @property
    def to_keep(self) -> list[Copy]:
        if self.refused is not None:
            return [d.copy for d in self.decisions]
        return [d.copy for d in self.decisions if d.action == KEEP]


# --------------------------------------------------------------------------- helpers


def _fmt_duration(delta: timedelta) -> str:
    """'20 days', '14 days 3 h', '2 h 5 min', '0.5 s' - enough precision to see why."""
    total = max(delta, timedelta(0))
    days, rest = total.days, total - timedelta(days=total.days)
    hours, rem = divmod(rest.seconds, 3600)
    minutes, seconds = divmod(rem, 60)
    parts = []
    if days:
        parts.append(f"{days} day" + ("" if days == 1 else "s"))
    if hours:
        parts.append(f"{hours} h")
    if minutes:
        parts.append(f"{minutes} min")
    if seconds or rest.microseconds:
        secs = seconds + rest.microseconds / 1_000_000
        parts.append(f"{secs:g} s")
    return " ".join(parts) if parts else "0 s"


def _fmt_days(days: int) -> str:
    return f"{days} day" + ("" if days == 1 else "s")


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _sort_key(copy: Copy) -> tuple[str, str, timedelta, str]:
    # Newest first via a negated timedelta (exact, unlike float timestamps, so copies a
    # microsecond apart keep their order); copy_id breaks ties deterministically.
    return (copy.source_id, copy.location, -(copy.created_at - _EPOCH), copy.copy_id)


def _clock_problem(
    copies: list[Copy],
    now: datetime,
    trusted_time: datetime | None,
    skew: timedelta,
) -> str | None:
    if trusted_time is not None:
        if not _is_aware(trusted_time):
            raise ValueError("trusted_time must be a timezone-aware datetime")
        if now - trusted_time > skew:
            # A clock that runs ahead makes every copy look older than it is, which is
            # exactly how a forged clock would trick retention into deleting good copies.
            return (
                f"the local clock ({_iso(now)}) is {_fmt_duration(now - trusted_time)} ahead "
                f"of the time attested by AWS ({_iso(trusted_time)}), more than the allowed "
                f"{_fmt_duration(skew)}; ages cannot be trusted, so nothing is deleted"
            )
        if trusted_time - now > skew:
            return (
                f"the local clock ({_iso(now)}) is {_fmt_duration(trusted_time - now)} behind "
                f"the time attested by AWS ({_iso(trusted_time)}), more than the allowed "
                f"{_fmt_duration(skew)}; ages cannot be trusted, so nothing is deleted"
            )
    future = [c for c in copies if c.created_at - now > skew]
    if future:
        newest = max(future, key=lambda c: (c.created_at, c.copy_id))
        return (
            f"copy {newest.copy_id} of {newest.source_id} was created at "
            f"{_iso(newest.created_at)}, {_fmt_duration(newest.created_at - now)} after the "
            f"local clock ({_iso(now)}); the local clock is behind or the timestamp is forged, "
            f"so ages cannot be trusted and nothing is deleted"
            + (f" ({len(future)} copies from the future)" if len(future) > 1 else "")
        )
    return None


def _plan_group(
    group: list[Copy], policy: RetentionPolicy, now: datetime
) -> list[tuple[Copy, str, str]]:
    """Decide one (source_id, location) group; ``group`` is sorted newest first."""
    max_age = timedelta(days=policy.keep_days)
    within = f"within {_fmt_days(policy.keep_days)}"
    source = group[0].source_id
    where = group[0].location
    verified = [c for c in group if c.managed and c.verified]
    # Rank by recency among verified managed copies: the first min_copies are protected.
    protected = {id(c) for c in verified[: policy.min_copies]}
    newest_verified = verified[0] if verified else None

    out: list[tuple[Copy, str, str]] = []
    for copy in group:
        age = now - copy.created_at
        age_text = _fmt_duration(age)
        expired = age > max_age
        if not copy.managed:
            out.append((copy, KEEP, "not created by SecureDR: never touched"))
        elif copy.locked:
            out.append((copy, KEEP, "locked (snapshot lock or legal hold): never deleted"))
        elif newest_verified is None:
            out.append(
                (
                    copy,
                    KEEP,
                    f"no verified copy of {source} in {where}: retention skipped for this source",
                )
            )
        elif copy is newest_verified:
            out.append((copy, KEEP, f"newest verified copy of {source} (always kept)"))
        elif not expired:
            label = "" if copy.verified else "unverified, "
            out.append((copy, KEEP, f"{label}{within} ({age_text} old)"))
        elif id(copy) in protected:
            out.append(
                (
                    copy,
                    KEEP,
                    f"kept to hold the minimum of {policy.min_copies} verified copies "
                    f"({age_text} old)",
                )
            )
        elif copy.verified:
            out.append((copy, DELETE, f"expired: {age_text} old > {_fmt_days(policy.keep_days)}"))
        else:
            # Safe: reaching here means newest_verified exists and is kept above.
            out.append(
                (
                    copy,
                    DELETE,
                    f"expired unverified copy: {age_text} old > {_fmt_days(policy.keep_days)}"
                    f" (a verified copy of {source} is kept)",
                )
            )
    return out


# --------------------------------------------------------------------------- public API


def plan_retention(
    copies: Iterable[Copy],
    policy: RetentionPolicy,
    *,
    now: datetime,
    trusted_time: datetime | None = None,
    max_clock_skew: timedelta = timedelta(hours=1),
) -> RetentionPlan:
    """Decide keep/delete for every copy; see the module docstring for the guarantees.

    ``now`` is the local time used to compute ages; ``trusted_time`` a timestamp attested by
    AWS (e.g. the newest snapshot StartTime of this run). Both must be timezone-aware.
    Decisions are ordered by source, location, then newest first (``copy_id`` breaks ties).
    A copy counts as expired only if strictly older than ``keep_days``.

    Raises :class:`ValueError` for naive datetimes, a negative skew, or the same copy listed
    twice for one source and location (it would be counted twice towards the minimum).
    """
    if not isinstance(policy, RetentionPolicy):
        raise TypeError("policy must be a RetentionPolicy")
    if not _is_aware(now):
        raise ValueError("now must be a timezone-aware datetime")
    if max_clock_skew < timedelta(0):
        raise ValueError("max_clock_skew must not be negative")

    items = sorted(copies, key=_sort_key)
    # Within a group a copy listed twice would count twice towards min_copies. Identity is
    # scoped to the group: RDS snapshot names are only unique per Region, so the same name
    # can legitimately appear for two sources.
    seen: set[tuple[str, str, str]] = set()
    for copy in items:
        if not isinstance(copy, Copy):
            raise TypeError(f"expected Copy, got {type(copy).__name__}")
        ident = (copy.source_id, copy.location, copy.copy_id)
        if ident in seen:
            raise ValueError(
                f"copy {copy.copy_id} of {copy.source_id} ({copy.location}) is listed more "
                "than once"
            )
        seen.add(ident)

    refused = _clock_problem(items, now, trusted_time, max_clock_skew)
    if refused is not None:
        return RetentionPlan(
            decisions=[Decision(c, KEEP, "kept: plan refused (clock check failed)") for c in items],
            refused=refused,
        )

    groups: dict[tuple[str, str], list[Copy]] = defaultdict(list)
    for copy in items:  # already sorted, so each group is newest first
        groups[(copy.source_id, copy.location)].append(copy)
    decisions = [
        Decision(copy, action, reason)
        for key in sorted(groups)
        for copy, action, reason in _plan_group(groups[key], policy, now)
    ]
    return RetentionPlan(decisions=decisions, refused=None)


def render_plan(plan: RetentionPlan) -> str:
    """Plain-text table of the plan for logs and reports (no trailing newline)."""
    deleting = len(plan.to_delete)
    total = len(plan.decisions)
    if plan.refused is not None:
        header = f"Retention plan REFUSED, nothing will be deleted: {plan.refused}"
    else:
        header = f"Retention plan: {total} copies, {deleting} to delete, {total - deleting} to keep"
    if not plan.decisions:
        return header + "\n(no copies)"
    columns = ("ACTION", "SOURCE", "LOCATION", "KIND", "COPY", "CREATED", "VERIFIED", "REASON")
    rows = [
        (
            d.action.upper(),
            d.copy.source_id,
            d.copy.location,
            d.copy.kind,
            d.copy.copy_id,
            _iso(d.copy.created_at),
            "yes" if d.copy.verified else "no",
            d.reason,
        )
        for d in plan.decisions
    ]
    # The reason column is last and left unpadded so long reasons do not widen every row.
    widths = [max(len(r[i]) for r in (columns, *rows)) for i in range(len(columns) - 1)]

    def line(cells: tuple[str, ...]) -> str:
        padded = [cell.ljust(w) for cell, w in zip(cells, widths, strict=False)]
        return "  ".join([*padded, cells[-1]])

    return "\n".join([header, line(columns), *(line(r) for r in rows)])
