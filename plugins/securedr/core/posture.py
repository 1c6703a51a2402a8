"""DR posture: for every protected resource, how old its newest verified DR copy is.

Pure module (no Airflow, no boto3). Its inputs are what the adapters read:

* the plan's signed manifests (only those :func:`securedr.aws.manifests.load_signed_manifests`
  returned, so a forged manifest can never make a resource look protected);
* the resources discovery finds by the plan's selection tag (``None`` when discovery was not
  run: then the manifests alone name the protected resources);
* the newest drill record and the audit trail's incident entries, for the posture page.

Guarantees:

* A resource's *newest verified copy* is the newest point with ``verified: true`` in any
  trusted manifest; an unverified point never counts.
* Its *age* is measured from the recovery point's creation (the source snapshot's AWS time,
  ``created_at``; the DR copy's time ``dr_created_at`` when the former is missing) to ``now``:
  the data written since then is what a disaster would lose, i.e. the RPO actually held.
* ``status`` is ``ok`` (age <= 75 % of the target), ``warn`` (up to the target), ``over``
  (older than ``targets.rpo_hours``) or ``missing`` (a discovered resource with no verified
  copy at all). ``over`` and ``missing`` raise an alert.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["ok", "warn", "over", "missing"]

#: Share of the RPO target after which a copy is shown amber: the next missed night breaks it.
WARN_FRACTION = 0.75

#: Audit-trail actions that open and close an incident (see :func:`open_incidents`).
INCIDENT_ACTION = "incident"
INCIDENT_RESOLVED_ACTION = "incident.resolved"
#: Containment outcomes (securedr.aws.containment) after which an incident needs nobody.
CONTAINED_OUTCOMES = frozenset({"contained", "already-contained"})


@dataclass(frozen=True)
class ResourcePosture:
    """One protected resource and its newest verified DR copy (``None``: no copy at all)."""

    kind: str
    region: str
    resource_id: str
    status: Status
    rpo_target_seconds: float
    name: str | None = None
    age_seconds: float | None = None
    copy: dict[str, Any] | None = None
    manifest_key: str | None = None
    discovered: bool = True

    @property
    def label(self) -> str:
        return f"{self.kind} {self.region}/{self.resource_id}"

    @property
    def alerting(self) -> bool:
        return self.status in ("over", "missing")

    @property
    def lock(self) -> dict[str, Any] | None:
        """The vault copy's lock (``mode``, ``cool_off_hours``, ``expires_on``) if any."""
        vault = self.vault
        lock = vault.get("lock") if vault else None
        return dict(lock) if isinstance(lock, Mapping) else None

    @property
    def vault(self) -> dict[str, Any] | None:
        """The point's ``vault`` entry (see the manifest's vault section), absent without one."""
        vault = (self.copy or {}).get("vault")
        return dict(vault) if isinstance(vault, Mapping) else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "region": self.region,
            "resource_id": self.resource_id,
            "label": self.label,
            "name": self.name,
            "status": self.status,
            "age_seconds": self.age_seconds,
            "rpo_target_seconds": self.rpo_target_seconds,
            "copy": self.copy,
            "manifest_key": self.manifest_key,
            "discovered": self.discovered,
            "vault": self.vault,
            "lock": self.lock,
        }


@dataclass(frozen=True)
class Posture:
    """Every protected resource's posture, newest first by urgency, and the alerts to raise."""

    plan: str
    checked_at: str
    rpo_target_seconds: float
    resources: list[ResourcePosture] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    @property
    def alerts(self) -> list[str]:
        """One sentence per resource that breaks its RPO target or has no copy."""
        out = []
        for r in self.resources:
            if r.status == "missing":
                out.append(
                    f"{r.label} has no verified DR copy in any signed manifest: it is not "
                    "protected. Check that the nightly backup covers it (selection tag) and ran."
                )
            elif r.status == "over":
                out.append(
                    f"{r.label}: newest verified DR copy is {format_age(r.age_seconds)} old, "
                    f"over the RPO target of {format_age(r.rpo_target_seconds)} "
                    f"(copy {(r.copy or {}).get('dr_snapshot_id')})"
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "checked_at": self.checked_at,
            "rpo_target_seconds": self.rpo_target_seconds,
            "resources": [r.to_dict() for r in self.resources],
            "alerts": self.alerts,
            "rejected": list(self.rejected),
        }


def parse_time(value: Any) -> datetime | None:
    """An aware datetime from an ISO-8601 string (``Z`` accepted); None if unusable."""
    if isinstance(value, datetime):
        return value if value.tzinfo else None
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def point_time(point: Mapping[str, Any]) -> datetime | None:
    """When a recovery point's data was captured (see the module docstring)."""
    return parse_time(point.get("created_at")) or parse_time(point.get("dr_created_at"))


def _key(kind: Any, region: Any, resource_id: Any) -> tuple[str, str, str]:
    return (str(kind), str(region), str(resource_id))


def assess(
    *,
    plan: str,
    rpo_hours: float,
    manifests: Iterable[tuple[str, Mapping[str, Any]]],
    now: datetime,
    discovered: Iterable[Mapping[str, Any]] | None = None,
    rejected: Sequence[str] = (),
) -> Posture:
    """The posture of every protected resource at ``now``.

    ``manifests``: ``(object key, verified payload)`` pairs, any order. ``discovered``: the
    resources the selection tag finds now, each ``{"kind", "region", "resource_id", "name"?}``;
    a discovered resource without a verified copy is ``missing``. Resources only known from
    manifests (no longer tagged, or discovery not run) are listed with ``discovered=False``
    when discovery ran, so an untagged resource's ageing copy stays visible.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    target = float(rpo_hours) * 3600.0
    newest: dict[tuple[str, str, str], tuple[datetime, dict[str, Any], str]] = {}
    for key, payload in manifests:
        for point in payload.get("recovery_points") or []:
            if not isinstance(point, Mapping) or point.get("verified") is not True:
                continue
            moment = point_time(point)
            if moment is None:
                continue
            k = _key(point.get("kind"), point.get("source_region"), point.get("source_id"))
            if k not in newest or moment > newest[k][0]:
                newest[k] = (moment, dict(point), key)
    names: dict[tuple[str, str, str], str | None] = {}
    if discovered is not None:
        for r in discovered:
            names[_key(r["kind"], r["region"], r["resource_id"])] = r.get("name")
    keys = set(newest) | set(names)
    rows = []
    for k in keys:
        kind, region, resource_id = k
        found = newest.get(k)
        is_discovered = discovered is None or k in names
        if found is None:
            rows.append(
                ResourcePosture(
                    kind=kind,
                    region=region,
                    resource_id=resource_id,
                    name=names.get(k),
                    status="missing",
                    rpo_target_seconds=target,
                    discovered=is_discovered,
                )
            )
            continue
        moment, point, manifest_key = found
        age = max(0.0, (now - moment).total_seconds())
        status: Status = (
            "over" if age > target else "warn" if age > WARN_FRACTION * target else "ok"
        )
        rows.append(
            ResourcePosture(
                kind=kind,
                region=region,
                resource_id=resource_id,
                name=names.get(k),
                status=status,
                age_seconds=round(age, 1),
                rpo_target_seconds=target,
                copy=point,
                manifest_key=manifest_key,
                discovered=is_discovered,
            )
        )
    urgency = {"missing": 0, "over": 1, "warn": 2, "ok": 3}
    rows.sort(key=lambda r: (urgency[r.status], -(r.age_seconds or 0.0), r.label))
    return Posture(
        plan=plan,
        checked_at=now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        rpo_target_seconds=target,
        resources=rows,
        rejected=list(rejected),
    )


def open_incidents(entries: Iterable[Any]) -> list[dict[str, Any]]:
    """Incidents recorded in the audit trail and not resolved since, oldest first.

    An audit entry whose ``action`` is ``incident`` or starts with ``incident:`` (as
    ``dr_incident_response`` writes them: ``incident:<kind>``) or ``incident.`` opens an
    incident on its ``resource`` - unless its outcome says SecureDR already contained it
    (``contained``, ``already-contained``): what is left open is what needs a person (alert-only
    cases such as a deleted DR copy or a changed key policy, and failed containment). A later
    ``incident.resolved`` / ``incident:resolved`` entry for the same resource closes every
    incident open on it. ``entries`` are audit entries (objects with ``action``, ``resource``,
    ``time``, ``outcome``, ``details``) in ``seq`` order.
    """
    open_: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        action = str(getattr(entry, "action", ""))
        resource = str(getattr(entry, "resource", ""))
        kind = action.replace(":", ".", 1)
        outcome = str(getattr(entry, "outcome", ""))
        if kind == INCIDENT_RESOLVED_ACTION:
            open_.pop(resource, None)
        elif outcome in CONTAINED_OUTCOMES:
            continue
        elif kind == INCIDENT_ACTION or kind.startswith(INCIDENT_ACTION + "."):
            details = getattr(entry, "details", {}) or {}
            open_.setdefault(resource, []).append(
                {
                    "seq": getattr(entry, "seq", None),
                    "time": getattr(entry, "time", None),
                    "action": action,
                    "resource": resource,
                    "outcome": getattr(entry, "outcome", None),
                    "summary": str(details.get("summary") or details.get("message") or ""),
                }
            )
    return sorted(
        (i for items in open_.values() for i in items), key=lambda i: (i["seq"] is None, i["seq"])
    )


def drill_summary(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the posture page and metrics need from the newest drill record."""
    if not record:
        return None
    overall = record.get("overall") or {}
    targets = record.get("targets") or {}
    return {
        "passed": bool(record.get("passed")),
        "run_id": record.get("run_id"),
        "started_at": record.get("started_at"),
        "rto_seconds": overall.get("rto_seconds"),
        "rto_target_seconds": targets.get("rto_seconds"),
        "rto_met": bool(overall.get("rto_met")),
        "rpo_seconds": overall.get("rpo_seconds"),
        "report_url": record.get("report_url"),
    }


def metrics(
    posture: Posture, *, drill: Mapping[str, Any] | None, incidents: int | None
) -> list[tuple[str, float, dict[str, str]]]:
    """The gauges to emit: ``(name, value, tags)``.

    Names are StatsD-safe (resource ids are part of the name, so plain StatsD without tags
    still tells resources apart); the same facts are also given as tags for backends with
    tag support. ``securedr.posture.rpo_age_seconds.<kind>.<region>.<id>`` is -1 for a
    resource with no copy; ``securedr.drill.last_passed`` is 1/0 (absent without a drill);
    ``securedr.incidents.open`` is absent when the count could not be read.
    """
    out: list[tuple[str, float, dict[str, str]]] = []
    for r in posture.resources:
        name = f"securedr.posture.rpo_age_seconds.{r.kind}.{r.region}.{r.resource_id}"
        value = -1.0 if r.age_seconds is None else float(r.age_seconds)
        out.append((name, value, {"plan": posture.plan, "resource": r.label, "status": r.status}))
    out.append(
        (
            "securedr.posture.rpo_breaches",
            float(sum(1 for r in posture.resources if r.alerting)),
            {"plan": posture.plan},
        )
    )
    if drill is not None:
        out.append(
            ("securedr.drill.last_passed", 1.0 if drill["passed"] else 0.0, {"plan": posture.plan})
        )
        if drill.get("rto_seconds") is not None:
            out.append(
                (
                    "securedr.drill.last_rto_seconds",
                    float(drill["rto_seconds"]),
                    {"plan": posture.plan},
                )
            )
    if incidents is not None:
        out.append(("securedr.incidents.open", float(incidents), {"plan": posture.plan}))
    return out


def format_age(seconds: float | None) -> str:
    """``3 h 12 min``, ``2 d 4 h``, ``45 s``; ``no copy`` for None."""
    if seconds is None:
        return "no copy"
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    minutes = total // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
