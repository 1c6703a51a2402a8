"""The embedded default stack: sandbox AWS + real Airflow components on this machine.

``python -m sandbox.stack up`` starts, in the background and all on 127.0.0.1:

- the sandbox AWS (moto server mode) with the demo estate seeded into it;
- Airflow in ``$SECUREDR_HOME/airflow`` with its real components, in one of two profiles:

  - ``local`` (default): SQLite, api-server, scheduler (LocalExecutor), dag-processor and
    triggerer; demo users from SimpleAuthManager;
  - ``celery`` (``--profile celery``): the docker-compose.yaml topology without Docker -
    private PostgreSQL and Redis from Debian's packages (:mod:`sandbox.services`), CeleryExecutor
    with one ``airflow celery worker``, FabAuthManager with the DR roles
    (:mod:`sandbox.fab_access`); settings from :mod:`sandbox.deployment`, as in compose.

``down`` stops everything ``up`` started; ``demo`` runs ``dr_nightly_backup`` through the REST
API and prints its report. State lives in ``$SECUREDR_HOME`` (default ``.securedr/``).

The plan's initiators and approvers are enrolled for MFA step-up with ``securedr mfa enroll``
(as an administrator would); the stack keeps each one's otpauth URI in
``$SECUREDR_HOME/keys/mfa/`` - standing in for their phones - and :meth:`Stack.mfa_code` reads
the current code off it when the demo triggers or approves a restore.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_HOME = REPO / ".securedr"
#: The sandbox AWS runs with the realism layer's ``e2e`` profile unless this says otherwise
#: (a profile name, ``off``, or JSON of sections: see :mod:`sandbox.realism`).
REALISM_ENV = "SECUREDR_SANDBOX_REALISM"
DEFAULT_REALISM = "e2e"
DEFAULT_PLAN = REPO / "include" / "dr_plan.yaml"
DAG_IDS = tuple(sorted(p.stem for p in (REPO / "dags").glob("dr_*.py")))
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
PROFILES = ("local", "celery")
#: SimpleAuthManager users: who may do what in the demo (roles: admin, op, user, viewer).
DEMO_USERS = {"admin": "admin", "alice": "op", "bob": "op", "carol": "op", "mallory": "viewer"}


class StackError(RuntimeError):
    pass


@dataclass
class Stack:
    home: Path
    profile: str = "local"

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise StackError(f"unknown profile {self.profile!r}; one of {', '.join(PROFILES)}")

    @property
    def components(self) -> dict[str, tuple[str, ...]]:
        """The Airflow components of this profile: name -> ``airflow`` arguments."""
        if self.profile == "celery":
            from sandbox.deployment import CELERY_COMPONENTS

            return dict(CELERY_COMPONENTS)
        return {name: (name,) for name in COMPONENTS}

    @property
    def state_file(self) -> Path:
        return self.home / "stack.json"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    def state(self) -> dict[str, Any]:
        if not self.state_file.exists():
            return {}
        return dict(json.loads(self.state_file.read_text()))

    def save(self, state: dict[str, Any]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=2))

    # ------------------------------------------------------------------ environment
    def env(
        self,
        aws_url: str,
        api_port: int,
        jwt_secret: str,
        services: dict[str, Any] | None = None,
    ) -> dict[str, str]:
        """The environment every component runs with (and what a CLI user would export).

        ``services`` (celery profile): the URLs and ports :meth:`_start_services` returned.
        """
        airflow_home = self.home / "airflow"
        keys = self.home / "keys"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
        env.update(
            {
                "AIRFLOW_HOME": str(airflow_home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home}/airflow.db",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                    f"{u}:{r}" for u, r in DEMO_USERS.items()
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                    self.home / "passwords.json"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
                "AIRFLOW__API__PORT": str(api_port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": (
                    f"http://127.0.0.1:{api_port}/execution/"
                ),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW_CONN_AWS_DEFAULT": '{"conn_type": "aws"}',
                "AWS_ENDPOINT_URL": aws_url,
                "AWS_ACCESS_KEY_ID": "sandbox",
                "AWS_SECRET_ACCESS_KEY": "sandbox",  # the emulator accepts any credentials
                "AWS_DEFAULT_REGION": "us-east-1",
                "SECUREDR_HOME": str(self.home),
                "SECUREDR_PLAN": os.environ.get(
                    "SECUREDR_PLAN", str(REPO / "include/dr_plan.yaml")
                ),
                "SECUREDR_REPORTS_DIR": str(self.home / "reports"),
                "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)]),
            }
        )
        signing_key = keys / "signing-private-key.pem"
        if signing_key.exists():
            # Demo only: production deployments keep this in a secrets backend (README).
            env["AIRFLOW_VAR_SECUREDR_SIGNING_PRIVATE_KEY"] = signing_key.read_text()
        env["AIRFLOW_VAR_SECUREDR_RESTORE_EXTERNAL_ID"] = self._external_id()
        if self.profile == "celery":
            env.update(self._celery_env(api_port, jwt_secret, services or {}))
        return env

    def _celery_env(
        self, api_port: int, jwt_secret: str, services: dict[str, Any]
    ) -> dict[str, str]:
        """compose's settings (sandbox.deployment), plus what only a shared host needs."""
        from sandbox.deployment import LOOPBACK_SETTINGS, celery_environment

        env = {
            k: ""
            for k in (
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
            )
        }
        env.update(
            celery_environment(
                database_url=services["database_url"],
                broker_url=services["broker_url"],
                api_url=f"http://127.0.0.1:{api_port}",
                jwt_secret=jwt_secret,
                fernet_key=services["fernet_key"],
            )
        )
        ports = services["ports"]
        env.update(
            {
                LOOPBACK_SETTINGS[0]: str(ports["worker_logs"]),
                LOOPBACK_SETTINGS[1]: str(ports["trigger_logs"]),
                LOOPBACK_SETTINGS[2]: str(ports["scheduler_health"]),
            }
        )
        return env

    def _external_id(self) -> str:
        path = self.home / "keys" / "restore-external-id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(16))
            path.chmod(0o600)
        return path.read_text().strip()

    # ------------------------------------------------------------------ lifecycle
    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str], user: str | None = None
    ) -> int:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO if user is None else "/",
            start_new_session=True,
            user=user,
        )
        return proc.pid

    def _start_services(self, pids: dict[str, int], say: Any) -> dict[str, Any]:
        """PostgreSQL and Redis for the celery profile, installed on first use (Debian)."""
        from cryptography.fernet import Fernet

        from sandbox import services
        from sandbox.server import free_port

        try:
            services.ensure_installed()
            postgres = services.Postgres(services.database_dir(self.home) / "data")
            postgres.init()
        except services.ServiceError as exc:
            raise StackError(str(exc)) from None
        except subprocess.CalledProcessError as exc:
            output = (exc.stderr or b"").decode(errors="replace")[-2000:]
            raise StackError(f"{exc.cmd[0]} failed:\n{output}") from None
        pg_port = free_port()
        pids["postgres"] = self._spawn(
            "postgres", postgres.argv(pg_port), dict(os.environ), user=postgres.user
        )
        self.save({"pids": pids})
        redis = services.Redis(self.home / "redis")
        redis_port = free_port()
        pids["redis"] = self._spawn("redis", redis.argv(redis_port), dict(os.environ))
        self.save({"pids": pids})
        for name, port in (("postgres", pg_port), ("redis", redis_port)):
            try:
                services.wait_for_port(port, alive=lambda n=name: _alive(pids[n]))
            except services.ServiceError as exc:
                tail = _tail(self.logs / f"{name}.log")
                raise StackError(f"{exc}; {name}'s log ends:\n{tail}") from None
        deadline = time.monotonic() + 60
        while True:  # the port opens before the database accepts logins
            try:
                postgres.create_database(pg_port)
                break
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline or not _alive(pids["postgres"]):
                    tail = _tail(self.logs / "postgres.log")
                    raise StackError(f"PostgreSQL did not start; its log ends:\n{tail}") from None
                time.sleep(0.5)
        fernet_file = self.home / "keys" / "fernet.key"
        if not fernet_file.exists():
            fernet_file.parent.mkdir(parents=True, exist_ok=True)
            fernet_file.write_bytes(Fernet.generate_key())
            fernet_file.chmod(0o600)
        say(f"PostgreSQL on 127.0.0.1:{pg_port}, Redis on 127.0.0.1:{redis_port}")
        return {
            "database_url": postgres.url(pg_port),
            "broker_url": redis.url(redis_port),
            "fernet_key": fernet_file.read_text().strip(),
            "ports": {
                "postgres": pg_port,
                "redis": redis_port,
                "worker_logs": free_port(),
                "trigger_logs": free_port(),
                "scheduler_health": free_port(),
            },
        }

    def up(self, *, api_port: int | None = None, quiet: bool = False) -> dict[str, Any]:
        """Start everything (idempotent: a running stack is left as it is)."""
        from sandbox.server import free_port, wait_until_up

        state = self.state()
        if state and self.running(state):
            if state.get("profile", "local") != self.profile:
                raise StackError(
                    f"a {state.get('profile', 'local')} stack is running in {self.home}; "
                    "stop it first (make down)"
                )
            return state
        self.down(quiet=True)
        self.home.mkdir(parents=True, exist_ok=True)
        say = (lambda *_: None) if quiet else (lambda msg: print(msg, flush=True))

        port_file = self.home / "aws.port"
        port_file.unlink(missing_ok=True)
        pids: dict[str, int] = {}
        pids["sandbox-aws"] = self._spawn(
            "sandbox-aws",
            [sys.executable, "-m", "sandbox.server", "--port-file", str(port_file)],
            {
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)]),
                # AWS as it behaves (copies take time, eventual consistency, quotas), with short
                # durations; SECUREDR_SANDBOX_REALISM=off for moto's instant, lenient answers.
                REALISM_ENV: os.environ.get(REALISM_ENV, DEFAULT_REALISM),
            },
        )
        self.save({"pids": pids})
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if time.monotonic() > deadline:
                raise StackError(f"sandbox AWS did not start; see {self.logs}/sandbox-aws.log")
            time.sleep(0.2)
        aws_url = f"http://127.0.0.1:{port_file.read_text().strip()}"
        wait_until_up(aws_url)
        say(f"Sandbox AWS (moto) on {aws_url}")

        api_port = api_port or int(os.environ.get("SECUREDR_API_PORT", 0)) or free_port()
        jwt_secret = secrets.token_urlsafe(32)
        self._provision_keys()
        services = self._start_services(pids, say) if self.profile == "celery" else None
        env = self.env(aws_url, api_port, jwt_secret, services)
        estate = self._seed(env)
        say(
            "Demo estate seeded: "
            + ", ".join(
                f"{len(v)} volume(s) in {r}" for r, v in estate["protected_volumes"].items()
            )
            + f", {sum(len(v) for v in estate['protected_databases'].values())} database(s)"
        )
        self._write_passwords()

        database = "PostgreSQL" if self.profile == "celery" else "SQLite"
        say(f"Migrating the Airflow metadata database ({database})...")
        self._run_logged("db-migrate", [sys.executable, "-m", "airflow", "db", "migrate"], env)
        if self.profile == "celery":
            # Before the dag-processor syncs dr_restore's access_control, which names the roles.
            say("Creating the DR roles and demo users (FabAuthManager)...")
            self._run_logged(
                "fab-access",
                [
                    sys.executable,
                    "-m",
                    "sandbox.fab_access",
                    "--passwords",
                    str(self.home / "passwords.json"),
                ],
                env,
            )
        say("Enrolling the DR users' authenticators (securedr mfa enroll)...")
        self._enrol_mfa(env)
        for component, args in self.components.items():
            pids[component] = self._spawn(component, [sys.executable, "-m", "airflow", *args], env)
        state = {
            "profile": self.profile,
            "pids": pids,
            "aws_url": aws_url,
            "api_port": api_port,
            "api_url": f"http://127.0.0.1:{api_port}",
            "jwt_secret": jwt_secret,
            "estate": estate,
            "services": services,
        }
        self.save(state)
        say(f"Starting Airflow ({', '.join(self.components)})...")
        self.wait_ready(state)
        say(f"Airflow is up at {state['api_url']}")
        return state

    def _run_logged(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        with (self.logs / f"{name}.log").open("ab") as log:
            result = subprocess.run(
                argv, env=env, check=False, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
            )
        if result.returncode:
            raise StackError(f"{name} failed; its log ends:\n{_tail(self.logs / f'{name}.log')}")

    def _provision_keys(self) -> None:
        """A manifest signing key pair for the demo, the public half in the trusted bundle, and
        the demo's offline recovery key pair for file sets."""
        from sandbox.estate import ensure_recovery_key
        from securedr.core.signing import generate_signing_key

        keys = self.home / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        private_path = keys / "signing-private-key.pem"
        trusted = keys / "trusted-signing-keys.pem"
        if not private_path.exists():
            private, public = generate_signing_key()
            private_path.write_bytes(private)
            private_path.chmod(0o600)
            with trusted.open("ab") as bundle:
                bundle.write(public)
        ensure_recovery_key(keys)

    def _seed(self, env: dict[str, str]) -> dict[str, Any]:
        """The demo estate, plus what dr_restore needs: its role, a private DB network, a topic;
        and what dr_incident_response listens on: the incident queue and the shipped rules."""
        code = (
            "import json,os\n"
            "from sandbox import estate as e\n"
            "from securedr.core.plan import load_plan\n"
            "plan, url = load_plan(), os.environ['AWS_ENDPOINT_URL']\n"
            "seeded = e.seed(plan, url)\n"
            "e.ensure_restore_role(plan, url, external_id=os.environ['EXTERNAL_ID'],\n"
            "                      dr_key_arn=seeded.key_arns[plan.regions.dr])\n"
            "e.ensure_restore_network(plan, url)\n"
            "e.ensure_notification_topic(plan, url)\n"
            "from sandbox.incidents import ensure_incident_pipeline\n"
            "if plan.incident_response.queue_url:\n"
            "    ensure_incident_pipeline(plan, url)\n"
            "print(json.dumps(seeded.to_dict()))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**env, "EXTERNAL_ID": self._external_id()},
            check=True,
            capture_output=True,
            text=True,
        )
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    def _enrol_mfa(self, env: dict[str, str]) -> None:
        """Enrol every initiator and approver of the plan, keeping their otpauth URIs."""
        # The plan is read with the stack's environment (its SECUREDR_HOME holds the keys the
        # plan names), not this process's, as every component reads it.
        code = (
            "import json\n"
            "from securedr.core.plan import load_plan\n"
            "access = load_plan().access\n"
            "print(json.dumps([*access.initiators, *access.approvers]))\n"
        )
        listed = subprocess.run(
            [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
        )
        users = json.loads(listed.stdout.strip().splitlines()[-1])
        devices = self.home / "keys" / "mfa"
        devices.mkdir(parents=True, exist_ok=True)
        devices.chmod(0o700)
        for user in dict.fromkeys(users):
            # --force: a fresh stack re-enrols; the old "device" is replaced with the secret.
            done = subprocess.run(
                [sys.executable, "-m", "securedr.cli", "mfa", "enroll", user, "--force", "--no-qr"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                cwd=REPO,
            )
            uri = next((w for w in done.stdout.split() if w.startswith("otpauth://totp/")), None)
            if done.returncode or uri is None:
                raise StackError(f"securedr mfa enroll {user} failed: {done.stderr.strip()}")
            device = devices / f"{user}.otpauth"
            device.write_text(uri)
            device.chmod(0o600)
            (devices / f"{user}.last-step").unlink(missing_ok=True)

    def mfa_code(self, user: str) -> str:
        """What ``user``'s enrolled authenticator shows now - never a code already handed out.

        A code works once, so a second action by the same user within one 30-second step
        waits for the next code, as a person would.
        """
        import pyotp

        from securedr.core import mfa

        devices = self.home / "keys" / "mfa"
        secret = pyotp.parse_uri((devices / f"{user}.otpauth").read_text().strip()).secret
        last_file = devices / f"{user}.last-step"
        last = int(last_file.read_text()) if last_file.exists() else -1
        while mfa.time_step(_utcnow()) <= last:
            time.sleep(0.5)
        now = _utcnow()
        last_file.write_text(str(mfa.time_step(now)))
        return mfa.code_at(secret, now)

    def _write_passwords(self) -> None:
        path = self.home / "passwords.json"
        if path.exists():
            return
        path.write_text(json.dumps({u: secrets.token_urlsafe(12) for u in DEMO_USERS}))
        path.chmod(0o600)

    def passwords(self) -> dict[str, str]:
        return dict(json.loads((self.home / "passwords.json").read_text()))

    def running(self, state: dict[str, Any]) -> bool:
        pids = state.get("pids", {})
        return bool(pids) and all(_alive(pid) for pid in pids.values())

    def wait_ready(self, state: dict[str, Any], timeout: float = 180) -> None:
        """Until the API answers and the DAGs are parsed, or a component died (with its log)."""
        api = AirflowApi(state["api_url"])
        deadline = time.monotonic() + timeout
        while True:
            for name, pid in state["pids"].items():
                if not _alive(pid):
                    tail = _tail(self.logs / f"{name}.log")
                    raise StackError(f"{name} exited during start-up; its log ends:\n{tail}")
            try:
                api.login("admin", self.passwords()["admin"])
                dags = [api.get(f"/api/v2/dags/{dag_id}") for dag_id in DAG_IDS]
                for dag in dags:
                    if dag["is_paused"]:  # compose's deployments pause new DAGs; a demo runs them
                        api.patch(f"/api/v2/dags/{dag['dag_id']}", {"is_paused": False})
                return
            except (urllib.error.URLError, ConnectionError, StackError):
                pass
            if time.monotonic() > deadline:
                raise StackError(f"Airflow was not ready after {timeout:.0f}s; see {self.logs}")
            time.sleep(1)

    def wait_parked(self, dag_id: str, run_id: str, task_id: str, timeout: float = 120) -> None:
        """Until the scheduler has seen the process of a task awaiting input exit.

        Airflow 3.3.2 fails a HITL task whose answer arrives before the executor has reported
        the parked process's exit ("finished with state success, but the task instance's state
        attribute is queued"). Under load that report can take several seconds, so rather than
        sleep, wait for the scheduler to log it.
        """
        marker = (
            f"Received executor event with state success for task instance TaskInstanceKey("
            f"dag_id='{dag_id}', task_id='{task_id}', run_id='{run_id}'"
        )
        log = self.logs / "scheduler.log"
        deadline = time.monotonic() + timeout
        while marker not in log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise StackError(f"{task_id} of {run_id} did not park within {timeout:.0f}s")
            time.sleep(0.5)

    def down(self, quiet: bool = False) -> None:
        """Stop every process ``up`` started, sandbox AWS included."""
        state = self.state()
        for name, pid in reversed(list(state.get("pids", {}).items())):
            _stop(pid)
            if not quiet:
                print(f"stopped {name} (pid {pid})")
        if state:
            state["pids"] = {}
            self.save(state)


# ---------------------------------------------------------------------- REST API client
class AirflowApi:
    """A small client for Airflow 3's public REST API (``/api/v2``) with JWT login."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token: str | None = None

    def login(self, username: str, password: str) -> AirflowApi:
        body = self._request("POST", "/auth/token", {"username": username, "password": password})
        self.token = body["access_token"]
        return self

    def _request(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback URL we built
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise StackError(f"{method} {path} -> HTTP {exc.code}: {detail}") from None
        return json.loads(raw) if raw else None

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def post(self, path: str, payload: Any) -> Any:
        return self._request("POST", path, payload)

    def patch(self, path: str, payload: Any) -> Any:
        return self._request("PATCH", path, payload)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        run = self.post(
            f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}}
        )
        return str(run["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        quoted = urllib.request.quote(run_id, safe="")
        return str(self.get(f"/api/v2/dags/{dag_id}/dagRuns/{quoted}")["state"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        quoted = urllib.request.quote(run_id, safe="")
        body = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances")
        return {ti["task_id"]: str(ti["state"]) for ti in body["task_instances"]}

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        quoted = urllib.request.quote(run_id, safe="")
        body = self.get(
            f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/xcomEntries/"
            "return_value?deserialize=true"
        )
        value = body["value"]
        return json.loads(value) if isinstance(value, str) else value

    def wait(
        self, dag_id: str, run_id: str, timeout: float = 600, until: tuple[str, ...] = ()
    ) -> str:
        """Until the run finishes (or reaches one of ``until``); prints progress as it goes."""
        deadline = time.monotonic() + timeout
        seen: dict[str, str] = {}
        while True:
            state = self.run_state(dag_id, run_id)
            for task, task_state in self.task_states(dag_id, run_id).items():
                if seen.get(task) != task_state and task_state not in (
                    "None",
                    "scheduled",
                    "queued",
                ):
                    print(f"  {task:<32} {task_state}", flush=True)
                    seen[task] = task_state
            if state in ("success", "failed") or state in until or set(seen.values()) & set(until):
                return state
            if time.monotonic() > deadline:
                raise StackError(f"{dag_id} run {run_id} still {state} after {timeout:.0f}s")
            time.sleep(1)


def _utcnow() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # "pid (comm) state ...": comm may hold spaces (a process title such as
            # "airflow api-server"), so the state is the first field after the last ")".
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _stop(pid: int, grace: float = 15) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        # Killing is asynchronous: return once it is gone, so "stopped" means stopped.
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------- commands
def run_nightly(stack: Stack, state: dict[str, Any]) -> dict[str, Any]:
    """Trigger dr_nightly_backup as the scheduler would, wait, and return its report."""
    api = AirflowApi(state["api_url"]).login("admin", stack.passwords()["admin"])
    run_id = api.trigger("dr_nightly_backup")
    print(f"\nTriggered dr_nightly_backup run {run_id} through the REST API; waiting...")
    started = time.monotonic()
    final = api.wait("dr_nightly_backup", run_id, timeout=900)
    elapsed = time.monotonic() - started
    report = api.xcom("dr_nightly_backup", run_id, "report_run") if final == "success" else None
    return {"run_id": run_id, "state": final, "elapsed": elapsed, "report": report}


def print_nightly(result: dict[str, Any], stack: Stack) -> None:
    from securedr.core.report import render_nightly_text

    print()
    if result["report"] is None:
        print(f"dr_nightly_backup ended {result['state']} after {result['elapsed']:.0f}s.")
        print(f"Task logs: {stack.home}/airflow/logs")
        return
    print(render_nightly_text(result["report"]))
    print(f"Full report: {result['report']['report_url']}")
    if result["report"].get("local_report"):
        print(f"             {result['report']['local_report']} (local copy)")


def hitl_path(dag_id: str, run_id: str, task_id: str) -> str:
    quoted = urllib.request.quote(run_id, safe="")
    return f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/-1/hitlDetails"


def run_restore(
    stack: Stack, state: dict[str, Any], extra_conf: dict[str, Any] | None = None
) -> dict[str, Any]:
    """dr_restore as people run it: alice (initiator) triggers, bob (approver) approves.

    ``extra_conf``: more trigger-form fields (e.g. ``{"source": "vault"}``).
    """
    passwords = stack.passwords()
    alice = AirflowApi(state["api_url"]).login("alice", passwords["alice"])
    conf = {
        "reason": "DR demo: restore last night's recovery points into the DR Region",
        "ticket": "DEMO-1",
        **(extra_conf or {}),
        "mfa_code": stack.mfa_code("alice"),  # typed from alice's authenticator app
    }
    run_id = alice.trigger("dr_restore", conf)
    print(f"\nalice triggered dr_restore run {run_id}; waiting for the approval step...")
    started = time.monotonic()
    alice.wait("dr_restore", run_id, timeout=600, until=("awaiting_input",))
    if alice.task_states("dr_restore", run_id).get("approve_restore") != "awaiting_input":
        return {
            "run_id": run_id,
            "state": alice.run_state("dr_restore", run_id),
            "report": None,
            "elapsed": time.monotonic() - started,
        }
    stack.wait_parked("dr_restore", run_id, "approve_restore")
    bob = AirflowApi(state["api_url"]).login("bob", passwords["bob"])
    detail = bob.get(hitl_path("dr_restore", run_id, "approve_restore"))
    print(f"bob sees: {detail['subject']}")
    bob.patch(
        hitl_path("dr_restore", run_id, "approve_restore"),
        {
            "chosen_options": ["Approve"],
            "params_input": {"approver_mfa_code": stack.mfa_code("bob")},
        },
    )
    print("bob approved; restoring...")
    final = alice.wait("dr_restore", run_id, timeout=900)
    if final == "success":
        # check_initiator and check_approval let the run go on only after these checks passed.
        print(
            "MFA step-up: alice's code (trigger form) and bob's (approval form) verified and "
            "spent, each check in the audit trail (mfa.initiate, mfa.approve)."
        )
    report = alice.xcom("dr_restore", run_id, "confirm_restore") if final == "success" else None
    return {
        "run_id": run_id,
        "state": final,
        "report": report,
        "elapsed": time.monotonic() - started,
    }


def print_restore(result: dict[str, Any], stack: Stack) -> None:
    from securedr.core.restore import render_restore_text

    print()
    if result["report"] is None:
        print(f"dr_restore ended {result['state']}. Task logs: {stack.home}/airflow/logs")
        return
    print(render_restore_text(result["report"]))


def run_drill(
    stack: Stack, state: dict[str, Any], conf: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Trigger dr_recovery_drill by hand (it also runs every quarter), wait, return its record."""
    api = AirflowApi(state["api_url"]).login("admin", stack.passwords()["admin"])
    run_id = api.trigger("dr_recovery_drill", conf)
    print(f"\nTriggered dr_recovery_drill run {run_id}; restoring into an isolated sandbox...")
    started = time.monotonic()
    final = api.wait("dr_recovery_drill", run_id, timeout=900)
    record = api.xcom("dr_recovery_drill", run_id, "report_drill") if final == "success" else None
    return {
        "run_id": run_id,
        "state": final,
        "record": record,
        "elapsed": time.monotonic() - started,
        "tasks": api.task_states("dr_recovery_drill", run_id),
    }


def print_drill(result: dict[str, Any], stack: Stack) -> None:
    from securedr.core.drill import render_text

    print()
    record = result["record"]
    if record is None:
        failed = [
            t for t, s in sorted(result["tasks"].items()) if s in ("failed", "upstream_failed")
        ]
        print(f"dr_recovery_drill ended {result['state']}; failed steps: {', '.join(failed)}.")
        print(f"Task logs (report_drill has the verdict): {stack.home}/airflow/logs")
        return
    print(render_text(record))
    print(f"\nDrill report: {record['report_url']}")
    local = sorted((stack.home / "reports").glob("drill-*.html"))
    if local:
        print(f"              {local[-1]} (local copy; open it in a browser)")


def stack_test(home: Path) -> int:
    """``make stack-test``: the compose topology natively; a nightly, a restore and a drill on it.

    Starts the celery profile from scratch in ``home``, runs dr_nightly_backup (as the scheduler
    would, triggered by admin), dr_restore (alice triggers, bob approves through the REST API)
    and dr_recovery_drill (with its teardown task on a Celery worker) to success, prints how long
    each part took, and stops everything it started - also when a step fails or is interrupted -
    then checks that nothing it started is still running.
    """
    import shutil

    from sandbox import services

    stack = Stack(home, profile="celery")
    stack.down(quiet=True)  # leftovers of an interrupted earlier run in the same place
    services.remove_database_dir(home)
    shutil.rmtree(home, ignore_errors=True)
    timings: dict[str, float] = {}
    succeeded = False
    mark = time.monotonic()
    try:
        print("stack-test: the CeleryExecutor topology of docker-compose.yaml, natively\n")
        state = stack.up()
        timings["start-up"] = time.monotonic() - mark
        nightly = run_nightly(stack, state)
        timings["dr_nightly_backup"] = nightly["elapsed"]
        print_nightly(nightly, stack)
        if nightly["state"] == "success" and nightly["report"]["succeeded"]:
            restore = run_restore(stack, state)
            timings["dr_restore"] = restore["elapsed"]
            print_restore(restore, stack)
            report = restore["report"]
            if restore["state"] == "success" and report and report["succeeded"]:
                drill = run_drill(stack, state)
                timings["dr_recovery_drill"] = drill["elapsed"]
                print_drill(drill, stack)
                succeeded = drill["state"] == "success"
    except (StackError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    finally:
        pids = dict(stack.state().get("pids", {}))
        mark_down = time.monotonic()
        stack.down(quiet=True)
        timings["tear-down"] = time.monotonic() - mark_down
        timings["total"] = time.monotonic() - mark
        left = sorted(name for name, pid in pids.items() if _alive(pid))
        print("\nstack-test durations:")
        for name, seconds in timings.items():
            print(f"  {name:<18} {seconds:6.0f} s")
        print(f"stopped: {', '.join(pids) or 'nothing was started'}")
    if left:
        print(f"stack-test FAILED: still running after tear-down: {', '.join(left)}")
        return 1
    print(f"stack-test {'PASSED' if succeeded else 'FAILED'}")
    return 0 if succeeded else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command", choices=["up", "down", "status", "demo", "audit-verify", "stack-test"]
    )
    parser.add_argument(
        "--home", type=Path, default=Path(os.environ.get("SECUREDR_HOME", DEFAULT_HOME))
    )
    parser.add_argument("--keep", action="store_true", help="demo: leave the stack running")
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default=os.environ.get("SECUREDR_PROFILE", "local"),
        help="local: SQLite + LocalExecutor; celery: PostgreSQL + Redis + CeleryExecutor + FAB",
    )
    args = parser.parse_args(argv)
    if args.command == "stack-test":
        return stack_test(args.home.resolve() / "stack-test")
    stack = Stack(args.home.resolve(), profile=args.profile)
    if args.command == "down":
        stack.down()
        return 0
    if args.command == "audit-verify":
        state = stack.state()
        if not (state and stack.running(state)):
            print(
                "The stack is not running: start it with `make up` (the sandbox AWS holds the "
                "audit trail), or run `securedr audit-verify` against your own estate."
            )
            return 2
        stack.profile = state.get("profile", "local")
        env = stack.env(
            state["aws_url"], state["api_port"], state["jwt_secret"], state.get("services")
        )
        return subprocess.run(
            [sys.executable, "-m", "securedr.cli", "audit-verify"], env=env, check=False
        ).returncode
    if args.command == "status":
        state = stack.state()
        running = bool(state) and stack.running(state)
        print(f"stack {'running at ' + state['api_url'] if running else 'not running'}")
        return 0 if running else 1
    previous = stack.state()
    was_running = bool(previous) and stack.running(previous)
    try:
        state = stack.up()
    except BaseException as exc:
        stack.down(quiet=True)  # whatever went wrong (or Ctrl-C), leave nothing running
        if not isinstance(exc, StackError | subprocess.CalledProcessError):
            raise
        print(f"error: could not start the stack: {exc}", file=sys.stderr)
        return 1
    if args.command == "up":
        print(f"\nAirflow UI: {state['api_url']}   (stop everything with: make down)")
        from sandbox.fab_access import USERS as FAB_USERS

        manager = "FabAuthManager" if stack.profile == "celery" else "SimpleAuthManager"
        print(f"Logins ({manager}, demo only):")
        for user, password in stack.passwords().items():
            roles = ", ".join(FAB_USERS[user]) if stack.profile == "celery" else DEMO_USERS[user]
            print(f"  {user:<8} {password:<20} role {roles}")
        return 0
    try:
        result = run_nightly(stack, state)
        print_nightly(result, stack)
        if result["state"] != "success":
            return 1
        restore = run_restore(stack, state)
        print_restore(restore, stack)
        if restore["state"] != "success":
            return 1
        drill = run_drill(stack, state)
        print_drill(drill, stack)
        return 0 if drill["state"] == "success" else 1
    finally:
        if not (args.keep or was_running):
            stack.down(quiet=True)
            print("\nStack stopped (run `make up` to keep it running and explore the UI).")


if __name__ == "__main__":
    sys.exit(main())
