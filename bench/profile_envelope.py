"""Where the time goes in SecureDR's envelope pipeline: busy time per stage and thread.

    PYTHONPATH=plugins .venv/bin/python bench/profile_envelope.py --size 512M [--repeat 2]

Encrypts a random file and decrypts it again (``decrypt_to_path``, no fsync), in this
process, with the SHA-256, AES-GCM, read and write calls wrapped in timers. For each run it
prints the wall time and, per (stage, thread), the seconds spent inside those calls and
their share of the wall time, then the process's user and system CPU time. A stage near
100% of the wall time on its own thread is the one that caps the pipeline. A call's time
includes waiting to get the GIL back after it, so the shares are upper bounds.
Files go in a temporary directory that is deleted at the end. Never asserted.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
sys.path.insert(0, str(REPO / "bench"))

from bench_envelope import MiB, human, make_random_file, parse_size  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from securedr.core import envelope  # noqa: E402

busy: dict[tuple[str, str], float] = collections.defaultdict(float)


def _timed(stage: str, fn: Any, *args: Any) -> Any:
    start = time.perf_counter()
    try:
        return fn(*args)
    finally:
        busy[(stage, threading.current_thread().name)] += time.perf_counter() - start


class _Sha:
    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def update(self, data: Any) -> None:
        _timed("sha256", self._h.update, data)

    def __getattr__(self, name: str) -> Any:  # hexdigest, and what hmac needs
        return getattr(self._h, name)


class _Hashlib:
    """``hashlib`` for the envelope module, with the streaming SHA-256 timed."""

    def __getattr__(self, name: str) -> Any:
        return getattr(hashlib, name)

    @staticmethod
    def sha256(*args: Any) -> Any:
        return hashlib.sha256(*args) if args else _Sha()


class _Gcm:
    def __init__(self, key: bytes) -> None:
        self._a = AESGCM(key)

    def encrypt_into(self, *args: Any) -> Any:
        return _timed("aes-gcm", self._a.encrypt_into, *args)

    def decrypt_into(self, *args: Any) -> Any:
        return _timed("aes-gcm", self._a.decrypt_into, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._a, name)


class _Reader:
    def __init__(self, f: Any) -> None:
        self._f = f

    def readinto(self, b: Any) -> Any:
        return _timed("read", self._f.readinto, b)

    def read(self, n: int = -1) -> Any:
        return _timed("read", self._f.read, n)


def _instrument() -> None:
    envelope.hashlib = _Hashlib()  # type: ignore[assignment]
    envelope.AESGCM = _Gcm  # type: ignore[assignment,misc]
    write_all = envelope._write_all
    envelope._write_all = lambda dst, view: _timed("write", write_all, dst, view)  # type: ignore[assignment]


def _report(name: str, size: int, wall: float, cpu: os.times_result) -> None:
    now = os.times()
    print(f"{name}: {wall:.3f} s, {size / MiB / wall:.0f} MiB/s")
    for (stage, thread), seconds in sorted(busy.items(), key=lambda kv: -kv[1]):
        print(f"    {stage:<8} on {thread:<16} {seconds:6.3f} s  {seconds / wall:4.0%} of wall")
    print(
        f"    process CPU: user {now.user - cpu.user:.2f} s, system {now.system - cpu.system:.2f} s"
    )
    busy.clear()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="512M")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    _, public = envelope.generate_recovery_keypair()
    key = os.urandom(32)
    _instrument()
    work = Path(tempfile.mkdtemp(prefix="securedr-profile-", dir=args.dir))
    try:
        src, enc, out = work / "plain.bin", work / "plain.enc", work / "plain.out"
        make_random_file(src, size)
        print(f"{human(size)}, load average {os.getloadavg()[0]:.2f}")
        for _ in range(args.repeat):
            for path in (enc, out):
                path.unlink(missing_ok=True)
            os.sync()
            cpu, start = os.times(), time.perf_counter()
            with open(src, "rb") as fin, open(enc, "wb") as fout:
                result = envelope.encrypt_stream(
                    _Reader(fin),  # type: ignore[arg-type]
                    fout,
                    data_key=key,
                    kms_key_arn="arn:aws:kms:us-east-1:111122223333:key/profile",
                    kms_wrapped_key=bytes(184),
                    recovery_public_key=public,
                )
            _report("encrypt_stream", size, time.perf_counter() - start, cpu)
            os.sync()
            cpu, start = os.times(), time.perf_counter()
            with open(enc, "rb") as fin:
                envelope.decrypt_to_path(
                    _Reader(fin),  # type: ignore[arg-type]
                    out,
                    data_key=key,
                    expected_sha256=result.plaintext_sha256,
                    fsync=False,
                )
            _report("decrypt_to_path", size, time.perf_counter() - start, cpu)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
