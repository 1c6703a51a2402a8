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
    # COMPLIANCE: no principal, root included, can delete or shorten a locked version before
    # its retention ends; GOVERNANCE can be bypassed by anyone granted
    # s3:BypassGovernanceRetention, so it needs an explicit opt-in (and pre-flight warns).
    # https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html#object-lock-retention-modes
    object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "COMPLIANCE"
    object_lock_days: int = Field(default=30, ge=1, le=36500)
    prefix: str = "securedr"
    allow_governance: bool = False

    @model_validator(mode="after")
    def _governance_needs_opt_in(self) -> EvidenceBucket:
        if self.object_lock_mode == "GOVERNANCE" and not self.allow_governance:
            raise ValueError(
                "object_lock_mode GOVERNANCE lets anyone with s3:BypassGovernanceRetention "
                "delete evidence; use COMPLIANCE, or set evidence_bucket.allow_governance: true "
                "to accept that explicitly"
            )
        return self

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
    file_set_directory: str | None = Field(
        default=None,
        description="Local directory restored file sets are written under (one folder per run)",
    )

    def file_set_path(self, base_dir: Path) -> Path | None:
        """``file_set_directory`` with ``$VARS`` and ``~`` expanded, relative to ``base_dir``."""
        if self.file_set_directory is None:
            return None
        return _expand_path(self.file_set_directory, base_dir)


class Notifications(_Model):
    sns_topic_arn: str | None = None


#: ``s3://bucket`` or ``s3://bucket/prefix``; the prefix is taken literally (no globbing).
S3_URL_RE = re.compile(r"^s3://(?P<bucket>[^/]+)(?:/(?P<prefix>.*))?$")
FILE_SET_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class FileSet(_Model):
    """One set of files to back up: every object under an S3 prefix, or every regular file
    under a local directory (database dumps, exports), recursively."""

    name: str = Field(description="Unique within the plan; names the set in keys and reports")
    source: str = Field(description="'s3://bucket/prefix' or a local directory")
    region: str | None = Field(default=None, description="The source bucket's Region (S3 only)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not FILE_SET_NAME_RE.match(value):
            raise ValueError(
                "expected 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter "
                f"or digit, found {value!r}"
            )
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if value.lower().startswith("s3:"):
            match = S3_URL_RE.match(value)
            if not match or not value.startswith("s3://"):
                raise ValueError(f"expected 's3://bucket/prefix', found {value!r}")
            bucket, prefix = match["bucket"], match["prefix"] or ""
            if not BUCKET_RE.match(bucket) or ".." in bucket:
                raise ValueError(
                    f"{bucket!r} in {value!r} is not an S3 bucket name (3-63 lowercase letters, "
                    "digits, dots, hyphens)"
                )
            if (
                prefix.startswith("/")
                or "//" in prefix
                or any(part in (".", "..") for part in prefix.split("/"))
            ):
                raise ValueError(f"the prefix in {value!r} has empty, '.' or '..' parts")
            return value
        if "://" in value:
            raise ValueError(
                f"expected 's3://bucket/prefix' or a local directory, found {value!r} (only S3 "
                "URLs are supported)"
            )
        if not value:
            raise ValueError("is empty; give 's3://bucket/prefix' or a local directory")
        return value

    @model_validator(mode="after")
    def _region(self) -> FileSet:
        if self.is_s3:
            if self.region is None:
                raise ValueError(
                    f"file set {self.name!r}: an S3 source needs 'region' (the source bucket's "
                    "Region)"
                )
            _check_region(self.region)
        elif self.region is not None:
            raise ValueError(
                f"file set {self.name!r}: 'region' is only for S3 sources; remove it for a "
                "local directory"
            )
        return self

    @property
    def is_s3(self) -> bool:
        return self.source.startswith("s3://")

    @property
    def bucket(self) -> str:
        """The source bucket (S3 sources only)."""
        match = S3_URL_RE.match(self.source)
        if not self.is_s3 or match is None:
            raise ValueError(f"file set {self.name!r} is not an S3 source")
        return match["bucket"]

    @property
    def prefix(self) -> str:
        """The source key prefix (S3 sources only; may be empty for a whole bucket)."""
        match = S3_URL_RE.match(self.source)
        if not self.is_s3 or match is None:
            raise ValueError(f"file set {self.name!r} is not an S3 source")
        return match["prefix"] or ""

    def directory(self, base_dir: Path) -> Path:
        """The local source directory, ``$VARS`` and ``~`` expanded, relative to ``base_dir``."""
        return _expand_path(self.source, base_dir)


class FileSets(_Model):
    """File sets backed up as SecureDR envelopes (docs/envelope-format.md) into the evidence
    bucket, each data key wrapped by the DR Region's KMS key and by the offline recovery key."""

    recovery_public_key: str = Field(
        description="The offline recovery public key (securedr-recovery-pub-...), or a file "
        "holding it; its private half never touches SecureDR"
    )
    sets: list[FileSet] = Field(min_length=1)

    @field_validator("sets")
    @classmethod
    def _unique(cls, value: list[FileSet]) -> list[FileSet]:
        names = [s.name for s in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"file set name(s) used more than once: {', '.join(twice)}")
        return value

    def public_key_text(self, base_dir: Path) -> str:
        """The recovery public key text, read from its file if the plan names one.

        Raises :class:`ValueError` (no key material in the message) if the file is missing or
        does not hold exactly one valid public key.
        """
        from securedr.core.envelope import (
            PRIVATE_KEY_PREFIX,
            PUBLIC_KEY_PREFIX,
            KeyFormatError,
            recovery_key_id,
        )

        value = self.recovery_public_key
        if value.upper().startswith(PRIVATE_KEY_PREFIX):
            # Never echoed: it is the secret that must stay offline.
            raise ValueError(
                "expected a recovery public key (securedr-recovery-pub-...) but this is the "
                "PRIVATE key; remove it from the plan, keep it offline, and treat it as exposed"
            )
        if value.lower().startswith(PUBLIC_KEY_PREFIX):
            text, where = value, "the key"
        else:
            path = _expand_path(value, base_dir)
            where = str(path)
            try:
                raw = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise ValueError(
                    f"the recovery public key file {path} does not exist; create the key pair "
                    "offline with 'securedr keygen --out <private key file>' and save the "
                    "public key it prints in this file"
                ) from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(
                    f"the recovery public key file {path} cannot be read ({exc})"
                ) from None
            lines = [
                line.strip()
                for line in raw.splitlines()
                if line.strip() and not line.lstrip().startswith("#")
            ]
            if len(lines) != 1:
                raise ValueError(
                    f"{path} must hold exactly one securedr-recovery-pub-... line (found "
                    f"{len(lines)} non-comment lines)"
                )
            text = lines[0]
        try:
            recovery_key_id(text)
        except KeyFormatError as exc:
            raise ValueError(f"{where}: {exc}") from None
        return text


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
    file_sets: FileSets | None = None

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

    @model_validator(mode="after")
    def _file_sets_not_from_evidence(self) -> Plan:
        for file_set in self.file_sets.sets if self.file_sets else []:
            if file_set.is_s3 and file_set.bucket == self.evidence_bucket.name:
                raise ValueError(
                    f"file_sets: file set {file_set.name!r} reads the evidence bucket itself; "
                    "back up source data, not SecureDR's own copies"
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
        return _expand_path(self.signing.trusted_keys, base_dir)

    def recovery_public_key(self, base_dir: Path) -> str:
        """The file sets' recovery public key text (see :meth:`FileSets.public_key_text`)."""
        if self.file_sets is None:
            raise ValueError("the plan has no file_sets section")
        return self.file_sets.public_key_text(base_dir)


def _expand_path(value: str, base_dir: Path) -> Path:
    path = Path(os.path.expanduser(os.path.expandvars(value)))
    return path if path.is_absolute() else base_dir / path


def _check_region(value: str) -> str:
    if not REGION_RE.match(value):
        raise ValueError(f"expected an AWS Region name like 'us-west-2', found {value!r}")
    return value


def parse_plan(data: Any, source: str = "<plan>", base_dir: Path | None = None) -> Plan:
    """Validate parsed YAML as a plan; raise :class:`PlanError` listing every problem.

    With ``base_dir`` (the plan file's directory) the files the plan names that must exist
    before anything runs are checked too: the file sets' recovery public key.
    """
    if not isinstance(data, Mapping):
        raise PlanError(source, [("(top level)", f"expected a mapping, found {_kind(data)}")])
    try:
        plan = Plan.model_validate(dict(data))
    except ValidationError as exc:
        raise PlanError(source, [_describe(err) for err in exc.errors()]) from None
    if base_dir is not None and plan.file_sets is not None:
        try:
            plan.recovery_public_key(base_dir)
        except ValueError as exc:
            raise PlanError(source, [("file_sets.recovery_public_key", str(exc))]) from None
    return plan


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
    return parse_plan(data, str(resolved), resolved.resolve().parent)


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
