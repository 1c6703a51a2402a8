"""Every AWS client SecureDR builds retries in botocore's standard mode, with a bound."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from sandbox import realism
from securedr.aws.clients import AwsClients
from securedr.aws.errors import MAX_ATTEMPTS, retry_config
from securedr.aws.sts import AssumedRoleClients

REGION = "us-west-2"
PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
#: Every way the product can build an AWS client; each must pass SecureDR's retry config.
_BUILDERS = re.compile(r"boto3\.client\(|\.create_client\(|AwsBaseHook\(|boto3\.Session\(")


def _check(config) -> None:
    retries = config.retries or {}
    assert retries.get("mode") in ("standard", "adaptive"), retries
    attempts = retries.get("total_max_attempts") or retries.get("max_attempts")
    assert attempts is not None and 1 < attempts <= 20, retries


def _assumed() -> AssumedRoleClients:
    return AssumedRoleClients(
        {
            "AccessKeyId": "ASIATEST000000000001",
            "SecretAccessKey": "secret",
            "SessionToken": "token",
            "Expiration": datetime.now(UTC) + timedelta(hours=1),
        },
        role_arn="arn:aws:iam::123456789012:role/securedr-restore",
        session_name="securedr-restore-test",
    )


def test_retry_config_is_standard_and_bounded():
    _check(retry_config())
    assert retry_config().retries["total_max_attempts"] == MAX_ATTEMPTS


@pytest.mark.parametrize("service", ["ec2", "rds", "s3", "kms", "sts", "sns"])
def test_connection_clients_retry_standard_and_bounded(aws, service):
    _check(AwsClients().client(service, REGION).meta.config)


@pytest.mark.parametrize("service", ["ec2", "rds", "s3", "kms", "sns"])
def test_restore_role_clients_retry_standard_and_bounded(aws, service):
    _check(_assumed().client(service, REGION).meta.config)


def test_trigger_clients_retry_standard_and_bounded(aws):
    async def configs():
        found = []
        async with AwsClients().async_client("ec2", REGION) as client:
            found.append(client.meta.config)
        async with _assumed().async_client("rds", REGION) as client:
            found.append(client.meta.config)
        return found

    for config in asyncio.run(configs()):
        _check(config)


def test_audit_cli_client_retries_standard_and_bounded(aws, monkeypatch, tmp_path):
    from securedr.cli import audit

    built = []
    original = boto3.client

    def recording(*args, **kwargs):
        built.append(kwargs.get("config"))
        return original(*args, **kwargs)

    monkeypatch.setattr(boto3, "client", recording)
    keys = tmp_path / "keys.pem"
    from securedr.core.signing import generate_signing_key

    keys.write_bytes(generate_signing_key()[1])
    import argparse

    audit._audit_verify(argparse.Namespace(plan=None, trusted_keys=keys, expected_head=None))
    assert built, "the CLI built no client"
    for config in built:
        assert config is not None
        _check(config)


def test_every_client_the_product_builds_passes_the_retry_config():
    """A new client constructed anywhere in the product without ``config=`` fails here."""
    missing = []
    for path in PLUGINS.rglob("*.py"):
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if _BUILDERS.search(line) and not line.lstrip().startswith(("#", '"""')):
                call = "\n".join(lines[number : number + 8])
                if "retry_config()" not in call:
                    missing.append(f"{path.relative_to(PLUGINS)}:{number + 1}: {line.strip()}")
    assert not missing, "clients built without retry_config():\n" + "\n".join(missing)


@pytest.fixture
def no_backoff_sleep(monkeypatch):
    """Record botocore's backoff delays instead of sleeping them (the test stays fast)."""
    import botocore.endpoint

    delays: list[float] = []
    monkeypatch.setattr(botocore.endpoint.time, "sleep", delays.append)
    return delays


def _retries(response: dict) -> int:
    return int(response["ResponseMetadata"]["RetryAttempts"])


def test_a_throttling_burst_is_ridden_out(aws, no_backoff_sleep):
    # The sandbox's throttle section: the 2nd EC2 call starts a burst of 6 refusals
    # (RequestLimitExceeded, 503). botocore's legacy default (5 attempts) would give up.
    realism.configure("throttle", services=["ec2"], every=2, burst=6)
    ec2 = AwsClients().ec2(REGION)
    ec2.describe_volumes()
    assert _retries(ec2.describe_volumes()) == 6
    assert len(no_backoff_sleep) == 6 and all(d >= 0 for d in no_backoff_sleep)


def test_an_s3_internal_error_burst_is_ridden_out(aws, no_backoff_sleep):
    realism.configure("throttle", services=["s3"], every=2, burst=6, error="internal")
    s3 = AwsClients().s3(REGION)
    s3.list_buckets()
    assert _retries(s3.list_buckets()) == 6


def test_an_s3_slowdown_burst_is_ridden_out(aws, no_backoff_sleep):
    realism.configure("throttle", services=["s3"], every=2, burst=6)
    s3 = AwsClients().s3(REGION)
    s3.list_buckets()
    assert _retries(s3.list_buckets()) == 6


def test_restore_role_clients_ride_out_rds_throttling(aws, no_backoff_sleep):
    realism.configure("throttle", services=["rds"], every=2, burst=6)
    rds = _assumed().rds(REGION)
    rds.describe_db_instances()
    assert _retries(rds.describe_db_instances()) == 6


def test_retries_are_bounded(aws, no_backoff_sleep):
    from botocore.exceptions import ClientError

    realism.configure("throttle", services=["ec2"], every=1, burst=1000)
    with pytest.raises(ClientError, match="RequestLimitExceeded") as err:
        AwsClients().ec2(REGION).describe_volumes()
    assert _retries(err.value.response) == MAX_ATTEMPTS - 1
