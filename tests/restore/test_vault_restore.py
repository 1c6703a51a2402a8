"""dr_restore from the vault: the workload account is lost, the vault restores.

Every test starts from what a nightly with a vault leaves behind: recovery points, the vault
copies in the vault account (222222222222) under the vault CMK and locked, and the signed
manifest with its ``vault`` entries in the vault evidence bucket. The steps run in DAG order
through the harness (tests/restore/conftest.py), under the vault recovery role.
"""

from __future__ import annotations

import json

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException

from tests.iam_eval import recorded_requests
from tests.restore.conftest import Harness, make_backup
from tests.restore.vault import (
    DR,
    VAULT_ACCOUNT,
    client,
    lose_the_workload_account,
    make_vault_copy,
    recovery_sessions,
    vault_manifest,
)

VAULT = {"source": "vault"}


def _vault_audit(vault) -> list:
    from securedr.aws.audit_store import S3AuditTrail

    trail = S3AuditTrail(
        client("s3", VAULT_ACCOUNT),
        bucket=vault.bucket,
        evidence_prefix="securedr",
        plan=vault.plan.name,
    )
    return trail.read().entries


def test_the_vault_restores_the_estate_when_the_workload_account_is_lost(
    vault, vault_backup, estate
):
    plan = vault.plan
    lose_the_workload_account(plan, vault_backup, estate)

    with recorded_requests() as calls:
        report = Harness(params=VAULT).run_all()

    assert report["succeeded"] is True, report
    assert report["source"] == "vault"
    assert report["manifest"]["vault_account"] == VAULT_ACCOUNT
    assert report["manifest"]["url"].startswith(f"s3://{vault.bucket}/")
    # RTO measured; RPO from the source point's time (three hours before the run).
    assert report["rto_seconds"] is not None and report["rto_met"] is True
    # (the harness run started two minutes ago)
    assert 3 * 3600 - 300 <= report["rpo_seconds"] <= 3 * 3600 + 600
    by_source = {r["source_id"]: r for r in report["resources"]}
    assert set(by_source) == {p["source_id"] for p in vault_backup.points}
    for source_id, entry in vault.copies.items():
        restored = by_source[source_id]
        assert restored["problems"] == []
        assert restored["dr_snapshot_id"] == (
            entry.get("snapshot_id") or entry.get("db_snapshot_identifier")
        )
        assert restored["encrypted_under"] == vault.key_arn

    # The restored resources are in the vault account, under the vault CMK.
    volumes = client("ec2", VAULT_ACCOUNT).describe_volumes(
        Filters=[{"Name": "tag:securedr:role", "Values": ["restored"]}]
    )["Volumes"]
    assert {v["SnapshotId"] for v in volumes} == {
        e["snapshot_id"] for e in vault.copies.values() if e["kind"] == "ebs"
    }
    assert {v["KmsKeyId"] for v in volumes} == {vault.key_arn}
    databases = client("rds", VAULT_ACCOUNT).describe_db_instances()["DBInstances"]
    restored_dbs = [d for d in databases if d["DBInstanceIdentifier"].startswith("restored-")]
    assert len(restored_dbs) == sum(1 for e in vault.copies.values() if e["kind"] == "rds")
    assert all(d["PubliclyAccessible"] is False for d in restored_dbs)
    assert {d["DBSubnetGroup"]["DBSubnetGroupName"] for d in restored_dbs} == {vault.subnet_group}
    assert not boto3.client("ec2", region_name=DR).describe_volumes(
        Filters=[{"Name": "tag:securedr:role", "Values": ["restored"]}]
    )["Volumes"]

    # The recovery role made every call; the recovery connection's principal only assumed it;
    # the workload connection made none.
    sessions = recovery_sessions()
    assumed = [c for c in calls if (c.service, c.operation) == ("sts", "AssumeRole")]
    assert assumed and {c.access_key for c in assumed} == {vault.recovery_user_key}
    assert {c.params["RoleArn"] for c in assumed} == {vault.recovery_role_arn}
    work = [c for c in calls if (c.service, c.operation) != ("sts", "AssumeRole")]
    assert work
    assert {sessions.get(c.access_key) for c in work} == {vault.recovery_role_arn}, {
        (c.service, c.operation, c.access_key) for c in work if c.access_key not in sessions
    }

    # The audit trail of the run is in the vault evidence bucket, from request to confirmation.
    actions = [e.action for e in _vault_audit(vault)]
    for action in (
        "mfa.initiate",
        "restore.request",
        "mfa.approve",
        "restore.approve",
        "restore.retrieve",
        "restore.ebs",
        "restore.rds",
        "restore.confirm",
    ):
        assert action in actions, actions
    # The report is in the vault evidence bucket too.
    key = report["report_url"].split(f"s3://{vault.bucket}/", 1)[1]
    stored = json.loads(
        client("s3", VAULT_ACCOUNT).get_object(Bucket=vault.bucket, Key=key)["Body"].read()
    )
    assert stored["succeeded"] is True and stored["source"] == "vault"


def _refusal(harness: Harness) -> str:
    harness.initiate()
    harness.check_initiator()
    harness.check_approval(harness.approve("bob"))
    with pytest.raises(AirflowFailException) as failure:
        harness.retrieve()
    return str(failure.value)


def test_a_vault_copy_no_signed_manifest_lists_is_refused(vault, vault_backup):
    plan = vault.plan
    stray = make_vault_copy(vault, plan.name, vault_backup.point("ebs"), vault_backup.run_id)

    message = _refusal(Harness(params={**VAULT, "recovery_point": stray["snapshot_id"]}))

    assert "no signed manifest in the vault evidence bucket lists" in message
    assert stray["snapshot_id"] in message
    refused = [e for e in _vault_audit(vault) if e.outcome == "refused"]
    assert refused and refused[-1].action == "restore.retrieve"


def test_an_unlocked_vault_copy_is_refused(vault, estate, signing_keys):
    plan = vault.plan
    backup = make_backup(plan, estate, signing_keys[0])
    for point in backup.points:
        make_vault_copy(vault, plan.name, point, backup.run_id, lock=point["kind"] != "ebs")
    vault_manifest(backup, vault, signing_keys[0], plan)

    message = _refusal(Harness(params=VAULT))

    ebs_point = backup.point("ebs")
    assert f"ebs:{ebs_point['source_id']}" in message and "NOT locked" in message


def test_a_vault_copy_unlocked_during_its_cooling_off_is_refused(vault, vault_backup):
    ebs_copy = next(e for e in vault.copies.values() if e["kind"] == "ebs")
    client("ec2", VAULT_ACCOUNT).unlock_snapshot(SnapshotId=ebs_copy["snapshot_id"])

    message = _refusal(Harness(params=VAULT))

    assert ebs_copy["snapshot_id"] in message and "NOT locked" in message


def test_a_vault_copy_under_another_key_than_the_manifest_names_is_refused(
    vault, estate, signing_keys
):
    plan = vault.plan
    backup = make_backup(plan, estate, signing_keys[0])
    for point in backup.points:
        entry = make_vault_copy(vault, plan.name, point, backup.run_id, key_arn=vault.other_key_arn)
        entry["kms_key_arn"] = vault.key_arn  # the manifest names the vault key
    vault_manifest(backup, vault, signing_keys[0], plan)

    message = _refusal(Harness(params=VAULT))

    for point in backup.points:
        assert f"{point['kind']}:{point['source_id']}" in message
    assert f"encrypted under {vault.other_key_arn}, not the vault key {vault.key_arn}" in message


def test_a_forged_newer_version_of_the_vault_manifest_does_not_stop_the_restore(
    vault, vault_backup
):
    # Whoever holds the intake role may PutObject into the vault evidence bucket: a new
    # version over the manifest's key. Object Lock keeps the original, which is what is read.
    s3 = client("s3", VAULT_ACCOUNT)
    s3.put_object(Bucket=vault.bucket, Key=vault_backup.manifest_key, Body=b'{"forged": true}')

    harness = Harness(params=VAULT)
    harness.initiate()
    harness.check_initiator()
    harness.check_approval(harness.approve("bob"))
    retrieval = harness.retrieve()

    assert retrieval["manifest"]["key"] == vault_backup.manifest_key
    assert {p["dr_snapshot_id"] for p in retrieval["points"]} == {
        e.get("snapshot_id") or e.get("db_snapshot_identifier") for e in vault.copies.values()
    }


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("vault", "the plan has no vault section"),
        ("backup-account", "'backup-account' is not a restore source"),
    ],
)
def test_a_bad_source_is_refused_before_aws_is_touched(restore_plan, source, expected):
    harness = Harness(params={"source": source})
    with recorded_requests() as calls, pytest.raises(AirflowFailException) as failure:
        harness.initiate()
    assert "source:" in str(failure.value) and expected in str(failure.value)
    assert calls == []


def test_without_a_vault_the_restore_source_is_the_workload(restore_plan):
    initiation = Harness().initiate()
    assert initiation["request"]["source"] == "workload"


def test_with_a_vault_the_restore_source_is_the_vault_unless_asked(vault):
    assert Harness().initiate()["request"]["source"] == "vault"
    assert Harness(params={"source": "workload"}).initiate()["request"]["source"] == "workload"
