"""Verification of every DR copy, with automatic remediation of sharing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from securedr.aws import ebs, rds
from securedr.core.model import TAG_VERIFIED, RecoveryPoint, Verification
from securedr.core.verify import dr_copy_problems
from securedr.operators.base import SecureDrOperator, run_identity


class VerifyDrCopiesOperator(SecureDrOperator):
    """Check each DR copy: completed, encrypted under exactly the plan's DR key, tagged with its
    lineage, and shared with nobody.

    Guarantees: a copy that is public or shared with any account is made private at once and
    the fact is reported as an incident (in the result, the log and the run report); a copy that
    fails any other check is recorded as failed with every reason, and the run's final step fails
    naming it. Copies that pass are tagged ``securedr:verified=<run id>`` (and so are their source
    snapshots), which is what retention counts as a good copy. Every verdict carries the DR
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
        dr = self.plan.regions.dr
        sid = point.dr_snapshot_id or ""
        if point.kind == "ebs":
            client = self.clients.ec2(dr)
            shared = ebs.sharing(client, sid)
            if not shared:
                return [], False
            ebs.make_private(client, sid, shared)
            still = ebs.sharing(client, sid)
            who = ", ".join(p.get("Group") or p.get("UserId", "?") for p in shared)
        else:
            client = self.clients.rds(dr)
            accounts = rds.sharing(client, sid)
            if not accounts:
                return [], False
            rds.make_private(client, sid, accounts)
            still = rds.sharing(client, sid)
            who = ", ".join(accounts)
        outcome = "made private" if not still else f"COULD NOT be made private (still: {still})"
        incident = f"INCIDENT: DR copy {dr}/{sid} of {point.label} was shared with {who}; {outcome}"
        self.log.error(incident)
        return [incident], bool(still)

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
