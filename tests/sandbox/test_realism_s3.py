"""Section ``s3``: conditional-write conflicts, the 10,000-part limit, versioned deletes."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox import realism

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
BUCKET = "securedr-realism-s3"


@pytest.fixture
def s3(aws):
    client = boto3.client("s3", region_name="us-east-1", config=NO_RETRIES)
    client.create_bucket(Bucket=BUCKET)
    return client


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response = exc.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def _conditional_put(s3, key: str) -> str:
    try:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"envelope", IfNoneMatch="*")
        return "ok"
    except ClientError as exc:
        return exc.response["Error"]["Code"]


def test_every_nth_conditional_write_conflicts_and_writes_nothing(s3):
    realism.configure("s3", conflict_every=2)
    assert _conditional_put(s3, "a") == "ok"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=BUCKET, Key="b", Body=b"envelope", IfNoneMatch="*")
    assert _error(exc) == (
        "ConditionalRequestConflict",
        "A conflicting conditional operation is currently in progress against this resource. "
        "Please try again.",
        409,
    )
    with pytest.raises(ClientError) as exc:  # the conflicting write did not happen
        s3.head_object(Bucket=BUCKET, Key="b")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert _conditional_put(s3, "b") == "ok"  # retried: goes through
    # an unconditional write never counts and never conflicts
    s3.put_object(Bucket=BUCKET, Key="c", Body=b"x")
    assert _conditional_put(s3, "a") == "ConditionalRequestConflict"
    assert _conditional_put(s3, "a") == "PreconditionFailed"  # the real "already there" answer


def test_if_match_writes_and_multipart_completions_are_conditional_too(s3):
    etag = s3.put_object(Bucket=BUCKET, Key="manifest", Body=b"v1")["ETag"]
    realism.configure("s3", conflict_every=1)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=BUCKET, Key="manifest", Body=b"v2", IfMatch=etag)
    assert _error(exc)[0] == "ConditionalRequestConflict"

    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="big")["UploadId"]
    part = s3.upload_part(Bucket=BUCKET, Key="big", UploadId=upload, PartNumber=1, Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key="big",
            UploadId=upload,
            IfNoneMatch="*",
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
    assert _error(exc)[2] == 409


def test_conflicts_are_off_unless_asked_for(s3):
    realism.configure("s3")
    assert [_conditional_put(s3, f"k{i}") for i in range(5)] == ["ok"] * 5


@pytest.mark.parametrize("part_number", [0, 10001])
def test_part_numbers_outside_1_to_10000_are_refused(s3, part_number):
    realism.configure("s3")
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="big")["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=BUCKET, Key="big", UploadId=upload, PartNumber=part_number, Body=b"x")
    assert _error(exc) == (
        "InvalidArgument",
        "Part number must be an integer between 1 and 10000, inclusive",
        400,
    )
    s3.upload_part(Bucket=BUCKET, Key="big", UploadId=upload, PartNumber=10000, Body=b"x")


def test_a_lower_part_limit_can_be_set(s3):
    realism.configure("s3", max_parts=3)
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="big")["UploadId"]
    s3.upload_part(Bucket=BUCKET, Key="big", UploadId=upload, PartNumber=3, Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=BUCKET, Key="big", UploadId=upload, PartNumber=4, Body=b"x")
    assert _error(exc)[0] == "InvalidArgument"


def test_versioned_delete_adds_a_marker_and_keeps_every_version(s3):
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=BUCKET, Key="manifest.json", Body=b"v1")["VersionId"]
    second = s3.put_object(Bucket=BUCKET, Key="manifest.json", Body=b"v2")["VersionId"]

    deleted = s3.delete_object(Bucket=BUCKET, Key="manifest.json")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]

    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=BUCKET, Key="manifest.json")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    listing = s3.list_object_versions(Bucket=BUCKET, Prefix="manifest.json")
    assert [m["VersionId"] for m in listing["DeleteMarkers"]] == [marker]
    assert listing["DeleteMarkers"][0]["IsLatest"] is True
    assert {v["VersionId"] for v in listing["Versions"]} == {first, second}
    body = s3.get_object(Bucket=BUCKET, Key="manifest.json", VersionId=first)["Body"].read()
    assert body == b"v1"
