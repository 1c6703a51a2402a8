"""Access control for a restore: who started it, who approved it, and nothing else counts.

Three steps, in this order:

1. :class:`CheckInitiatorOperator` - the triggering user must be one of the plan's initiators
   and enter their current MFA code (``mfa_code`` in the trigger form).
2. :class:`RestoreApprovalOperator` - Airflow's built-in approval (Required Actions), assigned to
   the plan's approvers minus the initiator, with the plan's deadline; the approver enters their
   MFA code (``approver_mfa_code``) in the approval form and it is checked when they answer.
3. :class:`CheckApprovalOperator` - the answer must be "Approve", from an approver who is not the
   initiator, with a verified MFA code. The built-in approval does not enforce this (an admin,
   or ``simple_auth_manager_all_admins``, can answer any approval), so it is checked here.

Every decision - every MFA check included (ok, bad, replay, locked, not enrolled) - is appended
to the audit trail; every refusal fails the run before anything is retrieved or restored. MFA
codes are never logged, returned (XCom) or audited: only the verdict is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk import Param, Variable
from airflow.sdk.definitions.param import ParamsDict

from securedr.aws.mfa_store import S3MfaLedger
from securedr.core.access import (
    APPROVE,
    REJECT,
    AccessRefused,
    approvers_for,
    check_approval,
    check_initiator,
)
from securedr.core.mfa import MfaError, MfaResult, Outcome, secret_variable, verify_code
from securedr.core.plan import load_plan
from securedr.core.restore_request import RestoreRequest
from securedr.operators.audit import RestoreStepMixin, RestoreStepOperator, initiator_of

#: The trigger form's field for the initiator's code, and the approval form's for the approver's.
MFA_CODE_PARAM = "mfa_code"
APPROVER_MFA_CODE_PARAM = "approver_mfa_code"


def mfa_now() -> datetime:
    """The clock codes are checked against (UTC; the workers' clocks must be NTP-synced)."""
    return datetime.now(UTC)


class MfaCheckMixin(RestoreStepMixin):
    """Check a user's one-time code against their enrolled secret, and audit the verdict."""

    def check_mfa(self, context: Any, *, user: str, code: object, purpose: str) -> MfaResult:
        """Verify ``user``'s ``code`` for ``purpose`` (``initiate`` / ``approve``).

        Guarantees: the verdict (never the code, never the secret) is audited as action
        ``mfa.<purpose>``, outcome ``succeeded`` or ``refused``, actor ``user``; a code is
        spent in the evidence bucket before ``ok`` is returned.
        """
        plan = self.plan
        run_id = self._run_id or self.bind_run(context)
        try:
            # Airflow masks the value in logs: the Variable's name contains "secret".
            secret = Variable.get(secret_variable(user), default=None)
            result = verify_code(
                user=user,
                code=code,
                secret=secret,
                ledger=S3MfaLedger(self.evidence, plan.name),
                now=mfa_now(),
                purpose=purpose,
                run_id=run_id,
            )
        except MfaError as exc:
            result = MfaResult(user, purpose, Outcome.BAD, f"MFA for {user!r} unusable: {exc}")
        self.audit(
            context,
            action=f"mfa.{purpose}",
            resource=f"plan/{plan.name}",
            outcome="succeeded" if result.ok else "refused",
            details=result.to_audit(),
            actor=user,
        )
        self.log.info("MFA check for %s (%s): %s.", user, purpose, result.outcome.value)
        return result


class CheckInitiatorOperator(MfaCheckMixin, RestoreStepOperator):
    """Refuse the run unless its triggering user is one of the plan's ``access.initiators`` and
    entered their current MFA code in the trigger form (``mfa_code``).

    Guarantees: a refusal is audited (outcome ``refused``, actor = the triggering user) and
    fails the task without retries; the MFA check is audited on its own (see
    :meth:`MfaCheckMixin.check_mfa`) before anything is retrieved; an accepted request is
    audited as ``started`` with the full request (which never holds the code). Returns
    ``{"initiator", "approvers"}`` (who may approve this run).
    """

    template_fields: Sequence[str] = ("initiation", "plan_path")

    def __init__(self, *, initiation: Any, **kwargs: Any) -> None:
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.initiation = initiation

    def execute(self, context: Any) -> dict[str, Any]:
        self.bind_run(context)
        plan = self.plan
        initiator = initiator_of(context)
        request = dict((self.initiation or {}).get("request") or {})
        try:
            check_initiator(initiator, plan)
            approvers = approvers_for(plan, initiator or "")
        except AccessRefused as exc:
            self.refuse(
                context,
                action="restore.initiate",
                resource=f"plan/{plan.name}",
                reason=str(exc),
                details={"request": request},
            )
        code = (context.get("params") or {}).get(MFA_CODE_PARAM)
        mfa = self.check_mfa(context, user=initiator or "", code=code, purpose="initiate")
        if not mfa.ok:
            self.refuse(
                context,
                action="restore.initiate",
                resource=f"plan/{plan.name}",
                reason=f"MFA check failed: {mfa.reason}",
                details={"request": request, "mfa": mfa.to_audit()},
            )
        self.audit(
            context,
            action="restore.request",
            resource=f"plan/{plan.name}",
            outcome="started",
            details={"request": request, "approvers": approvers},
        )
        self.log.info(
            "%s may start restores; waiting for approval from one of %s.",
            initiator,
            ", ".join(approvers),
        )
        return {"initiator": initiator, "approvers": approvers}


def approval_body(request: RestoreRequest, initiator: str, plan_name: str, run_id: str) -> str:
    """The Markdown the approvers see: what, where, why, and what approving does."""
    rows = [
        ("Requested by", initiator),
        ("Plan", plan_name),
        ("Run", run_id),
        ("Recovery point", request.recovery_point),
        ("Resources", request.describe_resources()),
        ("Target", f"{request.target_region} / {request.availability_zone}"),
        (
            "Restore from",
            "the VAULT (vault copies, vault recovery role, into the recovery account)"
            if request.from_vault
            else "the workload account's DR copies",
        ),
        ("Ticket", request.ticket or "-"),
        ("Dry run", "yes - nothing will be created" if request.dry_run else "no"),
    ]

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    table = "\n".join(f"| {k} | {cell(v)} |" for k, v in rows)
    return (
        f"## Restore request from {cell(initiator)}\n\n"
        f"| | |\n|---|---|\n{table}\n\n"
        f"**Reason:** {cell(request.reason)}\n\n"
        "Approving restores the listed recovery points as new, encrypted, private resources "
        "in the target Region. Nothing is overwritten. You cannot approve your own request; "
        "your answer is recorded in the audit trail."
    )


def approval_form() -> dict[str, Param]:
    """The approval form's fields: the approver's MFA code."""
    return {
        APPROVER_MFA_CODE_PARAM: Param(
            None,
            type=["null", "string"],
            title="Your MFA code",
            description=(
                "To approve: the current 6-digit code from the authenticator app you enrolled "
                "for SecureDR (`securedr mfa enroll`). Not needed to reject."
            ),
            # HITLOperator shows only task-level params in the approval form.
            source="task",
        )
    }


class RestoreApprovalOperator(MfaCheckMixin, ApprovalOperator):
    """Ask the plan's approvers (except the initiator) to approve this restore.

    The assignment and the deadline are taken from the plan when the task runs, not when the
    DAG is parsed: the initiator is only known at run time (it must be excluded), and the plan
    that is enforced should be the plan every other step of the run reads. Parsing the DAG
    therefore reads nothing at all, and changing the approvers needs no DAG redeploy.

    The answer - whatever it is, including a timeout - is returned for
    :class:`CheckApprovalOperator` to judge and audit; this task neither skips nor fails on
    "Reject" so that every outcome is checked and recorded in one place. A timeout answers
    "Reject" (``defaults``), with no responder.

    The approval form asks for the approver's MFA code (``approver_mfa_code``). When a plan
    approver other than the initiator answers "Approve", the code is checked (and the check
    audited) as the answer comes in; the code is then dropped - the returned answer carries the
    verdict under ``mfa``, never the code - and :class:`CheckApprovalOperator` refuses anything
    but the approver's ``ok``.
    """

    template_fields: Sequence[str] = (*HITLOperator.template_fields, "request", "plan_path")

    def __init__(
        self,
        *,
        request: Any,
        plan_path: str | None = None,
        aws_conn_id: str | None = "aws_default",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("subject", "SecureDR restore awaiting approval")
        kwargs.setdefault("defaults", [REJECT])
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        if not self.params:
            # Assigned here: params added to kwargs inside __init__ do not survive
            # BaseOperator's argument merging, and HITLOperator renders self.params as the form.
            self.params = ParamsDict(approval_form())
        self.request = request
        self.plan_path = plan_path
        self.aws_conn_id = aws_conn_id

    def execute(self, context: Any) -> Any:
        plan = load_plan(self.plan_path)
        initiator = initiator_of(context)
        try:
            check_initiator(initiator, plan)  # already enforced upstream; never assign blindly
            approvers = approvers_for(plan, initiator or "")
        except AccessRefused as exc:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"Refused: {exc}") from None
        request = RestoreRequest.from_dict((self.request or {})["request"])
        # Never an empty list: Airflow lets anyone with access answer an unassigned approval.
        self.assigned_users = [{"id": name, "name": name} for name in approvers]
        self.response_timeout = timedelta(minutes=plan.access.approval_timeout_minutes)
        self.subject = (
            f"{'DRY RUN ' if request.dry_run else ''}DR restore of "
            f"{request.describe_resources()} requested by {initiator}"
        )[:200]
        self.body = approval_body(request, initiator or "", plan.name, str(context["run_id"]))
        self.log.info("Approval assigned to %s; deadline %s.", approvers, self.response_timeout)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        if "error" in event:
            self.log.warning("Approval ended without an answer: %s", event.get("error"))
            return {
                "chosen_options": [],
                "params_input": {},
                "responded_at": None,
                "responded_by_user": None,
                "timed_out": event.get("error_type") == "timeout",
            }
        # Validates the options; deliberately not ApprovalOperator's version, which would skip
        # the check step on "Reject" and leave the refusal unaudited.
        result = HITLOperator.execute_complete(self, context, event)
        params_input = dict(result.get("params_input") or {})
        code = params_input.pop(APPROVER_MFA_CODE_PARAM, None)
        # Listeners see the answer summary: never the code.
        self.hitl_summary_extra["params_input"] = params_input
        chosen = list(result["chosen_options"])
        responder = result.get("responded_by_user") or {}
        name = str(responder.get("name") or "") if isinstance(responder, Mapping) else ""
        mfa = None
        if chosen == [APPROVE] and name and name != initiator_of(context):
            plan = self.plan
            if name in plan.access.approvers:
                # Anyone else is refused by CheckApprovalOperator without a code being checked
                # (and without counting failures against an account that is no approver).
                mfa = self.check_mfa(context, user=name, code=code, purpose="approve").to_audit()
        responded_at = result.get("responded_at")
        return {
            "chosen_options": chosen,
            "params_input": params_input,
            "responded_at": responded_at.isoformat() if responded_at else None,
            "responded_by_user": result.get("responded_by_user"),
            "timed_out": bool(event.get("timedout")),
            "mfa": mfa,
        }


class CheckApprovalOperator(RestoreStepOperator):
    """Let the run go on only if an approver other than the initiator chose "Approve".

    Guarantees: rejections, timeouts, self-approvals and answers from anyone who is not a plan
    approver are audited as ``refused`` and fail the run (no retries) before anything is
    retrieved or restored; an approval is audited as ``succeeded`` with the approver as actor.
    Returns ``{"approver", "responded_at"}``.
    """

    template_fields: Sequence[str] = ("decision", "plan_path")

    def __init__(self, *, decision: Any, **kwargs: Any) -> None:
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.decision = decision

    def execute(self, context: Any) -> dict[str, Any]:
        self.bind_run(context)
        plan = self.plan
        initiator = initiator_of(context) or ""
        decision = dict(self.decision or {})
        responder = decision.get("responded_by_user") or {}
        try:
            approval = check_approval(decision, plan=plan, initiator=initiator)
        except AccessRefused as exc:
            self.refuse(
                context,
                action="restore.approve",
                resource=f"plan/{plan.name}",
                reason=str(exc),
                details={"decision": decision},
                actor=str(responder.get("name") or initiator or "unknown"),
            )
        self.audit(
            context,
            action="restore.approve",
            resource=f"plan/{plan.name}",
            outcome="succeeded",
            details={"initiator": initiator, "responded_at": approval.responded_at},
            actor=approval.approver,
        )
        self.log.info("Approved by %s (requested by %s).", approval.approver, initiator)
        return {"approver": approval.approver, "responded_at": approval.responded_at}
