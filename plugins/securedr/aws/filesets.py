"""File sets on AWS: encrypt sources into Object-Locked envelopes, restore and verify them.

Backup (:func:`backup_file_set`): for every file of a set - every object under an S3 prefix, or
every regular file under a local directory - a fresh data key from KMS ``GenerateDataKey``
under the plan's DR key, streamed through :func:`securedr.core.envelope.encrypt_stream` (the
data key is wrapped by KMS and by the offline recovery public key) straight into S3: one
``PutObject`` for small envelopes, a multipart upload for large ones, in parts of ``PART_SIZE``
or, for files over about 78 GiB, of the size :func:`securedr.core.multipart.part_size` picks so
anything up to S3's 5 TiB object limit fits in 10,000 parts. Every object is written once
(``If-None-Match: *``; only 412 means "exists", a 409 is retried, see
:mod:`securedr.aws.s3_writes`), SSE-KMS under the DR key and with Object Lock retention,
exactly like the evidence store. Memory is one part buffer (8 MiB, up to 525 MiB for a 5 TiB
file) plus the envelope's chunk buffers. Keys are deterministic per run and file
(:func:`securedr.core.filesets.object_key`): a retried task finds an object an earlier try
stored, proves it by decrypting it, and records it instead of writing another.

Restore (:func:`restore_file`) and verification (:func:`verify_file_set_objects`, for drills)
read the exact object version the signed manifest names, refuse a header whose file id or KMS
key is not the manifest's before calling KMS, and check every chunk, the file id and the
plaintext SHA-256 against the manifest. A restore makes the output visible only after all of
that passed.

No Airflow import: the functions take boto3 clients (or a ``ServiceClients``) and a logger.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from securedr.aws import s3_writes
from securedr.aws.errors import ServiceClients, error_code, page_config
from securedr.aws.s3_writes import (
    CONFLICT_ATTEMPTS,
    AlreadyWritten,
    WriteConflict,
    is_conflict,
    is_precondition_failed,
    write_once,
)
from securedr.core import envelope, multipart
from securedr.core.filesets import (
    BackedUpFile,
    FileSetError,
    FileSetResult,
    check_file_entry,
    check_header,
    object_key,
    safe_relative_path,
)
from securedr.core.plan import FileSet, Plan

__all__ = [
    "PART_SIZE",
    "FileCheck",
    "SourceFile",
    "backup_file_set",
    "list_local_files",
    "list_s3_files",
    "restore_file",
    "store_envelope",
    "verify_file_set_objects",
    "verify_object",
]

#: Multipart part size; S3 needs at least 5 MiB for every part but the last.
PART_SIZE = 8 << 20
#: S3's limit on the parts of one multipart upload.
MAX_PARTS = multipart.MAX_PARTS
#: A set reports at most this many problems by file; the rest are counted.
MAX_PROBLEMS = 20
#: Seconds between progress lines in the task log.
PROGRESS_SECONDS = 30.0
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceFile:
    """One file of a set: its path relative to the set's source and how to open it."""

    path: str
    size: int
    open: Callable[[], AbstractContextManager[BinaryIO]] = field(repr=False, compare=False)


# --------------------------------------------------------------------------- sources


def list_s3_files(s3: Any, bucket: str, prefix: str) -> Iterator[SourceFile]:
    """Every object under ``prefix`` (all pages, lexical order); folder markers are skipped."""
    base = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=base, PaginationConfig=page_config("list_objects_v2")
    )
    for page in pages:
        for obj in page.get("Contents", []):
            key = str(obj["Key"])
            if key.endswith("/"):
                continue
            yield SourceFile(
                path=key[len(base) :],
                size=int(obj.get("Size", 0)),
                open=_s3_opener(s3, bucket, key, str(obj.get("ETag", ""))),
            )


def _s3_opener(s3: Any, bucket: str, key: str, etag: str) -> Callable[[], Any]:
    def opener() -> Any:
        # IfMatch: back up the object that was listed, not one replaced since.
        kwargs = {"IfMatch": etag} if etag else {}
        body = s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"]
        return _closing(body)

    return opener


class _closing(AbstractContextManager[Any]):
    def __init__(self, body: Any) -> None:
        self.body = body

    def __enter__(self) -> Any:
        return self.body

    def __exit__(self, *exc: object) -> None:
        self.body.close()


def list_local_files(directory: Path) -> Iterator[SourceFile]:
    """Every regular file under ``directory``, recursively, in path order.

    Symbolic links are not followed (a link could pull in files from outside the set);
    sockets, devices and the like are skipped.
    """
    for root, dirs, files in os.walk(directory, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = Path(root, name)
            stat = path.lstat()
            if not path.is_file() or path.is_symlink():
                continue
            relative = path.relative_to(directory).as_posix()
            yield SourceFile(
                path=relative,
                size=stat.st_size,
                open=_file_opener(path),
            )


def _file_opener(path: Path) -> Callable[[], BinaryIO]:
    def opener() -> BinaryIO:
        return path.open("rb")  # the caller's ``with`` closes it

    return opener


# --------------------------------------------------------------------------- upload


def envelope_size_bound(plaintext_size: int, chunk_size: int = envelope.DEFAULT_CHUNK_SIZE) -> int:
    """At least the size of the envelope of ``plaintext_size`` bytes: the largest header the
    format allows plus one record header and tag per chunk (and a final, possibly empty, one)."""
    header = (
        64  # magic, version, chunk size, lengths, flags
        + envelope.FILE_ID_SIZE
        + envelope.KEY_COMMITMENT_SIZE
        + envelope.MAX_KMS_KEY_ARN_SIZE
        + envelope.MAX_KMS_WRAPPED_KEY_SIZE
        + 256  # recovery stanza (key id, ephemeral key, wrapped key)
        + envelope.HEADER_MAC_SIZE
    )
    records = plaintext_size // chunk_size + 2
    return plaintext_size + header + records * (envelope.RECORD_HEADER_SIZE + envelope.TAG_SIZE)


class _ObjectWriter:
    """A write-only stream into one S3 object: a single PutObject if the whole envelope fits
    in one part, else a multipart upload in ``part_size`` parts. Holds one part in memory;
    nothing is visible in the bucket until :meth:`finish` succeeded, and :meth:`abort` removes
    an unfinished upload.

    ``encrypt_stream`` calls :meth:`write` from its write thread (one call at a time), so
    parts upload while the next chunks are hashed and encrypted; the S3 client, created in
    the caller's thread, is safe to use from another one: "Low-level clients are thread
    safe" (https://boto3.amazonaws.com/v1/documentation/api/latest/guide/clients.html,
    Multithreading or multiprocessing with clients)."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        key: str,
        extra: Mapping[str, Any],
        part_size: int = PART_SIZE,
    ) -> None:
        self.s3, self.bucket, self.key, self.extra = s3, bucket, key, dict(extra)
        self.part_size = part_size
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.buffer += view
        while len(self.buffer) >= self.part_size:
            self._upload_part(bytes(self.buffer[: self.part_size]))
            del self.buffer[: self.part_size]
        return len(view)

    def _upload_part(self, body: bytes) -> None:
        number = len(self.parts) + 1
        if number > MAX_PARTS:
            # The source grew after it was measured: stop before S3 refuses part 10,001.
            raise multipart.ObjectTooLarge(
                f"s3://{self.bucket}/{self.key}: more than {MAX_PARTS} parts of "
                f"{self.part_size} bytes; the file grew while it was being backed up"
            )
        if self.upload_id is None:
            self.upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ChecksumAlgorithm="SHA256", **self.extra
            )["UploadId"]
        checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
        response = self.s3.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=body,
            ChecksumSHA256=checksum,
        )
        self.parts.append(
            {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum}
        )

    def _put_whole(self) -> str | None:
        body = bytes(self.buffer)

        def write() -> Any:
            return self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=body,
                ChecksumAlgorithm="SHA256",
                IfNoneMatch="*",
                **self.extra,
            )

        def ours() -> bool:
            stored = self.s3.get_object(Bucket=self.bucket, Key=self.key)
            return bytes(stored["Body"].read()) == body

        url = f"s3://{self.bucket}/{self.key}"
        try:
            response = write_once(write, url=url, confirm=ours)
        except AlreadyWritten:
            raise ObjectExists(url) from None
        if response is None:  # an earlier attempt of this very write landed
            return (_head(self.s3, self.bucket, self.key) or {}).get("VersionId")
        return response.get("VersionId")

    def finish(self) -> str | None:
        """Make the object visible; return its version id. Raises :class:`ObjectExists` on an
        existing object and :class:`WriteConflict` when a multipart upload must start again."""
        if self.upload_id is None:
            return self._put_whole()
        if self.buffer:
            self._upload_part(bytes(self.buffer))
            self.buffer.clear()
        try:
            response = self.s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
                IfNoneMatch="*",
            )
        except Exception as exc:
            url = f"s3://{self.bucket}/{self.key}"
            if is_precondition_failed(exc):
                raise ObjectExists(url) from None
            if is_conflict(exc):
                # AWS: "On a 409 failure you should re-initiate the multipart upload with
                # CreateMultipartUpload and re-upload each part."
                # https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html
                raise WriteConflict(f"{url}: 409 ConditionalRequestConflict") from None
            raise
        # Set the retention on the completed version itself too: the object is locked
        # whether or not the service carried the upload's lock headers over.
        self.s3.put_object_retention(
            Bucket=self.bucket,
            Key=self.key,
            VersionId=response.get("VersionId"),
            Retention={
                "Mode": self.extra["ObjectLockMode"],
                "RetainUntilDate": self.extra["ObjectLockRetainUntilDate"],
            },
            ChecksumAlgorithm="SHA256",
        )
        return response.get("VersionId")

    def abort(self) -> None:
        if self.upload_id is not None:
            try:
                self.s3.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
                )
            except Exception as exc:  # the bucket's lifecycle rule cleans up what this misses
                _LOG.warning("Could not abort the upload of %s: %s", self.key, exc)


class ObjectExists(Exception):
    """Something is already stored at the key; file-set envelopes are written once."""


def store_envelope(
    s3: Any,
    kms: Any,
    source: BinaryIO,
    *,
    bucket: str,
    key: str,
    kms_key_arn: str,
    recovery_public_key: str,
    lock_mode: str,
    lock_days: int,
    size: int | None = None,
) -> tuple[envelope.EncryptResult, str | None]:
    """Encrypt ``source`` under a fresh KMS data key into a new object at ``key``.

    Returns the envelope result (plaintext SHA-256, size, file id) and the object's version.
    The object is SSE-KMS under ``kms_key_arn`` with Object Lock ``lock_mode`` for
    ``lock_days``; raises :class:`ObjectExists` if anything is already at ``key`` (nothing is
    overwritten) and leaves no object and no open multipart upload behind on failure.

    ``size`` (the plaintext's size, when known) sets the multipart part size so the object
    fits S3's 10,000 parts; more than S3's 5 TiB object limit raises
    :class:`~securedr.core.multipart.ObjectTooLarge` before anything is written. A 409
    ConditionalRequestConflict on CompleteMultipartUpload raises :class:`WriteConflict`: the
    caller starts the file again.
    """
    part = PART_SIZE
    if size is not None:
        part = multipart.part_size(
            envelope_size_bound(size), minimum=PART_SIZE, max_parts=MAX_PARTS
        )
    data_key = kms.generate_data_key(KeyId=kms_key_arn, KeySpec="AES_256")
    writer = _ObjectWriter(
        s3,
        bucket,
        key,
        {
            "ContentType": "application/vnd.securedr.envelope",
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": kms_key_arn,
            "ObjectLockMode": lock_mode,
            "ObjectLockRetainUntilDate": datetime.now(UTC) + timedelta(days=lock_days),
        },
        part_size=part,
    )
    try:
        result = envelope.encrypt_stream(
            source,
            writer,  # type: ignore[arg-type]
            data_key=data_key["Plaintext"],
            kms_key_arn=str(data_key["KeyId"]),
            kms_wrapped_key=data_key["CiphertextBlob"],
            recovery_public_key=recovery_public_key,
        )
        del data_key  # the plaintext key is not needed once the file is encrypted
        version = writer.finish()
    except Exception as exc:
        writer.abort()
        if is_precondition_failed(exc):
            raise ObjectExists(f"s3://{bucket}/{key}") from None
        raise
    return result, version


def _head(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        return dict(s3.head_object(Bucket=bucket, Key=key))
    except Exception as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


# --------------------------------------------------------------------------- read back


def _data_key(kms: Any, header: envelope.Header, kms_key_arn: str) -> bytes:
    """The data key of ``header`` from KMS; refuses a blob KMS says is another key's."""
    response = kms.decrypt(CiphertextBlob=header.kms_wrapped_key, KeyId=kms_key_arn)
    if response.get("KeyId") != kms_key_arn:
        raise FileSetError(
            f"KMS decrypted the data key with {response.get('KeyId')}, not the plan's DR key "
            f"{kms_key_arn}"
        )
    return bytes(response["Plaintext"])


def _get(s3: Any, bucket: str, key: str, version_id: str | None) -> Any:
    kwargs = {"VersionId": version_id} if version_id else {}
    return s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"]


def verify_object(
    s3: Any,
    kms: Any,
    *,
    bucket: str,
    key: str,
    kms_key_arn: str,
    version_id: str | None = None,
    expected_sha256: str | None = None,
    expected_file_id: str | None = None,
) -> envelope.DecryptResult:
    """Authenticate every byte of the envelope at ``key`` (KMS unwraps its data key) and hash
    its plaintext, keeping none of it. Raises :class:`FileSetError` or an
    :class:`~securedr.core.envelope.EnvelopeError` if anything does not match."""
    body = _get(s3, bucket, key, version_id)
    try:
        header = envelope.read_header(body)
        if expected_file_id is not None and header.file_id_hex != expected_file_id:
            raise FileSetError(
                f"object {key} holds file id {header.file_id_hex[:16]}..., expected "
                f"{expected_file_id[:16]}...: it is another file's envelope"
            )
        if header.kms_key_arn != kms_key_arn:
            raise FileSetError(
                f"object {key} is wrapped by KMS key {header.kms_key_arn}, not {kms_key_arn}"
            )
        return envelope.verify_stream(
            _Prepend(header.raw, body),  # type: ignore[arg-type]
            data_key=_data_key(kms, header, kms_key_arn),
            expected_sha256=expected_sha256,
            expected_file_id=expected_file_id,
        )
    finally:
        body.close()


class _Prepend:
    """Re-present bytes already consumed (the header) in front of the rest of a stream."""

    def __init__(self, head: bytes, rest: Any) -> None:
        self.head, self.rest = memoryview(head), rest

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0:
                data = bytes(self.head) + self.rest.read()
                self.head = memoryview(b"")
                return data
            data = bytes(self.head[:n])
            self.head = self.head[n:]
            return data
        return bytes(self.rest.read(n) if n >= 0 else self.rest.read())


# --------------------------------------------------------------------------- one file set


def backup_file_set(
    clients: ServiceClients,
    file_set: FileSet,
    plan: Plan,
    *,
    run_id: str,
    dr_key_arn: str,
    recovery_public_key: str,
    plan_dir: Path,
    log: logging.Logger = _LOG,
) -> FileSetResult:
    """Back up every file of ``file_set`` for ``run_id``; never raises for a file's problem.

    Each file becomes one envelope object (see the module docstring). A file an earlier try of
    this run already stored is verified by decrypting it and recorded as it is; a file that
    cannot be read, encrypted or stored is named in ``problems`` and the rest of the set still
    runs. Progress is logged every ``PROGRESS_SECONDS``. Raises only for what stops the whole
    set before any file (the source cannot be listed).
    """
    dr = plan.regions.dr
    s3, kms = clients.s3(dr), clients.kms(dr)
    bucket = plan.evidence_bucket
    result = FileSetResult.for_set(
        file_set, kms_key_arn=dr_key_arn, recovery_public_key=recovery_public_key
    )
    if file_set.is_s3:
        files = list_s3_files(clients.s3(str(file_set.region)), file_set.bucket, file_set.prefix)
    else:
        directory = file_set.directory(plan_dir)
        if not directory.is_dir():
            result.problems.append(f"source directory {directory} does not exist")
            return result
        files = list_local_files(directory)
    failures = 0
    done_bytes, last_log = 0, time.monotonic()
    for source in files:
        key = object_key(bucket.prefix, plan.name, run_id, file_set.name, source.path)
        try:
            backed_up = _backup_one(
                s3, kms, source, key, plan, dr_key_arn, recovery_public_key, result
            )
        except Exception as exc:  # one file's failure must not stop the others
            failures += 1
            if failures <= MAX_PROBLEMS:
                result.problems.append(f"{source.path}: {_describe(exc)}")
            log.error("File set %s: %s failed: %s", file_set.name, source.path, _describe(exc))
            continue
        result.files.append(backed_up)
        done_bytes += backed_up.size
        if time.monotonic() - last_log >= PROGRESS_SECONDS:
            last_log = time.monotonic()
            log.info(
                "File set %s: %d files (%d bytes) stored so far, %d failed.",
                file_set.name,
                len(result.files),
                done_bytes,
                failures,
            )
    if failures > MAX_PROBLEMS:
        result.problems.append(f"... and {failures - MAX_PROBLEMS} more files failed")
    log.info(
        "File set %s: %d files, %d bytes stored (%d found from an earlier try), %d failed.",
        file_set.name,
        len(result.files),
        done_bytes,
        result.reused,
        failures,
    )
    return result


def _backup_one(
    s3: Any,
    kms: Any,
    source: SourceFile,
    key: str,
    plan: Plan,
    dr_key_arn: str,
    recovery_public_key: str,
    result: FileSetResult,
) -> BackedUpFile:
    bucket = plan.evidence_bucket
    if _head(s3, bucket.name, key) is None:
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                with source.open() as stream:
                    encrypted, version = store_envelope(
                        s3,
                        kms,
                        stream,
                        bucket=bucket.name,
                        key=key,
                        kms_key_arn=dr_key_arn,
                        recovery_public_key=recovery_public_key,
                        lock_mode=bucket.object_lock_mode,
                        lock_days=bucket.object_lock_days,
                        size=source.size,
                    )
                return BackedUpFile.stored(source.path, key, version, encrypted)
            except ObjectExists:
                break  # another try stored it between our check and our write
            except WriteConflict:
                # S3 lost the upload to a concurrent operation: read and upload the file again.
                if attempt == CONFLICT_ATTEMPTS:
                    raise
                time.sleep(s3_writes.backoff(attempt))
    # Stored by an earlier try of this run: record what the object really holds.
    head = _head(s3, bucket.name, key) or {}
    version = head.get("VersionId")
    checked = verify_object(
        s3, kms, bucket=bucket.name, key=key, kms_key_arn=dr_key_arn, version_id=version
    )
    result.reused += 1
    return BackedUpFile.stored(source.path, key, version, checked)


def _describe(exc: BaseException) -> str:
    code = error_code(exc)
    text = str(exc) or type(exc).__name__
    return f"{code}: {text}"[:500] if code and code not in text else text[:500]


# --------------------------------------------------------------------------- restore


def restore_file(
    s3: Any,
    kms: Any,
    entry: Mapping[str, Any],
    target_dir: Path,
    *,
    bucket: str,
    kms_key_arn: str,
) -> tuple[Path, envelope.DecryptResult]:
    """Decrypt one manifest file entry into ``target_dir``/its path, all or nothing.

    Reads the exact object version the manifest names; refuses (``FileSetError``) an unsafe
    path, a header whose file id or KMS key is not the manifest's, before any KMS call; the
    output appears only after every chunk authenticated and the SHA-256 matched the manifest.
    """
    entry = check_file_entry(entry)
    destination = target_dir.joinpath(*safe_relative_path(str(entry["path"])).parts)
    body = _get(s3, bucket, str(entry["object_key"]), entry.get("version_id"))
    try:
        header = envelope.read_header(body)
        check_header(header, entry, kms_key_arn)
        destination.parent.mkdir(parents=True, exist_ok=True)
        result = envelope.decrypt_to_path(
            _Prepend(header.raw, body),  # type: ignore[arg-type]
            destination,
            data_key=_data_key(kms, header, kms_key_arn),
            expected_sha256=str(entry["sha256"]),
            expected_file_id=str(entry["file_id"]),
        )
    finally:
        body.close()
    return destination, result


# --------------------------------------------------------------------------- drills


@dataclass(frozen=True)
class FileCheck:
    """The verdict on one backed-up file: decrypted to a hash sink, nothing kept."""

    file_set: str
    path: str
    object_key: str
    verified: bool
    sha256_match: bool
    problems: list[str]
    plaintext_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_file_set_objects(
    clients: ServiceClients,
    file_sets: Sequence[Mapping[str, Any]],
    plan: Plan,
    *,
    dr_key_arn: str,
    names: Sequence[str] | None = None,
    log: logging.Logger = _LOG,
) -> list[FileCheck]:
    """Decrypt every file of the manifest's ``file_sets`` entries to a hash sink and check it.

    For the recovery drill: per file, the object version the manifest names is read, its data
    key unwrapped by KMS (under ``clients``' identity; the DR key ``dr_key_arn`` only), every
    chunk authenticated, and the file id and plaintext SHA-256 compared with the manifest. No
    plaintext is written anywhere. ``verified`` is true only if all of that passed;
    ``sha256_match`` says whether the plaintext hash matched (false also when decryption
    failed before the hash was known). Never raises for a file's problem: each is in its
    ``problems``. ``names`` limits the check to those file sets.
    """
    dr = plan.regions.dr
    s3, kms = clients.s3(dr), clients.kms(dr)
    bucket = plan.evidence_bucket.name
    checks: list[FileCheck] = []
    for file_set in file_sets:
        name = str(file_set.get("name"))
        if names is not None and name not in names:
            continue
        for raw in file_set.get("files") or []:
            path = str(raw.get("path", "?"))
            key = str(raw.get("object_key", "?"))
            try:
                entry = check_file_entry(raw)
                result = verify_object(
                    s3,
                    kms,
                    bucket=bucket,
                    key=key,
                    kms_key_arn=dr_key_arn,
                    version_id=entry.get("version_id"),
                    expected_file_id=str(entry["file_id"]),
                )
            except Exception as exc:
                checks.append(FileCheck(name, path, key, False, False, [_describe(exc)]))
                log.error("File set %s: %s did not verify: %s", name, path, _describe(exc))
                continue
            problems = []
            match = result.plaintext_sha256 == entry["sha256"]
            if not match:
                problems.append(
                    f"plaintext SHA-256 {result.plaintext_sha256} is not the manifest's "
                    f"{entry['sha256']}"
                )
            if result.plaintext_size != entry["size"]:
                problems.append(
                    f"plaintext size {result.plaintext_size} is not the manifest's {entry['size']}"
                )
            checks.append(
                FileCheck(name, path, key, not problems, match, problems, result.plaintext_size)
            )
    return checks
