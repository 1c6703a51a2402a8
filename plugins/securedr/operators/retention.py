"""Retention: delete what has expired, never the last good copy, never what SecureDR didn't make."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException
from botocore.exceptions import BotoCoreError, ClientError

from securedr.aws import ebs, rds
from securedr.aws.errors import error_code
from securedr.aws.evidence import AwsTimeUnavailable, aws_time
from securedr.aws.manifests import load_signed_manifests
from securedr.core.model import (
    TAG_KIND,
    TAG_MANAGED,
    TAG_PLAN,
    TAG_ROLE,
    TAG_SOURCE_ID,
    TAG_SOURCE_REGION,
    TAG_VERIFIED,
    tags_to_dict,
)
from securedr.core.retained import ListedSnapshot, listed_snapshots
from securedr.core.retention import Copy, RetentionPolicy, plan_retention, render_plan
from securedr.operators.base import SecureDrOperator

LOCATION_OF_ROLE = {"dr-copy": "dr", "recovery-point": "source"}


def local_now() -> datetime:
    """The worker's clock: the one a forged time would come from (tests replace it)."""
    return datetime.now(UTC)


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


FORGERY = (
    "POSSIBLE FORGERY: carries SecureDR's tags (managed, verified, this plan) but no signed "
    "manifest lists it; never counted towards min_copies, never deleted"
)
UNLISTED = "no signed manifest lists it: never counted, never deleted"


def vouch(
    candidates: list[tuple[Copy, str]], listed: dict[tuple[str, str], ListedSnapshot]
) -> tuple[list[tuple[Copy, str]], dict[tuple[str, str], str]]:
    """Decide from the signed manifests, never from tags alone.

    A candidate a signed manifest lists takes its verdict, kind, location and source from that
    manifest (tags can be rewritten by anyone allowed to tag). One no manifest lists is treated
    as not SecureDR's (``managed=False``: never counted, never deleted); if it carries the
    verified tag it is a possible forgery. Returns the candidates and, by ``(region, id)``, the
    reason for each unlisted one.
    """
    out: list[tuple[Copy, str]] = []
    unlisted: dict[tuple[str, str], str] = {}
    for copy, region in candidates:
        entry = listed.get((region, copy.copy_id))
        if entry is not None:
            out.append(
                (
                    replace(
                        copy,
                        verified=entry.verified,
                        managed=True,
                        kind=entry.kind if entry.kind in ("ebs", "rds") else copy.kind,
                        location=entry.location,
                        source_id=entry.source or copy.source_id,
                    ),
                    region,
                )
            )
            continue
        unlisted[(region, copy.copy_id)] = FORGERY if copy.verified else UNLISTED
        out.append((replace(copy, verified=False, managed=False), region))
    return out, unlisted


#: Deletion refusals that mean "already gone": a retried task finds its own earlier work done.
GONE_CODES = frozenset({"InvalidSnapshot.NotFound", "DBSnapshotNotFound"})


class ApplyRetentionOperator(SecureDrOperator):
    """Apply the plan's retention to every snapshot SecureDR made for this plan.

    Guarantees: only snapshots carrying SecureDR's managed tag and this plan's name are ever
    considered, and among them only the ones the plan's signed manifests list are counted or
    deleted (tags are discovery hints; a verified-tagged snapshot no signed manifest lists is
    reported in ``possible_forgeries`` and as an incident, never counted, never deleted; a
    manifest that cannot be trusted is named and vouches for nothing); the newest verified copy
    of each source (per location) is always kept, and never fewer than
    ``retention.min_copies`` verified copies; a source with no verified copy loses nothing;
    snapshots under a snapshot lock (DescribeLockedSnapshots) are kept and never attempted.
    Ages are trusted only if the local clock agrees with AWS's own clock, read fresh at
    retention time (the evidence bucket's HeadBucket ``Date``); otherwise, or if AWS's time
    cannot be read, nothing is deleted and the task fails. However long tonight's copies took
    does not matter.

    Snapshots are deleted one at a time: a deletion AWS refuses (a registered AMI uses the
    snapshot, a lock taken meanwhile, throttling beyond the retries) is recorded in
    ``retention_refusals`` and the others proceed; the run report then names it and fails the
    run. Every decision is logged with its reason. With ``dry_run`` (the plan's
    ``retention.dry_run`` or the run's ``retention_dry_run`` param) nothing is deleted.

    ``verifications`` is accepted for existing DAG files and no longer used: the trusted time
    comes from AWS at retention time, not from when tonight's copies started.
    """

    template_fields: Sequence[str] = ("verifications", "dry_run", "plan_path")

    def __init__(self, *, verifications: Any = None, dry_run: Any = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.verifications = verifications
        self.dry_run = dry_run

    def _candidates(self) -> list[tuple[Copy, str]]:
        plan = self.plan
        candidates: list[tuple[Copy, str]] = []  # (copy, region)
        for region in plan.all_regions:
            ec2 = self.clients.ec2(region)
            ours = [
                copy
                for snap in ebs.find_snapshots(ec2, {TAG_MANAGED: "true", TAG_PLAN: plan.name})
                if (
                    copy := copy_from_tags(
                        snap["SnapshotId"],
                        tags_to_dict(snap.get("Tags")),
                        snap.get("StartTime"),
                        plan.name,
                    )
                )
            ]
            locked = self._locks(ec2, region, [c.copy_id for c in ours]) if ours else {}
            candidates.extend(
                (replace(c, locked=True) if c.copy_id in locked else c, region) for c in ours
            )
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
        return candidates

    def _locks(self, ec2: Any, region: str, snapshot_ids: list[str]) -> dict[str, str]:
        try:
            return ebs.locked_snapshots(ec2, snapshot_ids)
        except (ClientError, BotoCoreError) as exc:
            raise AirflowFailException(
                f"Retention refused, nothing deleted: the snapshot locks in {region} could not "
                f"be read ({error_code(exc) or type(exc).__name__}); locked snapshots must never "
                "be attempted. Grant the Airflow identity ec2:DescribeLockedSnapshots "
                "(include/iam/securedr-backup-policy.json)."
            ) from None

    def _signed_listing(self) -> tuple[dict[tuple[str, str], ListedSnapshot], list[str]]:
        plan = self.plan
        try:
            signed = load_signed_manifests(
                self.evidence,
                self.trusted_public_keys(),
                plan=plan.name,
                dr_region=plan.regions.dr,
            )
        except (ClientError, BotoCoreError) as exc:
            raise AirflowFailException(
                "Retention refused, nothing deleted: the signed manifests could not be read "
                f"({error_code(exc) or type(exc).__name__}); without them no copy can be "
                "told from a forgery. Check that the Airflow identity may s3:ListBucketVersions "
                "and s3:GetObjectVersion on the manifests."
            ) from None
        return listed_snapshots(signed.manifests), signed.rejected

    def _notify(self, context: Any, incidents: list[str]) -> bool:
        return self.publish_incident(
            context,
            f"SecureDR INCIDENT: possible forged DR copies, plan {self.plan.name}",
            incidents,
            "forgery",
        )

    def _trusted_time(self) -> datetime:
        bucket = self.plan.evidence_bucket.name
        try:
            return aws_time(self.clients.s3(self.plan.regions.dr), bucket)
        except AwsTimeUnavailable as exc:
            raise AirflowFailException(
                f"Retention refused, nothing deleted: AWS's current time could not be read "
                f"({exc}); ages cannot be checked against a forged clock. Check that the "
                f"Airflow identity may s3:ListBucket on {bucket}."
            ) from None

    def _delete(self, copy: Copy, region: str) -> None:
        if copy.kind == "ebs":
            ebs.delete_snapshot(self.clients.ec2(region), copy.copy_id)
        else:
            rds.delete_snapshot(self.clients.rds(region), copy.copy_id)

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        dry_run = plan.retention.dry_run or str(self.dry_run).lower() in ("true", "1", "yes")
        listed, rejected = self._signed_listing()
        candidates, unlisted = vouch(self._candidates(), listed)
        forgeries = sorted(f"{r}/{c}" for (r, c), why in unlisted.items() if why == FORGERY)
        incidents = [*rejected] + [
            f"INCIDENT: snapshot {f} carries SecureDR's verified tags for plan {plan.name} but "
            "no signed manifest lists it: possible forgery (not counted, not deleted)"
            for f in forgeries
        ]
        for incident in incidents:
            self.log.error(incident)
        # Read after the listing: the freshest AWS time, taken just before deciding.
        trusted_time = self._trusted_time()
        region_of = {(c.location, c.copy_id, c.source_id): r for c, r in candidates}
        result = plan_retention(
            [c for c, _ in candidates],
            RetentionPolicy(
                keep_days=plan.retention.keep_days, min_copies=plan.retention.min_copies
            ),
            now=local_now(),
            trusted_time=trusted_time,
        )
        self.log.info(
            "Retention decisions%s (AWS time %s):\n%s",
            " (DRY RUN)" if dry_run else "",
            trusted_time.isoformat(timespec="seconds"),
            render_plan(result),
        )
        if result.refused:
            raise AirflowFailException(f"Retention refused: {result.refused}")
        deleted: list[str] = []
        already_gone: list[str] = []
        refusals: list[dict[str, str]] = []
        for copy in result.to_delete:
            region = region_of[(copy.location, copy.copy_id, copy.source_id)]
            if dry_run:
                self.log.info("DRY RUN: would delete %s %s in %s", copy.kind, copy.copy_id, region)
                continue
            try:
                self._delete(copy, region)
            except (ClientError, BotoCoreError) as exc:
                code = error_code(exc) or type(exc).__name__
                if code in GONE_CODES:
                    self.log.info("%s %s in %s is already gone", copy.kind, copy.copy_id, region)
                    already_gone.append(f"{region}/{copy.copy_id}")
                    continue
                message = (
                    str(exc.response.get("Error", {}).get("Message", ""))
                    if isinstance(exc, ClientError)
                    else str(exc)
                )
                # Kept, reported, and the next one is tried: one refusal (an AMI still using
                # the snapshot, a lock) must not stop retention for everything else.
                self.log.warning(
                    "AWS refused to delete %s %s in %s: %s %s",
                    copy.kind,
                    copy.copy_id,
                    region,
                    code,
                    message,
                )
                refusals.append(
                    {
                        "copy": copy.copy_id,
                        "kind": copy.kind,
                        "region": region,
                        "source": copy.source_id,
                        "code": code,
                        "message": message,
                    }
                )
                continue
            self.log.info("Deleted %s %s in %s", copy.kind, copy.copy_id, region)
            deleted.append(f"{region}/{copy.copy_id}")
        notified = self._notify(context, incidents) if incidents else False
        why = {
            (c.location, c.copy_id, c.source_id): unlisted[(r, c.copy_id)]
            for c, r in candidates
            if (r, c.copy_id) in unlisted
        }
        return {
            "dry_run": dry_run,
            "possible_forgeries": forgeries,
            "unlisted": sorted(f"{r}/{c}" for (r, c), why in unlisted.items() if why == UNLISTED),
            "incidents": incidents,
            "notified": notified,
            "aws_time": trusted_time.isoformat(),
            "considered": len(result.decisions),
            "deleted": deleted,
            "already_gone": already_gone,
            "retention_refusals": refusals,
            "would_delete": [c.copy_id for c in result.to_delete] if dry_run else [],
            "kept": len(result.to_keep),
            "locked": sorted(d.copy.copy_id for d in result.decisions if d.copy.locked),
            "decisions": [
                {
                    "copy": d.copy.copy_id,
                    "source": d.copy.source_id,
                    "location": d.copy.location,
                    "action": d.action,
                    "reason": why.get(
                        (d.copy.location, d.copy.copy_id, d.copy.source_id), d.reason
                    ),
                }
                for d in result.decisions
            ],
        }
