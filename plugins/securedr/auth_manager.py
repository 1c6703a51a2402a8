"""SecureDR's FabAuthManager: approval assignments name users the way the DR plan does.

The DR plan names initiators and approvers by user name, and ``RestoreApprovalOperator``
assigns the approval to those names. Airflow's base check compares the assignment with the
user's *id*; that is the user name under SimpleAuthManager but a database number under
FabAuthManager, so a stock FAB deployment would refuse every assigned approver. FAB user names
are unique and only admins can change them, so this manager accepts an assigned user name (or
id); everything else - roles, DAG-level ``access_control``, login - is FabAuthManager's own.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager


class SecureDRFabAuthManager(FabAuthManager):
    """FabAuthManager whose approval check matches assigned user names as well as ids."""

    def is_authorized_hitl_task(self, *, assigned_users: set[str], user: Any) -> bool:
        return str(user.get_id()) in assigned_users or user.get_name() in assigned_users
