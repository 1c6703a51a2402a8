"""Verification of every DR copy, with automatic remediation of sharing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from securedr.aws import ebs, rds
from securedr.aws.evidence import AwsTimeUnavailable, aws_time
from securedr.aws.manifests import load_signed_manifests
from securedr.core.model import TAG_VERIFIED, RecoveryPoint, Verification
from securedr.core.retained import age_text, retained_copies
from securedr.core.verify import dr_copy_problems
from securedr.operators.base import SecureDrOperator, run_identity


class VerifyDrCopiesOperator(SecureDrOperator):
    """Check each DR copy: completed, encrypted under exactly the plan's DR key, tagged with its
    lineage, and shared with nobody.

    Guarantees: a copy that is public or shared with any account is made private at once and
    the fact is reported as an incident (in the result, the log and the run report); a copy that
    fails any other check is recorded as failed with every reason, and the run's final step fails
    naming it. Copies that pass are tagged ``securedr:verified=<run id>`` (and so are their source
    snapshots) as a discovery hint; retention counts a copy as good only when a signed manifest
    lists it as verified. Every verdict carries the DR
    copy's own AWS timestamp (``StartTime`` / ``SnapshotCreateTime``) read here, whatever the copy
    step saw, and the point's own creation time when the snapshot step could not see it yet. A
    resource already ruled out upstream (``not_protected``) gets a failed verdict
    naming why, so the manifest and the report list it. Returns one verdict per point.
    """

    template_fields: Sequence[str] = ("points", "plan_path")

    def __init__(self, *, points: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.points = points

    def execute(self, context: Any) -> list[dict[str, Any]]:
        _, run_id = run_identity(context)
        plan = self.plan
        dr = plan.regions.dr
        expected = self.key_arn(dr)
        all_points = [RecoveryPoint.from_dict(p) for p in self.points or []]
        points = [p for p in all_points if p.protected]
        ebs_found = ebs.describe_snapshots(
            self.clients.ec2(dr),
            [p.dr_snapshot_id for p in points if p.kind == "ebs" and p.dr_snapshot_id],
        )
        rds_found = rds.describe_snapshots(
            self.clients.rds(dr),
            [p.dr_snapshot_id for p in points if p.kind == "rds" and p.dr_snapshot_id],
        )
        now = datetime.now(UTC).isoformat()
        verdicts: list[Verification] = [
            Verification(
                point=p.to_dict(),
                passed=False,
                problems=[f"not protected: {p.not_protected}"],
                checked_at=now,
            )
            for p in all_points
            if not p.protected
        ]
        for point in points:
            found = (ebs_found if point.kind == "ebs" else rds_found).get(
                point.dr_snapshot_id or ""
            )
            if found:
                point.dr_created_at = _aws_time(point, found) or point.dr_created_at
                point.created_at = point.created_at or _source_time(point, found)
            problems = dr_copy_problems(point, found, expected_key_arn=expected, plan=plan.name)
            incidents, still_shared = self._enforce_private(point) if found else ([], False)
            if still_shared:
                problems.append("shared with other accounts and could not be made private")
            verdict = Verification(
                point=point.to_dict(),
                passed=not problems,
                problems=problems,
                incidents=incidents,
                checked_at=now,
            )
            verdicts.append(verdict)
            if problems:
                self.log.error(
                    "FAILED %s (%s): %s", point.label, point.dr_snapshot_id, "; ".join(problems)
                )
            else:
                self.log.info("Verified %s -> %s/%s", point.label, dr, point.dr_snapshot_id)
        for verdict in verdicts:
            if not verdict.recovery_point.protected:
                self.log.error("NOT PROTECTED %s", verdict.problems[0])
        self._tag_verified([v.recovery_point for v in verdicts if v.passed], run_id)
        passed = sum(1 for v in verdicts if v.passed)
        self.log.info("Verification: %d/%d DR copies passed.", passed, len(verdicts))
        return [v.to_dict() for v in verdicts]

    def _enforce_private(self, point: RecoveryPoint) -> tuple[list[str], bool]:
        """Unshare a shared copy at once; return (incidents, whether it is still shared)."""
        incidents, still, _ = enforce_private(
            self.clients,
            self.plan.regions.dr,
            point.kind,
            point.dr_snapshot_id or "",
            f"of {point.label}",
        )
        for incident in incidents:
            self.log.error(incident)
        return incidents, still

    def _tag_verified(self, points: list[RecoveryPoint], run_id: str) -> None:
        tag = {TAG_VERIFIED: run_id}
        by_region: dict[str, list[str]] = {}
        for p in points:
            if p.kind == "ebs":
                by_region.setdefault(p.dr_region or "", []).append(p.dr_snapshot_id or "")
                by_region.setdefault(p.source_region, []).append(p.snapshot_id)
            else:
                if p.dr_snapshot_arn:
                    rds.add_tags(self.clients.rds(p.dr_region or ""), p.dr_snapshot_arn, tag)
                if p.snapshot_arn:
                    rds.add_tags(self.clients.rds(p.source_region), p.snapshot_arn, tag)
        for region, ids in by_region.items():
            ebs.add_tags(self.clients.ec2(region), ids, tag)


def _source_time(point: RecoveryPoint, dr_copy: dict[str, Any]) -> str | None:
    """When the recovery point itself was taken, read from its DR copy.

    An RDS snapshot has no ``SnapshotCreateTime`` until it is available, so a point started in
    the snapshot step may carry none; the copy's ``OriginalSnapshotCreateTime`` is "the time of
    the CreateDBSnapshot operation ... Doesn't change when the snapshot is copied".
    https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DBSnapshot.html
    EBS points always carry the source's ``StartTime``, which AWS returns at CreateSnapshot.
    """
    value = dr_copy.get("OriginalSnapshotCreateTime") if point.kind == "rds" else None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return None if value is None else str(value)


class ReverifyRetainedCopiesOperator(SecureDrOperator):
    """Re-check, every night, every DR copy the plan still holds - not only tonight's.

    The copies are the ones the signed manifests in the evidence bucket list as verified (tags
    are never trusted for this); tonight's run's own copies were just checked by
    :class:`VerifyDrCopiesOperator` and are skipped. Guarantees: a retained copy that is public
    or shared with any account is made private at once and reported as an incident naming its
    age; a copy whose key is not the one its manifest signed, that is no longer completed /
    available, whose lineage tags were changed, or that is missing while younger than
    ``retention.keep_days`` is reported as a problem (older copies may have been deleted by
    retention, so only the ones still there are checked); a manifest that cannot be trusted is
    named. With a vault in the plan, the vault copies of those nights are re-checked from the
    vault account too (under the vault intake role; their DR copies were intermediates, released
    once the vault held them, so their absence is expected). All of it goes to the run report
    and, when there is anything, to the plan's SNS topic. Describes are batched (EBS: 200 ids
    per DescribeSnapshots, RDS: 50 per DescribeDBSnapshots); sharing needs one attribute call
    per copy (see :func:`enforce_private`).
    Changes nothing but sharing; fails only if AWS cannot be read.
    """

    template_fields: Sequence[str] = ("plan_path",)

    def execute(self, context: Any) -> dict[str, Any]:
        _, run_id = run_identity(context)
        plan = self.plan
        dr = plan.regions.dr
        now = self._now()
        signed = load_signed_manifests(
            self.evidence, self.trusted_public_keys(), plan=plan.name, dr_region=dr
        )
        within, older = retained_copies(
            signed.manifests, now=now, keep_days=plan.retention.keep_days, skip_run_id=run_id
        )
        young = {id(c) for c in within}
        copies = within + older
        ebs_ids = [c.dr_snapshot_id for c in copies if c.kind == "ebs"]
        rds_ids = [c.dr_snapshot_id for c in copies if c.kind == "rds"]
        found = {
            "ebs": ebs.describe_snapshots(self.clients.ec2(dr), ebs_ids) if ebs_ids else {},
            "rds": rds.describe_snapshots(self.clients.rds(dr), rds_ids) if rds_ids else {},
        }
        calls = {
            "describe": len(ebs.describe_requests(ebs_ids)) + len(rds.describe_requests(rds_ids)),
            "sharing": 0,
        }
        incidents: list[str] = list(signed.rejected)
        problems: list[dict[str, Any]] = []
        checked = 0
        gone = 0
        for copy in copies:
            snapshot = found[copy.kind].get(copy.dr_snapshot_id)
            if snapshot is None and (id(copy) not in young or copy.vaulted):
                # Expired and deleted by retention, or an intermediate released to the vault.
                gone += 1
                continue
            checked += 1
            age = age_text(copy.dr_created_at, now)
            point = RecoveryPoint.from_dict(copy.point())
            issues = dr_copy_problems(
                point, snapshot, expected_key_arn=copy.dr_kms_key_arn, plan=plan.name
            )
            if snapshot is not None:
                found_incidents, still, made = enforce_private(
                    self.clients,
                    dr,
                    copy.kind,
                    copy.dr_snapshot_id,
                    f"of {copy.label} ({age} old, run {copy.run_id})",
                )
                calls["sharing"] += made
                incidents.extend(found_incidents)
                if still:
                    issues.append("shared with other accounts and could not be made private")
            if issues:
                problems.append(
                    {
                        "copy": f"{dr}/{copy.dr_snapshot_id}",
                        "source": copy.label,
                        "age": age,
                        "manifest": copy.manifest_key,
                        "problems": issues,
                    }
                )
        for incident in incidents:
            self.log.error(incident)
        for problem in problems:
            self.log.error(
                "RETAINED COPY FAILED %s of %s (%s old): %s",
                problem["copy"],
                problem["source"],
                problem["age"],
                "; ".join(problem["problems"]),
            )
        vault_checked = self._reverify_vault(context, within, problems, incidents, now)
        s3_calls = signed.reads + 1  # + the HeadBucket that read AWS's time
        total_calls = calls["describe"] + calls["sharing"] + s3_calls
        self.log.info(
            "Re-verified %d retained DR copies from %d signed manifests (%d expired and gone): "
            "%d problems, %d incidents; %d AWS calls (%d describe, %d sharing, %d S3 reads).",
            checked,
            len(signed.manifests),
            gone,
            len(problems),
            len(incidents),
            total_calls,
            calls["describe"],
            calls["sharing"],
            s3_calls,
        )
        result = {
            "manifests": len(signed.manifests),
            "checked": checked,
            "vault_checked": vault_checked,
            "expired_and_gone": gone,
            "problems": problems,
            "incidents": incidents,
            "calls": {**calls, "s3_reads": s3_calls, "total": total_calls},
        }
        if incidents or problems:
            result["notified"] = self._notify(context, result)
        return result

    def _reverify_vault(
        self,
        context: Any,
        within: list[Any],
        problems: list[dict[str, Any]],
        incidents: list[str],
        now: datetime,
    ) -> int:
        """Re-check, from the vault account, the vault copies of earlier nights still within
        retention (their locks last longer): each must exist, completed/available, under its
        signed vault CMK, shared with nobody, with its lineage, and (EBS) still locked in
        compliance mode. Problems join the others; returns how many were checked."""
        vault = self.plan.vault
        copies = [c for c in within if c.vaulted and c.vault]
        if vault is None or not copies:
            return 0
        from securedr.aws.vault import assume_vault_role, lock_info
        from securedr.core.vault import vault_copy_problems

        _, run_id = run_identity(context)
        dr = self.plan.regions.dr
        clients = assume_vault_role(
            self.aws_conn_id,
            role_arn=vault.role_arn,
            external_id_variable=vault.external_id_variable,
            region=dr,
            run_id=run_id,
        )
        ec2, rds_client = clients.ec2(dr), clients.rds(dr)

        def name(copy: Any) -> str:
            entry = copy.vault or {}
            return str(entry.get("snapshot_id") or entry.get("db_snapshot_identifier") or "")

        ebs_ids = [name(c) for c in copies if c.kind == "ebs"]
        rds_ids = [name(c) for c in copies if c.kind == "rds"]
        found = {
            "ebs": ebs.describe_snapshots(ec2, ebs_ids) if ebs_ids else {},
            "rds": rds.describe_snapshots(rds_client, rds_ids) if rds_ids else {},
        }
        locks = lock_info(ec2, ebs_ids) if ebs_ids else {}
        for copy in copies:
            sid = name(copy)
            snapshot = found[copy.kind].get(sid)
            shared: list[str] = []
            if snapshot is not None:
                shared = (
                    [p.get("Group") or p.get("UserId", "?") for p in ebs.sharing(ec2, sid)]
                    if copy.kind == "ebs"
                    else rds.sharing(rds_client, sid)
                )
            point = RecoveryPoint.from_dict(copy.point())
            issues = vault_copy_problems(
                point,
                snapshot,
                expected_key_arn=str((copy.vault or {}).get("kms_key_arn")),
                plan=self.plan.name,
                run_id=copy.run_id,
                shared_with=shared,
                lock=locks.get(sid),
                keep_days=self.plan.retention.keep_days,
            )
            if shared:
                incidents.append(
                    f"INCIDENT: vault copy {vault.account_id}/{dr}/{sid} of {copy.label} is "
                    f"shared with {', '.join(shared)} (the intake role cannot unshare it: act "
                    "in the vault account)"
                )
            if issues:
                problems.append(
                    {
                        "copy": f"vault {vault.account_id}/{dr}/{sid}",
                        "source": copy.label,
                        "age": age_text(copy.dr_created_at, now),
                        "manifest": copy.manifest_key,
                        "problems": issues,
                    }
                )
        return len(copies)

    def _now(self) -> datetime:
        """AWS's clock (HeadBucket ``Date``), so a forged local clock cannot age a young copy
        into "expired and gone"; the local clock only if AWS's cannot be read (logged)."""
        bucket = self.plan.evidence_bucket.name
        try:
            return aws_time(self.clients.s3(self.plan.regions.dr), bucket)
        except AwsTimeUnavailable as exc:
            self.log.warning("AWS's time could not be read (%s); using the local clock.", exc)
            return datetime.now(UTC)

    def _notify(self, context: Any, result: dict[str, Any]) -> bool:
        lines = [*result["incidents"]] + [
            f"FAILED {p['copy']} of {p['source']} ({p['age']} old): {'; '.join(p['problems'])}"
            for p in result["problems"]
        ]
        return self.publish_incident(
            context,
            f"SecureDR INCIDENT: retained DR copies of plan {self.plan.name}",
            lines,
            "re-verification",
        )


def enforce_private(
    clients: Any, region: str, kind: str, snapshot_id: str, what: str
) -> tuple[list[str], bool, int]:
    """Make a shared or public DR copy private at once.

    Returns ``(incidents, still shared, AWS calls made)``. Reads the sharing with one
    DescribeSnapshotAttribute (``createVolumePermission``: group ``all`` = public, user ids =
    accounts) / DescribeDBSnapshotAttributes (attribute ``restore``: ``all`` or account ids) per
    copy - neither API takes more than one snapshot.
    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeSnapshotAttribute.html
    https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DescribeDBSnapshotAttributes.html
    """
    if kind == "ebs":
        client = clients.ec2(region)
        shared = ebs.sharing(client, snapshot_id)
        if not shared:
            return [], False, 1
        ebs.make_private(client, snapshot_id, shared)
        still: list[Any] = ebs.sharing(client, snapshot_id)
        who = ", ".join(p.get("Group") or p.get("UserId", "?") for p in shared)
    else:
        client = clients.rds(region)
        accounts = rds.sharing(client, snapshot_id)
        if not accounts:
            return [], False, 1
        rds.make_private(client, snapshot_id, accounts)
        still = rds.sharing(client, snapshot_id)
        who = ", ".join(accounts)
    outcome = "made private" if not still else f"COULD NOT be made private (still: {still})"
    incident = f"INCIDENT: DR copy {region}/{snapshot_id} {what} was shared with {who}; {outcome}"
    return [incident], bool(still), 3


def _aws_time(point: RecoveryPoint, snapshot: dict[str, Any]) -> str | None:
    """The DR copy's own AWS timestamp: when AWS started it, never a local clock.

    EBS: ``StartTime`` ("The time stamp when the snapshot was initiated").
    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Snapshot.html
    RDS: ``SnapshotCreateTime`` ("Changes for the copy when the snapshot is copied", unlike
    ``OriginalSnapshotCreateTime``). https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DBSnapshot.html
    """
    value = snapshot.get("StartTime" if point.kind == "ebs" else "SnapshotCreateTime")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return None if value is None else str(value)
