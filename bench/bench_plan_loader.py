"""Benchmark: the plan loader on a realistic 1 MiB plan, and how fast it refuses an alias bomb.

    PYTHONPATH=plugins .venv/bin/python bench/bench_plan_loader.py [--repeat 5]

The 1 MiB plan is the shipped plan grown the way a large estate grows it: many file sets (with
comments, as people write them) and long access lists, just under the 1 MiB cap. Each figure is
the median of ``--repeat`` runs of ``load_plan`` in this process (imports excluded). Timing is
reported, never asserted: numbers from a shared 2-core VM are noisy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

SHIPPED = REPO / "include" / "dr_plan.yaml"


def realistic_plan(limit: int) -> str:
    """The shipped plan with file sets and users appended until just under ``limit`` bytes."""
    text = SHIPPED.read_text(encoding="utf-8")
    users = ", ".join(f"operator{i:04d}" for i in range(400))
    text = text.replace("approvers: [bob, carol]", f"approvers: [bob, carol, {users}]")
    parts = [text]
    size = len(text.encode())
    index = 0
    while True:
        entry = (
            f"    # Nightly exports of application {index:05d}, kept for the audit.\n"
            f"    - name: app-{index:05d}-exports\n"
            f"      source: s3://securedr-demo-app-config/exports/app-{index:05d}/\n"
            "      region: us-east-1\n"
            f"    - name: app-{index:05d}-dumps\n"
            f"      source: ${{SECUREDR_HOME}}/demo-files/app-{index:05d}\n"
        )
        if size + len(entry) > limit:
            break
        parts.append(entry)
        size += len(entry)
        index += 1
    return "".join(parts)


def alias_bomb() -> str:
    lines = [f"l0: &l0 [{', '.join(['lol'] * 9)}]"]
    for level in range(1, 9):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 9)}]")
    body = "".join(f"  {line}\n" for line in lines)
    return (
        "x_bomb:\n"
        + body
        + SHIPPED.read_text(encoding="utf-8").replace("name: demo-estate", "name: *l8")
    )


def median_seconds(call: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from securedr.core import plan_yaml
    from securedr.core.plan import PlanError, load_plan

    home = Path(tempfile.mkdtemp(prefix="securedr-bench-"))
    try:
        return run(home, args.repeat, plan_yaml, PlanError, load_plan)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run(home: Path, repeat: int, plan_yaml: object, PlanError: type, load_plan: Callable) -> int:
    os.environ["SECUREDR_HOME"] = str(home)
    from sandbox.estate import ensure_recovery_key

    ensure_recovery_key(home / "keys")

    big = home / "plan-1mib.yaml"
    big.write_text(realistic_plan(plan_yaml.MAX_PLAN_BYTES), encoding="utf-8")
    plan = load_plan(big)
    assert plan.file_sets is not None
    load_time = median_seconds(lambda: load_plan(big), repeat)

    bomb = home / "plan-bomb.yaml"
    bomb.write_text(alias_bomb(), encoding="utf-8")

    def refuse() -> None:
        try:
            load_plan(bomb)
        except PlanError:
            return
        raise AssertionError("the alias bomb was accepted")

    bomb_time = median_seconds(refuse, repeat)
    parser_name = plan_yaml._Loader.__name__

    print(f"YAML parser: {parser_name}; median of {repeat} runs")
    print(
        f"realistic plan: {big.stat().st_size} bytes, {len(plan.file_sets.sets)} file sets, "
        f"{len(plan.access.approvers)} approvers: load_plan {load_time * 1000:.0f} ms"
    )
    print(
        f"alias bomb: {bomb.stat().st_size} bytes (9**9 values if expanded): refused in "
        f"{bomb_time * 1000:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
