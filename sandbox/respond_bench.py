"""``make respond-bench``: how fast dr_incident_response contains incidents on the embedded stack.

Starts the embedded stack (or uses the running one), then injects N incidents of mixed kinds: a
DR copy (EBS or DB snapshot) shared with an account outside the plan, a plan KMS key disabled or
scheduled for deletion, EBS snapshot block public access turned off. Each is the real change in
the sandbox AWS followed by its CloudTrail event on EventBridge (PutEvents), from which the
shipped rules feed the incident queue; the triggerer's AssetWatcher picks the messages up and
dr_incident_response contains them. The sandbox records when each containment call reached it
(realism section ``containment``); the latency of an event is that time minus the event's time.

Prints one line per kind and, last, exactly:
``respond: p50 X s; p95 Y s; max Z s; N of M contained``.
The goal is a p95 under 30 s. Exits 1 when an event was not contained within ``--timeout``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from sandbox.incidents import ACCOUNT, cloudtrail_event, put_event, queue_region
from sandbox.realism.containment import ENDPOINT
from sandbox.stack import DEFAULT_HOME, AirflowApi, Stack
from securedr.core.model import TAG_PLAN, TAG_ROLE

OUTSIDER = "999988887777"
KINDS = ("ebs-share", "rds-share", "kms", "bpa")
DAG_ID = "dr_incident_response"


def _client(service: str, region: str, url: str) -> Any:
    config = Config(retries={"mode": "standard", "max_attempts": 10})
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=url,
        config=config,
        aws_access_key_id="sandbox",  # the emulator accepts any credentials
        aws_secret_access_key="sandbox",  # noqa: S106
    )


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class Bench:
    def __init__(self, plan: Any, aws: str) -> None:
        self.plan = plan
        self.aws = aws
        self.dr = plan.regions.dr
        self.bus_region = queue_region(plan)
        self.tags = [
            {"Key": TAG_PLAN, "Value": plan.name},
            {"Key": TAG_ROLE, "Value": "dr-copy"},
        ]

    def containment_calls(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.aws}{ENDPOINT}", timeout=10) as response:  # noqa: S310
            return list(json.loads(response.read())["calls"])

    def reset_meter(self) -> None:
        request = urllib.request.Request(f"{self.aws}{ENDPOINT}", method="POST")  # noqa: S310
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310

    # ------------------------------------------------------------------ targets
    def ebs_snapshots(self, count: int) -> list[str]:
        ec2 = _client("ec2", self.dr, self.aws)
        volume = ec2.create_volume(AvailabilityZone=f"{self.dr}a", Size=1)["VolumeId"]
        spec = [{"ResourceType": "snapshot", "Tags": self.tags}]
        ids = [
            ec2.create_snapshot(VolumeId=volume, TagSpecifications=spec)["SnapshotId"]
            for _ in range(count)
        ]
        self._wait(lambda: self._ebs_ready(ec2, ids), "EBS snapshots")
        return ids

    def _ebs_ready(self, ec2: Any, ids: list[str]) -> bool:
        try:
            found = ec2.describe_snapshots(SnapshotIds=ids)["Snapshots"]
        except ec2.exceptions.ClientError:
            return False
        return len(found) == len(ids) and all(s["State"] == "completed" for s in found)

    def db_snapshots(self, count: int) -> list[str]:
        rds = _client("rds", self.dr, self.aws)
        instance = f"bench-db-{int(time.time())}"
        rds.create_db_instance(
            DBInstanceIdentifier=instance,
            Engine="postgres",
            DBInstanceClass="db.t3.micro",
            AllocatedStorage=20,
            MasterUsername="bench",
            MasterUserPassword="bench-password-1",
        )
        self._wait(lambda: self._db_ready(rds, instance), "the bench DB instance")
        ids = []
        for i in range(count):
            name = f"{instance}-dr-{i}"
            rds.create_db_snapshot(
                DBInstanceIdentifier=instance, DBSnapshotIdentifier=name, Tags=self.tags
            )
            ids.append(name)
        self._wait(lambda: all(self._db_snapshot_ready(rds, i) for i in ids), "DB snapshots")
        return ids

    @staticmethod
    def _db_ready(rds: Any, instance: str) -> bool:
        try:
            found = rds.describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"]
        except rds.exceptions.ClientError:
            return False
        return bool(found) and found[0]["DBInstanceStatus"] == "available"

    @staticmethod
    def _db_snapshot_ready(rds: Any, name: str) -> bool:
        try:
            found = rds.describe_db_snapshots(DBSnapshotIdentifier=name)["DBSnapshots"]
        except rds.exceptions.ClientError:
            return False
        return bool(found) and found[0]["Status"] == "available"

    def plan_keys(self) -> list[tuple[str, str]]:
        """(Region, key id) of every plan key."""
        keys = []
        for region, key in sorted(self.plan.kms_keys.items()):
            metadata = _client("kms", region, self.aws).describe_key(KeyId=key)["KeyMetadata"]
            keys.append((region, metadata["KeyId"]))
        return keys

    @staticmethod
    def _wait(ready: Any, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready after {timeout:.0f}s")
            time.sleep(0.5)

    # ------------------------------------------------------------------ incidents
    def inject(self, kind: str, target: Any, round_: int) -> tuple[str, float]:
        """Make the change, then put its CloudTrail event; return (resource, event time)."""
        if kind == "ebs-share":
            _client("ec2", self.dr, self.aws).modify_snapshot_attribute(
                SnapshotId=target,
                Attribute="createVolumePermission",
                OperationType="add",
                UserIds=[OUTSIDER],
            )
            when = time.time()
            event = cloudtrail_event(
                source="aws.ec2",
                event_name="ModifySnapshotAttribute",
                region=self.dr,
                request_parameters={
                    "snapshotId": target,
                    "createVolumePermission": {"add": {"items": [{"userId": OUTSIDER}]}},
                    "attributeType": "CREATE_VOLUME_PERMISSION",
                },
                event_time=datetime.fromtimestamp(when, UTC),
            )
            resource = target
        elif kind == "rds-share":
            _client("rds", self.dr, self.aws).modify_db_snapshot_attribute(
                DBSnapshotIdentifier=target, AttributeName="restore", ValuesToAdd=[OUTSIDER]
            )
            when = time.time()
            event = cloudtrail_event(
                source="aws.rds",
                event_name="ModifyDBSnapshotAttribute",
                region=self.dr,
                request_parameters={
                    "dBSnapshotIdentifier": target,
                    "attributeName": "restore",
                    "valuesToAdd": [OUTSIDER],
                },
                event_time=datetime.fromtimestamp(when, UTC),
            )
            resource = target
        elif kind == "kms":
            region, key_id = target
            kms = _client("kms", region, self.aws)
            name = "DisableKey" if round_ % 2 == 0 else "ScheduleKeyDeletion"
            params: dict[str, Any] = {"keyId": key_id}
            if name == "DisableKey":
                kms.disable_key(KeyId=key_id)
            else:
                kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
                params["pendingWindowInDays"] = 7
            when = time.time()
            arn = f"arn:aws:kms:{region}:{ACCOUNT}:key/{key_id}"
            event = cloudtrail_event(
                source="aws.kms",
                event_name=name,
                region=region,
                request_parameters=params,
                resources=[{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": arn}],
                event_time=datetime.fromtimestamp(when, UTC),
            )
            resource = key_id
        else:
            region = target
            _client("ec2", region, self.aws).disable_snapshot_block_public_access()
            when = time.time()
            event = cloudtrail_event(
                source="aws.ec2",
                event_name="DisableSnapshotBlockPublicAccess",
                region=region,
                request_parameters={"DisableSnapshotBlockPublicAccessRequest": ""},
                event_time=datetime.fromtimestamp(when, UTC),
            )
            resource = f"snapshot-bpa:{region}"
        put_event(event, self.aws, self.bus_region)
        return resource, when


def wait_for_dag(api: AirflowApi, timeout: float = 180) -> None:
    """Until the dag-processor has parsed dr_incident_response; unpause it if it is paused."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            dag = api.get(f"/api/v2/dags/{DAG_ID}")
            if dag.get("is_paused"):
                api.patch(f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
            return
        except Exception:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{DAG_ID} was not parsed within {timeout:.0f}s") from None
            time.sleep(2)


def measure(
    bench: Bench, events: list[tuple[str, str, float]], timeout: float
) -> dict[str, float | None]:
    """Event -> latency (None: not contained within ``timeout`` after the last event)."""
    deadline = time.time() + timeout
    latencies: dict[int, float | None] = {}
    while True:
        calls = bench.containment_calls()
        by_resource: dict[str, list[float]] = defaultdict(list)
        for call in calls:
            by_resource[call["resource"]].append(call["time"])
        for index, (_kind, resource, when) in enumerate(events):
            after = [t for t in by_resource.get(resource, []) if t >= when]
            latencies[index] = (min(after) - when) if after else None
        if all(v is not None for v in latencies.values()) or time.time() > deadline:
            return {str(i): v for i, v in latencies.items()}
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.respond_bench", description=__doc__)
    parser.add_argument("--events", type=int, default=20, help="how many incidents (N)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between events")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait at the end")
    parser.add_argument(
        "--home", type=Path, default=Path(os.environ.get("SECUREDR_HOME", DEFAULT_HOME))
    )
    parser.add_argument("--keep", action="store_true", help="leave a stack it started running")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    # Only the sandbox is talked to: never send a real credential, even to loopback.
    os.environ.update({"AWS_ACCESS_KEY_ID": "sandbox", "AWS_SECRET_ACCESS_KEY": "sandbox"})
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(name, None)
    if args.events < 1:
        parser.error("--events must be at least 1")

    stack = Stack(args.home.resolve())
    previous = stack.state()
    was_running = bool(previous) and stack.running(previous)
    print("Starting the embedded stack..." if not was_running else "Using the running stack.")
    state = stack.up(quiet=True)
    try:
        os.environ["SECUREDR_HOME"] = str(args.home.resolve())
        from securedr.core.plan import load_plan

        plan = load_plan()
        bench = Bench(plan, state["aws_url"])
        api = AirflowApi(state["api_url"]).login("admin", stack.passwords()["admin"])
        wait_for_dag(api)

        plan_kinds = [KINDS[i % len(KINDS)] for i in range(args.events)]
        ebs = bench.ebs_snapshots(plan_kinds.count("ebs-share") + 1)
        dbs = bench.db_snapshots(plan_kinds.count("rds-share"))
        keys = bench.plan_keys()
        regions = list(plan.all_regions)

        # Warm-up, not measured: the triggerer runs the watcher and a first run has happened.
        print("Warming up (the first event waits for the triggerer's AssetWatcher)...")
        bench.reset_meter()
        warm, when = bench.inject("ebs-share", ebs.pop(), 0)
        warm_latency = measure(bench, [("ebs-share", warm, when)], timeout=300)["0"]
        if warm_latency is None:
            print("respond: the warm-up event was not contained within 300 s", file=sys.stderr)
        else:
            print(f"  warm-up contained after {warm_latency:.1f} s")

        bench.reset_meter()
        injected: list[tuple[str, str, float]] = []
        counters: dict[str, int] = defaultdict(int)
        for kind in plan_kinds:
            n = counters[kind]
            counters[kind] += 1
            target: Any
            if kind == "ebs-share":
                target = ebs[n]
            elif kind == "rds-share":
                target = dbs[n]
            elif kind == "kms":
                target = keys[n % len(keys)]
            else:
                target = regions[n % len(regions)]
            resource, when = bench.inject(kind, target, n // len(keys))
            injected.append((kind, resource, when))
            time.sleep(args.interval)
        latencies = measure(bench, injected, args.timeout)

        per_kind: dict[str, list[float]] = defaultdict(list)
        missing = 0
        for index, (kind, _resource, _when) in enumerate(injected):
            value = latencies[str(index)]
            if value is None:
                missing += 1
            else:
                per_kind[kind].append(value)
        for kind in KINDS:
            values = per_kind.get(kind, [])
            if values:
                print(
                    f"  {kind:<10} {len(values)} contained: p50 {percentile(values, 0.5):.1f} s,"
                    f" max {max(values):.1f} s"
                )
        contained = [v for vs in per_kind.values() for v in vs]
        total = len(injected)
        if contained:
            print(
                f"respond: p50 {percentile(contained, 0.5):.1f} s; "
                f"p95 {percentile(contained, 0.95):.1f} s; max {max(contained):.1f} s; "
                f"{len(contained)} of {total} contained"
            )
        else:
            print(f"respond: p50 - s; p95 - s; max - s; 0 of {total} contained")
        return 0 if missing == 0 else 1
    finally:
        if not (args.keep or was_running):
            stack.down(quiet=True)


if __name__ == "__main__":
    sys.exit(main())
