"""FabAuthManager roles and demo users for the CeleryExecutor deployment.

``python -m sandbox.fab_access --passwords PATH`` (after ``airflow db migrate``, before the
dag-processor first syncs ``dr_restore``'s ``access_control``, which names these roles) creates:

- the role ``DR Initiator``: globally only reading the plugin list (so the UI shows the
  "DR posture" view); ``dr_restore``'s ``access_control`` lets it read, edit and trigger that
  DAG only;
- the role ``DR Approver``: may answer approvals (``HITL Detail``) and read the plugin list;
  ``access_control`` gives it read and edit on ``dr_restore`` (answering an approval edits the
  DAG's task);
- users (on top of FAB's ``Viewer``): ``alice`` initiator (and approver of others' runs),
  ``bob`` and ``carol`` approvers, ``mallory`` with no DR role, and ``admin``.

Whether an approver may answer a *given* run is decided by its assignment (the plan's approvers
minus the initiator) and re-checked by ``check_approval``; roles only open the door.
Passwords are generated once into PATH (mode 0600). Idempotent.
"""

from __future__ import annotations

import argparse
import json
import secrets
from pathlib import Path

DR_INITIATOR = "DR Initiator"
DR_APPROVER = "DR Approver"

#: Lets the UI list plugins, which it needs to show the "DR posture" view in its navigation
#: (FAB gives it to Op and Admin only; plugin names are all it reveals).
READ_PLUGINS = ("can_read", "Plugins")

#: Global permissions of the DR roles: (action, resource).
ROLE_PERMISSIONS: dict[str, list[tuple[str, str]]] = {
    DR_INITIATOR: [READ_PLUGINS],
    DR_APPROVER: [
        ("can_read", "HITL Detail"),
        ("can_edit", "HITL Detail"),
        ("menu_access", "HITL Detail"),
        READ_PLUGINS,
    ],
}

#: Demo users and their FAB roles.
USERS: dict[str, list[str]] = {
    "admin": ["Admin"],
    "alice": ["Viewer", DR_INITIATOR, DR_APPROVER],
    "bob": ["Viewer", DR_APPROVER],
    "carol": ["Viewer", DR_APPROVER],
    "mallory": ["Viewer"],
}


def passwords(path: Path) -> dict[str, str]:
    """The demo users' passwords, generated on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({user: secrets.token_urlsafe(12) for user in USERS}))
        path.chmod(0o600)
    return dict(json.loads(path.read_text()))


def provision(password_file: Path | None) -> None:
    """Create the DR roles and the demo users in FAB's tables (Airflow's metadata DB).

    Without ``password_file`` only the roles are created (a real deployment's own users get
    them with ``airflow users add-role``).
    """
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    secret = passwords(password_file) if password_file else {}
    with get_application_builder() as appbuilder:
        sm = appbuilder.sm
        sm.sync_roles()  # FAB's own roles (Viewer, Admin, ...) and resources such as HITL Detail
        for name, perms in ROLE_PERMISSIONS.items():
            role = sm.find_role(name) or sm.add_role(name)
            for action, resource in perms:
                permission = sm.create_permission(action, resource)
                sm.add_permission_to_role(role, permission)
        for username, role_names in USERS.items() if secret else ():
            roles = [sm.find_role(r) for r in role_names]
            user = sm.find_user(username=username)
            if user is None:
                created = sm.add_user(
                    username=username,
                    first_name=username.title(),
                    last_name="SecureDR demo",
                    email=f"{username}@securedr.invalid",
                    role=roles,
                    password=secret[username],
                )
                if not created:
                    raise SystemExit(f"could not create user {username}")
            else:
                user.roles = roles
                sm.update_user(user)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passwords", type=Path, required=True)
    parser.add_argument("--roles-only", action="store_true", help="no demo users")
    args = parser.parse_args()
    provision(None if args.roles_only else args.passwords)


if __name__ == "__main__":
    main()
