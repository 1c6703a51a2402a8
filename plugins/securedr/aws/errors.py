"""Small helpers every adapter shares; no Airflow import, so the CLI stays quick to start."""

from __future__ import annotations

import time
from typing import Any

#: Attempts per AWS call (first try included). Standard mode backs off exponentially with jitter
#: (base 1 s, capped at 20 s), so 10 attempts ride out a throttling burst of about a minute
#: without turning a real outage into an endless wait.
#: https://docs.aws.amazon.com/boto3/latest/guide/retries.html
MAX_ATTEMPTS = 10
RETRY_MODE = "standard"


def retry_config() -> Any:
    """The botocore ``Config`` every client SecureDR builds uses: standard retry mode, bounded.

    Standard mode retries throttling (``RequestLimitExceeded``, ``Throttling``, ``SlowDown``...),
    transient 5xx (``InternalError``) and connection errors with exponential backoff; botocore's
    default (legacy, 5 attempts, no throttling backoff for every service) gives up on the first
    burst. Imported lazily so this module stays importable without botocore loaded.
    """
    from botocore.config import Config

    return Config(retries={"mode": RETRY_MODE, "total_max_attempts": MAX_ATTEMPTS})


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (empty for anything else)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    """``items`` in consecutive batches of at most ``size`` (AWS per-call limits)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


class ServiceClients:
    """Named accessors over ``client(service, region)``, shared by every client provider."""

    def client(self, service: str, region: str) -> Any:
        raise NotImplementedError

    def ec2(self, region: str) -> Any:
        return self.client("ec2", region)

    def rds(self, region: str) -> Any:
        return self.client("rds", region)

    def kms(self, region: str) -> Any:
        return self.client("kms", region)

    def s3(self, region: str) -> Any:
        return self.client("s3", region)

    def sns(self, region: str) -> Any:
        return self.client("sns", region)


#: Values one EC2 describe filter accepts. AWS answers ``FilterLimitExceeded`` ("The maximum
#: number of filter values specified on a single call is 200") beyond this.
#: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
EC2_FILTER_VALUES = 200
#: Explicit page sizes (MaxResults / MaxRecords), each the largest the action accepts, so a large
#: estate costs few calls and no call depends on a service-side default page size.
#: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeVolumes.html (5-500)
#: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeSnapshots.html (5-1000)
#: https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DescribeDBInstances.html (20-100)
PAGE_SIZES = {
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
    "describe_db_subnet_groups": 100,
    # https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html (MaxKeys <= 1000)
    "list_objects_v2": 1000,
    # https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectVersions.html (MaxKeys <= 1000)
    "list_object_versions": 1000,
}


def page_config(operation: str) -> dict[str, Any]:
    """``PaginationConfig`` with the explicit page size for ``operation``."""
    return {"PageSize": PAGE_SIZES[operation]}


def describe_all(
    client: Any,
    operation: str,
    key: str,
    filters: list[dict[str, Any]] | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Every item of a paginated describe, page by page with an explicit page size."""
    if filters is not None:
        kwargs["Filters"] = filters
    items: list[dict[str, Any]] = []
    pages = client.get_paginator(operation).paginate(
        **kwargs, PaginationConfig=page_config(operation)
    )
    for page in pages:
        items.extend(page.get(key, []))
    return items


#: How long "not found" right after a create means "not visible yet" rather than "gone". AWS's
#: EC2 API is eventually consistent: describe with backoff "up to a few minutes" after a create.
#: https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html
NOT_FOUND_GRACE_SECONDS = 300.0
NOT_FOUND_POLL_SECONDS = 1.0
NOT_FOUND_MAX_POLL_SECONDS = 30.0


def until_visible(
    call: Any,
    codes: tuple[str, ...] = (),
    *,
    missing: Any = None,
    grace: float | None = None,
    poll: float | None = None,
) -> Any:
    """``call()``, retried with exponential backoff for up to ``grace`` seconds while AWS
    answers one of ``codes`` or ``missing(result)`` is true (a resource just created that a
    describe does not show yet). Afterwards the last error is raised / the last result returned.
    """
    grace = NOT_FOUND_GRACE_SECONDS if grace is None else grace
    delay = NOT_FOUND_POLL_SECONDS if poll is None else poll
    deadline = time.monotonic() + grace
    while True:
        try:
            result = call()
        except Exception as exc:
            remaining = deadline - time.monotonic()
            if error_code(exc) not in codes or remaining <= 0:
                raise
        else:
            remaining = deadline - time.monotonic()
            if missing is None or not missing(result) or remaining <= 0:
                return result
        time.sleep(max(0.0, min(delay, remaining)))
        delay = min(delay * 2, NOT_FOUND_MAX_POLL_SECONDS)
