"""The nightly's vault steps: copy each verified DR copy into the vault, verify it there, and
release the workload's intermediate once the signed manifest lists the vault copy.

With no ``vault`` section in the plan every step logs that and does nothing (no AWS call), so a
plan without a vault runs exactly as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from securedr.aws import ebs, rds
from securedr.aws.sts import AssumedRoleClients
from securedr.aws.vault import (
    VaultLoop,
    assume_vault_role,
    lock_info,
    release_intermediate,
    unshare,
)
from securedr.core.copy_slots import CopySlots
from securedr.core.copy_window import copy_slots
from securedr.core.model import RecoveryPoint, Verification
from securedr.core.vault import (
    account_of_arn,
    failed_entry,
    manifest_vault,
    rds_vault_identifier,
    vault_copy_problems,
    vault_entry,
    vault_tags,
)
from securedr.operators.base import SecureDrOperator, run_identity
from securedr.triggers.vault import VaultCopyTrigger


def plan_vault(plan: Any) -> Any | None:
    """The plan's ``vault`` section, or None (no vault: today's behaviour)."""
    return getattr(plan, "vault", None)


def lock_days(plan: Any) -> int:
    """How long vault copies are locked: the plan's setting, never shorter than retention."""
    return int(plan_vault(plan).lock.duration_days_for(plan.retention))


class VaultOperator(SecureDrOperator):
    """Shared by the vault steps: the plan's vault and clients under the vault intake role."""

    @property
    def vault(self) -> Any | None:
        return plan_vault(self.plan)

    def skip_without_vault(self) -> bool:
        if self.vault is None:
            self.log.info("The plan has no vault section: nothing to do (skipped).")
            return True
        return False

    def assume(self, run_id: str) -> AssumedRoleClients:
        """Clients under the vault intake role for this run."""
        vault = self.vault
        return assume_vault_role(
            self.aws_conn_id,
            role_arn=vault.role_arn,
            external_id_variable=vault.external_id_variable,
            region=self.plan.regions.dr,
            run_id=run_id,
        )


def _verified_points(verifications: Any) -> list[RecoveryPoint]:
    """Points whose DR copy passed verification (only those go to the vault)."""
    out = []
    for raw in verifications or []:
        verdict = Verification.from_dict(raw)
        point = verdict.recovery_point
        if verdict.passed and point.protected and point.dr_snapshot_id:
            out.append(point)
    return out


class CopyToVaultOperator(VaultOperator):
    """Copy every verified DR copy into the vault account, re-encrypted and locked.

    Guarantees:

    - the DR copy is shared with the vault account only (by account id, never ``all``);
    - the vault intake role (external id, session ``securedr-vault-<run token>``) makes the copy
      in the DR Region of the vault account, encrypted under the vault CMK, tagged at creation
      with SecureDR's lineage and the DR copy's id; EBS copies are locked in compliance mode
      (``vault.lock.cool_off_hours``, a duration of at least ``retention.keep_days``) as soon as
      they complete; RDS has no snapshot lock;
    - never more copies in flight than ``waits.max_copies_in_flight`` (and the RDS copy quota)
      in the vault account; the rest start as slots free, in the triggerer (one deferral);
    - idempotent: vault copies a retried task or a restarted triggerer started are found by
      their lineage tags (EBS) or deterministic identifier (RDS) and reused;
    - nothing is deleted here; a point whose share, copy or lock fails is named (``failed``) and
      keeps its DR copy.

    Returns ``{label: {kind, dr_snapshot_id, vault_snapshot_id, vault_arn, locked, failed}}``,
    or None when the plan has no vault.
    """

    template_fields: Sequence[str] = ("verifications", "plan_path")

    def __init__(self, *, verifications: Any, deferrable: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.verifications = verifications
        self.deferrable = deferrable

    def execute(self, context: Any) -> dict[str, Any] | None:
        if self.skip_without_vault():
            return None
        _, run_id = run_identity(context)
        plan, vault = self.plan, self.vault
        dr = plan.regions.dr
        points = _verified_points(self.verifications)
        self._resolve_rds_arns(points)
        waits = plan.waits
        loop = VaultLoop(
            account_id=vault.account_id,
            region=dr,
            vault_key=vault.kms_key(dr),
            plan=plan.name,
            run_id=run_id,
            cool_off_hours=int(vault.lock.cool_off_hours),
            lock_days=lock_days(plan),
            requests={p.label: self._request(p, run_id) for p in points},
            slots=CopySlots(
                limit=waits.max_copies_in_flight,
                quota_wait_seconds=waits.quota_wait_seconds,
                kinds={p.label: p.kind for p in points},
                kind_limits=copy_slots(waits.max_copies_in_flight, plan.rds.concurrent_copy_quota),
            ),
            deadline=time.time() + waits.copy_timeout_minutes * 60,
            poll_seconds=waits.poll_seconds,
            missing_grace_seconds=waits.missing_grace_seconds,
        )
        if not points:
            self.log.info("No verified DR copy to bring into the vault.")
            return {}
        clients = self.assume(run_id)
        asyncio.run(self._first_pass(loop, clients))
        if loop.finished:
            return self._result(loop.event("done"))
        trigger = VaultCopyTrigger(
            loop=loop.to_dict(),
            role_arn=vault.role_arn,
            external_id_variable=vault.external_id_variable,
            aws_conn_id=self.aws_conn_id,
        )
        self.log.info("Vault copies: %s; the triggerer carries on.", loop.summary())
        if not self.deferrable:
            return self._result(asyncio.run(trigger.copy()))
        left = max(1.0, loop.deadline - time.time())
        self.defer(trigger=trigger, method_name="resume", timeout=timedelta(seconds=left + 600))
        return None

    def resume(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not isinstance(event, dict) or "results" not in event:
            raise AirflowFailException(f"the vault copy loop ended without its results: {event!r}")
        return self._result(event)

    async def _first_pass(self, loop: VaultLoop, clients: AssumedRoleClients) -> None:
        async with self.clients.async_clients() as workload, clients.async_clients() as vault:
            await loop.reconcile(vault)
            await loop.step(workload, vault)
            if not loop.finished:
                # Copies that completed at once (small ones) are locked here, without deferring.
                await loop.step(workload, vault)

    def _result(self, event: dict[str, Any]) -> dict[str, Any]:
        self.log.info("Vault copies: %s.", event.get("summary"))
        points = {p.label: p for p in _verified_points(self.verifications)}
        out: dict[str, Any] = {}
        for label, result in (event.get("results") or {}).items():
            point = points.get(label)
            out[label] = {
                "kind": point.kind if point else None,
                "dr_snapshot_id": point.dr_snapshot_id if point else None,
                "vault_snapshot_id": result.get("vault_snapshot_id"),
                "vault_arn": result.get("vault_arn"),
                "locked": bool(result.get("locked")),
                "shared": bool(result.get("shared")),
                "failed": result.get("failed")
                or (None if result.get("phase") == "done" else f"ended {result.get('phase')}"),
            }
        return out

    def _request(self, point: RecoveryPoint, run_id: str) -> dict[str, Any]:
        request: dict[str, Any] = {
            "kind": point.kind,
            "dr_snapshot_id": point.dr_snapshot_id,
            "tags": vault_tags(point, plan=self.plan.name, run_id=run_id),
        }
        if point.kind == "ebs":
            request["description"] = (
                f"SecureDR vault copy of {point.dr_snapshot_id} ({point.source_id})"
            )
        else:
            request["source_arn"] = point.dr_snapshot_arn
            request["identifier"] = rds_vault_identifier(
                point.dr_snapshot_id or "", account_of_arn(point.dr_snapshot_arn or "")
            )
        return request

    def _resolve_rds_arns(self, points: list[RecoveryPoint]) -> None:
        """ARNs of RDS DR copies the copy step did not see yet (one batched describe)."""
        missing = [p for p in points if p.kind == "rds" and not p.dr_snapshot_arn]
        if not missing:
            return
        found = rds.describe_snapshots(
            self.clients.rds(self.plan.regions.dr), [p.dr_snapshot_id or "" for p in missing]
        )
        for point in missing:
            point.dr_snapshot_arn = (found.get(point.dr_snapshot_id or "") or {}).get(
                "DBSnapshotArn"
            )
            if not point.dr_snapshot_arn:
                raise AirflowFailException(f"{point.label}: the DR copy has no ARN yet")


class VerifyVaultCopiesOperator(VaultOperator):
    """Check every vault copy from the vault account itself (under the vault intake role).

    A vault copy passes when it is completed (EBS) / available (RDS), encrypted under exactly
    the vault CMK of the DR Region, shared with nobody, tagged with SecureDR's lineage for this
    plan, run, source and DR copy, and - EBS - locked in compliance mode until at least
    ``retention.keep_days`` after it was taken. Describes are batched (DescribeSnapshots,
    DescribeLockedSnapshots, DescribeDBSnapshots); sharing is one attribute call per copy.
    Changes nothing (the intake role may not).

    Returns ``{"vault": <manifest top-level>, "points": {label: <manifest vault entry>}}`` with
    an entry for every verified DR copy: ``verified`` false (with ``problems``) for one whose
    vault step failed - the run report fails on it, and its DR copy is kept. None without a
    vault.
    """

    template_fields: Sequence[str] = ("verifications", "vault_copies", "plan_path")

    def __init__(self, *, verifications: Any, vault_copies: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.verifications = verifications
        self.vault_copies = vault_copies

    def execute(self, context: Any) -> dict[str, Any] | None:
        if self.skip_without_vault():
            return None
        _, run_id = run_identity(context)
        plan, vault = self.plan, self.vault
        dr = plan.regions.dr
        key = vault.kms_key(dr)
        copies = dict(self.vault_copies or {})
        points = _verified_points(self.verifications)
        base = {"account_id": vault.account_id, "region": dr, "kms_key_arn": key}
        entries: dict[str, Any] = {}
        todo: list[tuple[RecoveryPoint, str]] = []
        for point in points:
            copy = copies.get(point.label) or {}
            if copy.get("failed") or not copy.get("vault_snapshot_id"):
                reason = copy.get("failed") or "no vault copy was made"
                entries[point.label] = failed_entry(point, reason=reason, **base)
            else:
                todo.append((point, str(copy["vault_snapshot_id"])))
        if todo:
            clients = self.assume(run_id)
            ec2, rds_client = clients.ec2(dr), clients.rds(dr)
            ebs_ids = [sid for p, sid in todo if p.kind == "ebs"]
            rds_ids = [sid for p, sid in todo if p.kind == "rds"]
            found = {
                "ebs": ebs.describe_snapshots(ec2, ebs_ids) if ebs_ids else {},
                "rds": rds.describe_snapshots(rds_client, rds_ids) if rds_ids else {},
            }
            locks = lock_info(ec2, ebs_ids) if ebs_ids else {}
            for point, sid in todo:
                snapshot = found[point.kind].get(sid)
                shared: list[str] = []
                if snapshot is not None:
                    if point.kind == "ebs":
                        shared = [
                            p.get("Group") or p.get("UserId", "?") for p in ebs.sharing(ec2, sid)
                        ]
                    else:
                        shared = rds.sharing(rds_client, sid)
                problems = vault_copy_problems(
                    point,
                    snapshot,
                    expected_key_arn=key,
                    plan=plan.name,
                    run_id=run_id,
                    shared_with=shared,
                    lock=locks.get(sid),
                    keep_days=plan.retention.keep_days,
                )
                entries[point.label] = vault_entry(
                    point,
                    snapshot,
                    vault_snapshot_id=sid,
                    lock=locks.get(sid),
                    problems=problems,
                    **base,
                )
        for label, entry in sorted(entries.items()):
            if entry["verified"]:
                self.log.info("Verified in the vault: %s", label)
            else:
                self.log.error(
                    "NOT PROTECTED IN THE VAULT %s: %s", label, "; ".join(entry["problems"])
                )
        good = sum(1 for e in entries.values() if e["verified"])
        self.log.info("Vault verification: %d/%d vault copies passed.", good, len(entries))
        return {
            "vault": manifest_vault(
                account_id=vault.account_id,
                evidence_bucket=vault.evidence_bucket,
                kms_keys=dict(vault.kms_keys),
            ),
            "points": entries,
            "checked_at": datetime.now(UTC).isoformat(),
        }


class ReleaseDrIntermediatesOperator(VaultOperator):
    """Remove the vault account's shares and delete the intermediates the vault now holds.

    Runs after the signed manifest (listing each vault copy) is stored. Guarantees: a DR copy is
    deleted only when its vault copy passed ``verify_vault_copies`` (completed, locked,
    verified); a point whose vault step failed keeps its DR copy (only the share is removed);
    idempotent (a DR copy already gone counts as released); one failure does not stop the
    others, and fails the task naming it at the end. Returns what it did, or None without a
    vault.
    """

    template_fields: Sequence[str] = ("verifications", "vault_result", "manifest", "plan_path")

    def __init__(
        self, *, verifications: Any, vault_result: Any, manifest: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.verifications = verifications
        self.vault_result = vault_result
        self.manifest = manifest

    def execute(self, context: Any) -> dict[str, Any] | None:
        if self.skip_without_vault():
            return None
        if not self.manifest:
            raise AirflowFailException(
                "No signed manifest for this run: nothing is released (every DR copy is kept)."
            )
        dr = self.plan.regions.dr
        account = self.vault.account_id
        entries = (self.vault_result or {}).get("points") or {}
        deleted: list[str] = []
        kept: list[str] = []
        errors: list[str] = []
        for point in _verified_points(self.verifications):
            entry = entries.get(point.label) or {}
            sid = point.dr_snapshot_id or ""
            try:
                if entry.get("verified") is True:
                    outcome = release_intermediate(self.clients, dr, point.kind, sid, account)
                    deleted.append(f"{dr}/{sid}")
                    self.log.info("%s: intermediate %s %s.", point.label, sid, outcome)
                else:
                    unshare(self.clients, dr, point.kind, sid, account)
                    kept.append(f"{dr}/{sid}")
                    self.log.warning(
                        "%s: not verified in the vault; DR copy %s kept, share removed.",
                        point.label,
                        sid,
                    )
            except Exception as exc:
                errors.append(f"{point.label} ({sid}): {exc}")
                self.log.error("Releasing %s failed: %s", sid, exc)
        if errors:
            raise AirflowFailException("Releasing DR intermediates failed: " + "; ".join(errors))
        return {"deleted": deleted, "kept": kept}
