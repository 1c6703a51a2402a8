"""The stack's process checks: a stopped component counts as stopped, whatever its title."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from sandbox.stack import _alive

# Renames the process the way Airflow's components retitle themselves, then exits.
RETITLE_AND_EXIT = (
    "import ctypes; ctypes.CDLL(None).prctl(15, b'airflow worker', 0, 0, 0)"  # PR_SET_NAME
)


def test_an_exited_child_with_a_spaced_process_name_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", RETITLE_AND_EXIT])
    deadline = time.monotonic() + 30
    # Not reaped yet: a zombie whose /proc stat reads "pid (airflow worker) Z ...".
    stat = Path(f"/proc/{child.pid}/stat")
    while "Z" not in stat.read_text().rsplit(")", 1)[1][:3]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not _alive(child.pid)
    child.wait()


def test_a_running_child_is_alive():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert _alive(child.pid)
    finally:
        child.kill()
        child.wait()
