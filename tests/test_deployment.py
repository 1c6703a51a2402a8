"""docker-compose.yaml is valid and runs what SecureDR needs."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_compose_file_has_the_airflow_3_celery_topology():
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert {
        "postgres",
        "redis",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-worker",
        "airflow-triggerer",
        "airflow-init",
        "sandbox-aws",
    } <= set(services)
    env = compose["x-airflow-common"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("FabAuthManager")
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-worker", "airflow-triggerer"):
        # Every component shares one JWT secret, or workers cannot authenticate.
        assert (
            services[name]["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"]
            == (env["AIRFLOW__API_AUTH__JWT_SECRET"])
        )
        mounts = {v.split(":")[1] for v in services[name]["volumes"]}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include"} <= mounts


# ---------------------------------------------------------------- compose and the native stack
def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def _native_celery_env(tmp_path: Path) -> dict[str, str]:
    from sandbox.stack import Stack

    services = {
        "database_url": "postgresql+psycopg2://airflow:pw@127.0.0.1:5433/airflow",
        "broker_url": "redis://:pw@127.0.0.1:6380/0",
        "fernet_key": "k" * 43 + "=",
        "ports": {"worker_logs": 1, "trigger_logs": 2, "scheduler_health": 3},
    }
    return Stack(tmp_path, profile="celery").env(
        "http://127.0.0.1:5000", 8081, "jwt-secret", services
    )


def test_compose_and_the_native_stack_set_the_same_airflow_settings(tmp_path):
    from sandbox.deployment import ENDPOINTS, SETTINGS

    compose = {
        k: str(v)
        for k, v in _compose()["x-airflow-common"]["environment"].items()
        if k.startswith("AIRFLOW")
    }
    # compose sets exactly what sandbox.deployment declares: nothing more, nothing less.
    assert set(compose) == set(SETTINGS) | set(ENDPOINTS)
    native = _native_celery_env(tmp_path)
    for key, value in SETTINGS.items():
        assert compose[key] == value, key
        assert native[key] == value, key
    for key, scheme in ENDPOINTS.items():
        assert compose[key].startswith(scheme), (key, compose[key])
        assert native[key].startswith(scheme), (key, native[key])
    # The result backend is the metadata database, in both.
    for env in (compose, native):
        database = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + database
    assert native["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8081/execution/"


def test_the_native_stack_sets_nothing_compose_does_not_besides_local_plumbing(tmp_path):
    """Native-only settings are the ones a shared host forces (ports, paths) or the demo's."""
    from sandbox.deployment import ENDPOINTS, LOOPBACK_SETTINGS, SETTINGS

    native = {k for k in _native_celery_env(tmp_path) if k.startswith("AIRFLOW__")}
    plumbing = {
        "AIRFLOW__CORE__DAGS_FOLDER",
        "AIRFLOW__CORE__PLUGINS_FOLDER",
        "AIRFLOW__API__PORT",
        "AIRFLOW__API__HOST",
        "AIRFLOW__API__BASE_URL",
        "AIRFLOW__CORE__PARALLELISM",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC",
        # SimpleAuthManager's, blanked: the celery profile runs FabAuthManager.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS",
    }
    assert native - set(SETTINGS) - set(ENDPOINTS) - set(LOOPBACK_SETTINGS) <= plumbing


def test_compose_and_the_native_stack_run_the_same_services():
    from sandbox.deployment import SERVICES
    from sandbox.stack import Stack

    services = _compose()["services"]
    assert set(services) == set(SERVICES)
    components = Stack(REPO / ".unused", profile="celery").components
    for name, service in services.items():
        if name.startswith("airflow-") and name != "airflow-init":
            assert tuple(service["command"].split()) == SERVICES[name], name
            assert SERVICES[name] in components.values(), name
    # One native process per long-running Airflow service, and a Celery worker among them.
    airflow_services = [n for n in services if n.startswith("airflow-") and n != "airflow-init"]
    assert len(components) == len(airflow_services)
    assert components["celery-worker"] == ("celery", "worker")
    assert "airflow db migrate" in "\n".join(services["airflow-init"]["command"])


def test_the_local_profile_is_unchanged(tmp_path):
    from sandbox.stack import Stack

    env = Stack(tmp_path).env("http://127.0.0.1:5000", 8081, "jwt-secret")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:///")
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    assert Stack(tmp_path).components == {
        c: (c,) for c in ("api-server", "scheduler", "dag-processor", "triggerer")
    }


def test_dr_restore_grants_access_to_the_roles_the_deployment_creates():
    import ast

    from sandbox.fab_access import DR_APPROVER, DR_INITIATOR, ROLE_PERMISSIONS, USERS

    # Read from the DAG file's source: importing it (and the Amazon provider) takes seconds.
    tree = ast.parse((REPO / "dags" / "dr_restore.py").read_text())
    (access,) = [
        ast.literal_eval(kw.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DAG"
        for kw in node.keywords
        if kw.arg == "access_control"
    ]
    assert set(access) == set(ROLE_PERMISSIONS) == {DR_INITIATOR, DR_APPROVER}
    # Only initiators may start a run; approvers may answer, not start.
    assert "can_create" in access[DR_INITIATOR]["DAG Runs"]
    assert "can_create" not in access[DR_APPROVER].get("DAG Runs", set())
    assert ("can_edit", "HITL Detail") in ROLE_PERMISSIONS[DR_APPROVER]
    # Both may see the "DR posture" view, which the UI finds in the plugin list.
    assert all(("can_read", "Plugins") in ROLE_PERMISSIONS[r] for r in (DR_INITIATOR, DR_APPROVER))
    # The user without a DR role is what the browser test proves is refused.
    assert not {DR_INITIATOR, DR_APPROVER} & set(USERS["mallory"])
    assert DR_INITIATOR in USERS["alice"] and DR_APPROVER in USERS["bob"]
