"""Enforce access control: initiator, approval assignment, and the two-person check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk.exceptions import AirflowFailException

from securedr.core.access import AccessRefused, approvers_for, check_approval, check_initiator
from securedr.core.plan import load_plan
from tests.restore.conftest import Harness, approval, audit_entries, make_context

PLAN = load_plan()  # initiators [alice], approvers [bob, carol]


# --------------------------------------------------------------------------- pure decisions


def test_initiator_must_be_in_the_plan():
    assert check_initiator("alice", PLAN) == "alice"
    with pytest.raises(AccessRefused, match=r"'mallory' may not start a restore.*alice"):
        check_initiator("mallory", PLAN)
    with pytest.raises(AccessRefused, match="no triggering user"):
        check_initiator(None, PLAN)


def test_approvers_exclude_the_initiator():
    assert approvers_for(PLAN, "alice") == ["bob", "carol"]
    assert approvers_for(PLAN, "bob") == ["carol"]


def test_approval_by_another_approver_passes():
    result = check_approval(approval("bob"), plan=PLAN, initiator="alice")
    assert result.approver == "bob"


@pytest.mark.parametrize(
    ("decision", "initiator", "says"),
    [
        (approval("bob"), "bob", "answered their own restore request"),
        (approval("mallory"), "alice", "not one of the plan's approvers"),
        (approval("admin"), "alice", "not one of the plan's approvers"),
        (approval("bob", "Reject"), "alice", "instead of approving"),
        (approval(None, "Reject"), "alice", "no approver answered within 60 minutes"),
        (approval(None, timed_out=True, chosen_options=[]), "alice", "no approver answered"),
        (approval("carol", chosen_options=["Approve", "Reject"]), "alice", "instead of approving"),
        ({}, "alice", "no approval was recorded"),
        (None, "alice", "no approval was recorded"),
    ],
)
def test_approval_refusals(decision, initiator, says):
    with pytest.raises(AccessRefused, match=says):
        check_approval(decision, plan=PLAN, initiator=initiator)


def test_self_approval_is_refused_even_when_the_id_differs_from_the_name():
    decision = approval("x", responded_by_user={"id": "alice", "name": "Alice Admin"})
    with pytest.raises(AccessRefused, match="their own"):
        check_approval(decision, plan=PLAN, initiator="alice")


# --------------------------------------------------------------------------- the approval task


def _approval_operator():
    from securedr.operators.access import RestoreApprovalOperator

    request = Harness().initiate()
    return RestoreApprovalOperator(task_id="approve_restore", request=request)


def test_approval_is_assigned_at_run_time_to_approvers_but_the_initiator(monkeypatch):
    from airflow.providers.standard.operators.hitl import HITLOperator

    seen = {}

    def fake_execute(self, context):
        seen.update(
            users=self.assigned_users,
            timeout=self.response_timeout,
            subject=self.subject,
            body=self.body,
            defaults=self.defaults,
        )

    monkeypatch.setattr(HITLOperator, "execute", fake_execute)
    op = _approval_operator()
    assert not op.assigned_users  # nothing read at parse time
    op.execute(make_context(user="alice"))
    assert seen["users"] == [{"id": "bob", "name": "bob"}, {"id": "carol", "name": "carol"}]
    assert seen["timeout"] == timedelta(minutes=PLAN.access.approval_timeout_minutes)
    assert seen["defaults"] == ["Reject"]
    assert "requested by alice" in seen["subject"]
    for text in ("| Requested by | alice |", "**Reason:** Region us-east-1 is down", "us-west-2a"):
        assert text in seen["body"]


def test_approval_task_refuses_to_ask_for_a_non_initiator(monkeypatch):
    from airflow.providers.standard.operators.hitl import HITLOperator

    monkeypatch.setattr(HITLOperator, "execute", lambda self, context: pytest.fail("asked"))
    with pytest.raises(AirflowFailException, match="may not start a restore"):
        _approval_operator().execute(make_context(user="mallory"))


def test_approval_task_records_every_answer_without_skipping():
    op = _approval_operator()
    now = datetime.now(UTC)
    rejected = op.execute_complete(
        make_context(),
        {
            "chosen_options": ["Reject"],
            "params_input": {},
            "responded_at": now,
            "responded_by_user": {"id": "bob", "name": "bob"},
            "timedout": False,
        },
    )
    assert rejected["chosen_options"] == ["Reject"]
    assert rejected["responded_at"] == now.isoformat()
    timed_out = op.execute_complete(
        make_context(), {"error": "no response", "error_type": "timeout"}
    )
    assert timed_out["timed_out"] is True and timed_out["responded_by_user"] is None


# --------------------------------------------------------------------------- audited refusals


def test_initiator_not_in_plan_is_refused_and_audited(restore_plan):
    h = Harness(user="mallory")
    h.initiate()
    with pytest.raises(AirflowFailException, match="Refused: user 'mallory' may not start"):
        h.check_initiator()
    (entry,) = audit_entries(restore_plan)
    assert (entry.actor, entry.action, entry.outcome) == ("mallory", "restore.initiate", "refused")
    assert "may not start a restore" in entry.details["reason"]


@pytest.mark.parametrize(
    ("initiator", "decision", "actor", "says"),
    [
        ("alice", approval("alice"), "alice", "their own"),
        ("alice", approval("mallory"), "mallory", "not one of the plan's approvers"),
        ("alice", approval("bob", "Reject"), "bob", "instead of approving"),
        ("alice", approval(None, "Reject"), "alice", "no approver answered"),
    ],
)
def test_bad_approvals_are_refused_audited_and_restore_nothing(
    restore_plan, backup, initiator, decision, actor, says
):
    h = Harness(user=initiator)
    h.initiate()
    h.check_initiator()
    with pytest.raises(AirflowFailException, match=says):
        h.check_approval(decision)
    entries = audit_entries(restore_plan)
    assert [(e.action, e.outcome) for e in entries] == [
        ("mfa.initiate", "succeeded"),
        ("restore.request", "started"),
        ("restore.approve", "refused"),
    ]
    assert entries[-1].actor == actor
