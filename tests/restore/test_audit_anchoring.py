"""Runs anchor the audit trail's head when they end, and 'latest' cannot be silently rolled back
by hiding the newest manifest behind a delete marker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException

from securedr.aws.audit_store import S3AuditTrail
from securedr.core.restore import hidden_newer_manifests
from tests.restore.conftest import Harness, approval, audit_entries, make_backup


def _trail(plan) -> S3AuditTrail:
    return S3AuditTrail(
        boto3.client("s3", region_name=plan.regions.dr),
        bucket=plan.evidence_bucket.name,
        evidence_prefix=plan.evidence_bucket.prefix,
        plan=plan.name,
    )


def test_a_restore_anchors_the_head_after_its_last_entry(
    restore_plan, estate, backup, signing_keys
):
    report = Harness().run_all(approver="bob")
    entries = audit_entries(restore_plan)
    assert entries[-1].action == "restore.notify"
    trail = _trail(restore_plan)
    anchor = trail.anchors([signing_keys[1]]).newest
    assert anchor is not None and anchor.head == (entries[-1].seq, entries[-1].hash)
    # The report's head is recorded before the notification; the anchor is not fooled by
    # hiding what came after it.
    assert report["audit_head"]["seq"] < anchor.seq
    s3 = boto3.client("s3", region_name=restore_plan.regions.dr)
    s3.delete_object(Bucket=restore_plan.evidence_bucket.name, Key=trail.keys()[-1])
    verdict = trail.verify([signing_keys[1]], expected_head=tuple(report["audit_head"].values()))
    assert not verdict.ok
    assert verdict.reason == verdict.findings[0]
    assert verdict.reason.startswith(f"entry {anchor.seq} is hidden by a delete marker")


def test_a_refusal_anchors_the_head_after_the_refusal(restore_plan, estate, backup, signing_keys):
    h = Harness(params={"recovery_point": "snap-0123456789abcdef0"})
    h.initiate()
    h.check_initiator()
    h.check_approval(approval("bob"))
    with pytest.raises(AirflowFailException, match="no signed manifest lists"):
        h.retrieve()
    refusal = audit_entries(restore_plan)[-1]
    assert (refusal.action, refusal.outcome) == ("restore.retrieve", "refused")
    anchor = _trail(restore_plan).anchors([signing_keys[1]]).newest
    assert anchor.head == (refusal.seq, refusal.hash)


def test_latest_is_refused_when_the_newest_manifest_is_hidden(
    restore_plan, estate, backup, signing_keys
):
    newer = make_backup(
        restore_plan,
        estate,
        signing_keys[0],
        run_id="scheduled__2026-11-26T02:00:00+00:00",
        created_at=datetime.now(UTC) - timedelta(hours=1),
    )
    assert newer.manifest_key > backup.manifest_key
    s3 = boto3.client("s3", region_name=restore_plan.regions.dr)
    s3.delete_object(Bucket=restore_plan.evidence_bucket.name, Key=newer.manifest_key)
    h = Harness()
    h.initiate()
    with pytest.raises(AirflowFailException) as refused:
        h.retrieve()
    message = str(refused.value)
    assert f"the newest manifest {newer.manifest_key} is hidden by a delete marker" in message
    assert f"would silently restore the older manifest {backup.manifest_key}" in message
    refusal = audit_entries(restore_plan)[-1]
    assert (refusal.action, refusal.outcome) == ("restore.retrieve", "refused")
    # Naming the older point explicitly is still possible.
    explicit = Harness(params={"recovery_point": backup.run_id})
    explicit.initiate()
    assert explicit.retrieve()["manifest"]["run_id"] == backup.run_id


def test_hidden_newer_manifests_are_only_those_newer_than_every_visible_one() -> None:
    visible = ["p/manifests/demo/20261125T020000Z-a.json", "p/manifests/demo/20261127T0200Z-c.json"]
    hidden = [
        "p/manifests/demo/20261126T020000Z-b.json",  # older than the newest visible: not here
        "p/manifests/demo/20261128T020000Z-d.json",
        "p/manifests/other/20261129T020000Z-e.json",  # another plan
        "p/manifests/demo/notes.txt",
    ]
    assert hidden_newer_manifests(visible, hidden, "demo") == [
        "p/manifests/demo/20261128T020000Z-d.json"
    ]
    assert hidden_newer_manifests([], hidden[:1], "demo") == hidden[:1]
