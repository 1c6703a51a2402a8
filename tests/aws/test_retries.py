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


def _burst(service: str, count: int, code: str, message: str, status: int) -> list[str]:
    seen: list[str] = []

    def before(call: realism.Call) -> None:
        if call.service == service:
            seen.append(call.action)
            if len(seen) <= count:
                raise realism.AWSError(code, message, status)

    realism.behaviour("test-burst", before=before)
    realism.configure("test-burst")
    return seen


def test_a_throttling_burst_is_ridden_out(aws, no_backoff_sleep):
    # Six refusals in a row: botocore's legacy default (5 attempts) would give up.
    # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/throttling.html
    seen = _burst("ec2", 6, "RequestLimitExceeded", "Request limit exceeded.", 503)
    AwsClients().ec2(REGION).describe_volumes()
    assert len(seen) == 7
    assert len(no_backoff_sleep) == 6 and all(d >= 0 for d in no_backoff_sleep)


def test_an_s3_slowdown_burst_is_ridden_out(aws, no_backoff_sleep):
    # https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html (SlowDown, 503)
    seen = _burst("s3", 6, "SlowDown", "Please reduce your request rate.", 503)
    AwsClients().s3(REGION).list_buckets()
    assert len(seen) == 7


def test_retries_are_bounded(aws, no_backoff_sleep):
    from botocore.exceptions import ClientError

    seen = _burst("ec2", 1000, "RequestLimitExceeded", "Request limit exceeded.", 503)
    with pytest.raises(ClientError, match="RequestLimitExceeded"):
        AwsClients().ec2(REGION).describe_volumes()
    assert len(seen) == MAX_ATTEMPTS
