"""Retrieve: only signed, verified recovery points whose DR copies are still SecureDR's."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException

from securedr.core.signing import generate_signing_key, sign_document
from tests.restore.conftest import Harness, approval, audit_entries, make_backup


def _retrieve(params=None):
    h = Harness(params=params)
    h.initiate()
    h.check_initiator()
    h.check_approval(approval("bob"))
    return h, h.retrieve()


def _refused(restore_plan, says, params=None):
    h = Harness(params=params)
    h.initiate()
    h.check_initiator()
    h.check_approval(approval("bob"))
    with pytest.raises(AirflowFailException, match=says):
        h.retrieve()
    last = audit_entries(restore_plan)[-1]
    assert (last.action, last.outcome) == ("restore.retrieve", "refused")
    return last.details["reason"]


def _s3(plan):
    return boto3.client("s3", region_name=plan.regions.dr)


def _put_raw(plan, key, document):
    """What someone with s3:PutObject on the bucket can do (a new object version)."""
    _s3(plan).put_object(
        Bucket=plan.evidence_bucket.name, Key=key, Body=json.dumps(document).encode()
    )


# --------------------------------------------------------------------------- choosing


def test_latest_is_the_newest_manifest(restore_plan, estate, signing_keys):
    old = make_backup(
        restore_plan,
        estate,
        signing_keys[0],
        run_id="scheduled__2026-11-24T02:00:00+00:00",
        created_at=datetime.now(UTC) - timedelta(days=1),
    )
    new = make_backup(restore_plan, estate, signing_keys[0])
    _, result = _retrieve()
    assert result["manifest"]["key"] == new.manifest_key
    assert {p["dr_snapshot_id"] for p in result["points"]} == {
        p["dr_snapshot_id"] for p in new.points
    }
    # ... and an older point can be chosen by its run id, manifest key or DR copy id.
    _, by_run = _retrieve({"recovery_point": old.run_id})
    assert by_run["manifest"]["key"] == old.manifest_key
    _, by_key = _retrieve({"recovery_point": old.manifest_key})
    assert by_key["manifest"]["key"] == old.manifest_key
    snap = old.point("ebs")["dr_snapshot_id"]
    _, by_snapshot = _retrieve({"recovery_point": snap, "resources": ["all"]})
    assert [p["dr_snapshot_id"] for p in by_snapshot["points"]] == [snap]


def test_resources_narrow_the_points(restore_plan, backup):
    _, result = _retrieve({"resources": ["orders-db"]})
    assert [(p["kind"], p["source_id"]) for p in result["points"]] == [("rds", "orders-db")]


def test_unknown_resource_is_refused_naming_what_the_manifest_holds(restore_plan, backup):
    reason = _refused(restore_plan, "has no recovery point for", {"resources": ["nope-db"]})
    assert "orders-db" in reason


def test_no_manifest_at_all_is_refused(restore_plan, signing_keys):
    _refused(restore_plan, "holds no manifest")


# --------------------------------------------------------------------------- manifest trust


def test_tampered_manifest_is_refused(restore_plan, backup):
    document = json.loads(json.dumps(backup.document))
    document["payload"]["recovery_points"][0]["dr_snapshot_id"] = "snap-0bad0bad0bad0bad0"
    _put_raw(restore_plan, backup.manifest_key, document)
    reason = _refused(restore_plan, "cannot be trusted")
    assert "signature does not verify" in reason


def test_unsigned_manifest_is_refused(restore_plan, backup):
    _put_raw(restore_plan, backup.manifest_key, {"payload": backup.document["payload"]})
    _refused(restore_plan, "cannot be trusted")


def test_manifest_signed_by_an_untrusted_key_is_refused(restore_plan, backup):
    attacker, _ = generate_signing_key()
    _put_raw(restore_plan, backup.manifest_key, sign_document(backup.document["payload"], attacker))
    _refused(restore_plan, "not among the trusted keys")


def test_old_manifest_replayed_as_latest_is_refused(restore_plan, backup):
    newer = backup.manifest_key.replace(backup.manifest_key.rsplit("/", 1)[1][:8], "29991231")
    _put_raw(restore_plan, newer, backup.document)
    _refused(restore_plan, "copied or renamed")


# --------------------------------------------------------------------------- DR copy checks


def test_point_not_verified_by_its_nightly_run_is_refused(restore_plan, estate, signing_keys):
    make_backup(restore_plan, estate, signing_keys[0], verified=False)
    _refused(restore_plan, "not verified by their nightly run")


def test_dr_copy_under_another_key_is_refused(restore_plan, estate, signing_keys):
    other = boto3.client("kms", region_name=restore_plan.regions.dr).create_key()["KeyMetadata"]
    make_backup(restore_plan, estate, signing_keys[0], dr_key_arn=other["Arn"])
    reason = _refused(restore_plan, "unfit to restore from")
    assert f"encrypted under {other['Arn']}, not the plan's DR key" in reason


def test_snapshot_securedr_did_not_create_is_refused(restore_plan, backup):
    snap = backup.point("ebs")["dr_snapshot_id"]
    boto3.client("ec2", region_name=restore_plan.regions.dr).delete_tags(
        Resources=[snap],
        Tags=[{"Key": "securedr:managed"}, {"Key": "securedr:run-id"}],
    )
    reason = _refused(restore_plan, "unfit to restore from")
    assert "lineage tags missing: securedr:managed, securedr:run-id" in reason


def test_copy_tagged_for_another_run_is_refused(restore_plan, backup):
    snap = backup.point("ebs")["dr_snapshot_id"]
    boto3.client("ec2", region_name=restore_plan.regions.dr).create_tags(
        Resources=[snap], Tags=[{"Key": "securedr:run-id", "Value": "manual__evil"}]
    )
    _refused(restore_plan, "tagged as made by run manual__evil")


def test_shared_copy_is_refused(restore_plan, backup):
    snap = backup.point("ebs")["dr_snapshot_id"]
    boto3.client("ec2", region_name=restore_plan.regions.dr).modify_snapshot_attribute(
        SnapshotId=snap,
        Attribute="createVolumePermission",
        OperationType="add",
        UserIds=["111122223333"],
    )
    _refused(restore_plan, "shared with 111122223333")


def test_deleted_copy_is_refused(restore_plan, backup):
    identifier = backup.point("rds")["dr_snapshot_id"]
    boto3.client("rds", region_name=restore_plan.regions.dr).delete_db_snapshot(
        DBSnapshotIdentifier=identifier
    )
    _refused(restore_plan, "the DR copy does not exist")


def test_nothing_is_restored_after_a_refusal(restore_plan, backup):
    """The refusal fails retrieve; the restore tasks never run (their input is missing)."""
    _put_raw(restore_plan, backup.manifest_key, {"payload": {}})
    _refused(restore_plan, "cannot be trusted")
    dr = restore_plan.regions.dr
    assert not boto3.client("ec2", region_name=dr).describe_volumes(
        Filters=[{"Name": "tag:securedr:role", "Values": ["restored"]}]
    )["Volumes"]
