"""The restore request: what a manual DR run was asked to do, validated against the plan.

The trigger form of ``dr_restore`` already checks types with JSON schema; this module is the
authoritative check, run before any AWS call. :func:`parse_restore_request` either returns a
:class:`RestoreRequest` whose every field is known-good or raises :class:`RestoreRequestError`
listing every problem (field, what was wrong, what to do). Constants below are shared with the
DAG's ``Param`` definitions so the form and this check cannot drift apart.

Pure module: no Airflow, no boto3, no I/O.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from securedr.core.plan import REGION_RE, Plan

#: ``recovery_point`` value that picks the newest signed manifest.
LATEST = "latest"
#: ``resources`` value that restores every point of the chosen manifest.
ALL_RESOURCES = "all"

REASON_MIN_LENGTH = 15
REASON_MAX_LENGTH = 1000
MAX_RESOURCES = 100
RECOVERY_POINT_MAX_LENGTH = 256

#: Loose pattern for the trigger form; :func:`classify_recovery_point` is the exact check.
RECOVERY_POINT_PATTERN = r"^[A-Za-z0-9_.:+/-]{1,256}$"
TICKET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9#._/-]{0,63}$"
#: An EBS volume id or an RDS DB instance identifier (the ids discovery records as source ids).
RESOURCE_ID_PATTERN = r"^(vol-[0-9a-f]{8}([0-9a-f]{9})?|[A-Za-z][A-Za-z0-9-]{0,62})$"

_EBS_SNAPSHOT_RE = re.compile(r"^snap-[0-9a-f]{8}([0-9a-f]{9})?$")
# Identifiers SecureDR gives DB snapshots (core.model.rds_snapshot_identifier).
_RDS_SNAPSHOT_RE = re.compile(r"^securedr-[a-z0-9]+(-[a-z0-9]+)*$")
_MANIFEST_KEY_RE = re.compile(
    r"^(?:(?P<prefix>[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*)/)?manifests/(?P<plan>[A-Za-z0-9_.-]+)/"
    r"(?P<name>\d{8}T\d{6}Z-[0-9a-f]{16}\.json)$"
)
# Airflow run ids: "<run type>__<logical date or suffix>".
_RUN_ID_RE = re.compile(
    r"^(manual|scheduled|backfill|asset_triggered|dataset_triggered)__[A-Za-z0-9_.:+-]{1,200}$"
)
_RESOURCE_ID_RE = re.compile(RESOURCE_ID_PATTERN)
_TICKET_RE = re.compile(TICKET_PATTERN)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

Selector = Literal["latest", "manifest", "run", "snapshot"]

#: Where a restore reads its signed manifests and recovery points from.
#: ``workload``: the workload account's evidence bucket and DR copies (SecureDR without a vault).
#: ``vault``: the vault evidence bucket and the vault copies, under the plan's vault recovery
#: role - for when the workload account is lost or compromised.
SOURCE_WORKLOAD = "workload"
SOURCE_VAULT = "vault"
SOURCES = (SOURCE_WORKLOAD, SOURCE_VAULT)
Source = Literal["workload", "vault"]

#: Every key the trigger form can send; anything else is a typo we refuse to guess about.
PARAM_NAMES = frozenset(
    {
        "recovery_point",
        "resources",
        "target_region",
        "availability_zone",
        "reason",
        "ticket",
        "dry_run",
        "source",
        # The initiator's one-time MFA code: checked by check_initiator, never part of the
        # request (nor of anything logged, returned or audited).
        "mfa_code",
    }
)


class RestoreRequestError(ValueError):
    """The restore request is malformed; ``problems`` lists ``(field, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {field}: {message}" for field, message in problems)
        super().__init__(
            f"The restore request is invalid ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}); nothing was done. Trigger a new run with "
            f"corrected parameters:\n{lines}"
        )


@dataclass(frozen=True)
class RestoreRequest:
    """A validated restore request.

    ``resources`` is empty when every point of the chosen manifest is to be restored.
    ``recovery_point`` is normalised (a manifest key is reduced to ``manifests/<plan>/<name>``).
    """

    recovery_point: str
    selector: Selector
    resources: tuple[str, ...]
    target_region: str
    availability_zone: str
    reason: str
    ticket: str | None
    dry_run: bool
    #: Default for requests recorded before the restore source existed.
    source: Source = SOURCE_WORKLOAD

    @property
    def from_vault(self) -> bool:
        return self.source == SOURCE_VAULT

    @property
    def all_resources(self) -> bool:
        return not self.resources

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["resources"] = list(self.resources)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RestoreRequest:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"RestoreRequest: unknown field(s) {sorted(unknown)}")
        return cls(**{**data, "resources": tuple(data.get("resources", ()))})

    def describe_resources(self) -> str:
        return "every recovery point" if self.all_resources else ", ".join(self.resources)


def classify_recovery_point(value: str, plan_name: str) -> tuple[Selector, str] | None:
    """What ``value`` names (and its normal form), or None if it names nothing SecureDR knows."""
    if value == LATEST:
        return "latest", value
    if _EBS_SNAPSHOT_RE.match(value) or _RDS_SNAPSHOT_RE.match(value):
        return "snapshot", value
    manifest = _MANIFEST_KEY_RE.match(value)
    if manifest:
        if manifest.group("plan") != plan_name:
            return None
        return "manifest", f"manifests/{plan_name}/{manifest.group('name')}"
    if _RUN_ID_RE.match(value):
        return "run", value
    return None


def default_source(plan: Plan) -> Source:
    """The source a request that names none restores from: the vault when the plan has one.

    With a vault, every nightly leaves the verified copies in the vault account and deletes the
    workload account's intermediate EBS copies, so the vault is the only complete source.
    """
    return SOURCE_VAULT if plan.vault is not None else SOURCE_WORKLOAD


def resolve_source(value: Any, plan: Plan) -> Source:
    """``value`` (the ``source`` parameter) checked against ``plan``; raises ``ValueError``
    naming what is wrong and what to do. Empty means :func:`default_source`."""
    if value is None or value == "":
        return default_source(plan)
    if value not in SOURCES:
        raise ValueError(
            f"{_show(value)} is not a restore source; use {SOURCE_WORKLOAD!r} (the workload "
            f"account's DR copies), {SOURCE_VAULT!r} (the vault copies) or leave it empty "
            f"({default_source(plan)!r} for this plan)"
        )
    if value == SOURCE_VAULT and plan.vault is None:
        raise ValueError(
            "the plan has no vault section, so there are no vault copies to restore from; "
            f"use {SOURCE_WORKLOAD!r} or leave it empty"
        )
    return value  # type: ignore[return-value]


def parse_restore_request(params: Mapping[str, Any], plan: Plan) -> RestoreRequest:
    """Validate the trigger parameters against ``plan``; raise :class:`RestoreRequestError`.

    Guarantees: every problem is reported at once; nothing outside ``params`` and ``plan`` is
    read; the result only names the plan's DR Region as target (restores run where the DR copies
    and the DR key live) and an Availability Zone inside it.
    """
    problems: list[tuple[str, str]] = []
    if not isinstance(params, Mapping):
        raise RestoreRequestError([("(parameters)", "expected a mapping of parameters")])
    unknown = sorted(str(k) for k in params if k not in PARAM_NAMES)
    if unknown:
        problems.append(
            (
                ", ".join(unknown),
                f"not a dr_restore parameter; the parameters are {', '.join(sorted(PARAM_NAMES))}",
            )
        )

    recovery_point, selector = _recovery_point(params.get("recovery_point"), plan, problems)
    resources = _resources(params.get("resources", ALL_RESOURCES), problems)
    target_region = _target_region(params.get("target_region"), plan, problems)
    availability_zone = _availability_zone(
        params.get("availability_zone"), target_region, plan, problems
    )
    source: Source = SOURCE_WORKLOAD
    try:
        source = resolve_source(params.get("source"), plan)
    except ValueError as exc:
        problems.append(("source", str(exc)))
    reason = _reason(params.get("reason"), problems)
    ticket = _ticket(params.get("ticket"), problems)
    dry_run = params.get("dry_run", False)
    if type(dry_run) is not bool:
        problems.append(("dry_run", f"expected true or false, found {_show(dry_run)}"))

    if problems:
        raise RestoreRequestError(problems)
    return RestoreRequest(
        recovery_point=recovery_point,
        selector=selector,
        resources=resources,
        target_region=target_region,
        availability_zone=availability_zone,
        reason=reason,
        ticket=ticket,
        dry_run=bool(dry_run),
        source=source,
    )


# --------------------------------------------------------------------------- fields


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _recovery_point(
    value: Any, plan: Plan, problems: list[tuple[str, str]]
) -> tuple[str, Selector]:
    if value is None:
        value = LATEST
    if not isinstance(value, str) or not value.strip():
        problems.append(("recovery_point", f"expected a non-empty string, found {_show(value)}"))
        return "", "latest"
    value = value.strip()
    if len(value) > RECOVERY_POINT_MAX_LENGTH:
        problems.append(("recovery_point", f"longer than {RECOVERY_POINT_MAX_LENGTH} characters"))
        return "", "latest"
    classified = classify_recovery_point(value, plan.name)
    if classified is None:
        problems.append(
            (
                "recovery_point",
                f"{_show(value)} names no recovery point; use 'latest', a manifest key "
                f"(manifests/{plan.name}/<time>Z-<token>.json), a nightly run id "
                "(scheduled__...), an EBS snapshot id (snap-...) or a SecureDR DB snapshot "
                "identifier (securedr-...)",
            )
        )
        return "", "latest"
    selector, normal = classified
    return normal, selector


def _resources(value: Any, problems: list[tuple[str, str]]) -> tuple[str, ...]:
    if value is None or value == ALL_RESOURCES:
        return ()
    if isinstance(value, str):
        # A single id typed into the form as text.
        value = [value]
    if not isinstance(value, list | tuple):
        problems.append(
            ("resources", f"expected 'all' or a list of source ids, found {_show(value)}")
        )
        return ()
    if not value:
        problems.append(("resources", "is empty; use 'all' or list the source ids to restore"))
        return ()
    if list(value) == [ALL_RESOURCES]:
        return ()
    if len(value) > MAX_RESOURCES:
        problems.append(("resources", f"lists more than {MAX_RESOURCES} ids; use 'all'"))
        return ()
    ids: list[str] = []
    for index, item in enumerate(value):
        if item == ALL_RESOURCES:
            problems.append(
                ("resources", "'all' cannot be combined with ids; use either 'all' or ids")
            )
            return ()
        if not isinstance(item, str) or not _RESOURCE_ID_RE.match(item):
            problems.append(
                (
                    f"resources[{index}]",
                    f"{_show(item)} is not a source id (an EBS volume id vol-... or an RDS DB "
                    "instance identifier)",
                )
            )
            continue
        if item in ids:
            problems.append((f"resources[{index}]", f"{item} is listed twice"))
            continue
        ids.append(item)
    return tuple(ids)


def _target_region(value: Any, plan: Plan, problems: list[tuple[str, str]]) -> str:
    dr = plan.regions.dr
    if value is None or value == "":
        return dr
    if not isinstance(value, str) or not REGION_RE.match(value):
        problems.append(
            ("target_region", f"expected an AWS Region name like {dr!r}, found {_show(value)}")
        )
        return dr
    if value != dr:
        problems.append(
            (
                "target_region",
                f"{value} is not the plan's DR Region {dr}; SecureDR restores where the DR "
                "copies and the DR key live. Leave it empty or set it to " + dr,
            )
        )
        return dr  # so later checks (the Availability Zone) do not report follow-on problems
    return value


def _availability_zone(value: Any, region: str, plan: Plan, problems: list[tuple[str, str]]) -> str:
    if value is None or value == "":
        configured = plan.restore.availability_zone
        value = configured if configured else f"{region}a"
        source = "the plan's restore.availability_zone"
    else:
        source = "availability_zone"
    if not isinstance(value, str) or not re.fullmatch(re.escape(region) + r"[a-z]", value):
        problems.append(
            (
                "availability_zone" if source == "availability_zone" else "restore",
                f"{source} {_show(value)} is not an Availability Zone of {region} "
                f"(expected {region}a, {region}b, ...)",
            )
        )
    return str(value)


def _reason(value: Any, problems: list[tuple[str, str]]) -> str:
    if not isinstance(value, str):
        problems.append(
            ("reason", "is required: say why this restore is needed (it goes to the approvers)")
        )
        return ""
    value = value.strip()
    if len(value) < REASON_MIN_LENGTH:
        problems.append(
            (
                "reason",
                f"is {len(value)} characters; give at least {REASON_MIN_LENGTH} so the "
                "approvers know why this restore is needed",
            )
        )
    elif len(value) > REASON_MAX_LENGTH:
        problems.append(("reason", f"is longer than {REASON_MAX_LENGTH} characters"))
    elif _CONTROL_RE.search(value):
        problems.append(("reason", "contains control characters"))
    return value


def _ticket(value: Any, problems: list[tuple[str, str]]) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _TICKET_RE.match(value):
        problems.append(
            (
                "ticket",
                f"{_show(value)} is not a ticket reference (letters, digits and #._/-, "
                "at most 64 characters, e.g. INC-1234)",
            )
        )
        return None
    return value
