"""Pre-flight security checks: nothing is created until every one of them passes."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from securedr.aws import evidence as evidence_adapter
from securedr.aws import kms as kms_adapter
from securedr.core import checks, signing
from securedr.operators.base import SecureDrError, SecureDrOperator, public_key_pem


class PreflightChecksOperator(SecureDrOperator):
    """Validate the plan and the security posture of every Region before any change.

    Guarantees: the plan is valid; every plan key exists, is enabled, customer-managed, symmetric,
    rotated and not pending deletion; EBS snapshot block-public-access is on in every Region; the
    evidence bucket is versioned, Object-Locked, KMS-encrypted and not public; the signing key is
    provisioned and trusted. Every problem found is listed, then the task fails without retrying.
    Evidence locked in GOVERNANCE mode (an explicit plan opt-in) is a warning, logged and
    returned. Makes read-only calls only. Returns the resolved key ARN per Region.
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
        self.log.info("Pre-flight checks passed for %d Region(s).", len(plan.all_regions))
        return {"key_arns": key_arns, "signing_key_id": signing_key_id, "warnings": warnings}
