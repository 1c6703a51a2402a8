"""Discovery of protected resources and creation of their recovery points (source snapshots)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from securedr.aws import ebs, rds
from securedr.aws.errors import error_code
from securedr.aws.limits import classify_limit, error_message, is_transient, quota_message
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
    selection tag are returned; nothing is changed. Resources SecureDR cannot protect (DB cluster
    members, RDS Custom, volumes in ``error``) are returned with ``unsupported`` naming why, so
    the run reports them instead of silently skipping them. Returns a list of resources (dicts).
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
                if r.unsupported:
                    self.log.warning("  %s %s/%s: %s", r.kind, region, r.resource_id, r.unsupported)
                    continue
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

    Guarantees:

    - idempotent under retries and crashes: before creating anything it looks up the snapshots
      this run already started (by lineage tags for EBS, by the deterministic identifier for RDS)
      and reuses them, so a retried task never creates a second snapshot of a resource;
    - per-resource isolation: a resource discovery marked unsupported, or one AWS refuses to
      snapshot (a hard quota, an invalid state), becomes a point with ``not_protected`` naming
      the reason and what to do, and every other resource is still snapshotted;
    - a DB instance that is not ``available`` (InvalidDBInstanceState) is tried again every
      ``waits.poll_seconds`` for up to ``waits.unavailable_retry_minutes`` before it is given up;
    - throttling and 5xx errors that outlast botocore's retries fail the task (Airflow retries
      it, and the lookup above makes that safe), never a single resource.

    Returns one recovery point (dict) per resource.
    """

    template_fields: Sequence[str] = ("protected_resources", "plan_path")

    def __init__(self, *, protected_resources: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.protected_resources = protected_resources

    def execute(self, context: Any) -> list[dict[str, Any]]:
        _, run_id = run_identity(context)
        resources = [Resource.from_dict(r) for r in self.protected_resources or []]
        points: list[RecoveryPoint] = [
            self._not_protected(r, run_id, r.unsupported) for r in resources if r.unsupported
        ]
        supported = [r for r in resources if not r.unsupported]
        for region in sorted({r.region for r in supported}):
            in_region = [r for r in supported if r.region == region]
            points += self._ebs(region, [r for r in in_region if r.kind == "ebs"], run_id)
            points += self._rds(region, [r for r in in_region if r.kind == "rds"], run_id)
        created = sum(1 for p in points if p.protected and not p.reused)
        ruled_out = [p for p in points if not p.protected]
        for point in ruled_out:
            self.log.error("NOT PROTECTED %s: %s", point.label, point.not_protected)
        self.log.info(
            "%d recovery point(s): %d started now, %d found from an earlier try, %d resource(s) "
            "not protected.",
            len(points) - len(ruled_out),
            created,
            len(points) - len(ruled_out) - created,
            len(ruled_out),
        )
        return [p.to_dict() for p in points]

    @staticmethod
    def _not_protected(resource: Resource, run_id: str, reason: str | None) -> RecoveryPoint:
        return RecoveryPoint(
            kind=resource.kind,
            source_id=resource.resource_id,
            source_region=resource.region,
            snapshot_id="",
            size_gib=resource.size_gib,
            source_encrypted=resource.encrypted,
            run_id=run_id,
            engine=resource.engine,
            option_group=resource.option_group,
            not_protected=reason or "not protected",
        )

    def _refusal(self, exc: Exception, action: str, region: str) -> str:
        """The not-protected reason for a refused call; re-raises what is not a refusal."""
        if is_transient(exc) or not error_code(exc):
            raise exc
        if classify_limit(exc) == "quota":
            return quota_message(exc, region)
        return f"{action} refused by AWS ({error_code(exc)}: {error_message(exc)})"

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
            requested_at = None
            if snap is None:
                requested_at = time.time()
                try:
                    snap = ebs.create_snapshot(
                        ec2,
                        volume.resource_id,
                        self._tags(volume, run_id),
                        f"SecureDR recovery point of {volume.resource_id} ({volume.name})",
                    )
                except Exception as exc:
                    points.append(
                        self._not_protected(
                            volume, run_id, self._refusal(exc, "CreateSnapshot", region)
                        )
                    )
                    continue
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
                    requested_at=requested_at,
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
        points: dict[str, RecoveryPoint] = {}
        waiting: dict[str, str] = {}  # db id -> why it is not available yet
        retry_until = time.time() + self.plan.waits.unavailable_retry_minutes * 60
        todo = list(dbs)
        while True:
            for db in todo:
                outcome = self._rds_one(client, region, db, ids[db.resource_id], existing, run_id)
                if isinstance(outcome, RecoveryPoint):
                    points[db.resource_id] = outcome
                    waiting.pop(db.resource_id, None)
                else:
                    waiting[db.resource_id] = outcome
            todo = [db for db in dbs if db.resource_id in waiting]
            if not todo or time.time() >= retry_until:
                break
            self.log.info(
                "DB instance(s) not available yet, trying again in %d s: %s",
                self.plan.waits.poll_seconds,
                ", ".join(f"{region}/{d}" for d in waiting),
            )
            time.sleep(self.plan.waits.poll_seconds)
        for db in todo:
            points[db.resource_id] = self._not_protected(
                db,
                run_id,
                f"the DB instance was not available for a snapshot "
                f"({waiting[db.resource_id]}) for {self.plan.waits.unavailable_retry_minutes} "
                "minute(s); it is tried again on the next run (raise "
                "waits.unavailable_retry_minutes to wait longer)",
            )
        return [points[db.resource_id] for db in dbs]

    def _rds_one(
        self,
        client: Any,
        region: str,
        db: Resource,
        identifier: str,
        existing: dict[str, dict[str, Any]],
        run_id: str,
    ) -> RecoveryPoint | str:
        """The DB's recovery point, or (as a string) why the instance is not available yet."""
        snap = existing.get(identifier)
        reused = snap is not None
        requested_at = None
        if snap is None:
            requested_at = time.time()
            try:
                snap = rds.create_snapshot(
                    client, db.resource_id, identifier, self._tags(db, run_id)
                )
            except Exception as exc:
                code = error_code(exc)
                if code == "InvalidDBInstanceState":
                    # https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBSnapshot.html
                    return f"{code}: {error_message(exc)}"
                if code != "DBSnapshotAlreadyExists":
                    return self._not_protected(
                        db, run_id, self._refusal(exc, "CreateDBSnapshot", region)
                    )
                # Ours from an earlier try; describes may not show it yet (eventual consistency).
                snap = rds.describe_snapshots(client, [identifier]).get(identifier) or {}
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
        return RecoveryPoint(
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
            option_group=db.option_group,
            requested_at=requested_at or (None if snap else time.time()),
        )
