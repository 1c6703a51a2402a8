"""What every restore step shares: the assumed restore role and the audit trail.

:class:`RestoreStepMixin` replaces the connection's clients with the restore role's (so every
AWS call of a restore step, evidence and audit writes included, runs under that role) and gives
each step :meth:`RestoreStepMixin.audit` to append who did what to which resource with which
outcome. A step that refuses to go on audits the refusal before it fails. Where a run ends (its
report, or a refusal), :meth:`RestoreStepMixin.anchor_audit_head` anchors the trail's head in a
signed, write-once object, so entries hidden or deleted afterwards are named by ``audit-verify``.

A restore or drill from the vault (``source: vault``, see
:func:`securedr.core.restore_request.resolve_source`) swaps all three for the vault's: the vault
recovery role (``vault.recovery.role_arn``, external id from the Variable named by
``vault.recovery.external_id_variable``, assumed from the Airflow connection
``vault.recovery.aws_conn_id`` - never the workload connection), the vault evidence bucket
(manifests, MFA ledger, audit trail, reports) and the vault CMK. Nothing of such a run depends
on the workload account, which may be lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NoReturn

from airflow.sdk.exceptions import AirflowFailException

from securedr.aws import kms as kms_adapter
from securedr.aws.audit_store import S3AuditTrail
from securedr.aws.evidence import EvidenceStore
from securedr.aws.sts import AssumedRoleClients, RestoreRoleError, assume_restore_role
from securedr.core.anchor import Anchor
from securedr.core.audit import AuditEntry
from securedr.core.restore_request import SOURCE_VAULT, SOURCE_WORKLOAD, resolve_source
from securedr.operators.base import SecureDrError, SecureDrMixin, SecureDrOperator, run_identity

#: Actor recorded when nobody is known to have triggered the run.
UNKNOWN_ACTOR = "unknown"


def initiator_of(context: Any) -> str | None:
    """The user who triggered the run (None for scheduler- or API-started runs without one)."""
    dag_run = context["dag_run"]
    name = getattr(dag_run, "triggering_user_name", None)
    return str(name) if name else None


@dataclass(frozen=True)
class RoleSettings:
    """Which role a restore step assumes, from which Airflow connection."""

    aws_conn_id: str | None
    role_arn: str | None
    external_id_variable: str
    setting: str  #: the plan field that names the role, for error messages


def source_of(context: Any, plan: Any) -> str:
    """The run's restore source: its ``source`` parameter, resolved against ``plan``.

    Every task of a run reads it the same way (the parameter is fixed for the run), so the
    source never travels through XCom. A bad value fails the task before any AWS call.
    """
    try:
        return resolve_source((context.get("params") or {}).get("source"), plan)
    except ValueError as exc:
        raise AirflowFailException(f"source: {exc}") from None


class RestoreStepMixin(SecureDrMixin):
    """Restore role clients and the audit trail for a restore task (operator or sensor)."""

    _run_id: str | None = None
    _source: str = SOURCE_WORKLOAD

    def bind_run(self, context: Any) -> str:
        """Remember the run (the restore role's session is named after it) and its restore
        source (workload or vault); return the run id."""
        _, run_id = run_identity(context)
        self._run_id = run_id
        self._source = source_of(context, self.plan)
        return run_id

    @property
    def from_vault(self) -> bool:
        """Whether this run restores from the vault (bound by :meth:`bind_run`)."""
        return self._source == SOURCE_VAULT

    def role_settings(self) -> RoleSettings:
        """The role this run's AWS calls run under: the restore role, or for a restore from the
        vault the vault recovery role, assumed from the vault recovery connection."""
        plan = self.plan
        if self.from_vault:
            recovery = plan.vault.recovery
            return RoleSettings(
                aws_conn_id=recovery.aws_conn_id,
                role_arn=recovery.role_arn,
                external_id_variable=recovery.external_id_variable,
                setting="vault.recovery.role_arn",
            )
        return RoleSettings(
            aws_conn_id=self.aws_conn_id,
            role_arn=plan.restore.role_arn,
            external_id_variable=plan.restore.external_id_variable,
            setting="restore.role_arn",
        )

    @cached_property
    def clients(self) -> AssumedRoleClients:  # type: ignore[override]
        """Clients under the restore (or vault recovery) role, assumed once per task try."""
        if self._run_id is None:
            raise RuntimeError("bind_run(context) must be called before the first AWS call")
        settings = self.role_settings()
        try:
            return assume_restore_role(
                settings.aws_conn_id,
                region=self.plan.regions.dr,
                role_arn=settings.role_arn,
                external_id_variable=settings.external_id_variable,
                run_id=self._run_id,
                setting=settings.setting,
            )
        except RestoreRoleError as exc:
            raise AirflowFailException(str(exc)) from None

    def key_arn(self, region: str) -> str:
        """The plan's key for ``region``; for a restore from the vault, the vault CMK (a full
        key ARN in the vault account: aliases do not work across accounts)."""
        if not self.from_vault:
            return super().key_arn(region)
        vault = self.plan.vault
        key = vault.kms_key(region)
        metadata = kms_adapter.describe_key(self.clients.kms(region), key)
        if metadata is None:
            raise SecureDrError(
                f"the vault key {key} in {region} does not exist or the vault recovery role may "
                "not use it; fix vault.kms_keys in the plan or the key's policy"
            )
        return str(metadata["Arn"])

    @cached_property
    def evidence(self) -> EvidenceStore:
        """The evidence store; for a restore from the vault, the vault evidence bucket (the
        workload's may be lost or emptied) - written under Object Lock COMPLIANCE."""
        if not self.from_vault:
            return super().evidence
        plan = self.plan
        vault = plan.vault
        dr = plan.regions.dr
        return EvidenceStore(
            self.clients.s3(dr),
            bucket=vault.evidence_bucket,
            prefix=vault.evidence_prefix,
            kms_key_arn=self.key_arn(dr),
            lock_mode="COMPLIANCE",
            lock_days=plan.evidence_bucket.object_lock_days,
        )

    @cached_property
    def audit_trail(self) -> S3AuditTrail:
        return S3AuditTrail.for_evidence(self.evidence, self.plan.name)

    def audit(
        self,
        context: Any,
        *,
        action: str,
        resource: str,
        outcome: str,
        details: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> AuditEntry:
        """Append one entry to the plan's audit trail (actor defaults to the initiator)."""
        run_id = self._run_id or self.bind_run(context)
        entry = self.audit_trail.append(
            actor=actor or initiator_of(context) or UNKNOWN_ACTOR,
            action=action,
            resource=resource,
            outcome=outcome,
            details={"task_id": getattr(self, "task_id", None), **(details or {})},
            run_id=run_id,
            private_key_pem=self.signing_private_key(),
        )
        self.log.info("Audited %s %s on %s (entry %d).", action, outcome, resource, entry.seq)
        return entry

    def anchor_audit_head(self, context: Any) -> Anchor | None:
        """Anchor the audit trail's head after this run's last entry; return the anchor.

        Best effort by design: the run's outcome (a restore done, a refusal) must not be lost
        to a failed anchor write, and the next run's anchor covers these entries too. A failure
        is logged as an error.
        """
        run_id = self._run_id or self.bind_run(context)
        try:
            anchor = self.audit_trail.anchor(
                run_id=run_id, private_key_pem=self.signing_private_key()
            )
        except Exception as exc:
            self.log.error("Could not anchor the audit trail's head: %s", exc)
            return None
        if anchor is not None:
            self.log.info("Audit trail head anchored: entry %d (%s).", anchor.seq, anchor.key)
        return anchor

    def refuse(
        self,
        context: Any,
        *,
        action: str,
        resource: str,
        reason: str,
        details: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> NoReturn:
        """Audit a refusal, then fail the task (no retry) with ``reason``."""
        self.audit(
            context,
            action=action,
            resource=resource,
            outcome="refused",
            details={"reason": reason, **(details or {})},
            actor=actor,
        )
        # A refusal ends the run: anchor the trail right after its last entry.
        self.anchor_audit_head(context)
        raise AirflowFailException(f"Refused: {reason}")


class RestoreStepOperator(RestoreStepMixin, SecureDrOperator):
    """Base for restore operators: runs under the restore role, audits what it does."""

    ui_color = "#fde2e4"
