"""Vault retention: expire the vault account's copies, as the vault's own retention identity."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from botocore.exceptions import BotoCoreError, ClientError

from securedr.aws import ebs, rds
from securedr.aws.errors import error_code
from securedr.aws.evidence import AwsTimeUnavailable, EvidenceStore, aws_time
from securedr.aws.manifests import load_signed_manifests
from securedr.core.plan import Vault
from securedr.core.retention import Copy, RetentionPolicy, plan_retention, render_plan
from securedr.core.vault_retained import VaultListed, listed_vault_copies
from securedr.operators.base import SecureDrOperator
from securedr.operators.retention import GONE_CODES

#: The Airflow connection whose principal is the vault account's retention role - never the
#: workload's connection: the workload account must hold no right to delete in the vault.
VAULT_RETENTION_CONN_ID = "aws_vault_retention"


def local_now() -> datetime:
    """The worker's clock: the one a forged time would come from (tests replace it)."""
    return datetime.now(UTC)


def _as_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


class ApplyVaultRetentionOperator(SecureDrOperator):
    """Apply the plan's retention to the copies in its DR vault account.

    Guarantees: runs only as a principal of the vault account (STS GetCallerIdentity is checked
    before anything else; the connection is ``aws_vault_retention``, whose principal assumes
    the vault retention role); considers only the vault copies the plan's signed manifests list
    (read from the vault evidence bucket, signatures and object keys checked; a manifest that
    cannot be trusted vouches for nothing); deletes an EBS copy only when AWS reports no lock on
    it (DescribeLockedSnapshots) AND its signed lock expiry has passed on AWS's clock; keeps the
    newest verified copy of each source and never fewer than ``retention.min_copies`` verified
    copies; deletes nothing younger than ``retention.keep_days``; deletes nothing if the worker's
    clock disagrees with AWS's (the vault evidence bucket's HeadBucket ``Date``). With
    ``dry_run`` (the plan's ``retention.dry_run`` or the run's param) nothing is deleted.

    A plan without a ``vault`` section skips the task. Deletions are one at a time: one AWS
    refuses is recorded in ``retention_refusals`` and the others proceed; a copy already gone
    counts as deleted. The returned report names every decision with its reason.
    """

    template_fields: Sequence[str] = ("dry_run", "plan_path")

    def __init__(
        self,
        *,
        dry_run: Any = False,
        aws_conn_id: str | None = VAULT_RETENTION_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(aws_conn_id=aws_conn_id, **kwargs)
        self.dry_run = dry_run

    @cached_property
    def vault(self) -> Vault:
        vault = self.plan.vault
        if vault is None:
            raise AirflowFailException(
                f"Vault retention refused: plan {self.plan.name} has no vault section; "
                "dr_vault_retention only runs for a plan with a DR vault (README, 'A DR vault "
                "in another account')"
            )
        return vault

    @property
    def region(self) -> str:
        return self.plan.regions.dr

    @cached_property
    def vault_evidence(self) -> EvidenceStore:
        # Read-only here; the store's write settings are the vault bucket's own.
        return EvidenceStore(
            self.clients.s3(self.region),
            bucket=self.vault.evidence_bucket,
            prefix=self.vault.evidence_prefix,
            kms_key_arn=self.vault.kms_key(self.region),
            lock_mode="COMPLIANCE",
            lock_days=self.plan.evidence_bucket.object_lock_days,
        )

    def _check_identity(self) -> str:
        try:
            identity = self.clients.client("sts", self.region).get_caller_identity()
        except (ClientError, BotoCoreError) as exc:
            raise AirflowFailException(
                f"Vault retention refused, nothing deleted: the identity of connection "
                f"{self.aws_conn_id} could not be read ({error_code(exc) or type(exc).__name__})"
            ) from None
        account, arn = str(identity.get("Account")), str(identity.get("Arn"))
        if account != self.vault.account_id:
            raise AirflowFailException(
                f"Vault retention refused, nothing deleted: connection {self.aws_conn_id} is "
                f"{arn} in account {account}, not a principal of the vault account "
                f"{self.vault.account_id}. Point {self.aws_conn_id} at the vault retention "
                "role (README, 'A DR vault in another account'); the workload's connection "
                "must never be able to delete vault copies"
            )
        return arn

    def _listing(self) -> tuple[dict[tuple[str, str], VaultListed], list[str]]:
        try:
            signed = load_signed_manifests(
                self.vault_evidence,
                self.trusted_public_keys(),
                plan=self.plan.name,
                dr_region=self.region,
            )
        except (ClientError, BotoCoreError) as exc:
            raise AirflowFailException(
                "Vault retention refused, nothing deleted: the signed manifests in "
                f"s3://{self.vault.evidence_bucket} could not be read "
                f"({error_code(exc) or type(exc).__name__}); check that the vault retention "
                "role may s3:ListBucketVersions and s3:GetObjectVersion on the manifests"
            ) from None
        listed, ignored = listed_vault_copies(
            signed.manifests, account_id=self.vault.account_id, region=self.region
        )
        return listed, [*signed.rejected, *ignored]

    def _trusted_time(self) -> datetime:
        try:
            return aws_time(self.clients.s3(self.region), self.vault.evidence_bucket)
        except AwsTimeUnavailable as exc:
            raise AirflowFailException(
                f"Vault retention refused, nothing deleted: AWS's current time could not be "
                f"read ({exc}); lock expiries and ages cannot be checked against a forged clock"
            ) from None

    def _found(
        self, listed: dict[tuple[str, str], VaultListed]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, str]]:
        ec2, rds_client = self.clients.ec2(self.region), self.clients.rds(self.region)
        ebs_ids = sorted(c for k, c in listed if k == "ebs")
        rds_ids = sorted(c for k, c in listed if k == "rds")
        snapshots = ebs.describe_snapshots(ec2, ebs_ids) if ebs_ids else {}
        db_snapshots = rds.describe_snapshots(rds_client, rds_ids) if rds_ids else {}
        try:
            locks = ebs.locked_snapshots(ec2, list(snapshots)) if snapshots else {}
        except (ClientError, BotoCoreError) as exc:
            raise AirflowFailException(
                "Vault retention refused, nothing deleted: the snapshot locks could not be "
                f"read ({error_code(exc) or type(exc).__name__}); a locked copy must never be "
                "attempted. Grant the vault retention role ec2:DescribeLockedSnapshots."
            ) from None
        return snapshots, db_snapshots, locks

    def _delete(self, copy: Copy) -> None:
        if copy.kind == "ebs":
            ebs.delete_snapshot(self.clients.ec2(self.region), copy.copy_id)
        else:
            rds.delete_snapshot(self.clients.rds(self.region), copy.copy_id)

    def execute(self, context: Any) -> dict[str, Any]:
        if self.plan.vault is None:
            # A plan without a vault behaves exactly as before: nothing to expire here.
            raise AirflowSkipException(f"plan {self.plan.name} has no vault section")
        plan, vault = self.plan, self.vault
        dry_run = plan.retention.dry_run or str(self.dry_run).lower() in ("true", "1", "yes")
        identity = self._check_identity()
        listed, rejected = self._listing()
        for problem in rejected:
            self.log.error(problem)
        snapshots, db_snapshots, locks = self._found(listed)
        trusted_time = self._trusted_time()
        copies: list[Copy] = []
        missing: list[str] = []
        creating: list[str] = []
        lock_held: dict[str, str] = {}
        for (kind, copy_id), entry in sorted(listed.items()):
            found = (snapshots if kind == "ebs" else db_snapshots).get(copy_id)
            if found is None:
                missing.append(f"{kind}:{copy_id}")
                continue
            created = _as_utc(found.get("StartTime" if kind == "ebs" else "SnapshotCreateTime"))
            if created is None:
                creating.append(f"{kind}:{copy_id}")
                continue
            if copy_id in locks:
                lock_held[copy_id] = f"AWS reports lock state {locks[copy_id]}"
            elif entry.lock_expires_on is not None and entry.lock_expires_on > trusted_time:
                # AWS shows no lock, yet the signed lock has not expired: never act on that.
                lock_held[copy_id] = (
                    f"signed lock until {entry.lock_expires_on.isoformat()} (AWS shows none)"
                )
            copies.append(
                Copy(
                    copy_id=copy_id,
                    source_id=entry.source,
                    kind=kind,
                    location="dr",
                    created_at=created,
                    verified=entry.verified,
                    managed=True,
                    locked=copy_id in lock_held,
                )
            )
        for name in missing:
            self.log.warning("Listed vault copy %s is not in the vault (already gone)", name)
        result = plan_retention(
            copies,
            RetentionPolicy(
                keep_days=plan.retention.keep_days, min_copies=plan.retention.min_copies
            ),
            now=local_now(),
            trusted_time=trusted_time,
        )
        self.log.info(
            "Vault retention decisions in %s/%s as %s%s (AWS time %s):\n%s",
            vault.account_id,
            self.region,
            identity,
            " (DRY RUN)" if dry_run else "",
            trusted_time.isoformat(timespec="seconds"),
            render_plan(result),
        )
        if result.refused:
            raise AirflowFailException(f"Vault retention refused: {result.refused}")
        deleted: list[str] = []
        already_gone: list[str] = []
        refusals: list[dict[str, str]] = []
        for copy in result.to_delete:
            if dry_run:
                self.log.info("DRY RUN: would delete vault %s %s", copy.kind, copy.copy_id)
                continue
            try:
                self._delete(copy)
            except (ClientError, BotoCoreError) as exc:
                code = error_code(exc) or type(exc).__name__
                if code in GONE_CODES:
                    already_gone.append(copy.copy_id)
                    continue
                message = (
                    str(exc.response.get("Error", {}).get("Message", ""))
                    if isinstance(exc, ClientError)
                    else str(exc)
                )
                self.log.warning(
                    "AWS refused to delete vault %s %s: %s %s",
                    copy.kind,
                    copy.copy_id,
                    code,
                    message,
                )
                refusals.append(
                    {
                        "copy": copy.copy_id,
                        "kind": copy.kind,
                        "source": copy.source_id,
                        "code": code,
                        "message": message,
                    }
                )
                continue
            self.log.info("Deleted vault %s %s", copy.kind, copy.copy_id)
            deleted.append(copy.copy_id)
        return {
            "vault_account": vault.account_id,
            "region": self.region,
            "identity": identity,
            "dry_run": dry_run,
            "aws_time": trusted_time.isoformat(),
            "rejected": rejected,
            "listed": len(listed),
            "missing": missing,
            "creating": creating,
            "considered": len(result.decisions),
            "deleted": deleted,
            "already_gone": already_gone,
            "retention_refusals": refusals,
            "would_delete": [c.copy_id for c in result.to_delete] if dry_run else [],
            "kept": len(result.to_keep),
            "locked": dict(sorted(lock_held.items())),
            "decisions": [
                {
                    "copy": d.copy.copy_id,
                    "kind": d.copy.kind,
                    "source": d.copy.source_id,
                    "action": d.action,
                    "reason": lock_held.get(d.copy.copy_id, d.reason)
                    if d.copy.locked
                    else d.reason,
                }
                for d in result.decisions
            ],
        }
