"""``make scale``: dr_nightly_backup over a large estate on the embedded stack, measured.

``python -m sandbox.scale --ebs 1000 --rds 100`` starts the embedded stack (sandbox AWS, and
Airflow's real scheduler, triggerer, dag-processor and api-server on SQLite with the
LocalExecutor) in ``$SECUREDR_HOME/scale``, seeds it with that many protected EBS volumes and
RDS instances spread over the plan's source Regions (the demo estate's own ones included in the
counts), runs ``dr_nightly_backup`` once through the REST API, measures it, stops everything
and writes the figures as JSON; :mod:`sandbox.scale_report` renders them.

AWS behaves as AWS does (:mod:`sandbox.realism`, the ``e2e`` profile): copies stay pending for
``--copy-seconds``, source snapshots for ``--snapshot-seconds``, and AWS's concurrent-copy quotas
apply (EBS 20 and RDS 20 per destination Region). Injected throttling is off unless
``--throttle``: it is fault injection, and would add its retries to the call counts.

What is measured, and where:

- AWS calls by (service, action) and the most copies in flight per destination Region: by the
  sandbox itself (section ``metrics``, :mod:`sandbox.realism.metrics`), from the requests it
  served during the run;
- the time AWS kept the run's DR copies pending: the union of their pending intervals, from the
  same place; SecureDR's overhead is the run's wall time minus that;
- wall time, phases and task instances: the DAG run's and task instances' start and end times
  from Airflow's REST API;
- the largest XCom: bytes of the stored (serialised) value, from the metadata database;
- peak RSS of each component: its main process's ``VmHWM``, and the most its whole process tree
  (task processes included) held at once, sampled every second.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sandbox.stack import DEFAULT_HOME, REALISM_ENV, AirflowApi, Stack, StackError, _alive

DAG_ID = "dr_nightly_backup"
DEFAULT_EBS = 1000
DEFAULT_RDS = 100
#: Long enough that copies really queue behind the 20-copy quota, short enough for a run of
#: 1,100 resources to end within the hour: 55 waves of 20 copies take 55 x 20 s = 18 min.
DEFAULT_COPY_SECONDS = 20.0
DEFAULT_SNAPSHOT_SECONDS = 5.0
#: AWS's default manual DB snapshot quota per Region (adjustable): raised when the estate needs
#: more, as an account owner protecting that many databases would have it raised.
RDS_MANUAL_SNAPSHOTS = 100
SEED_WORKERS = 8
# Services the sandbox serves during the run that no step of dr_nightly_backup calls: the
# embedded stack's dr_incident_response waits on its SQS queue through an AssetWatcher, which
# the triggerer polls for as long as the stack runs. Those calls grow with the run's length,
# not with the estate, so they are reported apart and not counted per resource.
STANDING_POLL_SERVICES = frozenset({"sqs"})


@dataclass(frozen=True)
class ScaleParams:
    ebs: int = DEFAULT_EBS
    rds: int = DEFAULT_RDS
    copy_seconds: float = DEFAULT_COPY_SECONDS
    snapshot_seconds: float = DEFAULT_SNAPSHOT_SECONDS
    throttle: bool = False
    timeout_minutes: float = 180.0

    @property
    def rds_manual_snapshots(self) -> int:
        return max(RDS_MANUAL_SNAPSHOTS, self.rds + 20)


def realism_sections(params: ScaleParams) -> dict[str, dict[str, Any]]:
    """The ``e2e`` profile with this run's durations and quotas, plus the meter."""
    from sandbox import realism

    realism._load_behaviours()  # every module adds its section to the profile on import
    sections = {name: dict(value) for name, value in realism.PROFILES["e2e"].items()}
    if not params.throttle:
        sections.pop("throttle", None)
    sections["timing"] = {
        "snapshot_seconds": params.snapshot_seconds,
        "db_snapshot_seconds": params.snapshot_seconds,
        "copy_seconds": params.copy_seconds,
    }
    sections["quotas"] = {
        **sections.get("quotas", {}),
        "ebs_copies_per_region": 20,
        "rds_copies_per_region": 20,
        "rds_manual_snapshots": params.rds_manual_snapshots,
    }
    sections["metrics"] = {}
    return sections


# ---------------------------------------------------------------------- seeding
def _regions_round_robin(regions: list[str], count: int) -> list[str]:
    return [regions[i % len(regions)] for i in range(count)]


class ScaleStack(Stack):
    """The embedded stack whose estate protects ``ebs`` volumes and ``rds`` DB instances.

    The demo estate (which the restore and the file sets need) protects a few already; they
    count towards the totals.
    """

    ebs: int = 0
    rds: int = 0
    seed_seconds: float = 0.0

    def _seed(self, env: dict[str, str]) -> dict[str, Any]:
        estate = super()._seed(env)
        started = time.monotonic()
        demo_ebs, demo_rds = protected_count(estate)
        seed_bulk(estate, env, max(0, self.ebs - demo_ebs), max(0, self.rds - demo_rds))
        self.seed_seconds = time.monotonic() - started
        return estate


def _plan_selection(env: dict[str, str]) -> tuple[list[str], str, str]:
    """The plan's source Regions and protection tag, read with the stack's environment."""
    import subprocess

    code = (
        "import json\n"
        "from securedr.core.plan import load_plan\n"
        "p = load_plan()\n"
        "print(json.dumps([p.regions.sources, p.selection.tag_key, p.selection.tag_value]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    )
    sources, key, value = json.loads(out.stdout.strip().splitlines()[-1])
    return list(sources), str(key), str(value)


def seed_bulk(estate: dict[str, Any], env: dict[str, str], ebs: int, rds: int) -> None:
    """Add ``ebs`` protected volumes and ``rds`` protected DB instances, over the sources.

    Many API calls in a thread pool (the sandbox server is threaded): about as fast as writing
    into moto's backends directly, and the estate is built the way an account's is. Volumes are
    encrypted under their Region's customer-managed key. Returns once all are visible.
    """
    import boto3
    from botocore.config import Config

    sources, tag_key, tag_value = _plan_selection(env)
    url = env["AWS_ENDPOINT_URL"]
    config = Config(retries={"max_attempts": 10, "mode": "standard"})
    local = threading.local()

    def client(service: str, region: str) -> Any:
        cache = local.__dict__.setdefault("clients", {})
        if (service, region) not in cache:
            cache[(service, region)] = boto3.session.Session().client(
                service,
                region_name=region,
                endpoint_url=url,
                config=config,
                aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            )
        return cache[(service, region)]

    def tags(name: str) -> list[dict[str, str]]:
        return [
            {"Key": "Name", "Value": name},
            {"Key": "env", "Value": "scale"},
            {"Key": tag_key, "Value": tag_value},
        ]

    def volume(job: tuple[int, str]) -> tuple[str, str]:
        index, region = job
        name = f"scale-vol-{index:05d}"
        created = client("ec2", region).create_volume(
            AvailabilityZone=f"{region}a",
            Size=8,
            VolumeType="gp3",
            Encrypted=True,
            KmsKeyId=estate["key_arns"][region],
            TagSpecifications=[{"ResourceType": "volume", "Tags": tags(name)}],
        )
        return region, created["VolumeId"]

    def database(job: tuple[int, str]) -> tuple[str, str]:
        index, region = job
        name = f"scale-db-{index:04d}"
        client("rds", region).create_db_instance(
            DBInstanceIdentifier=name,
            DBInstanceClass="db.t4g.micro",
            Engine="postgres",
            EngineVersion="16.3",
            AllocatedStorage=20,
            MasterUsername="dbadmin",
            MasterUserPassword="sandbox-only-password",  # emulator only, never a real DB
            StorageEncrypted=True,
            KmsKeyId=estate["key_arns"][region],
            PubliclyAccessible=False,
            Tags=tags(name),
        )
        return region, name

    with ThreadPoolExecutor(SEED_WORKERS) as pool:
        volumes = list(pool.map(volume, enumerate(_regions_round_robin(sources, ebs))))
        databases = list(pool.map(database, enumerate(_regions_round_robin(sources, rds))))
    for region, volume_id in volumes:
        estate["protected_volumes"].setdefault(region, []).append(volume_id)
    for region, name in databases:
        estate["protected_databases"].setdefault(region, []).append(name)
    # Describes are eventually consistent (realism section ``consistency``): hand the estate
    # over once discovery can list all of it, as the demo's seeding does.
    deadline = time.monotonic() + 120
    for region in sources:
        want = len(estate["protected_volumes"].get(region, []))
        ec2 = client("ec2", region)
        while True:
            pages = ec2.get_paginator("describe_volumes").paginate(
                Filters=[{"Name": f"tag:{tag_key}", "Values": [tag_value]}]
            )
            seen = sum(len(page["Volumes"]) for page in pages)
            if seen >= want or time.monotonic() > deadline:
                break
            time.sleep(0.5)


def protected_count(estate: dict[str, Any]) -> tuple[int, int]:
    ebs = sum(len(v) for v in estate["protected_volumes"].values())
    rds = sum(len(v) for v in estate["protected_databases"].values())
    return ebs, rds


# ---------------------------------------------------------------------- measuring
def _read_status(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status in bytes (0 when the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class RssSampler:
    """Peak RSS of each component: main process (VmHWM) and whole tree (sampled)."""

    def __init__(self, pids: dict[str, int], interval: float = 1.0) -> None:
        self.pids = dict(pids)
        self.interval = interval
        self.tree_peak = dict.fromkeys(self.pids, 0)
        self.processes_peak = dict.fromkeys(self.pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def sample(self) -> None:
        import psutil

        for name, pid in self.pids.items():
            try:
                root = psutil.Process(pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            total = 0
            for process in tree:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
            self.tree_peak[name] = max(self.tree_peak[name], total)
            self.processes_peak[name] = max(self.processes_peak[name], len(tree))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def stop(self) -> dict[str, dict[str, int]]:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sample()
        return {
            name: {
                "process_peak_bytes": _read_status(pid, "VmHWM"),
                "tree_peak_bytes": self.tree_peak[name],
                "tree_processes_peak": self.processes_peak[name],
            }
            for name, pid in self.pids.items()
        }


def _metrics(aws_url: str, method: str = "GET") -> dict[str, Any]:
    from sandbox.realism.metrics import ENDPOINT

    request = urllib.request.Request(f"{aws_url}{ENDPOINT}", method=method)  # noqa: S310
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback
        return dict(json.loads(response.read()))


def _time(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def xcom_sizes(database: Path, run_id: str) -> list[dict[str, Any]]:
    """Bytes of every XCom value the run stored, largest first (SQLite metadata database)."""
    uri = f"file:{database}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=30) as db:
        rows = db.execute(
            "SELECT task_id, map_index, key, length(CAST(value AS BLOB)) FROM xcom "
            "WHERE dag_id = ? AND run_id = ? ORDER BY 4 DESC",
            (DAG_ID, run_id),
        ).fetchall()
    return [
        {"task_id": task, "map_index": index, "key": key, "bytes": int(size or 0)}
        for task, index, key, size in rows
    ]


def phases(task_instances: list[dict[str, Any]], run_start: float) -> list[dict[str, Any]]:
    """Each task instance's start (seconds after the run started), duration and tries."""
    rows = []
    for ti in task_instances:
        start, end = _time(ti.get("start_date")), _time(ti.get("end_date"))
        rows.append(
            {
                "task_id": ti["task_id"],
                "map_index": ti.get("map_index", -1),
                "state": ti.get("state"),
                "try_number": ti.get("try_number"),
                "start_offset_seconds": None if start is None else round(start - run_start, 3),
                "seconds": None if start is None or end is None else round(end - start, 3),
            }
        )
    return sorted(
        rows, key=lambda r: (r["start_offset_seconds"] is None, r["start_offset_seconds"])
    )


def split_standing_polls(
    calls: dict[str, dict[str, int]],
) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """(the run's calls by service and action, the standing polls as ``service:action`` ->
    count), from every call the sandbox served (see :data:`STANDING_POLL_SERVICES`)."""
    run = {svc: actions for svc, actions in calls.items() if svc not in STANDING_POLL_SERVICES}
    standing = {
        f"{svc}:{action}": count
        for svc, actions in sorted(calls.items())
        if svc in STANDING_POLL_SERVICES
        for action, count in sorted(actions.items())
    }
    return run, standing


def measure_run(stack: ScaleStack, state: dict[str, Any], params: ScaleParams) -> dict[str, Any]:
    """Trigger dr_nightly_backup, wait for it, and gather every figure of the run."""
    from sandbox.realism.metrics import union_seconds

    api = AirflowApi(state["api_url"]).login("admin", stack.passwords()["admin"])
    aws_url = state["aws_url"]
    _metrics(aws_url, "POST")  # only the run's own calls count, not the seeding
    sampler = RssSampler(state["pids"]).start()
    run_id = api.trigger(DAG_ID)
    print(f"\nTriggered {DAG_ID} run {run_id}; waiting...", flush=True)
    try:
        final = api.wait(DAG_ID, run_id, timeout=params.timeout_minutes * 60)
    finally:
        rss = sampler.stop()
    aws = _metrics(aws_url)
    quoted = urllib.request.quote(run_id, safe="")
    run = api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}")
    tis = api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}/taskInstances?limit=1000")
    task_instances = list(tis["task_instances"])
    report = api.xcom(DAG_ID, run_id, "report_run") if final == "success" else None

    run_start, run_end = _time(run["start_date"]), _time(run["end_date"])
    wall = (run_end or time.time()) - (run_start or time.time())
    ebs, rds = protected_count(state["estate"])
    resources = ebs + rds
    pending = aws["pending"]["our_copies"]["union_seconds"]
    ti_intervals = [
        (s, e)
        for ti in task_instances
        if (s := _time(ti.get("start_date"))) and (e := _time(ti.get("end_date")))
    ]
    busy, _ = union_seconds(ti_intervals)
    calls, standing = split_standing_polls(aws["calls"])
    total_calls = sum(count for actions in calls.values() for count in actions.values())
    in_flight = aws["max_in_flight"]
    sizes = xcom_sizes(stack.home / "airflow.db", run_id)
    recovery_points = (report or {}).get("recovery_points") or []
    return {
        "parameters": {
            **asdict(params),
            "rds_manual_snapshots": params.rds_manual_snapshots,
            "source_regions": sorted(state["estate"]["protected_volumes"]),
            "realism": realism_sections(params),
        },
        "resources": {"total": resources, "ebs": ebs, "rds": rds},
        "seed_seconds": round(stack.seed_seconds, 3),
        "run": {
            "run_id": run_id,
            "state": final,
            "succeeded": bool(report and report.get("succeeded")),
            "verified": sum(1 for p in recovery_points if p.get("verified")),
            "not_protected": sum(1 for p in recovery_points if p.get("not_protected")),
        },
        "wall_seconds": round(wall, 3),
        "aws_pending_seconds": {
            "our_copies": pending,
            "all_copies": aws["pending"]["all_copies"]["union_seconds"],
            "source_snapshots": aws["pending"]["snapshots"]["union_seconds"],
            # Stretches with a copy of the run pending; between two, none was (the copy step
            # had not started the next ones yet).
            "our_copies_stretches": len(aws["pending"]["our_copies"]["intervals"]),
        },
        "overhead_seconds": round(wall - pending, 3),
        "scheduling_gap_seconds": round(wall - busy, 3),
        "phases": phases(task_instances, run_start or 0.0),
        "aws_calls": {
            "total": total_calls,
            "per_resource": round(total_calls / resources, 4) if resources else None,
            "by_operation": {
                f"{service}:{action}": {
                    "calls": count,
                    "per_resource": round(count / resources, 4) if resources else None,
                }
                for service, actions in sorted(calls.items())
                for action, count in sorted(actions.items(), key=lambda kv: -kv[1])
            },
            "errors": {
                svc: codes
                for svc, codes in aws["errors"].items()
                if svc not in STANDING_POLL_SERVICES
            },
            "standing_polls": standing,
        },
        "copies_started": aws["copies_started"],
        "max_copies_in_flight": in_flight,
        "max_our_copies_in_flight": max(
            (by_region.get("ours_total", 0) for by_region in in_flight.values()), default=0
        ),
        "task_instances": {
            "count": len(task_instances),
            "tries": sum(int(ti.get("try_number") or 0) for ti in task_instances),
        },
        "largest_xcom": sizes[0] if sizes else None,
        "xcom_total_bytes": sum(row["bytes"] for row in sizes),
        "peak_rss": rss,
    }


# ---------------------------------------------------------------------- command
def run_scale(home: Path, params: ScaleParams, output: Path) -> tuple[int, dict[str, Any] | None]:
    """Start a fresh stack in ``home``, seed, run, measure, stop; write ``output``."""
    stack = ScaleStack(home)
    stack.down(quiet=True)  # leftovers of an interrupted earlier run in the same place
    shutil.rmtree(home, ignore_errors=True)
    os.environ[REALISM_ENV] = json.dumps(realism_sections(params))
    result: dict[str, Any] | None = None
    pids: dict[str, int] = {}
    try:
        stack.ebs, stack.rds = params.ebs, params.rds
        mark = time.monotonic()
        state = stack.up()
        pids = dict(state["pids"])
        demo_ebs, demo_rds = protected_count(state["estate"])
        print(
            f"Estate: {demo_ebs} EBS volume(s) and {demo_rds} RDS instance(s) protected "
            f"(seeded in {stack.seed_seconds:.1f} s); start-up {time.monotonic() - mark:.0f} s",
            flush=True,
        )
        result = measure_run(stack, state, params)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2) + "\n")
    except (StackError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    finally:
        stack.down(quiet=True)
    left = sorted(name for name, pid in pids.items() if _alive(pid))
    if left:
        print(f"error: still running after tear-down: {', '.join(left)}", file=sys.stderr)
    ok = result is not None and result["run"]["succeeded"] and not left
    return (0 if ok else 1), result


def main(argv: list[str] | None = None) -> int:
    from sandbox import scale_report

    home = Path(os.environ.get("SECUREDR_HOME", DEFAULT_HOME)).resolve()
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--ebs", type=int, default=DEFAULT_EBS, help="protected EBS volumes")
    parser.add_argument("--rds", type=int, default=DEFAULT_RDS, help="protected RDS instances")
    parser.add_argument(
        "--copy-seconds",
        type=float,
        default=DEFAULT_COPY_SECONDS,
        help="how long each DR copy stays pending",
    )
    parser.add_argument(
        "--snapshot-seconds",
        type=float,
        default=DEFAULT_SNAPSHOT_SECONDS,
        help="how long each source snapshot stays pending",
    )
    parser.add_argument("--throttle", action="store_true", help="inject throttling bursts too")
    parser.add_argument("--timeout-minutes", type=float, default=180.0)
    parser.add_argument(
        "--output", type=Path, default=None, help="JSON file (default $SECUREDR_HOME/scale.json)"
    )
    parser.add_argument("--home", type=Path, default=home / "scale", help="the stack's home")
    args = parser.parse_args(argv)
    params = ScaleParams(
        ebs=args.ebs,
        rds=args.rds,
        copy_seconds=args.copy_seconds,
        snapshot_seconds=args.snapshot_seconds,
        throttle=args.throttle,
        timeout_minutes=args.timeout_minutes,
    )
    if params.ebs < 0 or params.rds < 0:
        parser.error("--ebs and --rds must be 0 or more")
    output = (args.output or home / "scale.json").resolve()
    print(
        f"scale: {params.ebs} EBS + {params.rds} RDS over the plan's source Regions; copies "
        f"pending {params.copy_seconds:g} s, source snapshots {params.snapshot_seconds:g} s; "
        f"quotas: 20 EBS and 20 RDS copies in flight per destination Region, "
        f"{params.rds_manual_snapshots} manual DB snapshots per Region",
        flush=True,
    )
    code, result = run_scale(args.home.resolve(), params, output)
    if result is None:
        print("scale: no figures (the run did not complete); see the logs above")
        return 1
    print()
    print(scale_report.render(result))
    print(f"\nFigures: {output}")
    print(scale_report.summary_line(result))
    return code


if __name__ == "__main__":
    sys.exit(main())
