"""AWS's time from S3's Date header: exact, and refused when missing or ambiguous."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from securedr.aws.evidence import AwsTimeUnavailable, _parse_date, aws_time


class _S3:
    def __init__(self, date: str | None = None, error: Exception | None = None) -> None:
        self.date, self.error = date, error

    def head_bucket(self, Bucket: str) -> dict:
        if self.error:
            raise self.error
        headers = {"date": self.date} if self.date is not None else {}
        return {"ResponseMetadata": {"HTTPHeaders": headers}}


def test_the_date_header_is_aws_time():
    moment = aws_time(_S3("Wed, 01 Mar 2006 12:00:00 GMT"), "bucket")
    assert moment == datetime(2006, 3, 1, 12, 0, tzinfo=UTC)


def test_a_repeated_identical_header_is_accepted():
    value = "Wed, 01 Mar 2006 12:00:00 GMT, Wed, 01 Mar 2006 12:00:00 GMT"
    assert _parse_date(value) == datetime(2006, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    ["", "yesterday", "Wed, 01 Mar 2006 12:00:00 GMT, Wed, 01 Mar 2006 15:00:00 GMT"],
)
def test_missing_malformed_or_conflicting_dates_are_refused(value):
    with pytest.raises(AwsTimeUnavailable, match="no usable Date header"):
        aws_time(_S3(value), "bucket")


def test_a_failed_head_bucket_is_refused():
    from botocore.exceptions import ClientError

    error = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "HeadBucket")
    with pytest.raises(AwsTimeUnavailable, match="AccessDenied"):
        aws_time(_S3(error=error), "bucket")
