"""The realism layer core: sections switch on and off alone; errors come back as AWS sends them."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox import realism

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


def client(service: str, url: str):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", config=NO_RETRIES)


@pytest.fixture
def refuse_everything():
    """A throw-away behaviour that answers every call with the service's own throttling code."""
    codes = {"ec2": ("RequestLimitExceeded", 503), "rds": ("Throttling", 400)}

    def before(call: realism.Call) -> None:
        code, status = codes.get(call.service, ("SlowDown", 503))
        raise realism.AWSError(code, f"refused {call.action} in {call.region}", status)

    realism.behaviour("test-refuse", before=before)
    yield "test-refuse"
    realism.disable("test-refuse")


def test_a_section_is_off_until_configured(aws, refuse_everything):
    ec2 = client("ec2", aws)
    assert ec2.describe_volumes()["Volumes"] == []
    realism.configure(refuse_everything)
    with pytest.raises(ClientError) as raised:
        ec2.describe_volumes()
    assert raised.value.response["Error"]["Code"] == "RequestLimitExceeded"
    assert raised.value.response["Error"]["Message"] == "refused DescribeVolumes in us-east-1"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


def test_errors_are_serialised_in_each_services_protocol(aws, refuse_everything):
    s3 = client("s3", aws)
    s3.create_bucket(Bucket="realism-core")
    with realism.section(refuse_everything):
        with pytest.raises(ClientError) as rds_error:
            client("rds", aws).describe_db_instances()
        with pytest.raises(ClientError) as s3_error:
            s3.get_object(Bucket="realism-core", Key="missing")
    assert rds_error.value.response["Error"]["Code"] == "Throttling"
    assert s3_error.value.response["Error"]["Code"] == "SlowDown"
    assert s3_error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    # The section was on for the block only.
    assert s3.list_buckets()["Buckets"][0]["Name"] == "realism-core"


def test_reset_switches_every_section_off_and_restores_the_clock(aws, refuse_everything):
    realism.configure(refuse_everything)
    realism.advance(3 * 3600)
    assert realism.now() - dt.datetime.now(dt.UTC) > dt.timedelta(hours=2, minutes=59)
    realism.reset()
    assert realism.enabled() == {}
    assert abs(realism.now() - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)
    assert client("ec2", aws).describe_volumes()["Volumes"] == []


def test_the_environment_names_a_profile_or_sections():
    realism.reset()
    try:
        realism.configure_from_env({realism.ENV_VAR: '{"test-env": {"every": 3}}'})
        assert realism.settings("test-env") == {"every": 3}
        realism.reset()
        realism.configure_from_env({realism.ENV_VAR: "off"})
        assert realism.enabled() == {}
        with pytest.raises(ValueError, match="unknown realism profile 'nightly'"):
            realism.configure_from_env({realism.ENV_VAR: "nightly"})
    finally:
        realism.reset()
