"""What every restore step shares: the assumed restore role and the audit trail.

:class:`RestoreStepMixin` replaces the connection's clients with the restore role's (so every
AWS call of a restore step, evidence and audit writes included, runs under that role) and gives
each step :meth:`RestoreStepMixin.audit` to append who did what to which resource with which
outcome. A step that refuses to go on audits the refusal before it fails. Where a run ends (its
report, or a refusal), :meth:`RestoreStepMixin.anchor_audit_head` anchors the trail's head in a
signed, write-once object, so entries hidden or deleted afterwards are named by ``audit-verify``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any, NoReturn

from airflow.sdk.exceptions import AirflowFailException

from securedr.aws.audit_store import S3AuditTrail
from securedr.aws.sts import AssumedRoleClients, RestoreRoleError, assume_restore_role
from securedr.core.anchor import Anchor
from securedr.core.audit import AuditEntry
from securedr.operators.base import SecureDrMixin, SecureDrOperator, run_identity

#: Actor recorded when nobody is known to have triggered the run.
UNKNOWN_ACTOR = "unknown"


def initiator_of(context: Any) -> str | None:
    """The user who triggered the run (None for scheduler- or API-started runs without one)."""
    dag_run = context["dag_run"]
    name = getattr(dag_run, "triggering_user_name", None)
    return str(name) if name else None


class RestoreStepMixin(SecureDrMixin):
    """Restore role clients and the audit trail for a restore task (operator or sensor)."""

    _run_id: str | None = None

    def bind_run(self, context: Any) -> str:
        """Remember the run (the restore role's session is named after it); return its id."""
        _, run_id = run_identity(context)
        self._run_id = run_id
        return run_id

    @cached_property
    def clients(self) -> AssumedRoleClients:  # type: ignore[override]
        """Clients under the restore role, assumed once per task try."""
        if self._run_id is None:
            raise RuntimeError("bind_run(context) must be called before the first AWS call")
        plan = self.plan
        try:
            return assume_restore_role(
                self.aws_conn_id,
                region=plan.regions.dr,
                role_arn=plan.restore.role_arn,
                external_id_variable=plan.restore.external_id_variable,
                run_id=self._run_id,
            )
        except RestoreRoleError as exc:
            raise AirflowFailException(str(exc)) from None

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
