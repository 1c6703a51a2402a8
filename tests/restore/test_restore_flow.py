"""The steps after approval, in DAG order, against the sandbox AWS under the restore role."""

from __future__ import annotations

import json
import os
from datetime import datetime

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException

from tests.restore.conftest import EXTERNAL_ID, Harness, approval, audit_entries


def test_happy_path_restores_every_point_encrypted_private_and_reports(
    restore_plan, estate, backup
):
    h = Harness()
    report = h.run_all(approver="bob")

    assert report["succeeded"], report
    dr = restore_plan.regions.dr
    dr_key = estate.key_arns[dr]
    ec2 = boto3.client("ec2", region_name=dr)
    volumes = ec2.describe_volumes(Filters=[{"Name": "tag:securedr:role", "Values": ["restored"]}])[
        "Volumes"
    ]
    sources = {t["Value"] for v in volumes for t in v["Tags"] if t["Key"] == "securedr:source-id"}
    assert sources == {v for vols in estate.protected_volumes.values() for v in vols}
    for volume in volumes:
        assert volume["Encrypted"] is True
        assert volume["KmsKeyId"] == dr_key
        assert volume["AvailabilityZone"] == restore_plan.restore.availability_zone
    rds = boto3.client("rds", region_name=dr)
    (db,) = [d for d in rds.describe_db_instances()["DBInstances"]]
    assert db["DBInstanceIdentifier"].startswith("restored-orders-db-")
    assert db["StorageEncrypted"] and db["KmsKeyId"] == dr_key
    assert db["PubliclyAccessible"] is False
    assert db["DBSubnetGroup"]["DBSubnetGroupName"] == restore_plan.restore.db_subnet_group

    # RTO measured from the run start, RPO from the recovery points' age.
    assert 0 < report["rto_seconds"] < 600 and report["rto_met"] is True
    expected_rpo = h.context["dag_run"].start_date - datetime.fromisoformat(backup.created_at)
    assert report["rpo_seconds"] == pytest.approx(expected_rpo.total_seconds(), abs=1)
    assert report["rpo_met"] is True
    assert report["approver"] == "bob" and report["initiator"] == "alice"

    # Report in the evidence bucket (JSON + text), under Object Lock.
    s3 = boto3.client("s3", region_name=dr)
    key = report["report_url"].split("/", 3)[3]
    stored = json.loads(
        s3.get_object(Bucket=restore_plan.evidence_bucket.name, Key=key)["Body"].read()
    )
    assert stored["run_id"] == h.context["run_id"] and stored["succeeded"] is True
    head = s3.head_object(Bucket=restore_plan.evidence_bucket.name, Key=key[:-5] + ".txt")
    assert head["ObjectLockMode"] == restore_plan.evidence_bucket.object_lock_mode

    # The audit trail tells the whole story, with the report pointing at its head.
    entries = audit_entries(restore_plan)
    actions = [(e.action, e.outcome, e.actor) for e in entries]
    assert actions[:2] == [
        ("mfa.initiate", "succeeded", "alice"),
        ("restore.request", "started", "alice"),
    ]
    assert ("mfa.approve", "succeeded", "bob") in actions
    assert ("restore.approve", "succeeded", "bob") in actions
    assert ("restore.retrieve", "succeeded", "alice") in actions
    assert sum(1 for a in actions if a[:2] == ("restore.ebs", "started")) == len(volumes)
    assert ("restore.rds", "started", "alice") in actions
    assert ("restore.confirm", "succeeded", "alice") in actions
    assert ("restore.notify", "succeeded", "alice") in actions
    confirm = next(e for e in entries if e.action == "restore.confirm")
    assert report["audit_head"] == {"seq": confirm.seq, "hash": confirm.hash}


def test_retried_restore_tasks_create_nothing_twice(restore_plan, estate, backup):
    h = Harness()
    h.initiate()
    h.check_initiator()
    h.check_approval(approval("carol"))
    h.retrieve()
    first_ebs = h.restore("ebs")
    first_rds = h.restore("rds")
    # A retry of each task (worker lost after the AWS call, before the XCom was pushed).
    again_ebs = h.restore("ebs")
    again_rds = h.restore("rds")

    assert [r["resource_id"] for r in again_ebs] == [r["resource_id"] for r in first_ebs]
    assert [r["resource_id"] for r in again_rds] == [r["resource_id"] for r in first_rds]
    assert all(r["created"] for r in first_ebs + first_rds)
    assert not any(r["created"] for r in again_ebs + again_rds)
    dr = restore_plan.regions.dr
    volumes = boto3.client("ec2", region_name=dr).describe_volumes(
        Filters=[{"Name": "tag:securedr:role", "Values": ["restored"]}]
    )["Volumes"]
    assert len(volumes) == len(first_ebs)
    dbs = boto3.client("rds", region_name=dr).describe_db_instances()["DBInstances"]
    assert len(dbs) == 1
    h.wait()
    assert h.confirm()["succeeded"]


def test_db_name_taken_by_someone_else_is_refused_not_adopted(restore_plan, estate, backup):
    from securedr.core.restore import restored_db_identifier

    h = Harness()
    h.initiate()
    h.check_initiator()
    h.check_approval(approval("bob"))
    h.retrieve()
    squatter = restored_db_identifier("orders-db", h.context["run_id"])
    boto3.client("rds", region_name=restore_plan.regions.dr).create_db_instance(
        DBInstanceIdentifier=squatter,
        DBInstanceClass="db.t4g.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="x",
        MasterUserPassword="not-a-real-password",
    )
    with pytest.raises(AirflowFailException, match="not created by this restore run"):
        h.restore("rds")
    assert ("restore.rds", "refused") in [
        (e.action, e.outcome) for e in audit_entries(restore_plan)
    ]


def test_dry_run_checks_everything_and_creates_nothing(restore_plan, estate, backup):
    h = Harness(params={"dry_run": True})
    report = h.run_all()
    assert report["dry_run"] is True and report["succeeded"] is True
    assert all(r["resource_id"] is None for r in report["resources"])
    dr = restore_plan.regions.dr
    assert not boto3.client("ec2", region_name=dr).describe_volumes(
        Filters=[{"Name": "tag:securedr:role", "Values": ["restored"]}]
    )["Volumes"]
    assert not boto3.client("rds", region_name=dr).describe_db_instances()["DBInstances"]
    outcomes = {(e.action, e.outcome) for e in audit_entries(restore_plan)}
    assert ("restore.ebs", "skipped") in outcomes and ("restore.confirm", "skipped") in outcomes


def test_restore_runs_under_the_assumed_role_session(
    restore_plan, estate, backup, monkeypatch, api_calls
):
    """Every AWS call of the restore steps is made with the STS session named after the run."""
    from securedr.aws import sts

    sessions: list[dict] = []
    original = sts.assume_role

    class RecordingSts:
        def __init__(self, client):
            self.client = client

        def assume_role(self, **params):
            sessions.append(params)
            return self.client.assume_role(**params)

    monkeypatch.setattr(
        sts, "assume_role", lambda client, **kw: original(RecordingSts(client), **kw)
    )
    h = Harness()
    h.run_all()
    assert sessions, "no role was assumed"
    assert {s["RoleSessionName"] for s in sessions} == {sts.session_name(h.context["run_id"])}
    assert {s["RoleArn"] for s in sessions} == {restore_plan.restore.role_arn}
    assert {s["ExternalId"] for s in sessions} == {EXTERNAL_ID}
    assert all(900 <= s["DurationSeconds"] <= 3600 for s in sessions)
    base_key = os.environ["AWS_ACCESS_KEY_ID"]
    under_base = {(c.service, c.operation) for c in api_calls if c.access_key == base_key}
    assert under_base == {("sts", "AssumeRole")}, under_base
    assert len([c for c in api_calls if c.access_key != base_key]) > 20
