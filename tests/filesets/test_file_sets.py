"""File sets end to end on the sandbox AWS: backup, retry, restore, offline recovery, refusal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from sandbox.estate import DEMO_DUMP, DEMO_FILES
from securedr.aws import filesets as adapter
from securedr.core.envelope import ChecksumMismatchError, ChunkAuthenticationError
from securedr.core.filesets import FileSetError
from securedr.core.plan import plan_dir
from tests.conftest import RECOVERY_PRIVATE_KEY, REPO
from tests.filesets.conftest import envelope_objects, run_backup


def _clients(plan):
    dr = plan.regions.dr
    return boto3.client("s3", region_name=dr), boto3.client("kms", region_name=dr)


def _restore(plan, estate, entry, target: Path):
    s3, kms = _clients(plan)
    return adapter.restore_file(
        s3,
        kms,
        entry,
        target,
        bucket=plan.evidence_bucket.name,
        kms_key_arn=estate.key_arns[plan.regions.dr],
    )


def test_backup_records_every_file_and_restores_its_exact_bytes_with_kms(
    estate, plan, file_set_backup, tmp_path
):
    app = file_set_backup.entry("app-config")
    assert app["succeeded"] and app["problems"] == []
    assert sorted(f["path"] for f in app["files"]) == sorted(DEMO_FILES)
    dumps = file_set_backup.entry("db-dumps")
    assert sorted(f["path"] for f in dumps["files"]) == [
        "daily/orders-db.schema.sql",
        "orders-db.sql",
    ]
    for name, path, expected in [
        *(("app-config", p, body) for p, body in DEMO_FILES.items()),
        ("db-dumps", "orders-db.sql", DEMO_DUMP),
    ]:
        entry = file_set_backup.file(name, path)
        assert entry["size"] == len(expected)
        destination, result = _restore(plan, estate, entry, tmp_path / name)
        assert destination == tmp_path / name / path
        assert destination.read_bytes() == expected
        assert result.plaintext_sha256 == entry["sha256"] and result.file_id == entry["file_id"]


def test_every_object_is_sse_kms_under_the_dr_key_and_object_locked(estate, plan, file_set_backup):
    s3, _ = _clients(plan)
    dr_key = estate.key_arns[plan.regions.dr]
    entries = [f for e in file_set_backup.entries for f in e["files"]]
    assert len(entries) == 5
    for entry in entries:
        head = s3.head_object(
            Bucket=plan.evidence_bucket.name, Key=entry["object_key"], VersionId=entry["version_id"]
        )
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == dr_key
        assert head["ObjectLockMode"] == plan.evidence_bucket.object_lock_mode
        assert head["ObjectLockRetainUntilDate"]
        # The file name is recorded only in the signed manifest, never in the key.
        assert Path(entry["path"]).name not in entry["object_key"]


def test_a_retried_task_stores_no_second_copy_and_records_the_same_files(
    estate, plan, file_set_backup
):
    before = envelope_objects(plan)
    again = run_backup()
    assert envelope_objects(plan) == before
    for first, second in zip(file_set_backup.entries, again.entries, strict=True):
        assert second["reused"] == second["file_count"] == first["file_count"]
        assert second["files"] == first["files"]
    # A new run is a new set of objects.
    run_backup("scheduled__2026-11-27T02:00:00+00:00")
    assert len(envelope_objects(plan)) == 2 * len(before)


def test_the_offline_recovery_key_alone_recovers_a_file(estate, plan, file_set_backup, tmp_path):
    entry = file_set_backup.file("db-dumps", "orders-db.sql")
    s3, _ = _clients(plan)
    encrypted = tmp_path / "orders-db.sql.sdr"
    encrypted.write_bytes(
        s3.get_object(
            Bucket=plan.evidence_bucket.name, Key=entry["object_key"], VersionId=entry["version_id"]
        )["Body"].read()
    )
    out = tmp_path / "orders-db.sql"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # no AWS at all
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "securedr.cli",
            "recover-file",
            "--identity",
            str(RECOVERY_PRIVATE_KEY),
            "--in",
            str(encrypted),
            "--out",
            str(out),
            "--sha256",
            entry["sha256"],
            "--file-id",
            entry["file_id"],
        ],
        env={**env, "PYTHONPATH": f"{REPO / 'plugins'}{os.pathsep}{REPO}"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == DEMO_DUMP


def test_large_files_stream_through_a_multipart_upload(estate, plan, monkeypatch, tmp_path):
    monkeypatch.setattr(adapter, "PART_SIZE", 5 << 20)
    local = next(f for f in plan.file_sets.sets if not f.is_s3).directory(plan_dir())
    big = os.urandom(1 << 20) * 11  # 11 MiB: three parts
    (local / "big.dump").write_bytes(big)
    backup = run_backup()
    entry = backup.file("db-dumps", "big.dump")
    s3, _ = _clients(plan)
    head = s3.head_object(
        Bucket=plan.evidence_bucket.name,
        Key=entry["object_key"],
        VersionId=entry["version_id"],
        PartNumber=1,
    )
    assert head["PartsCount"] == 3
    head = s3.head_object(
        Bucket=plan.evidence_bucket.name, Key=entry["object_key"], VersionId=entry["version_id"]
    )
    assert head["ObjectLockMode"] == plan.evidence_bucket.object_lock_mode
    assert head["SSEKMSKeyId"] == estate.key_arns[plan.regions.dr]
    destination, _ = _restore(plan, estate, entry, tmp_path)
    assert destination.read_bytes() == big


def test_a_failing_file_set_is_named_and_the_others_are_still_backed_up(
    estate, plan, monkeypatch, tmp_path
):
    from securedr.core.report import nightly_report

    local = next(f for f in plan.file_sets.sets if not f.is_s3).directory(plan_dir())
    for path in sorted(local.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    local.rmdir()
    backup = run_backup()
    assert backup.entry("app-config")["succeeded"]
    assert backup.entry("app-config")["file_count"] == len(DEMO_FILES)
    dumps = backup.entry("db-dumps")
    assert not dumps["succeeded"] and "does not exist" in dumps["problems"][0]
    report = nightly_report(
        plan=plan.name,
        run_id=backup.run_id,
        started_at="2026-11-26T02:00:00+00:00",
        finished_at="2026-11-26T02:01:00+00:00",
        duration_seconds=60,
        verifications=[],
        manifest=None,
        retention=None,
        file_sets=backup.entries,
    )
    assert not report["succeeded"]
    assert report["failed_file_sets"][0].startswith("db-dumps: source directory")


def test_another_files_object_is_refused_before_kms_and_nothing_is_written(
    estate, plan, file_set_backup, tmp_path
):
    entry = file_set_backup.file("app-config", "app.yaml")
    other = file_set_backup.file("app-config", "feature-flags.json")
    swapped = {**entry, "object_key": other["object_key"], "version_id": other["version_id"]}
    with pytest.raises(FileSetError, match="another file's envelope"):
        _restore(plan, estate, swapped, tmp_path)
    assert list(tmp_path.rglob("*")) == []


def test_a_wrong_checksum_or_tampered_object_leaves_no_partial_output(
    estate, plan, file_set_backup, tmp_path
):
    s3, _ = _clients(plan)
    entry = file_set_backup.file("db-dumps", "orders-db.sql")
    with pytest.raises(ChecksumMismatchError):
        _restore(plan, estate, {**entry, "sha256": "0" * 64}, tmp_path)
    assert list(tmp_path.rglob("*")) == []

    body = bytearray(
        s3.get_object(
            Bucket=plan.evidence_bucket.name, Key=entry["object_key"], VersionId=entry["version_id"]
        )["Body"].read()
    )
    body[-100] ^= 1  # one bit in the last chunk: the first chunks did authenticate
    # Object Lock keeps the original version; a writer can only add a new version on top.
    tampered = s3.put_object(
        Bucket=plan.evidence_bucket.name,
        Key=entry["object_key"],
        Body=bytes(body),
        ChecksumAlgorithm="SHA256",
    )
    with pytest.raises(ChunkAuthenticationError):
        _restore(plan, estate, {**entry, "version_id": tampered["VersionId"]}, tmp_path)
    assert list(tmp_path.rglob("*")) == []
    # The manifest pins the version it signed, so the genuine bytes still restore.
    destination, _ = _restore(plan, estate, entry, tmp_path)
    assert destination.read_bytes() == DEMO_DUMP


def test_an_unsafe_path_in_a_manifest_is_refused(estate, plan, file_set_backup, tmp_path):
    entry = file_set_backup.file("app-config", "app.yaml")
    for path in ("../escape.yaml", "/etc/passwd", "a//b", "a/./b"):
        with pytest.raises(FileSetError, match="unsafe file path"):
            _restore(plan, estate, {**entry, "path": path}, tmp_path / "target")
    assert not (tmp_path / "escape.yaml").exists()


def test_drill_verification_decrypts_to_a_hash_sink_and_names_each_problem(
    estate, plan, file_set_backup
):
    from securedr.aws.clients import AwsClients

    dr_key = estate.key_arns[plan.regions.dr]
    checks = adapter.verify_file_set_objects(
        AwsClients(), file_set_backup.entries, plan, dr_key_arn=dr_key
    )
    assert len(checks) == 5 and all(c.verified and c.sha256_match for c in checks)
    entries = json.loads(json.dumps(file_set_backup.entries))
    files = entries[0]["files"]
    files[0]["sha256"] = "f" * 64
    files[1]["file_id"] = files[2]["file_id"]
    checks = adapter.verify_file_set_objects(
        AwsClients(), entries, plan, dr_key_arn=dr_key, names=[entries[0]["name"]]
    )
    assert len(checks) == 3
    assert not checks[0].verified and not checks[0].sha256_match
    assert "SHA-256" in checks[0].problems[0]
    assert not checks[1].verified and "another file" in checks[1].problems[0]
    assert checks[2].verified and checks[2].to_dict()["sha256_match"]
