"""The restore role's session outlives STS's one-hour credentials during long tasks."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError

from sandbox import realism
from securedr.aws import sts

ROLE_ARN = "arn:aws:iam::123456789012:role/securedr-restore"
REGION = "us-west-2"


@pytest.fixture
def expiring_sessions(aws):
    """The sandbox's ``sts`` section on: assumed-role credentials are refused (ExpiredToken)
    DurationSeconds after AssumeRole, on the sandbox clock. Yields the access keys issued."""
    issued: list[str] = []

    def after(call: realism.Call, result):
        if call.service == "sts" and call.action == "AssumeRole":
            body = result[2].decode() if isinstance(result[2], bytes) else str(result[2])
            key = re.search(r"<AccessKeyId>([^<]+)</AccessKeyId>", body)
            if key:
                issued.append(key.group(1))
        return result

    realism.configure("sts")
    realism.behaviour("test-assume-count", after=after)
    realism.configure("test-assume-count")
    yield issued


def _assume(duration: int = 900) -> sts.AssumedRoleClients:
    return sts.assume_role(
        boto3.client("sts", region_name=REGION),
        role_arn=ROLE_ARN,
        external_id="external-id-1",
        external_id_variable="securedr_restore_external_id",
        session="securedr-restore-test",
        duration_seconds=duration,
    )


def test_a_long_task_keeps_working_after_the_session_expires(expiring_sessions):
    clients = _assume(duration=3600)
    ec2 = clients.ec2(REGION)
    ec2.describe_volumes()
    assert len(expiring_sessions) == 1

    realism.advance(3 * 3600)  # a file-set restore that runs for three hours
    ec2.describe_volumes()
    clients.s3(REGION).list_buckets()
    assert len(expiring_sessions) == 2, "the role was not assumed again"

    realism.advance(3 * 3600)
    ec2.describe_volumes()
    assert len(expiring_sessions) == 3


def test_without_renewal_the_sandbox_refuses_expired_credentials(expiring_sessions):
    """The sandbox behaviour the test above relies on: expired credentials are refused."""
    first = _assume(duration=3600)
    frozen = first._credentials.get_frozen_credentials()
    static = sts.AssumedRoleClients(
        {
            "AccessKeyId": frozen.access_key,
            "SecretAccessKey": frozen.secret_key,
            "SessionToken": frozen.token,
            "Expiration": datetime.now(UTC) + timedelta(hours=1),
        },
        role_arn=ROLE_ARN,
        session_name="securedr-restore-test",
    )
    realism.advance(3601)
    with pytest.raises(ClientError, match="ExpiredToken"):
        static.ec2(REGION).describe_volumes()


def test_credentials_close_to_expiry_are_renewed_before_the_call(aws):
    renewals: list[int] = []
    fresh = {
        "AccessKeyId": "ASIARENEWED000000001",
        "SecretAccessKey": "secret",
        "SessionToken": "token",
        "Expiration": datetime.now(UTC) + timedelta(hours=1),
    }

    def renew():
        renewals.append(1)
        return fresh

    clients = sts.AssumedRoleClients(
        {
            "AccessKeyId": "ASIAOLD0000000000001",
            "SecretAccessKey": "secret",
            "SessionToken": "token",
            "Expiration": datetime.now(UTC) + timedelta(minutes=5),
        },
        role_arn=ROLE_ARN,
        session_name="securedr-restore-test",
        renew=renew,
    )
    clients.ec2(REGION).describe_volumes()
    assert renewals == [1]
    assert clients.expiration == fresh["Expiration"]
    assert not clients.expires_within(600)


def test_a_trigger_keeps_polling_after_the_session_expires(expiring_sessions):
    import asyncio

    clients = _assume(duration=3600)

    async def poll() -> None:
        async with clients.async_client("ec2", REGION) as ec2:
            await ec2.describe_volumes()
            realism.advance(2 * 3600)  # a restore that waits two hours for its volumes
            await ec2.describe_volumes()

    asyncio.run(poll())
    assert len(expiring_sessions) == 2, "the role was not assumed again"
