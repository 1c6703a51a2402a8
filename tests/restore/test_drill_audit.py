"""A recovery drill anchors the audit trail's head after its verdict, and the next drill
re-verifies the trail by versions: a hidden entry fails it on AU-9."""

from __future__ import annotations

import boto3
import pytest

from securedr.aws.audit_store import S3AuditTrail
from tests.dagrun import run_dag
from tests.restore.conftest import audit_entries
from tests.restore.test_drill_dag import latest_record

pytestmark = pytest.mark.usefixtures("airflow_db")


def test_a_drill_anchors_its_verdict_and_a_hidden_entry_fails_the_next_drill(
    restore_plan, backup, signing_keys
):
    plan = restore_plan
    trail = S3AuditTrail(
        boto3.client("s3", region_name=plan.regions.dr),
        bucket=plan.evidence_bucket.name,
        evidence_prefix=plan.evidence_bucket.prefix,
        plan=plan.name,
    )
    first = run_dag("dr_recovery_drill")
    assert first.state == "success", first.states
    verdict = audit_entries(plan)[-1]
    assert verdict.action == "drill.report"
    anchor = trail.anchors([signing_keys[1]]).newest
    assert anchor is not None and anchor.head == (verdict.seq, verdict.hash)

    # Somebody hides the first drill's verdict behind a delete marker.
    s3 = boto3.client("s3", region_name=plan.regions.dr)
    s3.delete_object(Bucket=plan.evidence_bucket.name, Key=trail.keys()[verdict.seq])
    second = run_dag("dr_recovery_drill")
    assert second.state == "failed"
    assert second.states["report_drill"] == "failed"
    record = latest_record(plan)
    audit_check = next(c for c in record["checks"] if c["name"] == "audit-chain-intact")
    assert audit_check["passed"] is False
    assert next(c for c in record["controls"] if c["control"] == "AU-9")["status"] == "FAIL"
