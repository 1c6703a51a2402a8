"""The celery profile stops everything it started when start-up fails half way."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from sandbox import services, stack

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_a_failed_start_stops_postgres_redis_and_the_sandbox(monkeypatch):
    home = REPO / ".securedr" / "teardown-test"
    services.remove_database_dir(home)
    shutil.rmtree(home, ignore_errors=True)
    started: dict[str, int] = {}
    ports: list[int] = []
    spawn = stack.Stack._spawn

    def recording_spawn(self, name, argv, env, user=None):
        started[name] = spawn(self, name, argv, env, user)
        for flag in ("-p", "--port"):  # postgres and redis-server
            if flag in argv:
                ports.append(int(argv[argv.index(flag) + 1]))
        return started[name]

    def failing_seed(self, env):
        # After PostgreSQL and Redis are up: the worst moment to fail.
        assert {"sandbox-aws", "postgres", "redis"} <= set(started)
        raise subprocess.CalledProcessError(1, ["seed"], stderr="injected failure")

    monkeypatch.setattr(stack.Stack, "_spawn", recording_spawn)
    monkeypatch.setattr(stack.Stack, "_seed", failing_seed)
    try:
        assert stack.main(["up", "--profile", "celery", "--home", str(home)]) == 1
        assert {"sandbox-aws", "postgres", "redis"} <= set(started)
        assert [name for name, pid in started.items() if stack._alive(pid)] == []
        assert stack.Stack(home).state()["pids"] == {}
        assert len(ports) == 2
        for port in ports:
            with socket.socket() as sock:
                assert sock.connect_ex(("127.0.0.1", port)) != 0
    finally:
        stack.Stack(home).down(quiet=True)
        services.remove_database_dir(home)
        shutil.rmtree(home, ignore_errors=True)
