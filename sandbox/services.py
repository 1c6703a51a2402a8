"""PostgreSQL and Redis for the native CeleryExecutor stack: private instances on loopback.

docker-compose.yaml runs them as the ``postgres`` and ``redis`` services. Without a Docker engine
the ``celery`` profile of :mod:`sandbox.stack` runs the same two servers from Debian's packages,
installed on first use (:func:`ensure_installed`), each on a free port on 127.0.0.1 with its data
under ``$SECUREDR_HOME`` and a generated password: never the system services, never a fixed port.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

#: Debian packages providing the servers, and the binaries that prove they are installed.
PACKAGES = ("postgresql", "redis-server")


class ServiceError(RuntimeError):
    pass


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian keeps them per major version)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    return Path(found[-1]).parent if found else None


def missing_packages() -> list[str]:
    missing = []
    if postgres_bin() is None:
        missing.append("postgresql")
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    return missing


def ensure_installed() -> None:
    """Install PostgreSQL and Redis with apt-get when they are missing (needs root)."""
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise ServiceError(
            f"{' and '.join(missing)} not installed; run `sudo apt-get install {' '.join(missing)}`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    # Debian's postinst starts the system services where an init system runs; ours are separate.
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=env,
    )


def _db_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as Debian's ``postgres`` user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceError(
            "running as root but there is no `postgres` user to run the database"
        ) from None
    return "postgres"


def _chown(path: Path, user: str | None) -> None:
    if user:
        shutil.chown(path, user=user, group=None)


def database_dir(home: Path) -> Path:
    """Where the cluster lives: ``home/postgres``, or a place the database user can reach.

    As root the server runs as ``postgres``, which cannot enter a work tree under a private
    directory (a home of mode 0700, say); then the cluster goes to a private directory in
    /var/tmp that ``home/postgres`` links to, so it is still found (and removed) through home.
    """
    link = home / "postgres"
    if link.is_symlink() or link.exists():
        return link.resolve()
    user = _db_user()
    reachable = user is None or all(
        os.stat(parent).st_mode & 0o001
        for parent in [home.resolve(), *home.resolve().parents]
        if parent.exists()
    )
    if reachable:
        link.mkdir(parents=True)
        return link
    import tempfile

    target = Path(tempfile.mkdtemp(prefix="securedr-postgres-", dir="/var/tmp"))
    _chown(target, user)
    home.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return target


def remove_database_dir(home: Path) -> None:
    """Delete the cluster, wherever :func:`database_dir` put it."""
    link = home / "postgres"
    if link.is_symlink():
        shutil.rmtree(link.resolve(), ignore_errors=True)
        link.unlink()
    elif link.exists():
        shutil.rmtree(link, ignore_errors=True)


@dataclass
class Postgres:
    """A private PostgreSQL cluster in ``data`` with database and owner ``airflow``."""

    data: Path

    @property
    def password_file(self) -> Path:
        return self.data.parent / "postgres.password"

    def password(self) -> str:
        if not self.password_file.exists():
            self.password_file.parent.mkdir(parents=True, exist_ok=True)
            self.password_file.write_text(secrets.token_urlsafe(18))
            self.password_file.chmod(0o600)
        return self.password_file.read_text().strip()

    def init(self) -> None:
        """Create the cluster once: scram-sha-256 for every connection, owner ``airflow``."""
        if (self.data / "PG_VERSION").exists():
            return
        user = _db_user()
        self.data.mkdir(parents=True, exist_ok=True)
        self.data.chmod(0o700)
        _chown(self.data, user)
        pwfile = self.data.parent / "postgres.initpw"
        pwfile.write_text(self.password() + "\n")
        pwfile.chmod(0o600)
        _chown(pwfile, user)
        try:
            subprocess.run(
                [
                    str(postgres_bin() / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "airflow",
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                user=user,
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def argv(self, port: int) -> list[str]:
        """The server in the foreground, so the stack owns (and stops) its process group."""
        return [
            str(postgres_bin() / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.data}",
            "-c",
            "max_connections=200",
            "-c",
            "fsync=off",  # a throw-away sandbox database; durability buys nothing here
        ]

    @property
    def user(self) -> str | None:
        return _db_user()

    def create_database(self, port: int) -> None:
        """The ``airflow`` database (initdb only makes ``postgres``); idempotent."""
        env = {**os.environ, "PGPASSWORD": self.password()}
        base = [str(postgres_bin() / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "airflow"]
        exists = subprocess.run(
            [*base, "-d", "postgres", "-tAc", "SELECT 1 FROM pg_database WHERE datname='airflow'"],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout.strip()
        if exists != "1":
            subprocess.run(
                [*base, "-d", "postgres", "-c", "CREATE DATABASE airflow"],
                check=True,
                capture_output=True,
                env=env,
            )

    def url(self, port: int, scheme: str = "postgresql+psycopg2") -> str:
        return f"{scheme}://airflow:{self.password()}@127.0.0.1:{port}/airflow"


@dataclass
class Redis:
    """A private Redis without persistence (Celery's broker needs none here)."""

    directory: Path

    def password(self) -> str:
        path = self.directory / "redis.password"
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(18))
            path.chmod(0o600)
        return path.read_text().strip()

    def argv(self, port: int) -> list[str]:
        return [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--requirepass",
            self.password(),
        ]

    def url(self, port: int) -> str:
        return f"redis://:{self.password()}@127.0.0.1:{port}/0"


def wait_for_port(port: int, timeout: float = 60, alive: object = None) -> None:
    """Until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            sock.settimeout(1)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if callable(alive) and not alive():
            raise ServiceError(f"the server for port {port} exited during start-up")
        if time.monotonic() > deadline:
            raise ServiceError(f"nothing listened on 127.0.0.1:{port} after {timeout:.0f}s")
        time.sleep(0.2)
