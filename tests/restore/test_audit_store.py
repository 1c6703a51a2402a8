"""The audit trail in S3: appends chain, races do not fork, tampering is found by audit-verify."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import boto3
import pytest

from securedr.aws.audit_store import S3AuditTrail
from securedr.cli import main as securedr_cli
from securedr.core.audit import entry_from_json, entry_to_json
from tests.restore.conftest import evidence_store


@pytest.fixture
def trail(estate, plan, signing_keys):
    store = evidence_store(plan, estate.key_arns[plan.regions.dr])
    return S3AuditTrail.for_evidence(store, plan.name)


def _append(trail, signing_keys, n, start=0):
    return [
        trail.append(
            actor="alice",
            action="restore.ebs",
            resource=f"vol-{i:04d}",
            outcome="started",
            details={"i": i},
            run_id="manual__test",
            private_key_pem=signing_keys[0],
        )
        for i in range(start, start + n)
    ]


def _verify_cli(capsys) -> tuple[int, str]:
    code = securedr_cli(["audit-verify"])
    return code, capsys.readouterr().out


def test_entries_are_one_locked_encrypted_object_each(trail, plan, estate, signing_keys):
    entries = _append(trail, signing_keys, 3)
    assert [e.seq for e in entries] == [0, 1, 2]
    assert entries[1].prev_hash == entries[0].hash
    keys = trail.keys()
    assert keys == [f"securedr/audit/{plan.name}/{i:012d}.json" for i in range(3)]
    head = boto3.client("s3", region_name=plan.regions.dr).head_object(
        Bucket=plan.evidence_bucket.name, Key=keys[0]
    )
    assert head["ObjectLockMode"] == plan.evidence_bucket.object_lock_mode
    assert head["SSEKMSKeyId"] == estate.key_arns[plan.regions.dr]
    assert trail.verify([signing_keys[1]]).ok


def test_concurrent_writers_never_fork_the_chain(trail, signing_keys):
    errors = []

    def writer(w):
        try:
            _append(trail, signing_keys, 5, start=w * 100)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = trail.verify([signing_keys[1]])
    assert report.ok and report.entries_checked == 20, report


def test_append_after_a_lost_race_takes_the_next_seq(trail, signing_keys, monkeypatch):
    _append(trail, signing_keys, 2)
    real_head = trail.head
    stale = real_head()
    calls = {"n": 0}

    def stale_once():
        calls["n"] += 1
        # First attempt sees an old head (another writer appended since).
        return trail._load(trail.keys()[0]) if calls["n"] == 1 else real_head()

    monkeypatch.setattr(trail, "head", stale_once)
    entry = _append(trail, signing_keys, 1, start=9)[0]
    assert entry.seq == stale.seq + 1 and calls["n"] == 2
    assert trail.verify([signing_keys[1]]).ok


def test_audit_verify_cli_ok(trail, signing_keys, capsys):
    _append(trail, signing_keys, 3)
    code, out = _verify_cli(capsys)
    assert code == 0, out
    assert "Audit trail intact: 3 entries verified" in out


def _raw(plan):
    return boto3.client("s3", region_name=plan.regions.dr), plan.evidence_bucket.name


def test_deleted_entry_is_found(trail, plan, signing_keys, capsys):
    _append(trail, signing_keys, 5)
    s3, bucket = _raw(plan)
    s3.delete_object(Bucket=bucket, Key=trail.keys()[2])  # a delete marker hides it
    code, out = _verify_cli(capsys)
    assert code == 1
    assert "TAMPERED WITH (1 finding(s)): entry 2 is hidden by a delete marker" in out
    # Read by versions, the hidden entry is still checked: the chain itself is whole.
    assert "The hash chain itself verifies (5 entries" in out


def test_edited_entry_is_found(trail, plan, signing_keys, capsys):
    _append(trail, signing_keys, 5)
    s3, bucket = _raw(plan)
    key = trail.keys()[3]
    entry = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    entry["outcome"] = "succeeded"
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(entry).encode())  # a new version
    code, out = _verify_cli(capsys)
    assert code == 1
    assert "entry 3 was rewritten: 2 stored versions of a write-once object" in out


def test_reordered_entries_are_found(trail, plan, signing_keys, capsys):
    _append(trail, signing_keys, 5)
    s3, bucket = _raw(plan)
    k1, k2 = trail.keys()[1:3]
    b1 = s3.get_object(Bucket=bucket, Key=k1)["Body"].read()
    b2 = s3.get_object(Bucket=bucket, Key=k2)["Body"].read()
    s3.put_object(Bucket=bucket, Key=k1, Body=b2)
    s3.put_object(Bucket=bucket, Key=k2, Body=b1)
    code, out = _verify_cli(capsys)
    assert code == 1
    assert "entry 1 was rewritten" in out and "entry 2 was rewritten" in out


def test_entry_resigned_by_an_attacker_is_found(trail, plan, signing_keys, capsys):
    from securedr.core.audit import new_entry
    from securedr.core.signing import generate_signing_key

    entries = _append(trail, signing_keys, 3)
    forged = new_entry(
        entries[1],
        time=entries[2].time,
        actor="mallory",
        action="restore.ebs",
        resource="vol-evil",
        outcome="succeeded",
        run_id="manual__test",
        private_key_pem=generate_signing_key()[0],
    )
    s3, bucket = _raw(plan)
    s3.put_object(Bucket=bucket, Key=trail.keys()[2], Body=entry_to_json(forged))
    code, out = _verify_cli(capsys)
    assert code == 1 and "entry 2 was rewritten" in out


def test_garbage_object_is_a_break_not_a_crash(trail, plan, signing_keys, capsys):
    _append(trail, signing_keys, 2)
    s3, bucket = _raw(plan)
    s3.put_object(Bucket=bucket, Key=trail.keys()[1], Body=b"{not json")
    code, out = _verify_cli(capsys)
    assert code == 1 and "entry 1 was rewritten" in out
    # Writers keep appending after an unreadable head; the break stays reported.
    entry = _append(trail, signing_keys, 1, start=7)[0]
    assert entry.seq == 2
    assert entry_from_json(entry_to_json(entry)).seq == 2
    assert _verify_cli(capsys)[0] == 1


def test_hidden_newest_entry_is_named_even_against_an_earlier_head(
    trail, plan, signing_keys, capsys
):
    # The restore report records the head before the run's last entry (the notification).
    entries = _append(trail, signing_keys, 4)
    s3, bucket = _raw(plan)
    s3.delete_object(Bucket=bucket, Key=trail.keys()[-1])
    code = securedr_cli(["audit-verify", "--expected-head", f"2:{entries[2].hash}"])
    out = capsys.readouterr().out
    assert code == 1
    assert "entry 3 is hidden by a delete marker" in out


def test_a_forged_or_edited_version_is_caught_by_the_chain_when_it_is_the_only_one(
    trail, plan, signing_keys, capsys
):
    # The only version of a key is what the chain checks: an edited body there is an edit.
    entries = _append(trail, signing_keys, 3)
    s3, bucket = _raw(plan)
    forged = json.loads(entry_to_json(entries[2]))
    forged["outcome"] = "succeeded"
    key = f"{trail.prefix}/{3:012d}.json"
    forged.update(seq=3, prev_hash=entries[2].hash)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(forged).encode())
    code, out = _verify_cli(capsys)
    assert code == 1 and "BROKEN at entry 3: content does not match its hash" in out


def test_head_reads_through_a_hidden_entry_so_appends_never_reuse_its_number(
    trail, plan, signing_keys
):
    _append(trail, signing_keys, 3)
    s3, bucket = _raw(plan)
    s3.delete_object(Bucket=bucket, Key=trail.keys()[-1])
    entry = _append(trail, signing_keys, 1, start=50)[0]
    assert entry.seq == 3
    report = trail.verify([signing_keys[1]])
    assert report.chain_intact and report.entries_checked == 4
    assert report.findings == (report.findings[0],) and "entry 2 is hidden" in report.reason


def test_anchor_is_signed_written_once_and_checked(trail, plan, signing_keys, estate, capsys):
    entries = _append(trail, signing_keys, 3)
    anchor = trail.anchor(run_id="manual__test", private_key_pem=signing_keys[0])
    assert anchor.head == (2, entries[2].hash)
    assert anchor.key == f"securedr/audit-anchors/{plan.name}/{2:012d}.json"
    s3, bucket = _raw(plan)
    head = s3.head_object(Bucket=bucket, Key=anchor.key)
    assert head["ObjectLockMode"] == plan.evidence_bucket.object_lock_mode
    assert head["SSEKMSKeyId"] == estate.key_arns[plan.regions.dr]
    # Anchoring the same head again (a retry) is a no-op, not an error or a second version.
    assert trail.anchor(run_id="manual__retry", private_key_pem=signing_keys[0]).seq == 2
    versions = s3.list_object_versions(Bucket=bucket, Prefix=anchor.key)["Versions"]
    assert len(versions) == 1
    code, out = _verify_cli(capsys)
    assert code == 0, out
    assert "Checked against the newest anchor: entry 2" in out
    assert trail.anchors([signing_keys[1]]).newest.run_id == "manual__test"


def test_entries_cut_after_the_anchor_are_named(trail, plan, signing_keys, estate, capsys):
    # Versions can be removed for good only by bypassing GOVERNANCE retention (or after it
    # lapsed); the anchor is what still names them then.
    store = evidence_store(plan, estate.key_arns[plan.regions.dr])
    store.lock_mode = "GOVERNANCE"
    governed = S3AuditTrail.for_evidence(store, plan.name)
    _append(governed, signing_keys, 5)
    governed.anchor(run_id="manual__test", private_key_pem=signing_keys[0])
    s3, bucket = _raw(plan)
    for key in governed.keys()[3:]:
        for version in s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]:
            s3.delete_object(
                Bucket=bucket,
                Key=key,
                VersionId=version["VersionId"],
                BypassGovernanceRetention=True,
            )
    code, out = _verify_cli(capsys)
    assert code == 1
    assert "BROKEN at entry 3: missing" in out and "entries 3..4 are gone" in out


def test_a_forged_anchor_is_named_and_ignored(trail, plan, signing_keys, capsys):
    from securedr.core.anchor import anchor_document
    from securedr.core.signing import canonical_json, generate_signing_key

    _append(trail, signing_keys, 2)
    key, document = anchor_document(
        plan=plan.name,
        seq=9,
        hash_="b" * 64,
        run_id="mallory",
        anchored_at=datetime.now(UTC),
        private_key_pem=generate_signing_key()[0],
        evidence_prefix=plan.evidence_bucket.prefix,
    )
    s3, bucket = _raw(plan)
    s3.put_object(Bucket=bucket, Key=key, Body=canonical_json(document))
    code, out = _verify_cli(capsys)
    assert code == 1
    assert f"anchor {key} cannot be trusted" in out
    assert "No signed anchor of the trail's head was found" in out


def test_a_hidden_anchor_is_named_and_still_used(trail, plan, signing_keys, capsys):
    _append(trail, signing_keys, 2)
    anchor = trail.anchor(run_id="manual__test", private_key_pem=signing_keys[0])
    s3, bucket = _raw(plan)
    s3.delete_object(Bucket=bucket, Key=anchor.key)
    code, out = _verify_cli(capsys)
    assert code == 1
    assert "anchor of entry 1 is hidden by a delete marker" in out
    assert "Checked against the newest anchor: entry 1" in out


def test_cli_reports_what_it_could_not_check(plan, capsys, tmp_path):
    code = securedr_cli(["audit-verify", "--trusted-keys", str(tmp_path / "missing.pem")])
    assert code == 2
    assert "cannot read the trusted keys" in capsys.readouterr().err


def test_anchor_retries_a_conditional_write_conflict(trail, plan, signing_keys):
    import sandbox.realism as realism

    # Every 2nd conditional write answers 409 ConditionalRequestConflict and writes nothing:
    # the append is the 1st, the anchor's first try the 2nd.
    with realism.section("s3", conflict_every=2):
        _append(trail, signing_keys, 1)
        anchor = trail.anchor(run_id="manual__test", private_key_pem=signing_keys[0])
    s3, bucket = _raw(plan)
    assert s3.head_object(Bucket=bucket, Key=anchor.key)["ContentLength"] > 0
    assert trail.anchors([signing_keys[1]]).newest.head == anchor.head
