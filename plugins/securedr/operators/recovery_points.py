"""Discovery of protected resources and creation of their recovery points (source snapshots)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from securedr.aws import ebs, rds
from securedr.aws.errors import error_code
from securedr.core.model import (
    ROLE_RECOVERY_POINT,
    TAG_PLAN,
    TAG_ROLE,
    TAG_RUN_ID,
    TAG_SOURCE_ID,
    RecoveryPoint,
    Resource,
    lineage_tags,
    rds_snapshot_identifier,
    tags_to_dict,
)
from securedr.operators.base import SecureDrOperator, run_identity


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


class DiscoverProtectedResourcesOperator(SecureDrOperator):
    """Find the EBS volumes and RDS instances the plan selects, in every source Region.

    Guarantees: every page of every describe is read; only resources carrying the plan's
    selection tag are returned; nothing is changed. Returns a list of resources (dicts).
    """

    def execute(self, context: Any) -> list[dict[str, Any]]:
        plan = self.plan
        sel = plan.selection
        found: list[Resource] = []
        for region in plan.regions.sources:
            in_region: list[Resource] = []
            if "ebs" in sel.resource_types:
                in_region += ebs.discover_volumes(
                    self.clients.ec2(region), region, sel.tag_key, sel.tag_value
                )
            if "rds" in sel.resource_types:
                in_region += rds.discover_instances(
                    self.clients.rds(region), region, sel.tag_key, sel.tag_value
                )
            for r in in_region:
                self.log.info(
                    "  %s %s/%s (%s, %d GiB, %s)",
                    r.kind,
                    region,
                    r.resource_id,
                    r.name,
                    r.size_gib,
                    "encrypted" if r.encrypted else "UNENCRYPTED at source",
                )
            self.log.info("Region %s: %d protected resource(s).", region, len(in_region))
            found += in_region
        if not found:
            self.log.warning(
                "No resource carries %s=%s in %s; nothing to protect.",
                sel.tag_key,
                sel.tag_value,
                ", ".join(plan.regions.sources),
            )
        return [r.to_dict() for r in found]


class CreateRecoveryPointsOperator(SecureDrOperator):
    """Snapshot every discovered resource, tagged with its lineage.

    Guarantees: idempotent under retries and crashes - before creating anything it looks up the
    snapshots this run already started (by lineage tags for EBS, by the deterministic identifier
    for RDS) and reuses them, so a retried task never creates a second snapshot of a resource.
    Returns one recovery point (dict) per resource.
    """

    template_fields: Sequence[str] = ("protected_resources", "plan_path")

    def __init__(self, *, protected_resources: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.protected_resources = protected_resources

    def execute(self, context: Any) -> list[dict[str, Any]]:
        _, run_id = run_identity(context)
        resources = [Resource.from_dict(r) for r in self.protected_resources or []]
        points: list[RecoveryPoint] = []
        for region in sorted({r.region for r in resources}):
            in_region = [r for r in resources if r.region == region]
            points += self._ebs(region, [r for r in in_region if r.kind == "ebs"], run_id)
            points += self._rds(region, [r for r in in_region if r.kind == "rds"], run_id)
        created = sum(1 for p in points if not p.reused)
        self.log.info(
            "%d recovery point(s): %d started now, %d found from an earlier try.",
            len(points),
            created,
            len(points) - created,
        )
        return [p.to_dict() for p in points]

    def _tags(self, resource: Resource, run_id: str) -> dict[str, str]:
        return lineage_tags(
            plan=self.plan.name,
            run_id=run_id,
            kind=resource.kind,
            source_id=resource.resource_id,
            source_region=resource.region,
            role=ROLE_RECOVERY_POINT,
        )

    def _ebs(self, region: str, volumes: list[Resource], run_id: str) -> list[RecoveryPoint]:
        if not volumes:
            return []
        ec2 = self.clients.ec2(region)
        existing: dict[str, dict[str, Any]] = {}
        for snap in ebs.find_snapshots(
            ec2, {TAG_PLAN: self.plan.name, TAG_RUN_ID: run_id, TAG_ROLE: ROLE_RECOVERY_POINT}
        ):
            if snap.get("State") != "error":
                existing[tags_to_dict(snap.get("Tags"))[TAG_SOURCE_ID]] = snap
        points = []
        for volume in volumes:
            snap = existing.get(volume.resource_id)
            reused = snap is not None
            if snap is None:
                snap = ebs.create_snapshot(
                    ec2,
                    volume.resource_id,
                    self._tags(volume, run_id),
                    f"SecureDR recovery point of {volume.resource_id} ({volume.name})",
                )
            self.log.info(
                "%s ebs %s/%s -> %s",
                "Reusing" if reused else "Started",
                region,
                volume.resource_id,
                snap["SnapshotId"],
            )
            points.append(
                RecoveryPoint(
                    kind="ebs",
                    source_id=volume.resource_id,
                    source_region=region,
                    snapshot_id=snap["SnapshotId"],
                    size_gib=volume.size_gib,
                    source_encrypted=volume.encrypted,
                    run_id=run_id,
                    created_at=_iso(snap.get("StartTime")),
                    reused=reused,
                    volume_type=volume.volume_type,
                    iops=volume.iops,
                    throughput=volume.throughput,
                )
            )
        return points

    def _rds(self, region: str, dbs: list[Resource], run_id: str) -> list[RecoveryPoint]:
        if not dbs:
            return []
        client = self.clients.rds(region)
        ids = {db.resource_id: rds_snapshot_identifier(db.resource_id, run_id) for db in dbs}
        existing = rds.describe_snapshots(client, list(ids.values()))
        points = []
        for db in dbs:
            identifier = ids[db.resource_id]
            snap = existing.get(identifier)
            reused = snap is not None
            if snap is None:
                try:
                    snap = rds.create_snapshot(
                        client, db.resource_id, identifier, self._tags(db, run_id)
                    )
                except Exception as exc:
                    if error_code(exc) != "DBSnapshotAlreadyExists":
                        raise
                    snap = rds.describe_snapshots(client, [identifier])[identifier]
                    reused = True
            owner = tags_to_dict(snap.get("TagList")).get(TAG_RUN_ID)
            if owner not in (None, run_id):
                raise AirflowFailException(
                    f"DB snapshot {identifier} exists but belongs to run {owner}, not {run_id}; "
                    "refusing to adopt a snapshot this run did not create"
                )
            self.log.info(
                "%s rds %s/%s -> %s",
                "Reusing" if reused else "Started",
                region,
                db.resource_id,
                identifier,
            )
            points.append(
                RecoveryPoint(
                    kind="rds",
                    source_id=db.resource_id,
                    source_region=region,
                    snapshot_id=identifier,
                    snapshot_arn=snap.get("DBSnapshotArn"),
                    size_gib=db.size_gib,
                    source_encrypted=db.encrypted,
                    run_id=run_id,
                    engine=db.engine,
                    created_at=_iso(snap.get("SnapshotCreateTime")),
                    reused=reused,
                )
            )
        return points
