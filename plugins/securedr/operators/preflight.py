"""Pre-flight security checks: nothing is created until every one of them passes."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from securedr.aws import ebs as ebs_adapter
from securedr.aws import evidence as evidence_adapter
from securedr.aws import kms as kms_adapter
from securedr.aws import rds as rds_adapter
from securedr.aws.manifests import load_signed_manifests
from securedr.core import checks, signing
from securedr.core.copy_window import CopyWindow, copy_history, estimate_copy_window
from securedr.operators.base import SecureDrError, SecureDrOperator, public_key_pem, run_identity

#: Signed manifests (nights) the copy-window estimate learns copy times from.
COPY_HISTORY_NIGHTS = 7


class PreflightChecksOperator(SecureDrOperator):
    """Validate the plan and the security posture of every Region before any change.

    Guarantees: the plan is valid; every plan key exists, is enabled, customer-managed, symmetric,
    rotated and not pending deletion; EBS snapshot block-public-access is on in every Region; the
    evidence bucket is versioned, Object-Locked, KMS-encrypted and not public; the signing key is
    provisioned and trusted; with a vault, the DR key's policy lets the vault's intake role use
    it, the intake role can be assumed, the vault's keys are usable and its evidence bucket is
    versioned and locked in COMPLIANCE mode. Every problem found is listed, then the task fails
    without retrying.
    Warns (without failing) when evidence is locked in GOVERNANCE mode (an explicit plan opt-in)
    and when ``retention.keep_days`` x the protected databases would exceed the manual DB snapshot
    quota (``rds.manual_snapshot_quota``) in a source Region or the DR Region, and when tonight's
    copy window - resources / copy slots x the copy time of the last nights, read from the
    newest ``COPY_HISTORY_NIGHTS`` signed manifests only - would not fit the RPO target
    (:mod:`securedr.core.copy_window`); with no signed history it says so. The estimate never
    fails the run. Makes read-only calls only. Returns the resolved key ARN per Region, the
    warnings and the copy window (``copy_window``).
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
        if plan.vault is not None:
            problems += self._vault_problems(context, key_arns.get(plan.regions.dr))
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
        counts = self._protected_counts()
        quota_warnings = self._snapshot_quota_warnings(counts.get("rds"))
        window, window_warnings = self._copy_window(context, counts)
        for warning in [*quota_warnings, *window_warnings]:
            self.log.warning("Pre-flight warning: %s", warning)
        warnings = [*warnings, *quota_warnings, *window_warnings]
        self.log.info("Pre-flight checks passed for %d Region(s).", len(plan.all_regions))
        return {
            "key_arns": key_arns,
            "signing_key_id": signing_key_id,
            "warnings": warnings,
            "copy_window": window.to_dict() if window is not None else None,
        }

    def _vault_problems(self, context: Any, dr_key_arn: str | None) -> list[str]:
        """With a vault: the DR key lets the intake role copy what is shared with the vault, the
        intake role can be assumed, the vault's keys are usable, and the vault's evidence is
        locked in COMPLIANCE mode. Read-only calls."""
        from securedr.aws.sts import RestoreRoleError
        from securedr.aws.vault import assume_vault_role

        vault = self.plan.vault
        assert vault is not None
        dr = self.plan.regions.dr
        problems: list[str] = []
        if dr_key_arn is not None:
            policy = kms_adapter.key_policy(self.clients.kms(dr), dr_key_arn)
            problems += checks.key_policy_grant_problems(
                f"the DR key {dr_key_arn}",
                policy,
                {vault.role_arn, f"arn:aws:iam::{vault.account_id}:root"},
                checks.VAULT_SOURCE_KEY_ACTIONS,
            )
        try:
            intake = assume_vault_role(
                self.aws_conn_id,
                role_arn=vault.role_arn,
                external_id_variable=vault.external_id_variable,
                region=dr,
                run_id=context["run_id"],
            )
        except RestoreRoleError as exc:
            return [*problems, f"the vault: {exc}"]
        for region, key in vault.kms_keys.items():
            metadata = kms_adapter.describe_key(intake.client("kms", region), key)
            problems += checks.kms_key_problems(region, key, metadata, None)
        settings = evidence_adapter.lock_settings(intake.client("s3", dr), vault.evidence_bucket)
        problems += checks.vault_evidence_problems(
            vault.evidence_bucket,
            exists=settings["exists"],
            versioning=settings.get("versioning"),
            object_lock=settings.get("object_lock"),
        )
        self.log.info(
            "Vault %s: intake role assumed, %d key(s) and evidence bucket %s checked",
            vault.account_id,
            len(vault.kms_keys),
            vault.evidence_bucket,
        )
        return problems

    def _protected_counts(self) -> dict[str, dict[str, int]]:
        """kind -> source Region -> resources the night will protect (as discovery finds them)."""
        sel = self.plan.selection
        counts: dict[str, dict[str, int]] = {}
        for region in self.plan.regions.sources:
            found = []
            if "ebs" in sel.resource_types:
                found += ebs_adapter.discover_volumes(
                    self.clients.ec2(region), region, sel.tag_key, sel.tag_value
                )
            if "rds" in sel.resource_types:
                found += rds_adapter.discover_instances(
                    self.clients.rds(region), region, sel.tag_key, sel.tag_value
                )
            for kind in sel.resource_types:
                counts.setdefault(kind, {})[region] = sum(
                    1 for r in found if r.kind == kind and not r.unsupported
                )
        return counts

    def _copy_window(
        self, context: Any, counts: dict[str, dict[str, int]]
    ) -> tuple[CopyWindow | None, list[str]]:
        """Tonight's copy window against the RPO, from the newest signed manifests only.

        Copy times come from signed manifests (tags could be forged by anybody allowed to tag),
        read by version with their signatures checked; at most ``COPY_HISTORY_NIGHTS`` GetObject
        calls plus the listing. A window that does not fit is a warning, never a failure, and so
        is an estimate that cannot be made.
        """
        plan = self.plan
        dr = plan.regions.dr
        try:
            signed = load_signed_manifests(
                self.evidence,
                self.trusted_public_keys(),
                plan=plan.name,
                dr_region=dr,
                latest=COPY_HISTORY_NIGHTS,
            )
        except Exception as exc:  # advisory: never stop a night's backups over an estimate
            return None, [
                f"the copy window could not be estimated: the signed manifests of recent nights "
                f"could not be read ({type(exc).__name__}: {str(exc)[:200]})"
            ]
        for rejected in signed.rejected:
            self.log.warning("Copy-window history: %s", rejected)
        _, run_id = run_identity(context)
        window = estimate_copy_window(
            {dr: {kind: sum(by_region.values()) for kind, by_region in counts.items()}},
            max_copies_in_flight=plan.waits.max_copies_in_flight,
            rds_copy_quota=plan.rds.concurrent_copy_quota,
            history=copy_history(signed.manifests, skip_run_id=run_id),
            rpo_hours=plan.targets.rpo_hours,
        )
        self.log.info(
            "Copy window (%d signed manifest(s) read, %d S3 call(s)): %s",
            len(signed.manifests),
            signed.reads,
            window.message,
        )
        return window, [window.message] if window.fits is False else []

    def _snapshot_quota_warnings(self, rds_counts: dict[str, int] | None) -> list[str]:
        """Whether retention would need more manual DB snapshots than the quota allows.

        AWS: 100 manual DB snapshots per Region by default (adjustable); beyond it CreateDBSnapshot
        and CopyDBSnapshot answer SnapshotQuotaExceeded.
        https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/CHAP_Limits.html
        """
        plan = self.plan
        if rds_counts is None:  # RDS is not selected
            return []
        quota, keep = plan.rds.manual_snapshot_quota, plan.retention.keep_days
        counts = dict(rds_counts)
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
