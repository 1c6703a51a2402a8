"""Section ``throttle``: deterministic bursts of each service's throttling and internal errors."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox import realism

# botocore counts ``max_attempts`` as retries; ``total_max_attempts`` is the whole budget.
KMS_THROTTLED = (
    "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."
)
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


def _client(service: str, region: str = "us-east-1"):
    return boto3.client(service, region_name=region, config=NO_RETRIES)


def _outcomes(call, times: int) -> list[str]:
    """``ok`` or the error code of each of ``times`` calls."""
    results = []
    for _ in range(times):
        try:
            call()
            results.append("ok")
        except ClientError as exc:
            results.append(exc.response["Error"]["Code"])
    return results


def test_every_nth_call_starts_a_burst_and_the_pattern_repeats(aws):
    realism.configure("throttle", services=["ec2"], every=3, burst=2)
    ec2 = _client("ec2")
    outcomes = _outcomes(ec2.describe_volumes, 9)
    # calls 3 and 4 fail (burst of 2 starting at the 3rd matching call), then 7 and 8
    limited = "RequestLimitExceeded"
    assert outcomes == ["ok", "ok", limited, limited, "ok", "ok", limited, limited, "ok"]


def test_off_by_default_and_off_again_after_disable(aws):
    ec2 = _client("ec2")
    assert _outcomes(ec2.describe_volumes, 3) == ["ok"] * 3
    realism.configure("throttle", services=["ec2"], every=1)
    assert _outcomes(ec2.describe_volumes, 1) == ["RequestLimitExceeded"]
    realism.disable("throttle")
    assert _outcomes(ec2.describe_volumes, 3) == ["ok"] * 3


@pytest.mark.parametrize(
    ("service", "call", "code", "message", "status"),
    [
        ("ec2", lambda c: c.describe_snapshots(OwnerIds=["self"]), "RequestLimitExceeded",
         "Request limit exceeded.", 503),
        ("rds", lambda c: c.describe_db_snapshots(), "Throttling", "Rate exceeded", 400),
        ("s3", lambda c: c.list_buckets(), "SlowDown", "Please reduce your request rate.", 503),
        ("kms", lambda c: c.list_keys(), "ThrottlingException",
         KMS_THROTTLED,
         400),
        ("sts", lambda c: c.get_caller_identity(), "Throttling", "Rate exceeded", 400),
    ],
)  # fmt: skip
def test_each_service_throttles_with_its_own_code(aws, service, call, code, message, status):
    realism.configure("throttle", services=[service], every=1)
    with pytest.raises(ClientError) as exc:
        call(_client(service))
    assert exc.value.response["Error"]["Code"] == code
    assert exc.value.response["Error"]["Message"] == message
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


@pytest.mark.parametrize(
    ("service", "call", "code"),
    [
        ("ec2", lambda c: c.describe_volumes(), "InternalError"),
        ("s3", lambda c: c.list_buckets(), "InternalError"),
        ("rds", lambda c: c.describe_db_instances(), "InternalFailure"),
        ("kms", lambda c: c.list_keys(), "KMSInternalException"),
    ],
)
def test_internal_errors_are_500s(aws, service, call, code):
    realism.configure("throttle", services=[service], every=1, error="internal")
    with pytest.raises(ClientError) as exc:
        call(_client(service))
    assert exc.value.response["Error"]["Code"] == code
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_only_named_actions_and_services_are_affected(aws):
    realism.configure("throttle", services=["ec2"], actions=["DescribeSnapshots"], every=1)
    ec2 = _client("ec2")
    assert _outcomes(ec2.describe_volumes, 2) == ["ok", "ok"]
    assert _outcomes(lambda: _client("rds").describe_db_instances(), 1) == ["ok"]
    assert _outcomes(lambda: ec2.describe_snapshots(OwnerIds=["self"]), 1) == [
        "RequestLimitExceeded"
    ]


def test_a_throttled_call_changes_nothing(aws):
    realism.configure("throttle", services=["ec2"], actions=["CreateVolume"], every=1)
    ec2 = _client("ec2")
    with pytest.raises(ClientError):
        ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)
    realism.disable("throttle")
    assert ec2.describe_volumes()["Volumes"] == []


def test_botocore_retries_ride_out_a_short_burst(aws):
    realism.configure("throttle", services=["ec2"], every=2, burst=2)
    retrying = Config(retries={"total_max_attempts": 4, "mode": "standard"})
    ec2 = boto3.client("ec2", region_name="us-east-1", config=retrying)
    for _ in range(4):
        ec2.describe_volumes()  # never raises: each burst is shorter than the attempt budget


def test_a_single_name_works_as_well_as_a_list(aws):
    realism.configure("throttle", services="ec2", actions="DescribeVolumes", every=1)
    assert _outcomes(_client("ec2").describe_volumes, 1) == ["RequestLimitExceeded"]
    assert _outcomes(lambda: _client("rds").describe_db_instances(), 1) == ["ok"]
