"""The DR plan: one YAML file that says what is protected, where copies go and who may recover.

The plan is validated completely when it is loaded. Every problem is reported with the field's
path, what was expected and what was found, and an invalid plan raises :class:`PlanError` before
any AWS call is made. Nothing here imports Airflow or boto3.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

#: Where the plan is read from unless ``SECUREDR_PLAN`` names another file.
DEFAULT_PLAN_PATH = Path(__file__).resolve().parents[3] / "include" / "dr_plan.yaml"
PLAN_ENV_VAR = "SECUREDR_PLAN"

REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
KMS_KEY_RE = re.compile(
    r"^(alias/[A-Za-z0-9/_-]+"
    r"|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key/[0-9a-f-]{36}|alias/[A-Za-z0-9/_-]+)"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
USER_RE = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}$")

ResourceType = Literal["ebs", "rds"]


class PlanError(ValueError):
    """The plan is invalid; ``problems`` lists each one as ``(field path, message)``."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {path}: {message}" for path, message in problems)
        super().__init__(
            f"DR plan {source} is invalid ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}); fix the plan and run again:\n{lines}"
        )


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Regions(_Model):
    sources: list[str] = Field(min_length=1, description="Regions whose resources are protected")
    dr: str = Field(description="The DR Region that holds the copies")

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        for region in value:
            _check_region(region)
        if len(set(value)) != len(value):
            raise ValueError(f"lists a Region twice: {value}")
        return value

    @field_validator("dr")
    @classmethod
    def _dr(cls, value: str) -> str:
        return _check_region(value)

    @model_validator(mode="after")
    def _dr_not_a_source(self) -> Regions:
        if self.dr in self.sources:
            raise ValueError(
                f"the DR Region {self.dr!r} is also a source Region; a DR copy must live "
                "in another Region than the data it protects"
            )
        return self


class Selection(_Model):
    tag_key: str = Field(default="dr:backup", min_length=1, max_length=128)
    tag_value: str = Field(default="nightly", min_length=1, max_length=256)
    resource_types: list[ResourceType] = Field(default_factory=lambda: ["ebs", "rds"], min_length=1)


class Retention(_Model):
    keep_days: int = Field(ge=1, le=36500)
    min_copies: int = Field(ge=1, le=1000)
    dry_run: bool = False


class Targets(_Model):
    rpo_hours: float = Field(gt=0, le=24 * 366)
    rto_minutes: float = Field(gt=0, le=60 * 24 * 30)


class EvidenceBucket(_Model):
    name: str
    object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    object_lock_days: int = Field(default=30, ge=1, le=36500)
    prefix: str = "securedr"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not BUCKET_RE.match(value) or ".." in value:
            raise ValueError(
                f"expected an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens), "
                f"found {value!r}"
            )
        return value


class Signing(_Model):
    private_key_variable: str = Field(
        default="securedr_signing_private_key",
        description="Airflow Variable holding the Ed25519 private key (PEM)",
    )
    trusted_keys: str = Field(
        description="PEM bundle of every public key whose manifests are trusted (rotation: "
        "append the new key, keep the old ones until their manifests expire)"
    )


class Access(_Model):
    initiators: list[str] = Field(min_length=1)
    approvers: list[str] = Field(min_length=1)
    approval_timeout_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)

    @field_validator("initiators", "approvers")
    @classmethod
    def _users(cls, value: list[str]) -> list[str]:
        for user in value:
            if not USER_RE.match(user):
                raise ValueError(f"expected user names (letters, digits, _.@+-), found {user!r}")
        return value

    @model_validator(mode="after")
    def _two_people(self) -> Access:
        # Every initiator needs somebody else who can approve, or their runs could never start.
        stuck = [i for i in self.initiators if not set(self.approvers) - {i}]
        if stuck:
            raise ValueError(
                f"initiator(s) {', '.join(stuck)} would have no approver other than themselves; "
                "add a second approver"
            )
        return self


class Waits(_Model):
    snapshot_timeout_minutes: int = Field(default=6 * 60, ge=1, le=7 * 24 * 60)
    copy_timeout_minutes: int = Field(default=48 * 60, ge=1, le=7 * 24 * 60)
    poll_seconds: int = Field(default=30, ge=1, le=3600)
    max_copies_in_flight: int = Field(
        default=20, ge=1, le=20, description="per destination Region; the EBS quota is 20"
    )


class RestoreTarget(_Model):
    role_arn: str | None = None
    external_id_variable: str = "securedr_restore_external_id"
    availability_zone: str | None = None
    db_subnet_group: str | None = None
    security_group_ids: list[str] = Field(default_factory=list)
    db_instance_class: str | None = None


class Notifications(_Model):
    sns_topic_arn: str | None = None


class Plan(_Model):
    """A validated DR plan. Instances are immutable."""

    version: Literal[1] = 1
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    regions: Regions
    kms_keys: dict[str, str]
    selection: Selection = Field(default_factory=Selection)
    retention: Retention
    targets: Targets
    evidence_bucket: EvidenceBucket
    signing: Signing
    access: Access
    waits: Waits = Field(default_factory=Waits)
    restore: RestoreTarget = Field(default_factory=RestoreTarget)
    notifications: Notifications = Field(default_factory=Notifications)

    @field_validator("kms_keys")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        for region, key in value.items():
            _check_region(region)
            if not KMS_KEY_RE.match(key):
                raise ValueError(
                    f"{region}: expected a KMS key alias ('alias/name'), key id or key ARN, "
                    f"found {key!r}"
                )
            if key.startswith("alias/aws/") or ":alias/aws/" in key:
                raise ValueError(
                    f"{region}: {key!r} is an AWS-managed key; DR copies need a customer-managed "
                    "key (AWS-managed keys cannot be shared or rotated on your terms)"
                )
        return value

    @model_validator(mode="after")
    def _key_per_region(self) -> Plan:
        missing = [r for r in [*self.regions.sources, self.regions.dr] if r not in self.kms_keys]
        if missing:
            raise ValueError(
                f"kms_keys has no key for Region(s) {', '.join(missing)}; every source Region "
                "and the DR Region needs a customer-managed key"
            )
        return self

    @property
    def all_regions(self) -> list[str]:
        """Source Regions followed by the DR Region."""
        return [*self.regions.sources, self.regions.dr]

    def kms_key(self, region: str) -> str:
        """The plan's key (alias, id or ARN) for ``region``."""
        return self.kms_keys[region]

    def trusted_keys_path(self, base_dir: Path) -> Path:
        """The trusted-keys bundle, with ``$VARS`` and ``~`` expanded, relative to ``base_dir``."""
        path = Path(os.path.expanduser(os.path.expandvars(self.signing.trusted_keys)))
        return path if path.is_absolute() else base_dir / path


def _check_region(value: str) -> str:
    if not REGION_RE.match(value):
        raise ValueError(f"expected an AWS Region name like 'us-west-2', found {value!r}")
    return value


def parse_plan(data: Any, source: str = "<plan>") -> Plan:
    """Validate parsed YAML as a plan; raise :class:`PlanError` listing every problem."""
    if not isinstance(data, Mapping):
        raise PlanError(source, [("(top level)", f"expected a mapping, found {_kind(data)}")])
    try:
        return Plan.model_validate(dict(data))
    except ValidationError as exc:
        raise PlanError(source, [_describe(err) for err in exc.errors()]) from None


def load_plan(path: str | os.PathLike[str] | None = None) -> Plan:
    """Read and validate the plan at ``path``, ``$SECUREDR_PLAN`` or the default location."""
    resolved = Path(path or os.environ.get(PLAN_ENV_VAR) or DEFAULT_PLAN_PATH)
    try:
        text = resolved.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(
            str(resolved),
            [("(file)", f"not found; create it or set {PLAN_ENV_VAR} to the plan's path")],
        ) from None
    except UnicodeDecodeError as exc:
        raise PlanError(
            str(resolved), [("(file)", f"is not UTF-8 text (byte {exc.start}); save it as UTF-8")]
        ) from None
    except OSError as exc:
        raise PlanError(str(resolved), [("(file)", f"cannot be read: {exc.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise PlanError(str(resolved), [(where, f"not valid YAML: {exc}")]) from None
    except ValueError as exc:  # PyYAML builds dates and times itself and raises plain errors
        raise PlanError(
            str(resolved), [("(file)", f"holds a value YAML cannot read: {exc}")]
        ) from None
    return parse_plan(data, str(resolved))


def plan_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The directory relative paths in the plan are resolved against."""
    return Path(path or os.environ.get(PLAN_ENV_VAR) or DEFAULT_PLAN_PATH).resolve().parent


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


def _describe(err: Mapping[str, Any]) -> tuple[str, str]:
    path = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    found = err.get("input")
    if kind == "missing":
        return path, "is required but missing"
    if kind == "extra_forbidden":
        return path, "is not a plan field (check the spelling; see include/dr_plan.yaml)"
    message = str(err["msg"]).removeprefix("Value error, ")
    if kind in ("value_error", "assertion_error") or isinstance(found, dict):
        return path, message
    return path, f"{message}; found {found!r}"
