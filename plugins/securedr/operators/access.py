"""Access control for a restore: who started it, who approved it, and nothing else counts.

Three steps, in this order:

1. :class:`CheckInitiatorOperator` - the triggering user must be one of the plan's initiators.
2. :class:`RestoreApprovalOperator` - Airflow's built-in approval (Required Actions), assigned to
   the plan's approvers minus the initiator, with the plan's deadline.
3. :class:`CheckApprovalOperator` - the answer must be "Approve", from an approver who is not the
   initiator. The built-in approval does not enforce this (an admin, or
   ``simple_auth_manager_all_admins``, can answer any approval), so it is checked here.

Every decision is appended to the audit trail; every refusal fails the run before anything is
retrieved or restored.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator

from securedr.core.access import (
    REJECT,
    AccessRefused,
    approvers_for,
    check_approval,
    check_initiator,
)
from securedr.core.plan import load_plan
from securedr.core.restore_request import RestoreRequest
from securedr.operators.audit import RestoreStepOperator, initiator_of


class CheckInitiatorOperator(RestoreStepOperator):
    """Refuse the run unless its triggering user is one of the plan's ``access.initiators``.

    Guarantees: a refusal is audited (outcome ``refused``, actor = the triggering user) and
    fails the task without retries; an accepted request is audited as ``started`` with the full
    request. Returns ``{"initiator", "approvers"}`` (who may approve this run).
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


class RestoreApprovalOperator(ApprovalOperator):
    """Ask the plan's approvers (except the initiator) to approve this restore.

    The assignment and the deadline are taken from the plan when the task runs, not when the
    DAG is parsed: the initiator is only known at run time (it must be excluded), and the plan
    that is enforced should be the plan every other step of the run reads. Parsing the DAG
    therefore reads nothing at all, and changing the approvers needs no DAG redeploy.

    The answer - whatever it is, including a timeout - is returned for
    :class:`CheckApprovalOperator` to judge and audit; this task neither skips nor fails on
    "Reject" so that every outcome is checked and recorded in one place. A timeout answers
    "Reject" (``defaults``), with no responder.
    """

    template_fields: Sequence[str] = (*HITLOperator.template_fields, "request", "plan_path")

    def __init__(self, *, request: Any, plan_path: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("subject", "SecureDR restore awaiting approval")
        kwargs.setdefault("defaults", [REJECT])
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.request = request
        self.plan_path = plan_path

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
        responded_at = result.get("responded_at")
        return {
            "chosen_options": list(result["chosen_options"]),
            "params_input": dict(result.get("params_input") or {}),
            "responded_at": responded_at.isoformat() if responded_at else None,
            "responded_by_user": result.get("responded_by_user"),
            "timed_out": bool(event.get("timedout")),
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
