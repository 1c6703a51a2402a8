"""``make compromise`` end to end: after a nightly run with a vault, an attacker holding every
workload credential changes nothing in the vault, and a restore and a drill from it pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def simulation(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("compromise")
    output = home / "compromise.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
    env["SECUREDR_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-m", "sandbox.compromise", "--output", str(output)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    figures = json.loads(output.read_text()) if output.exists() else {}
    return {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr, **figures}


def test_the_simulation_passes_with_its_exact_last_line(simulation):
    last = simulation["stdout"].rstrip("\n").splitlines()[-1]
    assert last == "compromise simulation: PASSED", (
        simulation["stdout"][-6000:] + simulation["stderr"][-3000:]
    )
    assert simulation["code"] == 0


def test_every_goal_of_the_attacker_was_tried(simulation):
    goals = {a["goal"] for a in simulation["attacks"]}
    assert goals == {
        "delete every snapshot and manifest it can",
        "disable the keys and schedule their deletion",
        "unlock, delete and re-share the vault copies",
        "empty the workload evidence bucket",
    }
    actions = {(a["principal"], a["action"]) for a in simulation["attacks"]}
    for needed in [
        ("vault intake role", "ec2:DeleteSnapshot"),
        ("vault intake role", "ec2:UnlockSnapshot"),
        ("vault intake role", "ec2:ModifySnapshotAttribute"),
        ("vault intake role", "rds:DeleteDBSnapshot"),
        ("vault intake role", "kms:ScheduleKeyDeletion"),
        ("workload administrator", "kms:DisableKey"),
        ("workload administrator", "s3:DeleteObjectVersion"),
    ]:
        assert needed in actions, needed


def test_the_attacker_really_held_the_workload_account(simulation):
    """Without this the simulation would prove nothing: the workload side did fall."""
    worked = [a for a in simulation["attacks"] if a["result"] == "worked"]
    assert any(a["action"] == "ec2:DeleteSnapshot" for a in worked)
    assert any(a["action"] == "kms:ScheduleKeyDeletion" for a in worked)
    assert all(a["account"] != simulation["vault_account"] for a in worked)


def test_nothing_in_the_vault_changed_and_it_held_locked_copies(simulation):
    assert simulation["vault_changes"] == []
    before = simulation["vault_before"]
    assert before["snapshots"] and before["db_snapshots"]
    for snapshot in before["snapshots"].values():
        assert snapshot["lock"]["mode"] in ("compliance", "compliance-cooloff")
        assert snapshot["shared_with"] == []
    assert all(key["state"] == "Enabled" for key in simulation["vault_after"]["keys"].values())


def test_restore_and_drill_from_the_vault_report_rto_and_rpo(simulation):
    restore, drill = simulation["restore"], simulation["drill"]
    assert restore["succeeded"] and restore["resources"] > 0
    assert restore["rto_seconds"] > 0 and restore["rpo_seconds"] > 0
    assert drill["passed"] and drill["verified"] == drill["resources"] > 0
    assert drill["rto_seconds"] > 0 and drill["rpo_seconds"] > 0
