"""Test environment: a throw-away AIRFLOW_HOME on SQLite, the sandbox AWS, keys and an estate.

Environment variables are set at import time, before anything imports Airflow, so every
component (and every subprocess a test starts) sees the same isolated configuration.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_HOME = Path(tempfile.mkdtemp(prefix="securedr-test-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_AWS_DEFAULT": '{"conn_type": "aws"}',
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SECUREDR_HOME": str(_HOME / "securedr"),
        "SECUREDR_PLAN": str(REPO / "include" / "dr_plan.yaml"),
        "SECUREDR_REPORTS_DIR": str(_HOME / "securedr" / "reports"),
    }
)
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)


def _provision_recovery_key() -> Path:
    # The shipped plan names this file; every plan load checks it, so it exists from the start.
    from sandbox.estate import ensure_recovery_key

    return ensure_recovery_key(_HOME / "securedr" / "keys")


RECOVERY_PUBLIC_KEY = _provision_recovery_key()
RECOVERY_PRIVATE_KEY = RECOVERY_PUBLIC_KEY.parent / "offline" / "recovery-private-key.txt"


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """The metadata database, migrated once per session."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
    )
    return _HOME


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    """The sandbox AWS (moto server mode) on 127.0.0.1, shared by the session."""
    from sandbox.server import start

    server, url = start()
    os.environ["AWS_ENDPOINT_URL"] = url
    yield url
    server.stop()


@pytest.fixture
def aws(sandbox_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A clean sandbox AWS for one test.

    The realism layer is off unless the test is marked ``@pytest.mark.realism("e2e")`` (a profile)
    or switches sections on itself; either way it is off again afterwards.
    """
    from sandbox import moto_ext, realism

    realism.reset()
    reset = urllib.request.Request(f"{sandbox_url}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset).close()
    moto_ext.reset()
    marker = request.node.get_closest_marker("realism")
    if marker is not None:
        realism.use_profile(*marker.args, **marker.kwargs)
    yield sandbox_url
    realism.reset()


@pytest.fixture
def signing_keys(monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, bytes]:
    """A fresh manifest signing key: private key in the Airflow Variable, public key trusted."""
    from securedr.core.signing import generate_signing_key

    private, public = generate_signing_key()
    keys = Path(os.environ["SECUREDR_HOME"]) / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    (keys / "trusted-signing-keys.pem").write_bytes(public)
    monkeypatch.setenv("AIRFLOW_VAR_SECUREDR_SIGNING_PRIVATE_KEY", private.decode())
    return private, public


@pytest.fixture
def plan():
    from securedr.core.plan import load_plan

    return load_plan()


@pytest.fixture
def estate(aws: str, plan, signing_keys):
    """The demo estate seeded into a clean sandbox."""
    from sandbox.estate import seed

    return seed(plan, aws)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The embedded default as users run it: sandbox AWS and Airflow's real components.

    Started once per session (about a minute) with the shipped plan, and stopped at the end,
    also on failure. The estate is restore-ready (role, private DB network, SNS topic).
    """
    from sandbox.stack import Stack

    home = tmp_path_factory.mktemp("stack")
    instance = Stack(home=home)
    try:
        state = instance.up(quiet=True)
        yield {"stack": instance, **state, "passwords": instance.passwords()}
    finally:
        instance.down(quiet=True)


@pytest.fixture(scope="session")
def stack_nightly(stack) -> dict:
    """One dr_nightly_backup run on the stack, triggered over the REST API: run id and report."""
    from sandbox.stack import AirflowApi

    api = AirflowApi(stack["api_url"]).login("admin", stack["passwords"]["admin"])
    run_id = api.trigger("dr_nightly_backup")
    state = api.wait("dr_nightly_backup", run_id, timeout=900)
    report = api.xcom("dr_nightly_backup", run_id, "report_run") if state == "success" else None
    return {
        "run_id": run_id,
        "state": state,
        "report": report,
        "task_states": api.task_states("dr_nightly_backup", run_id),
    }
