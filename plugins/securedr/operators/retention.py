"""Retention: delete what has expired, never the last good copy, never what SecureDR didn't make."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from securedr.aws import ebs, rds
from securedr.core.model import (
    TAG_KIND,
    TAG_MANAGED,
    TAG_PLAN,
    TAG_ROLE,
    TAG_SOURCE_ID,
    TAG_SOURCE_REGION,
    TAG_VERIFIED,
    Verification,
    tags_to_dict,
)
from securedr.core.retention import Copy, RetentionPolicy, plan_retention, render_plan
from securedr.operators.base import SecureDrOperator

LOCATION_OF_ROLE = {"dr-copy": "dr", "recovery-point": "source"}


def _as_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


def copy_from_tags(copy_id: str, tags: dict[str, str], created: Any, plan: str) -> Copy | None:
    """A retention candidate, or ``None`` if the snapshot is not this plan's to manage."""
    location = LOCATION_OF_ROLE.get(tags.get(TAG_ROLE, ""))
    if tags.get(TAG_PLAN) != plan or location is None or created is None:
        return None
    kind = tags.get(TAG_KIND, "")
    return Copy(
        copy_id=copy_id,
        # Qualified by Region: RDS identifiers are only unique within a Region.
        source_id=f"{tags.get(TAG_SOURCE_REGION, '?')}/{tags.get(TAG_SOURCE_ID, '?')}",
        kind=kind if kind in ("ebs", "rds") else "ebs",
        location=location,
        created_at=_as_utc(created),
        verified=bool(tags.get(TAG_VERIFIED)),
        managed=tags.get(TAG_MANAGED) == "true",
    )


class ApplyRetentionOperator(SecureDrOperator):
    """Apply the plan's retention to every snapshot SecureDR made for this plan.

    Guarantees: only snapshots carrying SecureDR's managed tag and this plan's name are ever
    considered; the newest verified copy of each source (per location) is always kept, and never
    fewer than ``retention.min_copies`` verified copies; a source with no verified copy loses
    nothing; if the local clock is ahead of the time AWS reported for this run's copies, nothing
    is deleted at all. Every decision is logged with its reason. With ``dry_run`` (the plan's
    ``retention.dry_run`` or the run's ``retention_dry_run`` param) nothing is deleted.
    """

    template_fields: Sequence[str] = ("verifications", "dry_run", "plan_path")

    def __init__(self, *, verifications: Any, dry_run: Any = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.verifications = verifications
        self.dry_run = dry_run

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        dry_run = plan.retention.dry_run or str(self.dry_run).lower() in ("true", "1", "yes")
        candidates: list[tuple[Copy, str]] = []  # (copy, region)
        for region in plan.all_regions:
            for snap in ebs.find_snapshots(
                self.clients.ec2(region), {TAG_MANAGED: "true", TAG_PLAN: plan.name}
            ):
                copy = copy_from_tags(
                    snap["SnapshotId"],
                    tags_to_dict(snap.get("Tags")),
                    snap.get("StartTime"),
                    plan.name,
                )
                if copy:
                    candidates.append((copy, region))
            if "rds" in plan.selection.resource_types:
                for snap in rds.list_manual_snapshots(self.clients.rds(region)):
                    copy = copy_from_tags(
                        snap["DBSnapshotIdentifier"],
                        tags_to_dict(snap.get("TagList")),
                        snap.get("SnapshotCreateTime"),
                        plan.name,
                    )
                    if copy:
                        candidates.append((copy, region))

        verdicts = [Verification.from_dict(v) for v in self.verifications or []]
        attested = [
            _as_utc(v.recovery_point.dr_created_at)
            for v in verdicts
            if v.passed and v.recovery_point.dr_created_at
        ]
        # AWS's own timestamp on tonight's copies: a forged local clock cannot move it.
        trusted_time = max(attested) if attested else None
        region_of = {(c.location, c.copy_id, c.source_id): r for c, r in candidates}
        result = plan_retention(
            [c for c, _ in candidates],
            RetentionPolicy(
                keep_days=plan.retention.keep_days, min_copies=plan.retention.min_copies
            ),
            now=datetime.now(UTC),
            trusted_time=trusted_time,
        )
        self.log.info(
            "Retention decisions%s:\n%s", " (DRY RUN)" if dry_run else "", render_plan(result)
        )
        if result.refused:
            raise AirflowFailException(f"Retention refused: {result.refused}")
        deleted: list[str] = []
        for copy in result.to_delete:
            region = region_of[(copy.location, copy.copy_id, copy.source_id)]
            if dry_run:
                self.log.info("DRY RUN: would delete %s %s in %s", copy.kind, copy.copy_id, region)
                continue
            if copy.kind == "ebs":
                ebs.delete_snapshot(self.clients.ec2(region), copy.copy_id)
            else:
                rds.delete_snapshot(self.clients.rds(region), copy.copy_id)
            self.log.info("Deleted %s %s in %s", copy.kind, copy.copy_id, region)
            deleted.append(f"{region}/{copy.copy_id}")
        return {
            "dry_run": dry_run,
            "considered": len(result.decisions),
            "deleted": deleted,
            "would_delete": [c.copy_id for c in result.to_delete] if dry_run else [],
            "kept": len(result.to_keep),
            "decisions": [
                {
                    "copy": d.copy.copy_id,
                    "source": d.copy.source_id,
                    "location": d.copy.location,
                    "action": d.action,
                    "reason": d.reason,
                }
                for d in result.decisions
            ],
        }
