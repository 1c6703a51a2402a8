"""``make scale``, small: about 100 resources through the real components, every figure there.

The full run (1,100 resources, half an hour or more) is not part of the suite; this one keeps its
machinery working. No timing is asserted: CI machines vary too much.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
LAST_LINE = re.compile(
    r"scale: (\d+) resources; overhead (-?\d+) s; (\d+\.\d\d) calls per resource; "
    r"(\d+) task instances; at most (\d+) copies in flight"
)
FIGURES = {
    "resources",
    "wall_seconds",
    "phases",
    "aws_pending_seconds",
    "overhead_seconds",
    "aws_calls",
    "task_instances",
    "peak_rss",
    "largest_xcom",
    "max_copies_in_flight",
    "max_our_copies_in_flight",
}


@pytest.fixture(scope="module")
def small_scale(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("scale")
    output = home / "figures.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
    env["SECUREDR_HOME"] = str(home)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox.scale",
            "--ebs",
            "90",
            "--rds",
            "10",
            "--copy-seconds",
            "5",
            "--snapshot-seconds",
            "2",
            "--output",
            str(output),
            "--home",
            str(home / "stack"),
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return {"stdout": done.stdout, "figures": json.loads(output.read_text())}


def test_the_last_line_sums_the_run_up_in_the_exact_format(small_scale):
    figures = small_scale["figures"]
    last = small_scale["stdout"].rstrip("\n").splitlines()[-1]
    match = LAST_LINE.fullmatch(last)
    assert match, last
    resources, overhead, per_resource, tasks, in_flight = match.groups()
    assert int(resources) == figures["resources"]["total"] == 100
    assert int(overhead) == round(figures["overhead_seconds"])
    assert per_resource == f"{figures['aws_calls']['per_resource']:.2f}"
    assert int(tasks) == figures["task_instances"]["count"]
    assert int(in_flight) == figures["max_our_copies_in_flight"]


def test_every_figure_is_measured(small_scale):
    figures = small_scale["figures"]
    assert set(figures) >= FIGURES
    assert figures["run"]["succeeded"]
    assert figures["run"]["verified"] == 100
    assert figures["resources"] == {"total": 100, "ebs": 90, "rds": 10}
    assert figures["wall_seconds"] > figures["aws_pending_seconds"]["our_copies"] > 0
    assert figures["aws_pending_seconds"]["our_copies_stretches"] >= 1
    assert figures["overhead_seconds"] == pytest.approx(
        figures["wall_seconds"] - figures["aws_pending_seconds"]["our_copies"], abs=0.01
    )
    assert {p["task_id"] for p in figures["phases"]} >= {
        "create_recovery_points",
        "copy_to_dr_region",
        "wait_for_dr_copies",
        "verify_dr_copies",
        "report_run",
    }
    assert figures["task_instances"]["count"] == len(figures["phases"])
    assert figures["largest_xcom"]["bytes"] > 0
    for component in ("api-server", "scheduler", "dag-processor", "triggerer", "sandbox-aws"):
        rss = figures["peak_rss"][component]
        assert rss["process_peak_bytes"] > 0 and rss["tree_peak_bytes"] > 0, component


def test_calls_per_resource_come_from_the_calls_the_sandbox_counted(small_scale):
    calls = small_scale["figures"]["aws_calls"]
    counted = sum(row["calls"] for row in calls["by_operation"].values())
    assert counted == calls["total"]
    assert calls["per_resource"] == pytest.approx(counted / 100, abs=1e-4)
    # The incident queue's watcher polls SQS all along; the nightly run never calls SQS.
    assert not any(op.startswith("sqs:") for op in calls["by_operation"])
    assert set(calls["standing_polls"]) <= {"sqs:ReceiveMessage"}
    # Every resource was copied once at least, by the copy step's own requests.
    assert calls["by_operation"]["ec2:CopySnapshot"]["calls"] >= 90
    assert calls["by_operation"]["rds:CopyDBSnapshot"]["calls"] >= 10


def test_never_more_than_twenty_copies_of_the_run_in_flight_per_destination_region(small_scale):
    figures = small_scale["figures"]
    in_flight = figures["max_copies_in_flight"]
    assert set(in_flight) == {"us-west-2"}  # the DR Region: copies only go there
    for seen in in_flight.values():
        assert seen["ours_total"] <= 20
        assert seen["ebs"]["all"] <= 20 and seen["rds"]["all"] <= 20
    assert figures["max_our_copies_in_flight"] > 1  # copies did overlap: the quota mattered
    assert figures["copies_started"]["ebs"]["ours"] >= 90
    assert figures["copies_started"]["rds"]["ours"] >= 10
