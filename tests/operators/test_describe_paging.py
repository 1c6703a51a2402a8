"""Every describe in the AWS adapters pages with an explicit page size and batches its filter
values within AWS's limits (EC2: 200 values per filter; RDS: small batches)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from securedr.aws import drill_sandbox, ebs, rds, restore
from securedr.aws.errors import EC2_FILTER_VALUES

#: The largest page each action accepts (MaxResults / MaxRecords).
MAX_PAGE = {
    "describe_volumes": 500,
    "describe_snapshots": 1000,
    "describe_vpcs": 1000,
    "describe_subnets": 1000,
    "describe_security_groups": 1000,
    "describe_network_interfaces": 1000,
    "describe_internet_gateways": 1000,
    "describe_nat_gateways": 1000,
    "describe_db_instances": 100,
    "describe_db_snapshots": 100,
}
RDS_FILTER_VALUES = 50


class _Pager:
    def __init__(self, client: StubClient, operation: str) -> None:
        self.client, self.operation = client, operation

    def paginate(self, **kwargs: Any):
        self.client.calls.append((self.operation, kwargs))
        if self.client.is_async:

            async def pages():
                yield defaultdict(list)

            return pages()
        return iter([defaultdict(list)])


class StubClient:
    """Records every call; every describe answers one empty page."""

    def __init__(self, service: str, is_async: bool = False) -> None:
        self.service, self.is_async = service, is_async
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get_paginator(self, operation: str) -> _Pager:
        return _Pager(self, operation)

    def __getattr__(self, operation: str):
        def call(**kwargs: Any):
            self.calls.append((operation, kwargs))
            return defaultdict(list)

        return call


def _check(client: StubClient) -> None:
    assert client.calls
    for operation, kwargs in client.calls:
        if not operation.startswith("describe_") or "GroupIds" in kwargs:
            continue
        if operation in ("describe_availability_zones", "describe_db_subnet_groups"):
            continue  # not paginated / one named group
        size = (kwargs.get("PaginationConfig") or {}).get("PageSize") or kwargs.get("MaxRecords")
        assert size, f"{operation} without an explicit page size: {kwargs}"
        assert size <= MAX_PAGE[operation], (operation, size)
        limit = EC2_FILTER_VALUES if client.service == "ec2" else RDS_FILTER_VALUES
        for f in kwargs.get("Filters") or kwargs.get("Filter") or []:
            assert len(f["Values"]) <= limit, (operation, f["Name"], len(f["Values"]))


def test_describes_of_many_ids_are_batched_and_paged():
    ec2, rds_client = StubClient("ec2"), StubClient("rds")
    many = [f"id-{i:04d}" for i in range(450)]

    ebs.describe_snapshots(ec2, many)
    ebs.find_snapshots(ec2, {"securedr:plan": "demo"})
    ebs.discover_volumes(ec2, "us-east-1", "dr", "yes")
    restore.describe_volumes(ec2, many)
    restore.find_restored_volumes(ec2, plan="demo", run_id="r")
    rds.describe_snapshots(rds_client, many)
    rds.discover_instances(rds_client, "us-east-1", "dr", "yes")
    rds.list_manual_snapshots(rds_client)
    restore.describe_db_instances(rds_client, many)

    _check(ec2)
    _check(rds_client)
    batches = [k for op, k in ec2.calls if op == "describe_snapshots" and "Filters" in k][:3]
    assert [len(k["Filters"][0]["Values"]) for k in batches] == [200, 200, 50]
    db_batches = [
        k for op, k in rds_client.calls if op == "describe_db_instances" and "Filters" in k
    ]
    assert len(db_batches) == 9


def test_async_describes_are_batched_and_paged():
    ec2, rds_client = StubClient("ec2", is_async=True), StubClient("rds", is_async=True)
    many = [f"id-{i:04d}" for i in range(450)]

    async def run():
        await ebs.describe_snapshots_async(ec2, many)
        await restore.describe_volumes_async(ec2, many)
        await rds.describe_snapshots_async(rds_client, many)
        await restore.describe_db_instances_async(rds_client, many)

    asyncio.run(run())
    _check(ec2)
    _check(rds_client)


def test_the_drill_sandboxs_describes_are_paged_and_batched():
    ec2, rds_client = StubClient("ec2"), StubClient("rds")

    drill_sandbox.teardown(ec2, rds_client, drill_id="d1", wait_seconds=0, poll=0.01)
    drill_sandbox.leftovers(ec2, rds_client, drill_id="d1")
    drill_sandbox.network_interfaces(ec2, [f"vpc-{i:04d}" for i in range(450)])

    _check(ec2)
    _check(rds_client)
    interfaces = [k for op, k in ec2.calls if op == "describe_network_interfaces"]
    assert [len(k["Filters"][0]["Values"]) for k in interfaces] == [200, 200, 50]
