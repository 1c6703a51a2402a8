"""SecureDRFabAuthManager: approvals assigned by plan user name reach the right FAB users."""

from __future__ import annotations

from dataclasses import dataclass

from securedr.auth_manager import SecureDRFabAuthManager


@dataclass
class FabUser:
    """What FAB's User reports: a numeric database id and the user name."""

    id: int
    username: str

    def get_id(self) -> str:
        return str(self.id)

    def get_name(self) -> str:
        return self.username


def allowed(assigned: set[str], user: FabUser) -> bool:
    manager = SecureDRFabAuthManager.__new__(SecureDRFabAuthManager)  # no Flask app needed
    return manager.is_authorized_hitl_task(assigned_users=assigned, user=user)


def test_an_approver_assigned_by_user_name_may_answer():
    assert allowed({"bob", "carol"}, FabUser(id=3, username="bob"))


def test_the_initiator_left_out_of_the_assignment_may_not():
    assert not allowed({"bob", "carol"}, FabUser(id=2, username="alice"))


def test_assignments_by_fab_user_id_still_work():
    assert allowed({"7"}, FabUser(id=7, username="dave"))
    assert not allowed({"7"}, FabUser(id=8, username="erin"))


def test_stock_fab_would_refuse_the_plan_approvers():
    """Why the subclass exists: FAB's inherited check compares ids only."""
    from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager

    stock = FabAuthManager.__new__(FabAuthManager)
    bob = FabUser(id=3, username="bob")
    assert not stock.is_authorized_hitl_task(assigned_users={"bob", "carol"}, user=bob)
