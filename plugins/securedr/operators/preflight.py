"""Pre-flight security checks: nothing is created until every one of them passes."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from securedr.aws import evidence as evidence_adapter
from securedr.aws import kms as kms_adapter
from securedr.aws import rds as rds_adapter
from securedr.core import checks, signing
from securedr.operators.base import SecureDrError, SecureDrOperator, public_key_pem


class PreflightChecksOperator(SecureDrOperator):
    """Validate the plan and the security posture of every Region before any change.

    Guarantees: the plan is valid; every plan key exists, is enabled, customer-managed, symmetric,
    rotated and not pending deletion; EBS snapshot block-public-access is on in every Region; the
    evidence bucket is versioned, Object-Locked, KMS-encrypted and not public; the signing key is
    provisioned and trusted. Every problem found is listed, then the task fails without retrying.
    Warns (without failing) when evidence is locked in GOVERNANCE mode (an explicit plan opt-in)
    and when ``retention.keep_days`` x the protected databases would exceed the manual DB snapshot
    quota (``rds.manual_snapshot_quota``) in a source Region or the DR Region. Makes read-only
    calls only. Returns the resolved key ARN per Region and the warnings.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan  # validates; an invalid plan raises PlanError here, before any AWS call
        problems: list[str] = []
        key_arns: dict[str, str] = {}
        for region in plan.all_regions:
            configured = plan.kms_key(region)
            kms = self.clients.kms(region)
            metadata = kms_adapter.describe_key(kms, configured)
            rotation = None
            if metadata is not None:
                key_arns[region] = metadata["Arn"]
                if metadata.get("KeyManager") == "CUSTOMER" and metadata.get("KeyState") in (
                    "Enabled",
                    "Disabled",
                ):
                    rotation = kms_adapter.rotation_enabled(kms, metadata["KeyId"])
            problems += checks.kms_key_problems(region, configured, metadata, rotation)
            state = self.clients.ec2(region).get_snapshot_block_public_access_state()["State"]
            problems += checks.snapshot_block_public_access_problems(region, state)
            self.log.info("Region %s: key %s checked, snapshot BPA %s", region, configured, state)

        bucket = plan.evidence_bucket.name
        settings = evidence_adapter.bucket_settings(self.clients.s3(plan.regions.dr), bucket)
        problems += checks.evidence_bucket_problems(
            bucket,
            exists=settings["exists"],
            versioning=settings.get("versioning"),
            object_lock=settings.get("object_lock"),
            encryption_rules=settings.get("encryption_rules"),
            public_access_block=settings.get("public_access_block"),
        )
        warnings = checks.evidence_lock_warnings(
            bucket, plan.evidence_bucket.object_lock_mode, settings.get("object_lock")
        )
        for warning in warnings:
            self.log.warning("Pre-flight warning: %s", warning)
        signing_key_id = None
        try:
            private_pem = self.signing_private_key()
            public_pem = public_key_pem(private_pem)
            signing_key_id = signing.key_id(public_pem)
            trusted = {signing.key_id(k) for k in self.trusted_public_keys()}
            if signing_key_id not in trusted:
                problems.append(
                    f"the signing key {signing_key_id} is not among the trusted keys "
                    f"{sorted(trusted)}; append its public key to the trusted bundle, or its "
                    "manifests could never be verified"
                )
        except (SecureDrError, signing.SigningError) as exc:
            problems.append(str(exc))

        if problems:
            listing = "\n".join(f"  - {p}" for p in problems)
            raise AirflowFailException(
                f"Pre-flight security checks failed ({len(problems)}); nothing was created:\n"
                f"{listing}"
            )
        quota_warnings = self._snapshot_quota_warnings()
        for warning in quota_warnings:
            self.log.warning("Pre-flight warning: %s", warning)
        warnings = [*warnings, *quota_warnings]
        self.log.info("Pre-flight checks passed for %d Region(s).", len(plan.all_regions))
        return {"key_arns": key_arns, "signing_key_id": signing_key_id, "warnings": warnings}

    def _snapshot_quota_warnings(self) -> list[str]:
        """Whether retention would need more manual DB snapshots than the quota allows.

        AWS: 100 manual DB snapshots per Region by default (adjustable); beyond it CreateDBSnapshot
        and CopyDBSnapshot answer SnapshotQuotaExceeded.
        https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/CHAP_Limits.html
        """
        plan = self.plan
        if "rds" not in plan.selection.resource_types:
            return []
        sel, quota, keep = plan.selection, plan.rds.manual_snapshot_quota, plan.retention.keep_days
        counts = {
            region: sum(
                1
                for r in rds_adapter.discover_instances(
                    self.clients.rds(region), region, sel.tag_key, sel.tag_value
                )
                if not r.unsupported
            )
            for region in plan.regions.sources
        }
        counts[plan.regions.dr] = sum(counts.values())  # every source's copies land there
        return [
            f"retention keeps {keep} nightly snapshot(s) of each of {n} protected database(s) in "
            f"{region}: about {keep * n} manual DB snapshots, over the quota of {quota} "
            "(rds.manual_snapshot_quota). Nights will fail with SnapshotQuotaExceeded once it is "
            "reached: lower retention.keep_days or request a higher 'Manual DB instance "
            "snapshots' quota in Service Quotas"
            for region, n in counts.items()
            if keep * n > quota
        ]
