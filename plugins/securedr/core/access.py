"""Who may start a restore and who may approve it: the two-person rule, as pure decisions.

Airflow's approval operator records *who* answered but does not enforce the plan: any assigned
user may answer and nothing stops the initiator from approving their own run when an admin
widens the assignment. The functions here make those decisions from the plan alone:

* :func:`check_initiator` - the user who triggered the run is one of ``access.initiators``;
* :func:`approvers_for` - who may approve a run started by a given initiator (never themselves);
* :func:`check_approval` - the recorded answer is "Approve", given by an approver who is not the
  initiator, before the deadline, and carries that approver's verified MFA code (the approval
  step checks the code the approver typed and records only the verdict, see
  :mod:`securedr.core.mfa`).

Each refusal raises :class:`AccessRefused` with a message that says what was wrong and what to
do. Users are compared by their Airflow user name (SimpleAuthManager and FabAuthManager both
report it as ``name``). Pure module: no Airflow, no boto3.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from securedr.core.plan import Plan

APPROVE = "Approve"
REJECT = "Reject"


class AccessRefused(Exception):
    """The run is not allowed to go on; the message is safe to show and to audit."""


def check_initiator(initiator: str | None, plan: Plan) -> str:
    """Return ``initiator`` if the plan allows them to start a restore; raise otherwise."""
    allowed = plan.access.initiators
    if not initiator:
        raise AccessRefused(
            "the run has no triggering user (was it started by the scheduler or an API call "
            "without a user?); a restore must be triggered by one of the plan's initiators: "
            + ", ".join(allowed)
        )
    if initiator not in allowed:
        raise AccessRefused(
            f"user {initiator!r} may not start a restore; the plan's initiators are "
            f"{', '.join(allowed)}. Ask one of them to trigger the run, or have the plan "
            "(access.initiators) changed through review"
        )
    return initiator


def approvers_for(plan: Plan, initiator: str) -> list[str]:
    """The users who may approve a run started by ``initiator``: the approvers but them.

    Never empty for a valid plan (the plan model refuses an initiator without another approver);
    raises :class:`AccessRefused` if it would be.
    """
    approvers = [a for a in plan.access.approvers if a != initiator]
    if not approvers:
        raise AccessRefused(
            f"nobody but {initiator!r} could approve this run; add a second approver to the plan"
        )
    return approvers


@dataclass(frozen=True)
class Approval:
    """A checked approval: who approved, and when."""

    approver: str
    responded_at: str | None


def check_approval(response: Mapping[str, Any] | None, *, plan: Plan, initiator: str) -> Approval:
    """Decide whether the recorded approval response lets the run go on.

    ``response`` is what the approval task returned: ``chosen_options``, ``responded_by_user``
    ``{"id", "name"}``, ``responded_at`` and ``timed_out``. Refuses (raising
    :class:`AccessRefused`) when there is no response, the deadline passed, the answer is not
    exactly ``["Approve"]``, the responder is not an approver or is the initiator, or the
    response's ``mfa`` verdict is not the responder's ``ok``.
    """
    minutes = plan.access.approval_timeout_minutes
    if not response:
        raise AccessRefused(
            "no approval was recorded (the approval step did not complete); nothing was "
            "restored. Trigger a new run"
        )
    responder = response.get("responded_by_user") or None
    if response.get("timed_out") or (responder is None and response.get("chosen_options")):
        raise AccessRefused(
            f"no approver answered within {minutes} minutes; nothing was restored. Trigger a "
            "new run and make sure an approver is available"
        )
    if not isinstance(responder, Mapping):
        raise AccessRefused("the approval response names no responder; nothing was restored")
    name = str(responder.get("name") or "")
    user_id = str(responder.get("id") or "")
    chosen = list(response.get("chosen_options") or [])
    if name == initiator or user_id == initiator:
        raise AccessRefused(
            f"{initiator!r} answered their own restore request; a restore needs a second "
            f"person. Ask one of {', '.join(approvers_for(plan, initiator))} to approve a new run"
        )
    if name not in plan.access.approvers:
        raise AccessRefused(
            f"{name or user_id!r} answered the approval but is not one of the plan's approvers "
            f"({', '.join(plan.access.approvers)}); the answer does not count. Check who can "
            "answer approval tasks in Airflow and trigger a new run"
        )
    if chosen != [APPROVE]:
        raise AccessRefused(
            f"{name} answered {chosen or 'nothing'} instead of approving; nothing was restored"
        )
    _check_mfa_verdict(response.get("mfa"), name)
    responded_at = response.get("responded_at")
    return Approval(approver=name, responded_at=str(responded_at) if responded_at else None)


def _check_mfa_verdict(verdict: Any, approver: str) -> None:
    """The approver's MFA code was verified when they answered; refuse otherwise."""
    if not isinstance(verdict, Mapping):
        raise AccessRefused(
            f"{approver}'s approval carries no MFA verification (approving needs the current "
            "code from the approver's enrolled authenticator in the approval form); nothing "
            "was restored. Trigger a new run"
        )
    if verdict.get("user") != approver or verdict.get("result") != "ok":
        reason = str(verdict.get("reason") or "the MFA code was not verified")
        raise AccessRefused(
            f"{approver}'s MFA check failed: {reason}. Nothing was restored; trigger a new run"
        )
