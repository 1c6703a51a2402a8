"""The DR plan: one YAML file that says what is protected, where copies go and who may recover.

The plan is validated completely when it is loaded, in one pass: field types and formats, then
the rules that relate fields to each other (the DR Region is no source Region, every Region has
a key in that Region, the restore Availability Zone is in the DR Region, ...), each run even
when other fields are wrong. Every problem is reported with the field's path, what was expected
and what was found, and an invalid plan raises :class:`PlanError` before any AWS call is made.

The plan file is untrusted input (see :mod:`securedr.core.plan_yaml` for the size, alias and
depth limits); messages are bounded and never echo a value that looks like a key or a secret
(:mod:`securedr.core.redaction`). Nothing here imports Airflow or boto3.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from securedr.core.plan_yaml import (
    PlanFileError,
    UndefinedVariableError,
    expand_variables,
    parse_plan_yaml,
    read_plan_text,
    read_small_text,
    undefined_variables,
)
from securedr.core.redaction import bounded, redact, secret_kind

#: Where the plan is read from unless ``SECUREDR_PLAN`` names another file.
DEFAULT_PLAN_PATH = Path(__file__).resolve().parents[3] / "include" / "dr_plan.yaml"
PLAN_ENV_VAR = "SECUREDR_PLAN"

REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
# Key ids are UUIDs, or "mrk-" and 32 hex digits for multi-Region keys, which DR relies on: the
# replica in the DR Region has the same key id and its own ARN in that Region
# (https://docs.aws.amazon.com/kms/latest/APIReference/API_MultiRegionKey.html; example ids in
# https://docs.aws.amazon.com/sdk-for-kotlin/api/latest/kms/aws.sdk.kotlin.services.kms.model/-replicate-key-request/key-id.html).
_KEY_ID = r"(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})"
_ALIAS = r"alias/[A-Za-z0-9/_-]{1,250}"
KMS_KEY_RE = re.compile(
    rf"^({_ALIAS}"
    rf"|arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):\d{{12}}:(key/{_KEY_ID}|{_ALIAS})"
    rf"|{_KEY_ID})$"
)
#: ``arn:<partition>:iam::<account>:role/<path/name>`` (IAM roles are global: no Region).
ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
#: ``arn:<partition>:sns:<region>:<account>:<topic>``; topic names are 1-256 ASCII letters,
#: digits, underscores and hyphens, and a FIFO topic's name ends in ".fifo" (CreateTopic's Name:
#: https://docs.aws.amazon.com/sdk-for-kotlin/api/latest/sns/aws.sdk.kotlin.services.sns.model/-create-topic-request/name.html).
SNS_TOPIC_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:sns:(?P<region>[a-z0-9-]+):\d{12}:"
    r"([A-Za-z0-9_-]{1,256}|[A-Za-z0-9_-]{1,251}\.fifo)$"
)
#: An Availability Zone name is its Region code followed by a letter
#: (https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-availability-zones.html).
AZ_RE = re.compile(r"^(?P<region>[a-z]{2}(-gov)?-[a-z]+-\d)(?P<zone>[a-z])$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
USER_RE = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}$")

ResourceType = Literal["ebs", "rds"]


#: At most this many problems are listed; the rest are counted.
MAX_LISTED_PROBLEMS = 50


class PlanError(ValueError):
    """The plan is invalid; ``problems`` lists each one as ``(field path, message)``.

    Paths and messages are redacted (no key or secret is ever echoed) and bounded in length,
    and at most :data:`MAX_LISTED_PROBLEMS` are kept, so the error is always small.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        kept = [(bounded(redact(p), 200), bounded(redact(m))) for p, m in problems]
        if len(kept) > MAX_LISTED_PROBLEMS:
            more = len(kept) - MAX_LISTED_PROBLEMS + 1
            kept = [
                *kept[: MAX_LISTED_PROBLEMS - 1],
                ("(more)", f"{more} more problems not listed"),
            ]
        self.problems = problems = kept
        lines = "\n".join(f"  - {path}: {message}" for path, message in problems)
        super().__init__(
            f"DR plan {source} is invalid ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}); fix the plan and run again:\n{lines}"
        )


class _Model(BaseModel):
    # strict: YAML's true is no number and 5 is no string; every string must be non-empty.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if value == "":
            raise ValueError("is empty; give a value (or remove the field if it is optional)")
        return value


#: Validation context that leaves the rules between fields to :func:`_rule_problems`, which
#: parse_plan runs on the raw data so they are reported even when other fields are wrong.
_RULES_DEFERRED = "securedr.plan.rules_deferred"


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


class Waits(_Model):
    snapshot_timeout_minutes: int = Field(default=6 * 60, ge=1, le=7 * 24 * 60)
    copy_timeout_minutes: int = Field(default=48 * 60, ge=1, le=7 * 24 * 60)
    poll_seconds: int = Field(default=30, ge=1, le=3600)
    max_copies_in_flight: int = Field(
        default=20, ge=1, le=20, description="per destination Region; the EBS quota is 20"
    )
    quota_wait_seconds: int = Field(
        default=300,
        ge=1,
        le=3600,
        description="how long to wait before asking again when AWS's concurrent-copy limit is "
        "reached and none of this run's own copies is in flight (someone else holds the slots)",
    )
    unavailable_retry_minutes: int = Field(
        default=30,
        ge=0,
        le=24 * 60,
        description="how long a DB instance that is not 'available' (backing up, modifying...) "
        "is tried again before the run gives up on it",
    )
    missing_grace_seconds: int = Field(
        default=300,
        ge=0,
        le=3600,
        description="'not found' this soon after SecureDR created or copied a snapshot means "
        "pending, not gone: AWS describes are eventually consistent",
    )


class OptionGroups(_Model):
    """The option group each RDS DR copy gets in the DR Region (CopyDBSnapshot OptionGroupName).

    AWS requires one for cross-Region copies of Oracle and SQL Server databases using TDE, and
    advises one for any non-default option group. ``by_source`` (the source instance's option
    group) wins over ``by_engine`` (an engine name such as ``oracle-ee``, or its family
    ``oracle`` / ``sqlserver``).
    """

    by_source: dict[str, str] = Field(default_factory=dict)
    by_engine: dict[str, str] = Field(default_factory=dict)

    def for_db(self, engine: str | None, source_option_group: str | None) -> str | None:
        """The DR option group for a database, or None when the plan names none."""
        if source_option_group and source_option_group in self.by_source:
            return self.by_source[source_option_group]
        if engine:
            if engine in self.by_engine:
                return self.by_engine[engine]
            family = engine.split("-")[0]
            if family in self.by_engine:
                return self.by_engine[family]
        return None


class Rds(_Model):
    manual_snapshot_quota: int = Field(
        default=100,
        ge=1,
        le=100000,
        description="the account's manual DB snapshot quota per Region (AWS default 100); "
        "pre-flight warns when retention would need more",
    )
    # "You can have up to 20 snapshot copy requests in progress to a single destination Region
    # per account" (older accounts and older versions of the guide: five).
    # https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_CopySnapshot.html
    concurrent_copy_quota: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="cross-Region DB snapshot copies AWS lets run at once into one destination "
        "Region (AWS today: 20; some accounts: 5); the copy step never runs more RDS copies at "
        "once, and pre-flight estimates the copy window with it",
    )
    option_groups: OptionGroups = Field(default_factory=OptionGroups)


class RestoreTarget(_Model):
    role_arn: str | None = None
    external_id_variable: str = "securedr_restore_external_id"
    availability_zone: str | None = Field(
        default=None, description="An Availability Zone of the DR Region, e.g. us-west-2a"
    )
    db_subnet_group: str | None = None
    security_group_ids: list[str] = Field(default_factory=list)
    db_instance_class: str | None = None
    file_set_directory: str | None = Field(
        default=None,
        description="Local directory restored file sets are written under (one folder per run)",
    )

    @field_validator("role_arn")
    @classmethod
    def _role_arn(cls, value: str | None) -> str | None:
        if value is not None and not ROLE_ARN_RE.match(value):
            raise ValueError(
                "expected an IAM role ARN like 'arn:aws:iam::123456789012:role/securedr-restore' "
                f"(the dedicated restore role, see include/iam/), found {_show(value)}"
            )
        return value

    @field_validator("availability_zone")
    @classmethod
    def _availability_zone(cls, value: str | None) -> str | None:
        if value is not None and not AZ_RE.match(value):
            raise ValueError(
                "expected an Availability Zone name: the DR Region's name and a letter, like "
                f"'us-west-2a', found {_show(value)}"
            )
        return value

    def file_set_path(self, base_dir: Path) -> Path | None:
        """``file_set_directory`` with ``$VARS`` and ``~`` expanded, relative to ``base_dir``."""
        if self.file_set_directory is None:
            return None
        return _expand_path(self.file_set_directory, base_dir)


class Notifications(_Model):
    sns_topic_arn: str | None = None

    @field_validator("sns_topic_arn")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        match = SNS_TOPIC_ARN_RE.match(value) if value is not None else None
        if value is not None and (match is None or not REGION_RE.match(match["region"])):
            raise ValueError(
                "expected an SNS topic ARN like "
                f"'arn:aws:sns:us-west-2:123456789012:securedr-restore', found {_show(value)}"
            )
        return value


#: An SQS queue URL: ``https://sqs.<region>.amazonaws.com/<account>/<name>``.
SQS_QUEUE_URL_RE = re.compile(
    r"^https://sqs\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<account>\d{12})/"
    r"(?P<name>[A-Za-z0-9_-]{1,80}(?:\.fifo)?)$"
)
_PRINCIPAL_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(?:role|user)/[\w+=,.@/-]+$")


class IncidentResponse(_Model):
    """dr_incident_response: where its events arrive and whose calls are SecureDR's own.

    A call is SecureDR's own (and ignored) when its principal is one of ``own_principal_arns``
    (an IAM user, or a role: any session of it), or when it was made by a session of one of
    SecureDR's roles (the restore role, the vault roles, ``backup_role_arn``) whose session name
    starts with one of ``own_session_prefixes``. A session name alone proves nothing: anyone who
    may assume some role can pick it, so under any other role the same name is not ignored.
    """

    queue_url: str | None = Field(
        default=None,
        description="The SQS queue the rules in include/eventbridge/ feed (None: no watcher)",
    )
    backup_role_arn: str | None = Field(
        default=None,
        description="The role dr_nightly_backup runs under; its policies are watched too",
    )
    own_principal_arns: list[str] = Field(default_factory=list)
    own_session_prefixes: list[str] = Field(
        default_factory=lambda: [
            "securedr-restore-",
            "securedr-vault-",
            "securedr-drill-",
            "securedr-backup-",
        ]
    )
    trusted_accounts: list[str] = Field(
        default_factory=list,
        description="Accounts inside the plan besides the workload, vault and recovery accounts",
    )
    block_public_access_state: Literal["block-all-sharing", "block-new-sharing"] = (
        "block-all-sharing"
    )

    @field_validator("queue_url")
    @classmethod
    def _queue(cls, value: str | None) -> str | None:
        if value is not None and not SQS_QUEUE_URL_RE.match(value):
            raise ValueError(
                "expected an SQS queue URL like "
                "'https://sqs.us-west-2.amazonaws.com/123456789012/securedr-incidents', "
                f"found {_show(value)}"
            )
        return value

    @field_validator("backup_role_arn")
    @classmethod
    def _backup_role(cls, value: str | None) -> str | None:
        if value is not None and _role_account(value) is None:
            raise ValueError(
                "expected an IAM role ARN like 'arn:aws:iam::123456789012:role/securedr-backup', "
                f"found {_show(value)}"
            )
        return value

    @field_validator("own_principal_arns")
    @classmethod
    def _principals(cls, value: list[str]) -> list[str]:
        for arn in value:
            if not _PRINCIPAL_ARN_RE.match(arn):
                raise ValueError(
                    "expected IAM role or user ARNs like "
                    f"'arn:aws:iam::123456789012:role/securedr-backup', found {_show(arn)}"
                )
        return value

    @field_validator("trusted_accounts")
    @classmethod
    def _accounts(cls, value: list[str]) -> list[str]:
        for account in value:
            if not re.fullmatch(r"\d{12}", account):
                raise ValueError(f"expected 12-digit AWS account ids, found {_show(account)}")
        return value

    @field_validator("own_session_prefixes")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if len(prefix) < 4 or not re.fullmatch(r"[\w+=,.@-]+", prefix):
                raise ValueError(
                    "expected session name prefixes of at least 4 characters "
                    f"(letters, digits, +=,.@_-), found {_show(prefix)}"
                )
        return value


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

    def public_key_text(self, base_dir: Path) -> str:
        """The recovery public key text, read from its file if the plan names one.

        Raises :class:`ValueError` (no key material in the message) if the file is missing or
        does not hold exactly one valid public key.
        """
        return _recovery_key_text(self.recovery_public_key, base_dir)


def _recovery_key_text(value: str, base_dir: Path) -> str:
    """See :meth:`FileSets.public_key_text`; works on the raw plan value too."""
    from securedr.core.envelope import (
        PRIVATE_KEY_PREFIX,
        PUBLIC_KEY_PREFIX,
        KeyFormatError,
        recovery_key_id,
    )

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
            raw = read_small_text(path, 64 * 1024)
        except FileNotFoundError:
            raise ValueError(
                f"the recovery public key file {path} does not exist; create the key pair "
                "offline with 'securedr keygen --out <private key file>' and save the "
                "public key it prints in this file"
            ) from None
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"the recovery public key file {path} cannot be read ({exc}); it must be a "
                "small text file holding the securedr-recovery-pub-... line"
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


ACCOUNT_ID_RE = re.compile(r"^\d{12}$")
KEY_ARN_RE = re.compile(
    rf"^arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):(?P<account>\d{{12}}):key/{_KEY_ID}$"
)


def _role_account(arn: str | None) -> str | None:
    match = re.match(r"^arn:aws[a-z-]*:iam::(\d{12}):role/", arn or "")
    return match[1] if match else None


class VaultLock(_Model):
    """The EBS snapshot lock every vault copy gets, in compliance mode.

    Limits from https://docs.aws.amazon.com/ebs/latest/userguide/snapshot-lock-concepts.html:
    a cooling-off period of 1-72 hours (during which the lock may still be changed, after which
    nobody can unlock or shorten it) and a duration of 1-36,500 days.
    """

    cool_off_hours: int = Field(default=24, ge=1, le=72)
    duration_days: int | None = Field(
        default=None,
        ge=1,
        le=36500,
        description="how long a vault copy stays locked; default retention.keep_days + 1, and "
        "never less than retention.keep_days",
    )

    def duration_days_for(self, retention: Retention) -> int:
        """The lock duration in days: the plan's, or one day beyond the retention period."""
        return self.duration_days if self.duration_days is not None else retention.keep_days + 1


class VaultRecovery(_Model):
    """Who restores from the vault when the workload account is lost.

    The role lives in the account restores land in (the vault account or a third one) and must
    not trust the workload account: anyone holding the workload's credentials holds what it
    trusts.
    """

    role_arn: str
    external_id_variable: str = "securedr_vault_recovery_external_id"
    aws_conn_id: str = Field(
        default="aws_vault_recovery",
        description="Airflow connection whose principal assumes the recovery role (not the "
        "workload's connection)",
    )

    @field_validator("role_arn")
    @classmethod
    def _role_arn(cls, value: str) -> str:
        if not ROLE_ARN_RE.match(value):
            raise ValueError(
                "expected an IAM role ARN like "
                f"'arn:aws:iam::222222222222:role/securedr-vault-recovery', found {_show(value)}"
            )
        return value


class Vault(_Model):
    """A logically air-gapped vault in another account (README "A DR vault in another account").

    With a vault, every nightly DR copy ends up owned by ``account_id``, re-encrypted under the
    vault's key in the DR Region and locked; the workload account only ever holds the right to
    assume ``role_arn``, which may bring copies in and nothing else.
    """

    account_id: str
    role_arn: str
    external_id_variable: str = "securedr_vault_external_id"
    kms_keys: dict[str, str] = Field(min_length=1)
    evidence_bucket: str
    evidence_prefix: str = "securedr"
    lock: VaultLock = Field(default_factory=VaultLock)
    recovery: VaultRecovery

    @field_validator("account_id")
    @classmethod
    def _account_id(cls, value: str) -> str:
        if not ACCOUNT_ID_RE.match(value):
            raise ValueError(
                f"expected a 12-digit AWS account id in quotes, like '222222222222', found "
                f"{_show(value)}"
            )
        return value

    @field_validator("role_arn")
    @classmethod
    def _role_arn(cls, value: str) -> str:
        if not ROLE_ARN_RE.match(value):
            raise ValueError(
                "expected an IAM role ARN like "
                f"'arn:aws:iam::222222222222:role/securedr-vault-intake', found {_show(value)}"
            )
        return value

    @field_validator("evidence_bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        return EvidenceBucket._name(value)

    def kms_key(self, region: str) -> str:
        """The vault's key ARN in ``region``."""
        return self.kms_keys[region]


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
    rds: Rds = Field(default_factory=Rds)
    restore: RestoreTarget = Field(default_factory=RestoreTarget)
    notifications: Notifications = Field(default_factory=Notifications)
    file_sets: FileSets | None = None
    vault: Vault | None = None
    incident_response: IncidentResponse = Field(default_factory=IncidentResponse)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        if isinstance(value, bool):  # True == 1 in Python; a plan says "version: 1"
            raise ValueError(f"expected the plan format version 1, found {value!r}")
        return value

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Plan:
        if info.context and info.context.get(_RULES_DEFERRED):
            return self  # parse_plan reports them from the raw data, with exact paths
        problems = _rule_problems(self.model_dump())
        if problems:
            raise ValueError("; ".join(f"{path}: {message}" for path, message in problems))
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
    # An undefined $VAR raises (UndefinedVariableError names it) instead of staying literal.
    path = Path(os.path.expanduser(expand_variables(value)))
    return path if path.is_absolute() else base_dir / path


def _check_region(value: str) -> str:
    if not REGION_RE.match(value):
        raise ValueError(f"expected an AWS Region name like 'us-west-2', found {_show(value)}")
    return value


def parse_plan(data: Any, source: str = "<plan>", base_dir: Path | None = None) -> Plan:
    """Validate parsed YAML as a plan; raise :class:`PlanError` listing every problem.

    One pass reports everything: values that look like secrets (never echoed), field types and
    formats, undefined ``$VARS`` in paths and the rules between fields, each rule checked as
    long as the fields it reads are well-formed. With ``base_dir`` (the plan file's directory)
    the files the plan names that must exist before anything runs are checked too: the file
    sets' recovery public key.
    """
    if not isinstance(data, Mapping):
        raise PlanError(source, [("(top level)", f"expected a mapping, found {_kind(data)}")])
    strings = _strings(data)
    secrets = _secret_problems(strings)
    fields: list[tuple[str, str]] = []
    plan: Plan | None = None
    try:
        plan = Plan.model_validate(dict(data), context={_RULES_DEFERRED: True})
    except ValidationError as exc:
        fields = [_describe(err) for err in exc.errors()]
    rules = _variable_problems(data, strings) + _rule_problems(data)
    if base_dir is not None:
        key = _get(data, "file_sets", "recovery_public_key")
        if isinstance(key, str) and key.strip():
            try:
                _recovery_key_text(key.strip(), base_dir)
            except ValueError as exc:
                rules.append(("file_sets.recovery_public_key", str(exc)))
    # One problem per cause: a secret is reported once (without its value), and a rule is not
    # repeated where the field itself is already reported as malformed.
    secret_paths = {path for path, _ in secrets}
    fields = [f for f in fields if f[0] not in secret_paths]
    field_paths = secret_paths | {path for path, _ in fields}
    problems = list(dict.fromkeys(secrets + fields + [r for r in rules if r[0] not in field_paths]))
    if problems or plan is None:
        raise PlanError(source, problems or [("(top level)", "is not a valid plan")])
    return plan


def load_plan(path: str | os.PathLike[str] | None = None) -> Plan:
    """Read and validate the plan at ``path``, ``$SECUREDR_PLAN`` or the default location.

    The file is read within the limits of :mod:`securedr.core.plan_yaml` (a regular file of at
    most 1 MiB, YAML aliases and nesting bounded), so a hostile plan is refused quickly.
    """
    resolved = Path(path or os.environ.get(PLAN_ENV_VAR) or DEFAULT_PLAN_PATH)
    try:
        data = parse_plan_yaml(read_plan_text(resolved, PLAN_ENV_VAR))
    except PlanFileError as exc:
        raise PlanError(str(resolved), [(exc.where, exc.message)]) from None
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
    if kind in ("value_error", "assertion_error"):
        return path, message
    if kind == "string_too_short" and isinstance(found, str) and not found.strip():
        return path, "is empty; give a value (or remove the field if it is optional)"
    if isinstance(found, bool) and kind in ("int_type", "float_type", "string_type"):
        return path, (
            f"{message}; found the boolean {str(found).lower()} (YAML reads true/false, yes/no "
            "and on/off as booleans: write the number or quote the text)"
        )
    if kind == "string_type" and isinstance(found, (int, float)):
        return path, f"{message}; found the number {found!r} (quote it to make it text)"
    return path, f"{message}; found {_show(found)}"


def _show(value: Any) -> str:
    """A short, safe rendering of a value from the plan for a message.

    Collections are described by kind and size, never expanded (a YAML alias bomb is a small
    file whose values are huge); text is cut; secrets are blanked later by PlanError.
    """
    if isinstance(value, str):
        return repr(value) if len(value) <= 80 else f"{value[:60]!r}... ({len(value)} characters)"
    if isinstance(value, list | tuple | set | frozenset):
        return repr(value) if _is_small(value) else f"a list of {len(value)} items"
    if isinstance(value, Mapping):
        return repr(value) if _is_small(value) else f"a mapping of {len(value)} keys"
    if isinstance(value, bool | int | float | type(None)):
        text = repr(value)
        return text if len(text) <= 40 else f"a number of {len(text)} digits"
    return f"a value of type {type(value).__name__}"


def _is_small(value: Any) -> bool:
    """A flat collection of a few short scalars, safe to print in full."""
    items = list(value.items()) if isinstance(value, Mapping) else list(value)
    if len(items) > 8:
        return False
    flat: list[Any] = []
    for item in items:
        flat.extend(item if isinstance(value, Mapping) else (item,))
    return all(
        isinstance(x, bool | int | float | type(None)) or (isinstance(x, str) and len(x) <= 40)
        for x in flat
    )


# --------------------------------------------------------------------------- raw-data rules
#
# These run on the parsed YAML before (and whatever) the model says, so they must check types
# themselves: each rule looks only at values of the shape it expects and leaves malformed ones
# to the field validation, which reports them.

#: Fields whose value is a path in which ``$VAR``/``${VAR}`` and ``~`` are expanded.
PATH_FIELDS = (
    ("signing", "trusted_keys"),
    ("restore", "file_set_directory"),
    ("file_sets", "recovery_public_key"),
)
#: Secrets found at most this deep / this many strings in (bounds the walk on any input).
_WALK_LIMIT = 200_000


def _get(data: Any, *keys: str | int) -> Any:
    for key in keys:
        if isinstance(data, Mapping) and isinstance(key, str):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data):
            data = data[key]
        else:
            return None
    return data


def _str(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _strings(data: Any) -> list[tuple[str, str]]:
    """Every ``(path, string)`` in ``data`` (keys too), bounded by _WALK_LIMIT nodes."""
    out: list[tuple[str, str]] = []
    stack: list[tuple[str, Any, int]] = [("", data, 0)]
    seen = 0
    while stack and seen < _WALK_LIMIT:
        path, value, depth = stack.pop()
        seen += 1
        if isinstance(value, str):
            out.append((path or "(top level)", value))
        elif depth > 64:
            continue
        elif isinstance(value, Mapping):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                if isinstance(key, str):
                    out.append((child, key))
                stack.append((child, item, depth + 1))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                stack.append((f"{path}.{index}" if path else str(index), item, depth + 1))
    return out


def _secret_problems(strings: list[tuple[str, str]]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for path, value in strings:
        kind = secret_kind(value)
        if kind is None:
            continue
        if kind.startswith("the SecureDR recovery PRIVATE"):
            message = (
                "expected a recovery public key (securedr-recovery-pub-...) but this is the "
                "PRIVATE recovery key; remove it from the plan, keep it offline, and treat it as "
                "exposed"
            )
        else:
            message = (
                f"holds what looks like {kind} (not shown); a plan must never hold secrets: "
                "remove it, keep it in the secrets backend (e.g. the Airflow Variable named by "
                "signing.private_key_variable), and treat it as exposed (rotate it)"
            )
        problems.append((path, message))
    return problems


def _variable_problems(data: Any, strings: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Undefined ``$VARS`` in path fields, and ``${VARS}`` where none are expanded."""
    problems: list[tuple[str, str]] = []
    paths = {".".join(p) for p in PATH_FIELDS}
    sets = _get(data, "file_sets", "sets")
    for index, item in enumerate(sets if isinstance(sets, list) else []):
        source = _get(item, "source")
        if isinstance(source, str) and "://" not in source:
            paths.add(f"file_sets.sets.{index}.source")
    for path, value in strings:
        if "$" not in value:
            continue
        if path in paths:
            missing = undefined_variables(value)
            if missing:
                problems.append((path, str(UndefinedVariableError(missing))))
        elif "${" in value:
            problems.append(
                (
                    path,
                    "variables (${...}) are expanded only in paths (signing.trusted_keys, "
                    "restore.file_set_directory, file_sets.recovery_public_key and local file "
                    "set sources); write the value out",
                )
            )
    return problems


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _kms_key_problem(region: str, key: str) -> str | None:
    match = KMS_KEY_RE.match(key)
    if match is None:
        return (
            "expected a KMS key alias ('alias/name'), key id (a UUID or a multi-Region "
            "'mrk-...' id) or key ARN, found " + _show(key)
        )
    if key.startswith("alias/aws/") or ":alias/aws/" in key:
        return (
            f"{key!r} is an AWS-managed key; DR copies need a customer-managed key "
            "(AWS-managed keys cannot be shared or rotated on your terms)"
        )
    arn_region = match["region"]
    if arn_region is not None and arn_region != region:
        hint = ""
        if ":key/mrk-" in key:
            replica = key.replace(f":kms:{arn_region}:", f":kms:{region}:", 1)
            replica = re.sub(r"^arn:[a-z-]+:", f"arn:{_partition(region)}:", replica)
            hint = f" For a multi-Region key, name its replica in {region}: {replica}"
        return (
            f"the key ARN is in Region {arn_region}, but it is listed for {region}; a KMS key "
            f"works only in its own Region, so name a key in {region}.{hint}"
        )
    if arn_region is not None and not key.startswith(f"arn:{_partition(region)}:"):
        return f"a key in {region} has an ARN starting 'arn:{_partition(region)}:'"
    return None


def _rule_problems(data: Any) -> list[tuple[str, str]]:
    """The rules that relate fields to each other, on raw (or dumped) plan data."""
    problems: list[tuple[str, str]] = []
    sources = _get(data, "regions", "sources")
    sources = [r for r in sources if isinstance(r, str)] if isinstance(sources, list) else []
    valid_sources = [r for r in sources if REGION_RE.match(r)]
    dr = _str(_get(data, "regions", "dr"))
    dr = dr if dr and REGION_RE.match(dr) else None

    if dr is not None and dr in valid_sources:
        problems.append(
            (
                "regions",
                f"the DR Region {dr!r} is also a source Region; a DR copy must live in another "
                "Region than the data it protects",
            )
        )

    kms_keys = _get(data, "kms_keys")
    if isinstance(kms_keys, Mapping):
        for region, key in kms_keys.items():
            path = f"kms_keys.{region}"
            if not isinstance(region, str) or not REGION_RE.match(region):
                problems.append(
                    (path, f"expected an AWS Region name like 'us-west-2', found {_show(region)}")
                )
            elif isinstance(key, str) and key.strip():
                problem = _kms_key_problem(region, key.strip())
                if problem:
                    problems.append((path, problem))
        missing = [r for r in [*valid_sources, *([dr] if dr else [])] if r not in kms_keys]
        if missing:
            problems.append(
                (
                    "kms_keys",
                    f"kms_keys has no key for Region(s) {', '.join(missing)}; every source "
                    "Region and the DR Region needs a customer-managed key",
                )
            )

    zone = _str(_get(data, "restore", "availability_zone"))
    zone_match = AZ_RE.match(zone) if zone else None
    if zone_match and dr and zone_match["region"] != dr:
        problems.append(
            (
                "restore.availability_zone",
                f"{zone!r} is in Region {zone_match['region']}, not in the DR Region {dr} where "
                f"restores run; name a zone of {dr} (e.g. {dr}a) or remove the field",
            )
        )

    initiators = _get(data, "access", "initiators")
    approvers = _get(data, "access", "approvers")
    if isinstance(initiators, list) and isinstance(approvers, list):
        approver_set = {a for a in approvers if isinstance(a, str)}
        # Every initiator needs somebody else who can approve, or their runs could never start.
        stuck = [i for i in initiators if isinstance(i, str) and not approver_set - {i}]
        if stuck and approver_set:
            problems.append(
                (
                    "access",
                    f"initiator(s) {', '.join(stuck)} would have no approver other than "
                    "themselves; add a second approver",
                )
            )

    problems += _file_set_problems(data)
    problems += _vault_problems(data)
    return problems


def _file_set_problems(data: Any) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    sets = _get(data, "file_sets", "sets")
    if not isinstance(sets, list):
        return problems
    names: list[str] = []
    evidence = _str(_get(data, "evidence_bucket", "name"))
    for index, item in enumerate(sets):
        if not isinstance(item, Mapping):
            continue
        name, source, region = item.get("name"), _str(item.get("source")), item.get("region")
        if isinstance(name, str):
            names.append(name.strip())
        if source is None:
            continue
        label = f"file set {name!r}" if isinstance(name, str) else f"file set {index}"
        path = f"file_sets.sets.{index}"
        if source.startswith("s3://"):
            if region is None:
                problems.append(
                    (path, f"{label}: an S3 source needs 'region' (the source bucket's Region)")
                )
            elif isinstance(region, str) and not REGION_RE.match(region.strip()):
                problems.append(
                    (
                        path,
                        f"{label}: expected an AWS Region name like 'us-west-2', found "
                        + _show(region),
                    )
                )
            bucket = S3_URL_RE.match(source)
            if bucket and evidence and bucket["bucket"] == evidence:
                problems.append(
                    (
                        "file_sets",
                        f"file set {name!r} reads the evidence bucket itself; back up source "
                        "data, not SecureDR's own copies",
                    )
                )
        elif region is not None and "://" not in source and not source.lower().startswith("s3:"):
            problems.append(
                (path, f"{label}: 'region' is only for S3 sources; remove it for a local directory")
            )
    twice = sorted(name for name, count in Counter(names).items() if count > 1)
    if twice:
        problems.append(
            ("file_sets.sets", f"file set name(s) used more than once: {', '.join(twice)}")
        )
    return problems


def _vault_problems(data: Any) -> list[tuple[str, str]]:
    """The vault must be another account, with full key ARNs of its own in the DR Region."""
    vault = _get(data, "vault")
    if not isinstance(vault, Mapping):
        return []
    problems: list[tuple[str, str]] = []
    account = _str(_get(vault, "account_id"))
    account = account if account and ACCOUNT_ID_RE.match(account) else None
    dr = _str(_get(data, "regions", "dr"))
    workload = _role_account(_str(_get(data, "restore", "role_arn")))
    if account and workload == account:
        problems.append(
            (
                "vault.account_id",
                f"{account} is the workload account (restore.role_arn is in it); a vault must "
                "be a separate account that the workload's administrators cannot reach",
            )
        )
    intake = _role_account(_str(_get(vault, "role_arn")))
    if account and intake and intake != account:
        problems.append(
            (
                "vault.role_arn",
                f"the role is in account {intake}, not in the vault account {account}; name "
                "the intake role SecureDR assumes in the vault",
            )
        )
    recovery = _role_account(_str(_get(vault, "recovery", "role_arn")))
    if recovery and workload and recovery == workload:
        problems.append(
            (
                "vault.recovery.role_arn",
                f"the recovery role is in the workload account {workload}; restores from the "
                "vault must run from the vault account or a third account, which survive the "
                "loss of the workload account",
            )
        )
    keys = _get(vault, "kms_keys")
    if isinstance(keys, Mapping):
        for region, key in keys.items():
            if not isinstance(key, str) or not key.strip():
                continue
            match = KEY_ARN_RE.match(key.strip())
            path = f"vault.kms_keys.{region}"
            if match is None:
                # Aliases and bare key ids name a key in the caller's own account; a copy made
                # in the vault names the vault's key by ARN.
                problems.append(
                    (
                        path,
                        "expected the full ARN of a key in the vault account "
                        "('arn:aws:kms:<region>:<vault account>:key/<key id>'), found "
                        + _show(key),
                    )
                )
            elif match["region"] != region:
                problems.append((path, f"the key ARN is in Region {match['region']}, not {region}"))
            elif account and match["account"] != account:
                problems.append(
                    (
                        path,
                        f"the key belongs to account {match['account']}, not the vault "
                        f"account {account}; vault copies are encrypted under the vault's own key",
                    )
                )
        if dr and REGION_RE.match(dr) and dr not in keys:
            problems.append(
                (
                    "vault.kms_keys",
                    f"vault.kms_keys has no key for the DR Region {dr}; the vault copies live "
                    "there",
                )
            )
    bucket = _str(_get(vault, "evidence_bucket"))
    if bucket and bucket == _str(_get(data, "evidence_bucket", "name")):
        problems.append(
            (
                "vault.evidence_bucket",
                "is the workload's evidence bucket; the vault keeps its evidence in a bucket "
                "of the vault account",
            )
        )
    days = _get(vault, "lock", "duration_days")
    keep = _get(data, "retention", "keep_days")
    numbers = isinstance(days, int) and isinstance(keep, int) and not isinstance(days, bool)
    if numbers and days < keep:
        problems.append(
            (
                "vault.lock.duration_days",
                f"{days} days is shorter than retention.keep_days ({keep}); a vault copy "
                "must stay locked at least as long as it is kept",
            )
        )
    return problems
