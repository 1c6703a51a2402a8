"""Write-once S3 objects on S3 as it really answers: 409 is retried, only 412 means "exists",
and a file's parts grow with it so it fits S3's 10,000-part limit."""

from __future__ import annotations

import os

import boto3
import pytest

from sandbox import realism
from securedr.aws import filesets as adapter
from securedr.aws import s3_writes
from securedr.aws.evidence import EvidenceExists, EvidenceStore
from securedr.core.multipart import ObjectTooLarge
from securedr.core.plan import plan_dir
from tests.filesets.conftest import run_backup

# https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
CONFLICT = (
    "ConditionalRequestConflict",
    "A conflicting conditional operation is currently in progress against this resource. "
    "Try again.",
    409,
)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(s3_writes.time, "sleep", lambda _s: None)
    monkeypatch.setattr(adapter.time, "sleep", lambda _s: None)


def _conditional(call: realism.Call) -> bool:
    headers = {k.lower(): v for k, v in call.params.items()}
    return call.service == "s3" and headers.get("if-none-match") == "*"


def _conflicts(count: int, *, after_writing: bool = False, actions=None) -> list[str]:
    """The first ``count`` conditional writes answer 409; with ``after_writing`` the object is
    stored first (the write landed, the answer was lost to the conflict)."""
    seen: list[str] = []

    def hit(call: realism.Call) -> bool:
        if not _conditional(call) or (actions and call.action not in actions):
            return False
        seen.append(call.action)
        return len(seen) <= count

    if after_writing:

        def after(call, result):
            if hit(call):
                return realism.error_response(call.responder, realism.AWSError(*CONFLICT))
            return result

        realism.behaviour("test-409", after=after)
    else:

        def before(call):
            if hit(call):
                raise realism.AWSError(*CONFLICT)

        realism.behaviour("test-409", before=before)
    realism.configure("test-409")
    return seen


def _store(plan, estate) -> EvidenceStore:
    bucket = plan.evidence_bucket
    return EvidenceStore(
        boto3.client("s3", region_name=plan.regions.dr),
        bucket=bucket.name,
        prefix=bucket.prefix,
        kms_key_arn=estate.key_arns[plan.regions.dr],
        lock_mode=bucket.object_lock_mode,
        lock_days=1,
    )


def test_evidence_write_retries_a_409_and_stores_the_object(plan, estate):
    store = _store(plan, estate)
    seen = _conflicts(2)
    key = store.key("reports", "test", "a.json")
    assert store.put(key, b'{"a": 1}') == store.url(key)
    assert len(seen) == 3
    assert store.get(key) == b'{"a": 1}'


def test_evidence_write_whose_first_attempt_landed_is_confirmed(plan, estate):
    store = _store(plan, estate)
    seen = _conflicts(1, after_writing=True)
    key = store.key("reports", "test", "b.json")
    store.put(key, b'{"b": 1}')  # the retry meets a 412 and finds its own bytes
    assert len(seen) == 2 and store.get(key) == b'{"b": 1}'


def test_only_412_means_already_written(plan, estate):
    store = _store(plan, estate)
    key = store.key("reports", "test", "c.json")
    store.put(key, b"first")
    with pytest.raises(EvidenceExists):
        store.put(key, b"second")
    assert store.get(key) == b"first"


def test_endless_409s_are_not_taken_for_an_existing_object(plan, estate):
    store = _store(plan, estate)
    _conflicts(1000)
    with pytest.raises(s3_writes.WriteConflict, match="409"):
        store.put(store.key("reports", "test", "d.json"), b"x")


def test_audit_append_survives_a_409(plan, estate):
    from securedr.aws.audit_store import S3AuditTrail
    from securedr.core.signing import generate_signing_key

    private, _ = generate_signing_key()
    trail = S3AuditTrail.for_evidence(_store(plan, estate), plan.name)
    _conflicts(1)
    entry = trail.append(
        actor="alice",
        action="restore.request",
        resource="x",
        outcome="ok",
        run_id="manual__1",
        private_key_pem=private,
    )
    assert entry.seq == 0 and trail.head().seq == 0


def _local_set(plan):
    return next(f for f in plan.file_sets.sets if not f.is_s3).directory(plan_dir())


def test_a_whole_file_set_backup_under_frequent_409s(estate, plan, monkeypatch):
    """The sandbox's s3 section: every 2nd conditional write answers 409; every file is still
    stored once, and the evidence writes after it too."""
    monkeypatch.setattr(adapter, "PART_SIZE", 5 << 20)
    (_local_set(plan) / "big.dump").write_bytes(os.urandom(11 << 20))
    realism.configure("s3", conflict_every=2)
    backup = run_backup()
    for entry in backup.entries:
        assert not entry["problems"], entry["problems"]
    assert backup.file("db-dumps", "big.dump")["version_id"]
    store = _store(plan, estate)
    for n in range(3):
        key = store.key("reports", "test", f"{n}.json")
        store.put(key, b"{}")
        assert store.get(key) == b"{}"


def test_file_set_small_file_retries_a_409(estate, plan):
    seen = _conflicts(2, actions={"PutObject"})
    backup = run_backup()
    entry = backup.entry("db-dumps")
    assert not entry["problems"], entry["problems"]
    assert len(seen) > 2


def test_file_set_multipart_409_starts_the_upload_again(estate, plan, monkeypatch, tmp_path):
    monkeypatch.setattr(adapter, "PART_SIZE", 5 << 20)
    big = os.urandom(1 << 20) * 11
    (_local_set(plan) / "big.dump").write_bytes(big)
    seen = _conflicts(1, actions={"CompleteMultipartUpload"})
    backup = run_backup()
    entry = backup.file("db-dumps", "big.dump")
    assert seen.count("CompleteMultipartUpload") == 2
    s3 = boto3.client("s3", region_name=plan.regions.dr)
    destination, _ = adapter.restore_file(
        s3,
        boto3.client("kms", region_name=plan.regions.dr),
        entry,
        tmp_path,
        bucket=plan.evidence_bucket.name,
        kms_key_arn=estate.key_arns[plan.regions.dr],
    )
    assert destination.read_bytes() == big
    uploads = s3.list_multipart_uploads(Bucket=plan.evidence_bucket.name).get("Uploads", [])
    assert uploads == [], "the conflicted upload was left open"


def test_parts_grow_so_the_file_fits_the_part_limit(estate, plan, monkeypatch):
    """S3 scaled down: 3 parts at most, 5 MiB minimum. A 20 MiB file needs 7 MiB parts."""
    monkeypatch.setattr(adapter, "PART_SIZE", 5 << 20)
    monkeypatch.setattr(adapter, "MAX_PARTS", 3)

    realism.configure("s3", max_parts=3)  # the sandbox refuses part numbers above 3
    (_local_set(plan) / "big.dump").write_bytes(os.urandom(20 << 20))
    backup = run_backup()
    assert not backup.entry("db-dumps")["problems"], backup.entry("db-dumps")["problems"]
    entry = backup.file("db-dumps", "big.dump")
    head = boto3.client("s3", region_name=plan.regions.dr).head_object(
        Bucket=plan.evidence_bucket.name,
        Key=entry["object_key"],
        VersionId=entry["version_id"],
        PartNumber=1,
    )
    assert head["PartsCount"] == 3


def test_a_file_over_5_tib_is_refused_before_anything_is_written():
    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"AWS was called: {name}")

    with pytest.raises(ObjectTooLarge, match="5 TiB object limit"):
        adapter.store_envelope(
            Untouchable(),
            Untouchable(),
            None,  # type: ignore[arg-type]
            bucket="b",
            key="k",
            kms_key_arn="arn:aws:kms:us-west-2:123456789012:key/x",
            recovery_public_key="securedr-recovery-pub-x",
            lock_mode="COMPLIANCE",
            lock_days=1,
            size=(5 << 40) + 1,
        )
