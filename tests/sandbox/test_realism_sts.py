"""Section ``sts``: assumed-role credentials expire after DurationSeconds on the sandbox clock."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox import realism
from sandbox.realism import sts

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
ROLE = "arn:aws:iam::123456789012:role/securedr-restore"
REGION = "us-east-1"


def _assume(duration: int | None = None) -> dict:
    kwargs = {"DurationSeconds": duration} if duration else {}
    client = boto3.client("sts", region_name=REGION, config=NO_RETRIES)
    return client.assume_role(RoleArn=ROLE, RoleSessionName="restore", **kwargs)["Credentials"]


def _as(credentials: dict, service: str):
    return boto3.client(
        service,
        region_name=REGION,
        config=NO_RETRIES,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response = exc.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def test_credentials_work_until_duration_seconds_then_expire(aws):
    realism.configure("sts")
    credentials = _assume(900)
    expected = realism.now() + dt.timedelta(seconds=900)
    assert abs((credentials["Expiration"] - expected).total_seconds()) < 5
    ec2 = _as(credentials, "ec2")
    ec2.describe_volumes()

    realism.advance(880)  # (a little real time passes in the test too)
    ec2.describe_volumes()
    realism.advance(21)
    with pytest.raises(ClientError) as exc:
        ec2.describe_volumes()
    assert _error(exc) == (
        "ExpiredToken",
        "The security token included in the request is expired",
        403,
    )


@pytest.mark.parametrize(
    ("service", "call", "expected"),
    [
        ("rds", lambda c: c.describe_db_instances(), ("ExpiredToken", sts.QUERY_MESSAGE, 403)),
        ("sts", lambda c: c.get_caller_identity(), ("ExpiredToken", sts.QUERY_MESSAGE, 403)),
        ("kms", lambda c: c.list_keys(), ("ExpiredTokenException", sts.QUERY_MESSAGE, 403)),
        (
            "s3",
            lambda c: c.list_buckets(),
            ("ExpiredToken", "The provided token has expired.", 400),
        ),
    ],
)
def test_each_service_refuses_an_expired_token_its_own_way(aws, service, call, expected):
    realism.configure("sts")
    credentials = _assume()  # default one hour
    client = _as(credentials, service)
    call(client)
    realism.advance(3600)
    with pytest.raises(ClientError) as exc:
        call(client)
    assert _error(exc) == expected


def test_presigned_url_with_an_expired_token_is_refused(aws):
    import urllib.error
    import urllib.request

    realism.configure("sts")
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="evidence")
    boto3.client("s3", region_name=REGION).put_object(Bucket="evidence", Key="k", Body=b"x")
    url = _as(_assume(), "s3").generate_presigned_url(
        "get_object", Params={"Bucket": "evidence", "Key": "k"}, ExpiresIn=7200
    )
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"x"
    realism.advance(3601)
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(url)
    assert exc.value.code == 400
    assert b"<Code>ExpiredToken</Code>" in exc.value.read()


def test_fresh_credentials_work_after_old_ones_expired(aws):
    realism.configure("sts")
    old = _assume(900)
    realism.advance(1000)
    with pytest.raises(ClientError):
        _as(old, "ec2").describe_volumes()
    _as(_assume(900), "ec2").describe_volumes()


def test_long_term_keys_never_expire(aws):
    realism.configure("sts")
    _assume(900)
    realism.advance(10 * 3600)
    boto3.client("ec2", region_name=REGION, config=NO_RETRIES).describe_volumes()


def test_max_lifetime_caps_the_session(aws):
    realism.configure("sts", max_lifetime_seconds=60)
    credentials = _assume(3600)
    assert sts.expiry_of(credentials["SessionToken"]) is not None
    assert credentials["Expiration"] - realism.now() <= dt.timedelta(seconds=61)
    realism.advance(61)
    with pytest.raises(ClientError) as exc:
        _as(credentials, "ec2").describe_volumes()
    assert _error(exc)[0] == "ExpiredToken"


def test_off_means_moto_never_expires_credentials(aws):
    credentials = _assume(900)
    realism.advance(10 * 3600)
    _as(credentials, "ec2").describe_volumes()


def test_duration_beyond_the_roles_max_session_is_refused(aws):
    realism.configure("sts")
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(
        RoleName="securedr-restore",
        AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": []}',
        MaxSessionDuration=7200,
    )["Role"]["Arn"]
    client = boto3.client("sts", region_name=REGION, config=NO_RETRIES)
    client.assume_role(RoleArn=role, RoleSessionName="restore", DurationSeconds=7200)
    with pytest.raises(ClientError) as exc:
        client.assume_role(RoleArn=role, RoleSessionName="restore", DurationSeconds=7201)
    assert _error(exc) == (
        "ValidationError",
        "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        400,
    )


def test_chained_sessions_are_limited_to_one_hour(aws):
    realism.configure("sts")
    chained = _as(_assume(900), "sts")
    chained.assume_role(RoleArn=ROLE, RoleSessionName="drill", DurationSeconds=3600)
    with pytest.raises(ClientError) as exc:
        chained.assume_role(RoleArn=ROLE, RoleSessionName="drill", DurationSeconds=3601)
    assert _error(exc) == (
        "ValidationError",
        "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by "
        "role chaining.",
        400,
    )
