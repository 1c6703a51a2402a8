"""The evidence store: manifests, reports and audit entries in the DR Region's S3 bucket.

Every object is written once (``If-None-Match: *``), encrypted under the DR key (SSE-KMS) and
under Object Lock retention, so a run can add evidence but nobody - SecureDR included - can
quietly replace or delete it while the retention lasts.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from securedr.aws.errors import error_code, page_config
from securedr.aws.s3_writes import AlreadyWritten, write_once
from securedr.core.audit import ObjectVersion


class EvidenceExists(Exception):
    """An object already exists at the key; evidence is never overwritten."""


class EvidenceStore:
    def __init__(
        self,
        s3: Any,
        *,
        bucket: str,
        prefix: str,
        kms_key_arn: str,
        lock_mode: str,
        lock_days: int,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.kms_key_arn = kms_key_arn
        self.lock_mode = lock_mode
        self.lock_days = lock_days

    def key(self, *parts: str) -> str:
        return "/".join([self.prefix, *parts])

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def put(self, key: str, body: bytes, content_type: str = "application/json") -> str:
        """Write ``body`` once at ``key``; raise :class:`EvidenceExists` if something else is
        there. A 409 ConditionalRequestConflict is retried; a 412 after which the stored object
        is byte-for-byte ``body`` (an earlier attempt of this write landed) counts as written.
        """
        retain_until = datetime.now(UTC) + timedelta(days=self.lock_days)

        def write() -> Any:
            return self.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                ServerSideEncryption="aws:kms",
                SSEKMSKeyId=self.kms_key_arn,
                ObjectLockMode=self.lock_mode,
                ObjectLockRetainUntilDate=retain_until,
                IfNoneMatch="*",
                ChecksumAlgorithm="SHA256",
            )

        try:
            write_once(write, url=self.url(key), confirm=lambda: self.get(key) == body)
        except AlreadyWritten:
            raise EvidenceExists(self.url(key)) from None
        return self.url(key)

    def get(self, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def get_version(self, key: str, version_id: str) -> bytes:
        """One stored version of ``key``, even when a delete marker hides it."""
        response = self.s3.get_object(Bucket=self.bucket, Key=key, VersionId=version_id)
        return bytes(response["Body"].read())

    def versions(self, *parts: str) -> list[ObjectVersion]:
        """Every version and delete marker under ``prefix/parts...`` (see
        :func:`list_versions`)."""
        return list_versions(self.s3, self.bucket, self.key(*parts).rstrip("/") + "/")

    def hidden(self, *parts: str) -> list[str]:
        """Keys under ``prefix/parts...`` whose current version is a delete marker, sorted:
        objects somebody deleted from the evidence, which the plain listing no longer shows."""
        return sorted({v.key for v in self.versions(*parts) if v.is_latest and v.delete_marker})

    def list(self, *parts: str) -> list[str]:
        """Keys under ``prefix/parts...``, in lexical order."""
        keys: list[str] = []
        prefix = self.key(*parts).rstrip("/") + "/"
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig=page_config("list_objects_v2")
        ):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return sorted(keys)


class AwsTimeUnavailable(Exception):
    """AWS's current time could not be read; the message says why."""


def aws_time(s3: Any, bucket: str) -> datetime:
    """AWS's clock now: the ``Date`` header of a HeadBucket on ``bucket``.

    S3 stamps every response with "the date and time Amazon S3 responded"
    (https://docs.aws.amazon.com/AmazonS3/latest/API/RESTCommonResponseHeaders.html), read
    fresh over TLS at the moment it is needed, so neither a forged local clock nor a long night
    (copies that took hours) can move it. Raises
    :class:`AwsTimeUnavailable` when the call fails or the header is missing or malformed.
    """
    try:
        response = s3.head_bucket(Bucket=bucket)
    except Exception as exc:
        raise AwsTimeUnavailable(
            f"HeadBucket on s3://{bucket} failed ({error_code(exc) or type(exc).__name__})"
        ) from None
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    moment = _parse_date(str(headers.get("date") or ""))
    if moment is None:
        raise AwsTimeUnavailable(f"HeadBucket on s3://{bucket} answered no usable Date header")
    return moment


#: Repeated headers reach botocore joined by ", "; an HTTP date itself ends in "GMT".
_DATE_SEPARATOR = re.compile(r"(?<=GMT),\s*")


def _parse_date(value: str) -> datetime | None:
    """The instant in an HTTP ``Date`` header, or ``None`` if absent, malformed or ambiguous
    (several values more than a second apart: a proxy answered, not S3 alone)."""
    moments = []
    for part in _DATE_SEPARATOR.split(value.strip()) if value.strip() else []:
        try:
            moment = parsedate_to_datetime(part)
        except (TypeError, ValueError):
            return None
        if moment is None or moment.tzinfo is None:
            return None
        moments.append(moment.astimezone(UTC))
    if not moments or max(moments) - min(moments) > timedelta(seconds=1):
        return None
    return max(moments)


def list_versions(s3: Any, bucket: str, prefix: str) -> list[ObjectVersion]:
    """Every stored version and delete marker under ``prefix`` (ListObjectVersions, paginated).

    Object Lock protects versions, not the current view: a plain DeleteObject adds a delete
    marker that hides the object from ListObjectsV2 while its version stays stored
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/DeleteMarker.html). Reading the
    versions is how a hidden or rewritten object is seen. S3 returns versions and delete markers
    in two lists; rows of one key are merged newest first by ``LastModified`` (the latest row
    first on a tie) into :attr:`ObjectVersion.order`.
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectVersions.html
    """
    rows: list[tuple[str, bool, Any, int, dict[str, Any]]] = []
    position = 0
    pages = s3.get_paginator("list_object_versions").paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig=page_config("list_object_versions")
    )
    for page in pages:
        for marker, items in (
            (False, page.get("Versions", [])),
            (True, page.get("DeleteMarkers", [])),
        ):
            for item in items:
                rows.append((item["Key"], marker, item.get("LastModified"), position, item))
                position += 1
    by_key: dict[str, list[tuple[str, bool, Any, int, dict[str, Any]]]] = {}
    for row in rows:
        by_key.setdefault(row[0], []).append(row)
    versions: list[ObjectVersion] = []
    for key, items in by_key.items():
        # Newest first: latest row, then LastModified descending, then S3's own order.
        items.sort(
            key=lambda r: (
                not r[4].get("IsLatest", False),
                -(r[2].timestamp() if isinstance(r[2], datetime) else 0.0),
                r[3],
            )
        )
        for order, (_, marker, modified, _, item) in enumerate(items):
            versions.append(
                ObjectVersion(
                    key=key,
                    version_id=str(item.get("VersionId")),
                    is_latest=bool(item.get("IsLatest", False)),
                    delete_marker=marker,
                    last_modified=(
                        modified.astimezone(UTC).isoformat()
                        if isinstance(modified, datetime)
                        else str(modified)
                    ),
                    order=order,
                )
            )
    return versions


def lock_settings(s3: Any, bucket: str) -> dict[str, Any]:
    """Versioning and Object Lock of a bucket, with the few reads the vault intake role may make
    (``s3:ListBucket``, ``s3:GetBucketVersioning``, ``s3:GetBucketObjectLockConfiguration``).
    ``exists`` is false for a missing bucket and for one the caller may not see."""
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception as exc:
        if error_code(exc) in ("404", "NoSuchBucket", "NotFound", "403", "AccessDenied"):
            return {"exists": False}
        raise
    try:
        lock = s3.get_object_lock_configuration(Bucket=bucket).get("ObjectLockConfiguration")
    except Exception as exc:
        if error_code(exc) != "ObjectLockConfigurationNotFoundError":
            raise
        lock = None
    return {
        "exists": True,
        "versioning": s3.get_bucket_versioning(Bucket=bucket).get("Status"),
        "object_lock": lock,
    }


def bucket_settings(s3: Any, bucket: str) -> dict[str, Any]:
    """What the pre-flight check needs to know about the evidence bucket."""
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception as exc:
        if error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
            return {"exists": False}
        raise

    def optional(call: Any, missing: tuple[str, ...], pick: Any) -> Any:
        try:
            return pick(call(Bucket=bucket))
        except Exception as exc:
            if error_code(exc) in missing:
                return None
            raise

    return {
        "exists": True,
        "versioning": s3.get_bucket_versioning(Bucket=bucket).get("Status"),
        "object_lock": optional(
            s3.get_object_lock_configuration,
            ("ObjectLockConfigurationNotFoundError",),
            lambda r: r.get("ObjectLockConfiguration"),
        ),
        "encryption_rules": optional(
            s3.get_bucket_encryption,
            ("ServerSideEncryptionConfigurationNotFoundError",),
            lambda r: r["ServerSideEncryptionConfiguration"]["Rules"],
        ),
        "public_access_block": optional(
            s3.get_public_access_block,
            ("NoSuchPublicAccessBlockConfiguration",),
            lambda r: r["PublicAccessBlockConfiguration"],
        ),
    }
