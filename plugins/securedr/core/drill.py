"""Quarterly recovery drills: measurement, NIST evidence and the drill report (pure part).

A drill restores the latest verified recovery point of every protected resource into an isolated
sandbox, verifies each restore, measures RTO and RPO against the plan's targets, reports and
always tears the sandbox down. The AWS side lives in :mod:`securedr.aws.drill_sandbox` and the
operators; this module only turns what they observed into verdicts and reports, so every rule
that decides whether a drill *passed* can be tested without AWS.

Guarantees kept throughout:

* Nothing passes by default. A resource passes only when it was restored, verified, and both of
  its measurements are known and within target. Missing, malformed or contradictory timestamps
  make the resource fail with a reason that names the field; they are never skipped.
* A drill with no resources fails: an empty drill proves nothing.
* Reports (text and HTML) are derived from the JSON record alone, so a stored record can be
  re-rendered later and always shows the same verdict.

Nothing here imports Airflow or boto3.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Self

from securedr.core.manifest import run_token

DrillKind = Literal["ebs", "rds", "fileset"]
DRILL_KINDS: tuple[DrillKind, ...] = ("ebs", "rds", "fileset")

DRILL_RECORD_KIND = "securedr-drill-report"
DRILL_RECORD_VERSION = 1

# Same rule as Plan.name; checked again here because the name becomes part of an object key.
_PLAN_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


# --------------------------------------------------------------------------- results


@dataclass
class ResourceResult:
    """What the drill observed for one protected resource.

    ``point_created_at`` is the recovery point's creation time as AWS reported it; the other
    times are when the drill started the restore and when verification confirmed it. All are
    ISO-8601 strings with a time zone. ``verified`` is true only if every verification of the
    restored resource passed, in which case ``problems`` is empty.
    """

    kind: DrillKind
    source_id: str
    source_region: str
    recovery_point_id: str
    point_created_at: str | None
    restored_id: str | None = None
    verified: bool = False
    problems: list[str] = field(default_factory=list)
    restore_started_at: str | None = None
    verified_at: str | None = None

    def __post_init__(self) -> None:
        # Results cross task boundaries as XCom; reject shapes that would otherwise be reported
        # with a misleading verdict (e.g. verified="false" being truthy).
        if self.kind not in DRILL_KINDS:
            raise ValueError(
                f"ResourceResult: kind must be one of {DRILL_KINDS}, not {self.kind!r}"
            )
        if not isinstance(self.verified, bool):
            raise ValueError(f"ResourceResult: verified must be a bool, not {self.verified!r}")
        if isinstance(self.problems, str) or not all(isinstance(p, str) for p in self.problems):
            raise ValueError("ResourceResult: problems must be a list of strings")
        self.problems = list(self.problems)

    @property
    def label(self) -> str:
        """``kind:region/source-id``, the name used for this resource in every report."""
        return f"{self.kind}:{self.source_region}/{self.source_id}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild a result; unknown or missing fields raise ``ValueError`` instead of guessing."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(fields)
        if unknown:
            raise ValueError(f"ResourceResult: unknown field(s) {sorted(unknown)}")
        required = {
            name
            for name, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = required - set(data)
        if missing:
            raise ValueError(f"ResourceResult: missing field(s) {sorted(missing)}")
        return cls(**dict(data))


# --------------------------------------------------------------------------- measurement


@dataclass(frozen=True)
class ResourceMeasurement:
    """RTO and RPO of one resource, each against its target, with readable reasons.

    ``passed`` is true exactly when ``reasons`` is empty: restored, verified, every timestamp
    present and consistent, and both RTO and RPO within target.
    """

    result: ResourceResult
    verified: bool
    rto_seconds: float | None
    rpo_seconds: float | None
    restore_seconds: float | None
    rto_met: bool
    rpo_met: bool
    rto_reason: str
    rpo_reason: str
    reasons: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.result.label

    @property
    def passed(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict[str, Any]:
        return {
            "verified": self.verified,
            "rto_seconds": _round(self.rto_seconds),
            "rpo_seconds": _round(self.rpo_seconds),
            "restore_seconds": _round(self.restore_seconds),
            "rto_met": self.rto_met,
            "rpo_met": self.rpo_met,
            "rto_reason": self.rto_reason,
            "rpo_reason": self.rpo_reason,
            "reasons": list(self.reasons),
            "passed": self.passed,
        }


@dataclass(frozen=True)
class DrillMeasurement:
    """The drill's measurements.

    Overall RTO is the slowest resource's RTO and is ``None`` if any resource has none (the
    estate was not recovered until every resource was). Overall RPO is the oldest recovery
    point's age and is ``None`` if any age is unknown. ``passed`` is true only if there is at
    least one resource and every resource passed.
    """

    drill_started_at: datetime
    rto_target_seconds: float
    rpo_target_seconds: float
    resources: tuple[ResourceMeasurement, ...]
    rto_seconds: float | None
    rpo_seconds: float | None
    failures: tuple[str, ...]

    @property
    def rto_met(self) -> bool:
        return self.rto_seconds is not None and self.rto_seconds <= self.rto_target_seconds

    @property
    def rpo_met(self) -> bool:
        return self.rpo_seconds is not None and self.rpo_seconds <= self.rpo_target_seconds

    @property
    def verified_count(self) -> int:
        return sum(1 for m in self.resources if m.verified)

    @property
    def passed(self) -> bool:
        return bool(self.resources) and not self.failures

    def to_dict(self) -> dict[str, Any]:
        """The ``overall`` section of a drill record."""
        return {
            "rto_seconds": _round(self.rto_seconds),
            "rpo_seconds": _round(self.rpo_seconds),
            "rto_met": self.rto_met,
            "rpo_met": self.rpo_met,
            "resources": len(self.resources),
            "verified": self.verified_count,
            "failed": sum(1 for m in self.resources if not m.passed),
            "failures": list(self.failures),
            "passed": self.passed,
        }


def measure(
    results: Sequence[ResourceResult],
    *,
    drill_started_at: datetime,
    rpo_target_hours: float,
    rto_target_minutes: float,
) -> DrillMeasurement:
    """Measure every resource's RTO and RPO against the plan's targets.

    Per resource, RTO = ``verified_at - drill_started_at`` (``None`` if the restore was never
    verified) and RPO = ``drill_started_at - point_created_at`` (the data written after the
    recovery point is what a real disaster at drill start would have lost). A value equal to its
    target meets it. Raises ``ValueError`` for a naive ``drill_started_at`` or a non-positive
    target, which are programming errors rather than drill outcomes.
    """
    if drill_started_at.tzinfo is None or drill_started_at.utcoffset() is None:
        raise ValueError("drill_started_at must be timezone-aware")
    for name, value in (
        ("rpo_target_hours", rpo_target_hours),
        ("rto_target_minutes", rto_target_minutes),
    ):
        if not (_number(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, not {value!r}")
    rto_target = float(rto_target_minutes) * 60.0
    rpo_target = float(rpo_target_hours) * 3600.0
    measured = tuple(
        _measure_one(r, drill_started_at, rto_target=rto_target, rpo_target=rpo_target)
        for r in results
    )
    failures: list[str] = []
    if not measured:
        failures.append(
            "no resources were restored; a drill must restore at least one recovery point "
            "to prove anything"
        )
    failures += [f"{m.label}: {reason}" for m in measured for reason in m.reasons]
    rtos = [m.rto_seconds for m in measured]
    rpos = [m.rpo_seconds for m in measured]
    return DrillMeasurement(
        drill_started_at=drill_started_at,
        rto_target_seconds=rto_target,
        rpo_target_seconds=rpo_target,
        resources=measured,
        rto_seconds=_max_or_none(rtos),
        rpo_seconds=_max_or_none(rpos),
        failures=tuple(failures),
    )


def _max_or_none(values: Sequence[float | None]) -> float | None:
    # One unknown value makes the worst case unknown; reporting the max of the rest would
    # understate it.
    if not values or any(v is None for v in values):
        return None
    return max(v for v in values if v is not None)


def _measure_one(
    r: ResourceResult, started: datetime, *, rto_target: float, rpo_target: float
) -> ResourceMeasurement:
    reasons: list[str] = []
    if not r.verified:
        detail = "; ".join(r.problems) if r.problems else "no verification passed"
        reasons.append(f"not restored and verified ({detail})")
    elif r.problems:
        reasons.append(f"marked verified but reports problems: {'; '.join(r.problems)}")
    elif not r.restored_id:
        reasons.append("marked verified but no restored resource id was recorded")
    verified = not reasons

    # RTO, only for a verified restore: an unverified restore has not recovered anything.
    rto: float | None = None
    restore_seconds: float | None = None
    if not verified:
        rto_reason = "no RTO: the restore was not verified"
    else:
        verified_at, err = _parse_time(r.verified_at, "verified_at")
        restore_started, restore_err = _parse_time(r.restore_started_at, "restore_started_at")
        if verified_at is None:
            rto_reason = f"no RTO: {err}"
            reasons.append(rto_reason)
        elif verified_at < started:
            rto_reason = (
                f"no RTO: verified_at {r.verified_at} is before the drill started "
                f"({_iso(started)}); the verification is not from this drill"
            )
            reasons.append(rto_reason)
        else:
            rto = (verified_at - started).total_seconds()
            rto_reason = _compare("RTO", rto, rto_target, "time from drill start to verified")
            if rto > rto_target:
                reasons.append(rto_reason)
        # The restore start is evidence that this drill performed the restore; it must exist
        # and sit between the drill start and the verification.
        if restore_started is None:
            reasons.append(restore_err or "restore_started_at is missing")
        elif restore_started < started:
            reasons.append(
                f"restore_started_at {r.restore_started_at} is before the drill started "
                f"({_iso(started)}); the restore is not from this drill"
            )
        elif verified_at is not None and restore_started > verified_at:
            reasons.append(
                f"restore_started_at {r.restore_started_at} is after verified_at "
                f"{r.verified_at}; the timestamps contradict each other"
            )
        elif verified_at is not None:
            restore_seconds = (verified_at - restore_started).total_seconds()

    # RPO is measured even for failed restores: how old the point was is useful on its own.
    rpo: float | None = None
    created, err = _parse_time(r.point_created_at, "point_created_at")
    if created is None:
        rpo_reason = f"no RPO: {err}"
        reasons.append(rpo_reason)
    elif created > started:
        rpo_reason = (
            f"no RPO: the recovery point was created at {r.point_created_at}, after the drill "
            f"started ({_iso(started)}); a drill must restore a point that existed when it began"
        )
        reasons.append(rpo_reason)
    else:
        rpo = (started - created).total_seconds()
        rpo_reason = _compare("RPO", rpo, rpo_target, "recovery point age at drill start")
        if rpo > rpo_target:
            reasons.append(rpo_reason)

    return ResourceMeasurement(
        result=r,
        verified=verified,
        rto_seconds=rto,
        rpo_seconds=rpo,
        restore_seconds=restore_seconds,
        rto_met=rto is not None and rto <= rto_target,
        rpo_met=rpo is not None and rpo <= rpo_target,
        rto_reason=rto_reason,
        rpo_reason=rpo_reason,
        reasons=tuple(reasons),
    )


def _compare(name: str, value: float, target: float, meaning: str) -> str:
    if value > target:
        # Round the excess up so a miss is never reported as "by 0s".
        return (
            f"{name} {format_duration(value)} ({meaning}) exceeds the "
            f"{format_duration(target)} target by {format_duration(math.ceil(value - target))}"
        )
    return (
        f"{name} {format_duration(value)} ({meaning}) is within the {format_duration(target)} "
        f"target ({format_duration(target - value)} to spare)"
    )


def _parse_time(value: Any, name: str) -> tuple[datetime | None, str | None]:
    if value is None or value == "":
        return None, f"{name} is missing"
    if not isinstance(value, str):
        return None, f"{name} {value!r} is not an ISO-8601 string"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None, f"{name} {value!r} is not an ISO-8601 time"
    if moment.tzinfo is None or moment.utcoffset() is None:
        # A naive time could be local or UTC; guessing would shift RTO/RPO by hours.
        return None, f"{name} {value!r} has no time zone, so it cannot be compared"
    return moment, None


def format_duration(seconds: float | None) -> str:
    """A short human duration: ``45s``, ``7m 10s``, ``30h 05m``, ``4d 04h``; ``n/a`` for None."""
    if seconds is None:
        return "n/a"
    total = round(seconds)
    sign = "-" if total < 0 else ""
    total = abs(total)
    if total < 60:
        return f"{sign}{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{sign}{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    # Targets are set in hours (e.g. a 24 h RPO), so stay in hours up to three days.
    if hours < 72:
        return f"{sign}{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{sign}{days}d {hours:02d}h"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- NIST evidence

#: NIST SP 800-53 Rev. 5 controls a drill produces evidence for, in report order.
CONTROLS: dict[str, str] = {
    "CP-4": "Contingency Plan Testing",
    "CP-9": "System Backup",
    "CP-9(8)": "System Backup | Cryptographic Protection",
    "CP-10": "System Recovery and Reconstitution",
    "AU-9": "Protection of Audit Information",
    "SC-12": "Cryptographic Key Establishment and Management",
    "SC-28": "Protection of Information at Rest",
}


@dataclass(frozen=True)
class Check:
    """One verdict the drill reports, and the controls it is evidence for."""

    name: str
    passed: bool
    detail: str
    controls: tuple[str, ...]

    def __post_init__(self) -> None:
        # A typo in a control id would silently leave the real control unevidenced.
        unknown = [c for c in self.controls if c not in CONTROLS]
        if unknown:
            raise ValueError(f"check {self.name!r} names unknown control(s) {unknown}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "detail": self.detail,
            "controls": list(self.controls),
        }


@dataclass(frozen=True)
class ControlEvidence:
    """A control, the checks evidencing it, and whether it is satisfied.

    ``passed`` is true only if at least one check evidences the control and all of them passed;
    a control with no evidence is not satisfied.
    """

    control: str
    title: str
    checks: tuple[str, ...]
    failed_checks: tuple[str, ...]

    @property
    def evidenced(self) -> bool:
        return bool(self.checks)

    @property
    def passed(self) -> bool:
        return self.evidenced and not self.failed_checks

    @property
    def status(self) -> str:
        if not self.evidenced:
            return "NO EVIDENCE"
        return "PASS" if self.passed else "FAIL"

    def to_dict(self) -> dict[str, Any]:
        return {
            "control": self.control,
            "title": self.title,
            "checks": list(self.checks),
            "failed_checks": list(self.failed_checks),
            "status": self.status,
            "passed": self.passed,
        }


def evidence(checks: Iterable[Check]) -> list[ControlEvidence]:
    """One entry per control in :data:`CONTROLS` (in that order) with the checks evidencing it."""
    checks = list(checks)
    out = []
    for control, title in CONTROLS.items():
        mine = [c for c in checks if control in c.controls]
        out.append(
            ControlEvidence(
                control=control,
                title=title,
                checks=tuple(c.name for c in mine),
                failed_checks=tuple(c.name for c in mine if not c.passed),
            )
        )
    return out


def standard_checks(
    measurement: DrillMeasurement,
    *,
    manifest_verified: bool,
    all_encrypted_under_dr_key: bool,
    audit_chain_ok: bool,
    teardown_clean: bool,
    leftovers: Sequence[str],
) -> list[Check]:
    """The checks every drill reports; together they evidence every control in :data:`CONTROLS`.

    ``manifest_verified``: the recovery points came from a manifest whose signature verified
    against the plan's trusted keys. ``all_encrypted_under_dr_key``: every DR copy and every
    restored resource is encrypted under the plan's customer-managed DR key.
    ``audit_chain_ok``: the audit log's hash chain verified end to end. Teardown passes only if
    it reported clean *and* nothing is left over.
    """
    m = measurement
    n = len(m.resources)
    unverified = [x.label for x in m.resources if not x.verified]
    if not n:
        restore_detail = "no resources were restored"
    elif unverified:
        restore_detail = (
            f"{n - len(unverified)} of {n} restored and verified; not verified: "
            + ", ".join(unverified)
        )
    else:
        restore_detail = f"all {n} resources restored into the sandbox and verified"

    over_rto = [x for x in m.resources if x.verified and not x.rto_met]
    if m.rto_met:
        rto_detail = (
            f"slowest restore verified after {format_duration(m.rto_seconds)}, target "
            f"{format_duration(m.rto_target_seconds)}"
        )
    elif over_rto:
        rto_detail = "; ".join(f"{x.label}: {x.rto_reason}" for x in over_rto)
    else:
        rto_detail = "RTO could not be measured for every resource: " + (
            ", ".join(unverified) or "no resources"
        )

    bad_rpo = [x for x in m.resources if not x.rpo_met]
    if not n:
        rpo_detail = "no recovery points were found to restore"
    elif bad_rpo:
        rpo_detail = "; ".join(f"{x.label}: {x.rpo_reason}" for x in bad_rpo)
    else:
        rpo_detail = (
            f"{n} recovery point{'s' if n != 1 else ''}; oldest was "
            f"{format_duration(m.rpo_seconds)} old at drill start, target "
            f"{format_duration(m.rpo_target_seconds)}"
        )

    leftovers = list(leftovers)
    teardown_ok = teardown_clean and not leftovers
    if teardown_ok:
        teardown_detail = "sandbox deleted; nothing the drill created remains"
    elif leftovers:
        teardown_detail = f"{len(leftovers)} resource(s) left over: " + ", ".join(leftovers)
    else:
        teardown_detail = "teardown did not complete cleanly"

    return [
        Check("restores-verified", n > 0 and not unverified, restore_detail, ("CP-4", "CP-10")),
        Check("rto-within-target", m.rto_met, rto_detail, ("CP-4", "CP-10")),
        Check("recovery-points-within-rpo", n > 0 and not bad_rpo, rpo_detail, ("CP-9",)),
        Check(
            "signed-manifest",
            manifest_verified,
            "recovery points taken from a manifest whose signature verified against the plan's "
            "trusted keys"
            if manifest_verified
            else "the manifest's signature did NOT verify against the plan's trusted keys",
            ("CP-9(8)", "SC-12"),
        ),
        Check(
            "encrypted-under-dr-key",
            all_encrypted_under_dr_key,
            "every DR copy and restored resource is encrypted under the plan's customer-managed "
            "DR key"
            if all_encrypted_under_dr_key
            else "at least one DR copy or restored resource is NOT encrypted under the plan's "
            "customer-managed DR key",
            ("CP-9(8)", "SC-12", "SC-28"),
        ),
        Check(
            "audit-chain-intact",
            audit_chain_ok,
            "the audit log's hash chain verified end to end"
            if audit_chain_ok
            else "the audit log's hash chain did NOT verify; records may have been altered",
            ("AU-9",),
        ),
        Check("sandbox-torn-down", teardown_ok, teardown_detail, ("CP-4",)),
    ]


# --------------------------------------------------------------------------- the record

# Checks derived from the measurement alone (see standard_checks).
_MEASURED_CHECKS = frozenset(
    {"restores-verified", "rto-within-target", "recovery-points-within-rpo"}
)


def drill_record(
    *,
    plan: str,
    run_id: str,
    sandbox_id: str | None,
    finished_at: datetime,
    measurement: DrillMeasurement,
    checks: Sequence[Check],
    leftovers: Sequence[str],
    dr_region: str | None = None,
    failed_tasks: Sequence[str] = (),
) -> dict[str, Any]:
    """The drill's JSON record (what is stored as evidence and rendered into reports).

    ``passed`` is true only if the measurement passed, every check passed, every control in
    :data:`CONTROLS` is evidenced and satisfied, nothing was left over and no step failed.
    ``failures`` lists every reason the drill did not pass, readable on its own.
    """
    m = measurement
    controls = evidence(checks)
    failures = list(m.failures)
    # The measured checks restate the measurement's failures; list them only if the
    # measurement itself reported none, so each problem is read once.
    failures += [
        f"check {c.name} failed: {c.detail}"
        for c in checks
        if not c.passed and not (c.name in _MEASURED_CHECKS and m.failures)
    ]
    failures += [f"control {c.control} has no evidence" for c in controls if not c.evidenced]
    if leftovers and all(c.name != "sandbox-torn-down" or c.passed for c in checks):
        # Leftovers are a failure even when the caller forgot the teardown check.
        failures.append(f"{len(leftovers)} sandbox resource(s) left over: {', '.join(leftovers)}")
    failures += [f"step {t} failed" for t in failed_tasks]
    return {
        "kind": DRILL_RECORD_KIND,
        "version": DRILL_RECORD_VERSION,
        "plan": plan,
        "run_id": run_id,
        "sandbox_id": sandbox_id,
        "dr_region": dr_region,
        "started_at": _iso(m.drill_started_at),
        "finished_at": _iso(finished_at),
        "duration_seconds": round((finished_at - m.drill_started_at).total_seconds(), 1),
        "targets": {
            "rto_minutes": m.rto_target_seconds / 60.0,
            "rpo_hours": m.rpo_target_seconds / 3600.0,
            "rto_seconds": m.rto_target_seconds,
            "rpo_seconds": m.rpo_target_seconds,
        },
        "resources": [
            {"label": x.label, "result": x.result.to_dict(), "measurement": x.to_dict()}
            for x in m.resources
        ],
        "overall": m.to_dict(),
        "checks": [c.to_dict() for c in checks],
        "controls": [c.to_dict() for c in controls],
        "leftovers": list(leftovers),
        "failed_tasks": list(failed_tasks),
        "failures": failures,
        "passed": not failures,
    }


def trend_key(plan: str, started_at: datetime | str, *, run_id: str | None = None) -> str:
    """The object key of a drill record, ``drills/<plan>/<YYYYmmddTHHMMSSZ>-<token>.json``.

    The stamp is fixed-width UTC, so lexical order of keys is time order. The token comes from
    ``run_id`` (or, without one, from the plan and start time), so a retried task writes the same
    key again instead of a second record.
    """
    if not _PLAN_NAME_RE.match(plan):
        raise ValueError(f"plan name {plan!r} is not valid in an object key")
    moment = datetime.fromisoformat(started_at) if isinstance(started_at, str) else started_at
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("started_at must be timezone-aware")
    moment = moment.astimezone(UTC)
    if moment.year < 1000:
        raise ValueError("started_at must be after the year 1000 for a fixed-width key")
    stamp = moment.strftime("%Y%m%dT%H%M%SZ")
    token = (
        run_token(run_id)
        if run_id
        else hashlib.sha256(f"{plan}@{moment.isoformat()}".encode()).hexdigest()[:16]
    )
    return f"drills/{plan}/{stamp}-{token}.json"


def parse_history(records: Iterable[Any]) -> list[dict[str, Any]]:
    """Earlier drill records, oldest first; anything that is not a usable record is dropped.

    A record is kept if it is a drill record of this format with a timezone-aware ``started_at``,
    a boolean ``passed``, positive targets and overall RTO/RPO that are non-negative numbers or
    ``None``. When two records share a plan and run id (a retried upload), the later one in the
    input wins.
    """
    kept: dict[tuple[str, str], tuple[datetime, dict[str, Any]]] = {}
    for position, record in enumerate(records):
        started = _usable_record(record)
        if started is None:
            continue
        key = (str(record.get("plan")), str(record.get("run_id") or f"#{position}"))
        kept[key] = (started, record)
    ordered = sorted(kept.values(), key=lambda item: (item[0], str(item[1].get("run_id"))))
    return [record for _, record in ordered]


def _usable_record(record: Any) -> datetime | None:
    if not isinstance(record, Mapping) or record.get("kind") != DRILL_RECORD_KIND:
        return None
    started, _ = _parse_time(record.get("started_at"), "started_at")
    if started is None or not isinstance(record.get("passed"), bool):
        return None
    targets, overall = record.get("targets"), record.get("overall")
    if not isinstance(targets, Mapping) or not isinstance(overall, Mapping):
        return None
    if not all(_number(targets.get(k)) and targets[k] > 0 for k in ("rto_seconds", "rpo_seconds")):
        return None
    for k in ("rto_seconds", "rpo_seconds"):
        value = overall.get(k)
        if value is not None and not (_number(value) and value >= 0):
            return None
    return started


def _number(value: Any) -> bool:
    # bool is an int subclass; True must not pass as a one-second RTO.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------- text report


def render_text(record: Mapping[str, Any]) -> str:
    """The record as plain text for logs, terminals and e-mail; failures are listed first."""
    outcome = "PASSED" if record["passed"] else "FAILED"
    overall, targets = record["overall"], record["targets"]
    lines = [
        f"SecureDR recovery drill - plan {record['plan']} - {outcome}",
        f"Run {record['run_id']}, sandbox {record.get('sandbox_id') or '-'}, "
        f"{format_duration(record['duration_seconds'])} "
        f"({record['started_at']} -> {record['finished_at']})",
        f"RTO {format_duration(overall['rto_seconds'])} "
        f"(target {format_duration(targets['rto_seconds'])}, "
        f"{'met' if overall['rto_met'] else 'MISSED'}); "
        f"RPO {format_duration(overall['rpo_seconds'])} "
        f"(target {format_duration(targets['rpo_seconds'])}, "
        f"{'met' if overall['rpo_met'] else 'MISSED'}); "
        f"{overall['verified']} of {overall['resources']} resources restored and verified",
    ]
    if record["failures"]:
        lines += ["", "Failures:"]
        lines += [f"  ! {f}" for f in record["failures"]]
    rows = [("RESOURCE", "RECOVERY POINT", "RESTORED AS", "VERIFIED", "RTO", "RPO", "RESULT")]
    for r in record["resources"]:
        res, m = r["result"], r["measurement"]
        rows.append(
            (
                r["label"],
                res["recovery_point_id"],
                res.get("restored_id") or "-",
                "yes" if m["verified"] else "NO",
                format_duration(m["rto_seconds"]) + ("" if m["rto_met"] else " !"),
                format_duration(m["rpo_seconds"]) + ("" if m["rpo_met"] else " !"),
                "pass" if m["passed"] else "FAIL",
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines.append("")
    lines += [
        "  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines += ["", "Checks:"]
    for c in record["checks"]:
        mark = "pass" if c["passed"] else "FAIL"
        lines.append(f"  [{mark}] {c['name']} ({', '.join(c['controls'])}): {c['detail']}")
    lines += ["", "NIST SP 800-53 controls:"]
    for c in record["controls"]:
        lines.append(
            f"  {c['control']:<8} {c['status']:<11} {c['title']}"
            + (f" - evidence: {', '.join(c['checks'])}" if c["checks"] else "")
        )
    leftovers = record["leftovers"]
    lines += [
        "",
        "Teardown: "
        + (
            "clean, nothing left over"
            if not leftovers
            else f"{len(leftovers)} LEFT OVER: {', '.join(leftovers)}"
        ),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- HTML report

_CSS = """
*{box-sizing:border-box}
body{margin:0;padding:24px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif;color:#1d2733;background:#f4f6f8}
main{max-width:1160px;margin:0 auto}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:0 0 10px}
h3{font-size:15px;margin:16px 0 8px}
section,header{background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:16px 20px;
margin-bottom:16px}
header{display:flex;gap:20px;align-items:center}
header.pass{border-left:10px solid #1f7a3a}
header.fail{border-left:10px solid #b42318}
.verdict{font-size:28px;font-weight:700;padding:8px 18px;border-radius:6px;color:#fff;
letter-spacing:.05em}
.pass .verdict{background:#1f7a3a}
.fail .verdict{background:#b42318}
.meta{margin:0;color:#4a5866;font-size:13px}
.meta code{font-size:12px}
.tiles{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;background:none;border:0;
padding:0}
.tile{background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:12px 16px}
.tile .k{color:#4a5866;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.tile .v{font-size:22px;font-weight:650;margin:2px 0}
.tile .s{font-size:12.5px}
.ok{color:#1f7a3a}
.bad{color:#b42318;font-weight:600}
.failures{border-color:#e3a29c;background:#fff6f5}
.failures ul{margin:0;padding-left:20px}
.charts{display:flex;flex-wrap:wrap;gap:16px}
.charts svg{flex:1 1 520px;max-width:100%;height:auto;border:1px solid #e6eaee;border-radius:6px;
background:#fff}
.legend{font-size:12.5px;color:#4a5866;margin:8px 0 0}
.sw{display:inline-block;width:12px;height:12px;vertical-align:-1px;margin:0 4px 0 12px;
border-radius:2px}
.tw{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e6eaee;vertical-align:top}
th{background:#f0f3f6;font-weight:600;white-space:nowrap}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td code,li code{font-size:12px;overflow-wrap:break-word}
td .muted{font-size:12px}
td .when{white-space:nowrap}
td.wide{min-width:220px}
code.id{white-space:nowrap}
td ul{margin:0;padding-left:16px}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;
white-space:nowrap}
.pill.pass{background:#dcf2e3;color:#145c2b}
.pill.fail{background:#fbe1de;color:#8f1c12}
.pill.none{background:#fdf0cf;color:#7a5300}
.muted{color:#6b7785}
footer{color:#6b7785;font-size:12px;text-align:center;margin-top:8px}
@media print{body{background:#fff}section,header{break-inside:avoid}}
"""

# Colours: within target / over target. Over-target bars also carry an "OVER" text mark so the
# verdict survives greyscale printing and colour blindness.
_OK_FILL = "#4f7fb3"
_BAD_FILL = "#c4412f"
_TARGET = "#1d2733"
_MAX_FAILURES_SHOWN = 12
# A white outline behind labels keeps them readable where they cross a target or grid line.
_HALO = 'paint-order="stroke" stroke="#fff" stroke-width="3" stroke-linejoin="round"'


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _pill(passed: bool | None, yes: str = "PASS", no: str = "FAIL") -> str:
    if passed is None:
        return '<span class="pill none">NO EVIDENCE</span>'
    return f'<span class="pill {"pass" if passed else "fail"}">{_e(yes if passed else no)}</span>'


def _unit(max_seconds: float) -> tuple[float, str, str]:
    """Seconds per axis unit, its short suffix and its name, chosen so ticks stay readable."""
    if max_seconds <= 2 * 3600:
        return 60.0, "m", "minutes"
    if max_seconds <= 4 * 86400:
        return 3600.0, "h", "hours"
    return 86400.0, "d", "days"


def _axis(max_seconds: float) -> tuple[float, str, str, float, float]:
    """Unit seconds, suffix, unit name, tick step and axis maximum (in units) for a chart."""
    unit, suffix, name = _unit(max_seconds)
    top = max(max_seconds / unit, 1e-9)
    raw = top / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude)
    return unit, suffix, name, step, math.ceil(top / step - 1e-9) * step


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _short(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def _bar_chart(
    *,
    chart_id: str,
    title: str,
    axis_title: str,
    rows: Sequence[tuple[str, float | None, str]],
    target: float,
) -> str:
    """Horizontal bars (one per resource) against a dashed target line.

    ``rows`` are (label, seconds or None, text for None). Bars over the target are drawn in the
    alarm colour and labelled "OVER"; a None value is written out instead of drawn as zero.
    """
    width, left, right, top, row_h = 560, 170, 118, 46, 20
    plot_w = width - left - right
    height = top + row_h * max(len(rows), 1) + 44
    values = [v for _, v, _ in rows if v is not None]
    unit, suffix, unit_name, step, axis_max = _axis(max([target, *values]) * 1.05)

    def x(seconds: float) -> float:
        return left + min(seconds / unit / axis_max, 1.0) * plot_w

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="{chart_id}-t" '
        'font-family="system-ui,Arial,sans-serif" font-size="11">',
        f'<title id="{chart_id}-t">{_e(title)}</title>',
        f'<text x="12" y="20" font-size="13" font-weight="600" fill="#1d2733">{_e(title)}</text>',
    ]
    plot_bottom = top + row_h * max(len(rows), 1)
    tick = 0.0
    while tick <= axis_max + 1e-9:
        tx = left + tick / axis_max * plot_w
        out.append(
            f'<line x1="{tx:.1f}" y1="{top - 4}" x2="{tx:.1f}" y2="{plot_bottom}" '
            'stroke="#e3e8ed"/>'
        )
        out.append(
            f'<text x="{tx:.1f}" y="{plot_bottom + 14}" text-anchor="middle" fill="#4a5866">'
            f"{_num(tick)}{suffix}</text>"
        )
        tick += step
    out.append(
        f'<line x1="{left}" y1="{plot_bottom}" x2="{left + plot_w}" y2="{plot_bottom}" '
        'stroke="#8a96a3"/>'
    )
    out.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{plot_bottom + 32}" text-anchor="middle" '
        f'fill="#1d2733">{_e(axis_title)} ({unit_name})</text>'
    )
    for i, (label, value, missing) in enumerate(rows):
        y = top + i * row_h
        out.append(
            f'<text x="{left - 8}" y="{y + row_h / 2 + 4:.1f}" text-anchor="end" fill="#1d2733">'
            f"<title>{_e(label)}</title>{_e(_short(label, 24))}</text>"
        )
        if value is None:
            out.append(
                f'<text x="{left + 6}" y="{y + row_h / 2 + 4:.1f}" fill="{_BAD_FILL}" '
                f'font-weight="600">\u2716 {_e(missing)}</text>'
            )
            continue
        over = value > target
        bar_end = x(value)
        out.append(
            f'<rect x="{left}" y="{y + 3}" width="{max(bar_end - left, 1.5):.1f}" '
            f'height="{row_h - 6}" rx="2" fill="{_BAD_FILL if over else _OK_FILL}">'
            f"<title>{_e(label)}: {_e(format_duration(value))}</title></rect>"
        )
        text = f"\u25b2 OVER {format_duration(value)}" if over else format_duration(value)
        style = f'fill="{_BAD_FILL}" font-weight="700"' if over else 'fill="#1d2733"'
        out.append(
            f'<text x="{bar_end + 5:.1f}" y="{y + row_h / 2 + 4:.1f}" {style} {_HALO}>'
            f"{_e(text)}</text>"
        )
    target_x = x(target)
    out.append(
        f'<line x1="{target_x:.1f}" y1="{top - 8}" x2="{target_x:.1f}" y2="{plot_bottom}" '
        f'stroke="{_TARGET}" stroke-width="2" stroke-dasharray="6 4"/>'
    )
    anchor = "end" if target_x > left + plot_w * 0.75 else "middle"
    out.append(
        f'<text x="{target_x:.1f}" y="{top - 12}" text-anchor="{anchor}" font-weight="600" {_HALO} '
        f'fill="{_TARGET}">target {_e(format_duration(target))}</text>'
    )
    out.append("</svg>")
    return "\n".join(out)


def _trend_chart(
    *,
    chart_id: str,
    title: str,
    axis_title: str,
    points: Sequence[tuple[str, float | None, float, bool]],
) -> str:
    """Overall value per drill (points joined by a line) against each drill's target (dashed).

    ``points`` are (x label, seconds or None, target seconds, is current drill). Points over their
    target are drawn as red squares with an "OVER" mark; an unmeasured drill is an "n/a" cross.
    """
    width, left, right, top, bottom = 560, 56, 24, 40, 56
    plot_h = 170
    height = top + plot_h + bottom
    plot_w = width - left - right
    values = [v for _, v, _, _ in points if v is not None]
    targets = [t for _, _, t, _ in points]
    unit, suffix, unit_name, step, axis_max = _axis(max([*targets, *values]) * 1.08)
    n = len(points)

    def px(i: int) -> float:
        return left + (plot_w / 2 if n == 1 else 16 + i * (plot_w - 32) / (n - 1))

    def py(seconds: float) -> float:
        return top + plot_h - min(seconds / unit / axis_max, 1.0) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="{chart_id}-t" '
        'font-family="system-ui,Arial,sans-serif" font-size="11">',
        f'<title id="{chart_id}-t">{_e(title)}</title>',
        f'<text x="12" y="20" font-size="13" font-weight="600" fill="#1d2733">{_e(title)}</text>',
    ]
    tick = 0.0
    while tick <= axis_max + 1e-9:
        ty = top + plot_h - tick / axis_max * plot_h
        out.append(
            f'<line x1="{left}" y1="{ty:.1f}" x2="{left + plot_w}" y2="{ty:.1f}" stroke="#e3e8ed"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end" fill="#4a5866">'
            f"{_num(tick)}{suffix}</text>"
        )
        tick += step
    out.append(
        f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle" fill="#1d2733">{_e(axis_title)} ({unit_name})</text>'
    )
    out.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#8a96a3"/>'
    )
    # The target may change between drills (plan edits); draw it as a step line per drill.
    if n == 1:
        target_path = f"M{left} {py(targets[0]):.1f} H{left + plot_w}"
    else:
        target_path = f"M{px(0):.1f} {py(targets[0]):.1f}"
        for i in range(1, n):
            mid = (px(i - 1) + px(i)) / 2
            target_path += f" H{mid:.1f} V{py(targets[i]):.1f}"
        target_path += f" H{px(n - 1):.1f}"
    out.append(
        f'<path d="{target_path}" fill="none" stroke="{_TARGET}" stroke-width="1.5" '
        'stroke-dasharray="6 4"/>'
    )
    out.append(
        f'<text x="{left + plot_w}" y="{py(targets[-1]) - 5:.1f}" text-anchor="end" {_HALO} '
        f'font-weight="600" fill="{_TARGET}">target {_e(format_duration(targets[-1]))}</text>'
    )
    # Join consecutive measured drills; a gap (None) breaks the line rather than faking a value.
    segment: list[str] = []
    segments: list[list[str]] = []
    for i, (_, value, _, _) in enumerate(points):
        if value is None:
            if segment:
                segments.append(segment)
            segment = []
        else:
            segment.append(f"{px(i):.1f},{py(value):.1f}")
    if segment:
        segments.append(segment)
    for seg in segments:
        if len(seg) > 1:
            out.append(
                f'<polyline points="{" ".join(seg)}" fill="none" stroke="{_OK_FILL}" '
                'stroke-width="2"/>'
            )
    label_every = max(1, math.ceil(n / 8))
    for i, (label, value, target, current) in enumerate(points):
        cx = px(i)
        r = 6 if current else 4.5
        if value is None:
            cy = top + plot_h - 8
            out.append(
                f'<text x="{cx:.1f}" y="{cy + 4:.1f}" text-anchor="middle" font-size="14" '
                f'font-weight="700" fill="{_BAD_FILL}"><title>{_e(label)}: not measured'
                f"</title>\u2716</text>"
            )
            out.append(
                f'<text x="{cx:.1f}" y="{cy - 10:.1f}" text-anchor="middle" '
                f'fill="{_BAD_FILL}">n/a</text>'
            )
        else:
            cy = py(value)
            tip = f"<title>{_e(label)}: {_e(format_duration(value))}</title>"
            if value > target:
                out.append(
                    f'<rect x="{cx - r:.1f}" y="{cy - r:.1f}" width="{2 * r}" height="{2 * r}" '
                    f'fill="{_BAD_FILL}">{tip}</rect>'
                )
                out.append(
                    f'<text x="{cx:.1f}" y="{max(cy - r - 4, 12):.1f}" text-anchor="middle" '
                    f'font-weight="700" fill="{_BAD_FILL}" {_HALO}>OVER</text>'
                )
            else:
                out.append(
                    f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r}" fill="{_OK_FILL}" '
                    f'stroke="#fff" stroke-width="1.5">{tip}</circle>'
                )
        if current:
            out.append(
                f'<text x="{cx:.1f}" y="{top + plot_h + 30}" text-anchor="middle" '
                f'font-weight="600" fill="#1d2733">this drill</text>'
            )
        if i % label_every == 0 or i == n - 1:
            out.append(
                f'<text x="{cx:.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
                f'fill="#4a5866">{_e(label)}</text>'
            )
    out.append("</svg>")
    return "\n".join(out)


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    numeric: set[int],
    wide: int | None = None,
) -> str:
    """A table; cells are pre-escaped HTML (callers escape every value with :func:`_e`).

    Columns in ``numeric`` are right-aligned; column ``wide`` (free text) keeps a minimum width
    so the automatic layout does not squeeze it to a few characters per line.
    """
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)

    def cls(i: int) -> str:
        names = (["num"] if i in numeric else []) + (["wide"] if i == wide else [])
        return f' class="{" ".join(names)}"' if names else ""

    body = "\n".join(
        "<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return (
        f'<div class="tw"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{body}\n</tbody></table></div>"
    )


def _duration_cell(seconds: float | None, met: bool) -> str:
    if seconds is None:
        return '<span class="bad">n/a \u2716</span>'
    if met:
        return _e(format_duration(seconds))
    return f'<span class="bad">{_e(format_duration(seconds))} OVER</span>'


def _date(iso: str) -> str:
    return iso[:10]


def _when(value: Any) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM UTC`` for tables; unparsable values are shown as-is."""
    moment, _ = _parse_time(value, "time")
    if moment is None:
        return "unknown" if value in (None, "") else f"{value} (invalid)"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _verified_summary(overall: Mapping[str, Any]) -> str:
    total, verified, failed = overall["resources"], overall["verified"], overall["failed"]
    if not total:
        return "nothing was restored"
    if not failed:
        return "all resources passed"
    unverified = f" ({total - verified} not verified)" if total > verified else ""
    return f"{failed} of {total} resources FAILED{unverified}"


def render_html(record: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> str:
    """A self-contained HTML report of one drill, with the trend across earlier drills.

    ``history`` holds earlier drill records (any order; malformed ones and the current drill
    itself are ignored). The page has inline CSS and inline SVG only: no scripts, fonts, images
    or links to fetch, so it renders the same offline, in a mail client or from the evidence
    bucket. Every value taken from the record is HTML-escaped.
    """
    passed = bool(record["passed"])
    overall, targets = record["overall"], record["targets"]
    resources = record["resources"]
    verdict = "PASS" if passed else "FAIL"
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>SecureDR recovery drill {_e(verdict)} - {_e(record['plan'])} - "
        f"{_e(_date(record['started_at']))}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
    ]

    # Header and headline numbers.
    parts.append(
        f'<header class="{"pass" if passed else "fail"}"><div class="verdict">{verdict}</div>'
        f"<div><h1>Recovery drill \u2014 plan {_e(record['plan'])}</h1>"
        f'<p class="meta">Run <code>{_e(record["run_id"])}</code> \u00b7 sandbox '
        f"<code>{_e(record.get('sandbox_id') or '-')}</code>"
        + (f" in {_e(record['dr_region'])}" if record.get("dr_region") else "")
        + f"<br>Started {_e(record['started_at'])} \u00b7 finished {_e(record['finished_at'])}"
        f" \u00b7 took {_e(format_duration(record['duration_seconds']))}</p></div></header>"
    )

    def tile(key: str, value: str, sub: str, ok: bool) -> str:
        return (
            f'<div class="tile"><div class="k">{_e(key)}</div><div class="v">{_e(value)}</div>'
            f'<div class="s {"ok" if ok else "bad"}">{_e(sub)}</div></div>'
        )

    leftovers = list(record["leftovers"])
    parts.append(
        '<section class="tiles">'
        + tile(
            "Recovery time (RTO)",
            format_duration(overall["rto_seconds"]),
            f"target {format_duration(targets['rto_seconds'])} \u2014 "
            + ("met" if overall["rto_met"] else "MISSED"),
            overall["rto_met"],
        )
        + tile(
            "Recovery point (RPO)",
            format_duration(overall["rpo_seconds"]),
            f"target {format_duration(targets['rpo_seconds'])} \u2014 "
            + ("met" if overall["rpo_met"] else "MISSED"),
            overall["rpo_met"],
        )
        + tile(
            "Restored and verified",
            f"{overall['verified']} / {overall['resources']}",
            _verified_summary(overall),
            bool(overall["resources"]) and overall["failed"] == 0,
        )
        + tile(
            "Sandbox teardown",
            "clean" if not leftovers else f"{len(leftovers)} left",
            "nothing left over" if not leftovers else "resources LEFT OVER",
            not leftovers,
        )
        + "</section>"
    )

    failures = list(record["failures"])
    if failures:
        # A drill with many failing resources would push the charts off the first screen;
        # everything cut here is repeated in the resource table and the checks below.
        shown = failures[:_MAX_FAILURES_SHOWN]
        more = len(failures) - len(shown)
        parts.append(
            f'<section class="failures"><h2>Why this drill failed ({len(failures)})</h2><ul>'
            + "".join(f"<li>{_e(f)}</li>" for f in shown)
            + "</ul>"
            + (
                f"<p><strong>\u2026 and {more} more</strong>; every failure is listed in the "
                "resource table and the checks below.</p>"
                if more
                else ""
            )
            + "</section>"
        )

    # Per-resource charts.
    rto_rows = [
        (
            r["label"],
            r["measurement"]["rto_seconds"],
            "not verified \u2014 no RTO"
            if not r["measurement"]["verified"]
            else "RTO not measurable",
        )
        for r in resources
    ]
    rpo_rows = [(r["label"], r["measurement"]["rpo_seconds"], "RPO unknown") for r in resources]
    parts.append("<section><h2>RTO and RPO per resource</h2>")
    if resources:
        parts.append(
            '<div class="charts">'
            + _bar_chart(
                chart_id="rto-chart",
                title="RTO: drill start \u2192 restore verified",
                axis_title="time to recover",
                rows=rto_rows,
                target=targets["rto_seconds"],
            )
            + _bar_chart(
                chart_id="rpo-chart",
                title="RPO: age of the recovery point at drill start",
                axis_title="data at risk",
                rows=rpo_rows,
                target=targets["rpo_seconds"],
            )
            + "</div>"
            f'<p class="legend"><span class="sw" style="background:{_OK_FILL}"></span>within '
            f'target<span class="sw" style="background:{_BAD_FILL}"></span>over target '
            '(also marked \u25b2 OVER)<span class="sw" style="background:none;border-top:2px '
            f'dashed {_TARGET};border-radius:0;height:0;width:18px"></span>target from the plan'
            " \u00b7 \u2716 = not measured (counts as a failure)</p>"
        )
    else:
        parts.append('<p class="bad">No resources were restored, so nothing could be measured.</p>')
    parts.append("</section>")

    # Per-resource table.
    rows = []
    for r in resources:
        res, m = r["result"], r["measurement"]
        # Passing rows stay one line high; the reasons matter where something failed.
        notes = list(m["reasons"])
        rows.append(
            (
                # Id first, kind and Region below it: keeps the column narrow without
                # breaking identifiers at their hyphens.
                f'<code class="id" title="{_e(r["label"])}">{_e(res["source_id"])}</code><br>'
                f'<span class="muted when">{_e(res["kind"])} \u00b7 {_e(res["source_region"])}'
                "</span>",
                f"<code>{_e(res['recovery_point_id'])}</code><br>"
                f'<span class="muted when">created {_e(_when(res.get("point_created_at")))}</span>',
                f"<code>{_e(res.get('restored_id') or '-')}</code>",
                _pill(m["verified"], "yes", "NO"),
                _duration_cell(m["rto_seconds"], m["rto_met"])
                + (
                    f'<br><span class="muted">restore {_e(format_duration(restore))}</span>'
                    if (restore := m["restore_seconds"]) is not None
                    else ""
                ),
                _duration_cell(m["rpo_seconds"], m["rpo_met"]),
                _pill(m["passed"]),
                "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"
                if notes
                else '<span class="muted">RTO and RPO within target</span>',
            )
        )
    parts.append(
        f"<section><h2>Resources ({len(resources)})</h2>"
        + (
            _table(
                (
                    "Resource",
                    "Recovery point (created)",
                    "Restored as",
                    "Verified",
                    "RTO",
                    "RPO",
                    "Result",
                    "Details",
                ),
                rows,
                numeric={4, 5},
                wide=7,
            )
            if rows
            else '<p class="bad">No resources.</p>'
        )
        + "</section>"
    )

    # Trend across drills: earlier records plus this one, oldest first.
    earlier = [
        h
        for h in parse_history(history)
        if not (h.get("run_id") == record["run_id"] and h.get("plan") == record["plan"])
    ]
    drills = [*earlier, record]
    parts.append("<section><h2>Trend across drills</h2>")
    if not earlier:
        parts.append(
            '<p class="muted">No earlier drills are recorded; the trend starts with this one.</p>'
        )
    parts.append(
        '<div class="charts">'
        + _trend_chart(
            chart_id="rto-trend",
            title="Overall RTO per drill",
            axis_title="RTO",
            points=[
                (
                    _date(d["started_at"]),
                    d["overall"]["rto_seconds"],
                    d["targets"]["rto_seconds"],
                    d is record,
                )
                for d in drills
            ],
        )
        + _trend_chart(
            chart_id="rpo-trend",
            title="Overall RPO per drill",
            axis_title="RPO",
            points=[
                (
                    _date(d["started_at"]),
                    d["overall"]["rpo_seconds"],
                    d["targets"]["rpo_seconds"],
                    d is record,
                )
                for d in drills
            ],
        )
        + "</div>"
    )
    trend_rows = []
    for d in reversed(drills):  # newest first: the table is read for recent history
        o, t = d["overall"], d["targets"]
        trend_rows.append(
            (
                _e(d["started_at"]) + (" <strong>(this drill)</strong>" if d is record else ""),
                f"<code>{_e(d.get('run_id'))}</code>",
                _pill(d["passed"]),
                _duration_cell(o.get("rto_seconds"), bool(o.get("rto_met"))),
                _e(format_duration(t["rto_seconds"])),
                _duration_cell(o.get("rpo_seconds"), bool(o.get("rpo_met"))),
                _e(format_duration(t["rpo_seconds"])),
                _e(f"{o.get('verified', '?')} / {o.get('resources', '?')}"),
                _e(len(d.get("leftovers") or [])),
            )
        )
    parts.append(
        "<h3>All drills (newest first)</h3>"
        + _table(
            (
                "Started",
                "Run",
                "Result",
                "RTO",
                "RTO target",
                "RPO",
                "RPO target",
                "Verified",
                "Leftovers",
            ),
            trend_rows,
            numeric={3, 4, 5, 6, 7, 8},
        )
        + "</section>"
    )

    # NIST SP 800-53 evidence.
    control_rows = [
        (
            f"<strong>{_e(c['control'])}</strong>",
            _e(c["title"]),
            _e(", ".join(c["checks"]) or "none"),
            _pill(c["passed"] if c["checks"] else None),
        )
        for c in record["controls"]
    ]
    check_rows = [
        (
            f"<code>{_e(c['name'])}</code>",
            _pill(c["passed"]),
            _e(c["detail"]),
            _e(", ".join(c["controls"])),
        )
        for c in record["checks"]
    ]
    parts.append(
        "<section><h2>NIST SP 800-53 control evidence</h2>"
        + _table(("Control", "Title", "Evidenced by", "Status"), control_rows, numeric=set())
        + "<h3>Checks</h3>"
        + _table(("Check", "Result", "Detail", "Controls"), check_rows, numeric=set(), wide=2)
        + "</section>"
    )

    # Teardown.
    parts.append(
        "<section><h2>Sandbox teardown</h2>"
        + (
            f'<p class="ok">Sandbox <code>{_e(record.get("sandbox_id") or "-")}</code> was torn '
            "down; nothing the drill created remains.</p>"
            if not leftovers
            else f'<p class="bad">{len(leftovers)} resource(s) the drill created still exist '
            "and must be deleted by hand:</p><ul>"
            + "".join(f"<li><code>{_e(x)}</code></li>" for x in leftovers)
            + "</ul>"
        )
        + (
            '<p class="bad">Failed steps: ' + _e(", ".join(record["failed_tasks"])) + "</p>"
            if record.get("failed_tasks")
            else ""
        )
        + "</section>"
    )
    parts.append(
        f"<footer>{_e(record['kind'])} v{_e(record['version'])} \u00b7 generated by SecureDR "
        "from the drill record</footer>"
    )
    parts += ["</main>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"
