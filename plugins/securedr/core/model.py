"""The recovery-point model shared by every step of a run.

Values cross task boundaries as XCom, so each type converts to and from plain JSON-safe dicts
(``to_dict`` / ``from_dict``); ``from_dict`` rejects unknown or missing fields instead of guessing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Self, TypeVar

Kind = Literal["ebs", "rds"]
KINDS: tuple[Kind, ...] = ("ebs", "rds")

# Tags SecureDR puts on everything it creates. Retention and restore only ever act on resources
# that carry MANAGED and the plan's name, so nothing another tool made is touched.
TAG_MANAGED = "securedr:managed"
TAG_PLAN = "securedr:plan"
TAG_RUN_ID = "securedr:run-id"
TAG_KIND = "securedr:kind"
TAG_SOURCE_ID = "securedr:source-id"
TAG_SOURCE_REGION = "securedr:source-region"
TAG_SOURCE_SNAPSHOT = "securedr:source-snapshot"
TAG_ROLE = "securedr:role"  # "recovery-point" in the source Region, "dr-copy" in the DR Region
TAG_VERIFIED = "securedr:verified"  # run id of the run that verified the copy
ROLE_RECOVERY_POINT = "recovery-point"
ROLE_DR_COPY = "dr-copy"

LINEAGE_TAGS = (
    TAG_MANAGED,
    TAG_PLAN,
    TAG_RUN_ID,
    TAG_KIND,
    TAG_SOURCE_ID,
    TAG_SOURCE_REGION,
    TAG_ROLE,
)

T = TypeVar("T", bound="_Record")


class _Record:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class Resource(_Record):
    """A protected resource found by discovery."""

    kind: Kind
    region: str
    resource_id: str
    name: str
    size_gib: int
    encrypted: bool
    kms_key_id: str | None = None
    engine: str | None = None
    #: The DB instance's option group (RDS), so its DR copy can be given the right one.
    option_group: str | None = None
    #: Why SecureDR cannot protect this resource (e.g. a DB cluster member); None if it can.
    unsupported: str | None = None
    # EBS performance of the source volume, so a restore can give it back (None: unknown).
    volume_type: str | None = None
    iops: int | None = None
    throughput: int | None = None


@dataclass(frozen=True)
class SnapshotRef(_Record):
    """One snapshot to wait for: an EBS snapshot id or an RDS DB snapshot identifier.

    ``requested_at`` (epoch seconds, when SecureDR asked AWS for it) lets a wait treat "not
    found" right after the request as still pending: AWS describes are eventually consistent.
    """

    kind: Kind
    region: str
    snapshot_id: str
    requested_at: float | None = None


@dataclass
class RecoveryPoint(_Record):
    """A source snapshot and, once copied, its DR copy."""

    kind: Kind
    source_id: str
    source_region: str
    snapshot_id: str
    size_gib: int
    source_encrypted: bool
    run_id: str
    snapshot_arn: str | None = None
    engine: str | None = None
    created_at: str | None = None
    dr_region: str | None = None
    dr_snapshot_id: str | None = None
    dr_snapshot_arn: str | None = None
    dr_kms_key_arn: str | None = None
    dr_created_at: str | None = None
    reused: bool = False
    #: The source DB instance's option group (RDS only).
    option_group: str | None = None
    #: Why this resource is NOT protected tonight (unsupported, refused, quota, failed copy);
    #: None while it is on track. Later steps skip such points; the report names them.
    not_protected: str | None = None
    #: Epoch seconds when SecureDR requested the source snapshot / the DR copy (eventual
    #: consistency grace for describes right after the request).
    requested_at: float | None = None
    dr_requested_at: float | None = None
    # EBS performance of the source volume at backup time (None for RDS and for points recorded
    # before these were kept): a restore creates the volume with the same type, IOPS and
    # throughput. Optional with defaults so older XComs and manifests still load.
    volume_type: str | None = None
    iops: int | None = None
    throughput: int | None = None

    @property
    def protected(self) -> bool:
        """Still on track to be protected (nothing has ruled this resource out)."""
        return self.not_protected is None

    @property
    def source_ref(self) -> SnapshotRef:
        return SnapshotRef(self.kind, self.source_region, self.snapshot_id, self.requested_at)

    @property
    def dr_ref(self) -> SnapshotRef:
        if not (self.dr_region and self.dr_snapshot_id):
            raise ValueError(f"{self.label} has no DR copy yet")
        return SnapshotRef(self.kind, self.dr_region, self.dr_snapshot_id, self.dr_requested_at)

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.source_region}/{self.source_id}"


@dataclass
class Verification(_Record):
    """The verdict on one DR copy. ``problems`` is empty exactly when the copy passed."""

    point: dict[str, Any]
    passed: bool
    problems: list[str] = field(default_factory=list)
    incidents: list[str] = field(default_factory=list)
    checked_at: str | None = None

    @property
    def recovery_point(self) -> RecoveryPoint:
        return RecoveryPoint.from_dict(self.point)


def lineage_tags(
    *, plan: str, run_id: str, kind: Kind, source_id: str, source_region: str, role: str
) -> dict[str, str]:
    """The tags every snapshot SecureDR creates carries, so its origin can be traced and proven."""
    return {
        TAG_MANAGED: "true",
        TAG_PLAN: plan,
        TAG_RUN_ID: run_id,
        TAG_KIND: kind,
        TAG_SOURCE_ID: source_id,
        TAG_SOURCE_REGION: source_region,
        TAG_ROLE: role,
    }


_RDS_ID_BAD = re.compile(r"[^a-z0-9-]+")


def rds_snapshot_identifier(db_identifier: str, run_id: str) -> str:
    """A deterministic, valid RDS snapshot identifier for one database in one run.

    Deterministic so that a retried task asks for the same identifier and finds the snapshot it
    already started instead of creating a second one.
    """
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:12]
    base = _RDS_ID_BAD.sub("-", db_identifier.lower()).strip("-")
    base = re.sub(r"-{2,}", "-", base)[:200].rstrip("-") or "db"
    return f"securedr-{base}-{digest}"


def rds_dr_copy_identifier(source_snapshot_identifier: str, source_region: str) -> str:
    """The DR copy's identifier: the source snapshot's plus the source Region.

    The same database name in two source Regions gives the same source identifier (each in its
    own Region); both copies land in the one DR Region, so the Region keeps them apart.
    Valid for RDS: letters, digits and single hyphens, well under 255 characters.
    """
    region = _RDS_ID_BAD.sub("-", source_region.lower()).strip("-")
    return f"{source_snapshot_identifier}-{region}"


def tags_to_dict(tags: list[dict[str, str]] | None) -> dict[str, str]:
    """AWS ``[{"Key":..,"Value":..}]`` tag lists as a dict."""
    return {t["Key"]: t.get("Value", "") for t in tags or []}


def dict_to_tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
