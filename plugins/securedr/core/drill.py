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


def when(value: Any) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM UTC`` for tables; unparsable values are shown as-is."""
    moment, _ = _parse_time(value, "time")
    if moment is None:
        return "unknown" if value in (None, "") else f"{value} (invalid)"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def verified_summary(overall: Mapping[str, Any]) -> str:
    """One sentence on how many restored resources were verified (the report's headline)."""
    total, verified, failed = overall["resources"], overall["verified"], overall["failed"]
    if not total:
        return "nothing was restored"
    if not failed:
        return "all resources passed"
    unverified = f" ({total - verified} not verified)" if total > verified else ""
    return f"{failed} of {total} resources FAILED{unverified}"
