"""The compromise simulation's attacker against the multi-account sandbox, without Airflow.

A vault holding a locked EBS copy, a DB snapshot copy and a COMPLIANCE-locked manifest; a
workload account holding snapshots, keys and evidence. The attacker (the workload's
administrator, and the vault intake role through the external id) tries everything: the
workload falls, the vault does not change - each vault call stopped by the shipped policies or
refused by AWS's own rules.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from sandbox import accounts, attacks
from sandbox.compromise import make_attacker

REPO = Path(__file__).resolve().parents[2]
VAULT_PLAN = REPO / "include" / "dr_plan.vault.yaml"
DR = "us-west-2"
EXTERNAL_ID = "attack-test-external-id"
RECOVERY_EXTERNAL_ID = "attack-test-recovery-external-id"


@pytest.fixture
def world(aws, monkeypatch, tmp_path):
    """The estate and the vault after a night: what the attacker finds."""
    from sandbox.estate import ensure_recovery_key, seed
    from securedr.core.plan import load_plan

    ensure_recovery_key(Path(tmp_path) / "keys")
    monkeypatch.setenv("SECUREDR_HOME", str(tmp_path))
    (Path(tmp_path) / "keys" / "trusted-signing-keys.pem").write_text("")
    plan = load_plan(VAULT_PLAN)
    estate = seed(plan, aws)
    vault = accounts.seed_vault(
        plan, aws, external_id=EXTERNAL_ID, recovery_external_id=RECOVERY_EXTERNAL_ID
    )
    source = plan.regions.sources[0]
    # Workload: a source snapshot, and a manifest in the evidence bucket.
    ec2 = boto3.client("ec2", region_name=source)
    volume = estate.protected_volumes[source][0]
    ec2.create_snapshot(VolumeId=volume)
    boto3.client("s3", region_name=DR).put_object(
        Bucket=plan.evidence_bucket.name,
        Key=f"{plan.evidence_bucket.prefix}/manifests/{plan.name}/night.json",
        Body=b"{}",
    )
    # Vault: a locked EBS copy under the vault key, a DB snapshot, a locked manifest.
    session = accounts.session(plan.vault.account_id, aws, region_name=DR)
    vec2 = session.client("ec2")
    key = plan.vault.kms_key(DR)
    vvol = vec2.create_volume(AvailabilityZone=f"{DR}a", Size=8, Encrypted=True, KmsKeyId=key)
    snap = vec2.create_snapshot(VolumeId=vvol["VolumeId"])["SnapshotId"]
    vec2.lock_snapshot(SnapshotId=snap, LockMode="compliance", CoolOffPeriod=1, LockDuration=15)
    vrds = session.client("rds")
    vrds.create_db_instance(
        DBInstanceIdentifier="vault-db",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="admin",
        MasterUserPassword="not-a-secret-0",
        StorageEncrypted=True,
        KmsKeyId=key,
    )
    vrds.create_db_snapshot(
        DBInstanceIdentifier="vault-db", DBSnapshotIdentifier="securedr-vault-orders"
    )
    session.client("s3").put_object(
        Bucket=plan.vault.evidence_bucket,
        Key=f"{plan.vault.evidence_prefix}/manifests/{plan.name}/night.json",
        Body=json.dumps({"signed": True}).encode(),
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=datetime.now(UTC) + timedelta(days=30),
    )
    auditor = attacks.Session(
        "vault auditor",
        plan.vault.account_id,
        f"arn:aws:iam::{plan.vault.account_id}:root",
        accounts.credentials(plan.vault.account_id, aws),
        aws,
    )
    return plan, vault, auditor


def test_the_workload_falls_and_the_vault_does_not_change(world, aws):
    plan, vault, auditor = world
    before = attacks.vault_inventory(plan, auditor)
    assert len(before["snapshots"]) == 1 and len(before["db_snapshots"]) == 1
    assert next(iter(before["snapshots"].values()))["lock"]["mode"] == "compliance-cooloff"

    attacker = make_attacker(
        plan,
        aws,
        workload_credentials={"aws_access_key_id": "testing", "aws_secret_access_key": "testing"},
        external_id=EXTERNAL_ID,
        recovery_external_id=RECOVERY_EXTERNAL_ID,
        workload_dr_key_arn=vault["workload_dr_key_arn"],
        vault_snapshots=list(before["snapshots"]),
    )
    outcomes = attacks.run_attacks(attacker, before)

    assert attacks.inventory_changes(before, attacks.vault_inventory(plan, auditor)) == []
    vault_calls = [o for o in outcomes if o.account == plan.vault.account_id]
    assert vault_calls and all(o.result in ("denied", "refused") for o in vault_calls)
    # The intake role may not delete, unlock, share or touch the key: IAM stops each call.
    denied = {(o.principal, o.action) for o in vault_calls if o.result == "denied"}
    for action in (
        "ec2:DeleteSnapshot",
        "ec2:UnlockSnapshot",
        "ec2:ModifySnapshotAttribute",
        "ec2:LockSnapshot",
        "rds:DeleteDBSnapshot",
        "rds:ModifyDBSnapshotAttribute",
        "kms:DisableKey",
        "kms:ScheduleKeyDeletion",
        "kms:PutKeyPolicy",
        "s3:DeleteObjectVersion",
    ):
        assert (attacks.VAULT_INTAKE, action) in denied, action
    # The workload administrator reaches nothing in the vault either.
    assert {(attacks.WORKLOAD_ADMIN, "kms:ScheduleKeyDeletion")} <= denied
    # ... and really held the workload account.
    worked = {o.action for o in outcomes if o.result == "worked"}
    assert {"ec2:DeleteSnapshot", "kms:DisableKey", "kms:ScheduleKeyDeletion"} <= worked
    for region in plan.all_regions:
        key = boto3.client("kms", region_name=region).describe_key(KeyId=plan.kms_key(region))
        assert key["KeyMetadata"]["KeyState"] == "PendingDeletion"
    # Locked evidence versions survive in the workload bucket; only delete markers were added.
    refused = [
        o for o in outcomes if o.action == "s3:DeleteObjectVersion" and o.result == "refused"
    ]
    assert refused and all(o.account == "123456789012" for o in refused)
