"""Which DR copies may start now: AWS's concurrent-copy slots, shared by one run's copies.

A pure bookkeeping model (no AWS calls, no clock of its own): the copy loop tells it what
happened (a copy started, finished, failed, was refused for want of a slot, was ruled out) and
asks which copies to start next and how long it may sleep.

Guarantees:

- never more than ``limit`` copies of this run in flight at once (EBS and RDS together, so the
  per-Region figure stays within AWS's 20-copy EBS quota whatever the mix), and never more of
  one kind than ``kind_limits`` gives it (RDS: the account's concurrent cross-Region copy quota,
  so a known limit is not probed with refused calls);
- a kind whose slots AWS says are full (``no_slot``) is not asked again until one of this run's
  copies of that kind finishes or ``quota_wait_seconds`` pass, whichever comes first: the other
  kind carries on meanwhile, and a quota held by other tools' copies is a timed wait;
- copies start in the order given (a retried run asks for the same copies first);
- the state round-trips through :meth:`to_dict` / :meth:`from_dict` (trigger kwargs are JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["waiting", "in_flight", "done", "ruled_out"]

#: The shortest sleep between polls while copies are in flight: a copy whose estimated end has
#: passed is asked about at most this often (one batched describe per Region and kind).
MIN_POLL_SECONDS = 2.0
#: Poll this long after a copy's estimated end, so it has finished by then.
ETA_MARGIN_SECONDS = 0.5


@dataclass
class CopySlots:
    """Slots and queue of one run's DR copies into one destination Region."""

    limit: int
    quota_wait_seconds: float
    #: label -> kind ("ebs" / "rds"), in the order copies should start.
    kinds: dict[str, str]
    #: kind -> the most copies of that kind in flight at once (within ``limit``).
    kind_limits: dict[str, int] = field(default_factory=dict)
    #: label -> status; every label of ``kinds`` has one.
    status: dict[str, Status] = field(default_factory=dict)
    #: kind -> epoch seconds before which AWS is not asked for a slot of that kind again.
    blocked_until: dict[str, float] = field(default_factory=dict)
    #: label -> epoch seconds when a copy in flight should finish, from AWS's progress figure.
    eta: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"limit must be at least 1, found {self.limit}")
        for label in self.kinds:
            self.status.setdefault(label, "waiting")

    # -- what happened -------------------------------------------------------------------------

    def started(self, label: str) -> None:
        self.status[label] = "in_flight"

    def finished(self, label: str) -> None:
        """The copy completed or failed: its slot is free, and its kind may be asked again."""
        if self.status.get(label) == "in_flight":
            self.blocked_until.pop(self.kinds[label], None)
        self.status[label] = "done"
        self.eta.pop(label, None)

    def progressed(self, label: str, started_at: float, now: float, percent: float) -> None:
        """AWS reports ``percent`` done for a copy started at ``started_at``: estimate its end.

        A linear estimate (elapsed / fraction done); none below 1 %, where it means nothing.
        """
        if self.status.get(label) != "in_flight" or percent < 1 or now <= started_at:
            self.eta.pop(label, None)
            return
        self.eta[label] = started_at + (now - started_at) * 100.0 / min(percent, 100.0)

    def ruled_out(self, label: str) -> None:
        self.status[label] = "ruled_out"

    def no_slot(self, kind: str, now: float) -> None:
        """AWS refused a copy of ``kind`` for its concurrency limit."""
        self.blocked_until[kind] = now + self.quota_wait_seconds

    # -- what to do ----------------------------------------------------------------------------

    def labels(self, status: Status) -> list[str]:
        return [label for label in self.kinds if self.status[label] == status]

    @property
    def in_flight(self) -> int:
        return sum(1 for s in self.status.values() if s == "in_flight")

    @property
    def all_started(self) -> bool:
        """Nothing is left waiting for a slot (copies may still be in flight)."""
        return not any(s == "waiting" for s in self.status.values())

    def startable(self, now: float) -> list[str]:
        """The copies to start now, in order: as many as free slots, none of a blocked kind."""
        free = self.limit - self.in_flight
        flying: dict[str, int] = {}
        for label in self.labels("in_flight"):
            flying[self.kinds[label]] = flying.get(self.kinds[label], 0) + 1
        chosen: list[str] = []
        for label in self.labels("waiting"):
            if len(chosen) >= free:
                break
            kind = self.kinds[label]
            if self.blocked_until.get(kind, 0.0) > now:
                continue
            if flying.get(kind, 0) >= self.kind_limits.get(kind, self.limit):
                continue
            flying[kind] = flying.get(kind, 0) + 1
            chosen.append(label)
        return chosen

    def sleep_seconds(self, now: float, poll_seconds: float) -> float:
        """How long the loop may sleep before anything can change.

        With copies of ours in flight: until the first of them should finish by AWS's progress
        figure (so a freed slot is refilled within about a second of AWS finishing, not up to a
        whole poll interval later), at least :data:`MIN_POLL_SECONDS` and at most
        ``poll_seconds``. With none: until the first blocked kind may be asked again (a timed
        wait, never a busy loop).
        """
        if self.in_flight:
            first = min(self.eta.values(), default=now + poll_seconds)
            floor = min(MIN_POLL_SECONDS, poll_seconds)
            return max(floor, min(poll_seconds, first - now + ETA_MARGIN_SECONDS))
        waiting_kinds = {self.kinds[label] for label in self.labels("waiting")}
        until = [self.blocked_until.get(kind, now) for kind in waiting_kinds]
        return max(0.0, min(until, default=now) - now)

    # -- state across deferrals ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "quota_wait_seconds": self.quota_wait_seconds,
            "kinds": dict(self.kinds),
            "kind_limits": dict(self.kind_limits),
            "status": dict(self.status),
            "blocked_until": dict(self.blocked_until),
            "eta": dict(self.eta),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CopySlots:
        return cls(
            limit=int(data["limit"]),
            quota_wait_seconds=float(data["quota_wait_seconds"]),
            kinds=dict(data["kinds"]),
            kind_limits={k: int(v) for k, v in (data.get("kind_limits") or {}).items()},
            status=dict(data.get("status") or {}),
            blocked_until={k: float(v) for k, v in (data.get("blocked_until") or {}).items()},
            eta={k: float(v) for k, v in (data.get("eta") or {}).items()},
        )
