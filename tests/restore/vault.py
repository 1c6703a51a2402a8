"""Fixtures for restores from the vault: a vault account in the sandbox, vault copies of a
nightly's recovery points, the signed manifest with its ``vault`` entries, and the end of the
workload account.

The vault copies are made here directly in the vault account (a copy of a same-sized volume's
snapshot under the vault CMK, tagged and locked the way the nightly's handshake leaves them),
and each point's ``vault`` entry has exactly the shape the nightly writes (docs: the manifest's
``vault`` entry). Sandbox accounts are moto's: credentials of an IAM user or an assumed role of
another account are served from that account.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

VAULT_ACCOUNT = "222222222222"
WORKLOAD_ACCOUNT = "123456789012"
DR = "us-west-2"
RECOVERY_ROLE = "securedr-vault-recovery"
RECOVERY_CONN = "aws_vault_recovery"
RECOVERY_EXTERNAL_ID = "securedr-vault-recovery-external-id-42"
VAULT_BUCKET = "securedr-vault-evidence-test"
LOCK_COOL_OFF_HOURS = 24


def account_credentials(account_id: str) -> dict[str, str]:
    """Credentials of an administrator principal of ``account_id`` in the sandbox.

    moto serves a request from the account its access key belongs to; an AssumeRole into a role
    ARN of another account returns keys of that account (moto's multi-account support).
    """
    if account_id == WORKLOAD_ACCOUNT:
        return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    sts = boto3.client("sts", region_name=DR)
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/sandbox-admin", RoleSessionName="sandbox"
    )["Credentials"]
    return {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }


def client(service: str, account_id: str, region: str = DR) -> Any:
    return boto3.client(service, region_name=region, **account_credentials(account_id))


@dataclass
class Vault:
    """The vault account as the vault's set-up (include/iam, README) leaves it."""

    account_id: str
    key_arn: str
    other_key_arn: str  #: another CMK of the vault account (not the plan's vault key)
    bucket: str
    recovery_role_arn: str
    recovery_user_key: str  #: the access key of the recovery connection's principal
    subnet_group: str
    copies: dict[str, dict[str, Any]] = field(default_factory=dict)  #: source id -> entry


def seed_vault(plan, monkeypatch, *, account_id: str = VAULT_ACCOUNT) -> Vault:
    """Vault CMKs, the vault evidence bucket (versioned, Object Lock COMPLIANCE), the recovery
    role, the recovery connection (an IAM user of the vault account) and a DB subnet group of
    the plan's restore.db_subnet_group name - all in ``account_id``."""
    kms = client("kms", account_id)
    key_arn = kms.create_key(Description="securedr vault key")["KeyMetadata"]["Arn"]
    other = kms.create_key(Description="some other key")["KeyMetadata"]["Arn"]
    s3 = client("s3", account_id)
    s3.create_bucket(
        Bucket=VAULT_BUCKET,
        CreateBucketConfiguration={"LocationConstraint": DR},
        ObjectLockEnabledForBucket=True,
    )
    s3.put_object_lock_configuration(
        Bucket=VAULT_BUCKET,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 30}},
        },
    )
    iam = client("iam", account_id, "us-east-1")
    role_arn = iam.create_role(
        RoleName=RECOVERY_ROLE,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                        "Action": "sts:AssumeRole",
                        "Condition": {"StringEquals": {"sts:ExternalId": RECOVERY_EXTERNAL_ID}},
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    iam.create_user(UserName="securedr-vault-recovery-operator")
    key = iam.create_access_key(UserName="securedr-vault-recovery-operator")["AccessKey"]
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{RECOVERY_CONN.upper()}",
        json.dumps(
            {"conn_type": "aws", "login": key["AccessKeyId"], "password": key["SecretAccessKey"]}
        ),
    )
    monkeypatch.setenv("AIRFLOW_VAR_SECUREDR_VAULT_RECOVERY_EXTERNAL_ID", RECOVERY_EXTERNAL_ID)
    ec2 = client("ec2", account_id)
    vpc = ec2.create_vpc(CidrBlock="10.60.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.60.{i}.0/24", AvailabilityZone=f"{DR}{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in ((1, "a"), (2, "b"))
    ]
    name = plan.restore.db_subnet_group or "securedr-restore"
    client("rds", account_id).create_db_subnet_group(
        DBSubnetGroupName=name, DBSubnetGroupDescription="recovery network", SubnetIds=subnets
    )
    return Vault(
        account_id=account_id,
        key_arn=key_arn,
        other_key_arn=other,
        bucket=VAULT_BUCKET,
        recovery_role_arn=role_arn,
        recovery_user_key=key["AccessKeyId"],
        subnet_group=name,
    )


def write_vault_plan(path: Path, vault: Vault, *, recovery_role_arn: str | None = None) -> Path:
    """Add the vault section to the plan at ``path`` (rewritten in place)."""
    data = yaml.safe_load(path.read_text())
    data["vault"] = {
        "account_id": vault.account_id,
        "role_arn": f"arn:aws:iam::{vault.account_id}:role/securedr-vault-intake",
        "external_id_variable": "securedr_vault_external_id",
        "kms_keys": {DR: vault.key_arn},
        "evidence_bucket": vault.bucket,
        "evidence_prefix": "securedr",
        "lock": {"cool_off_hours": LOCK_COOL_OFF_HOURS},
        "recovery": {
            "role_arn": recovery_role_arn or vault.recovery_role_arn,
            "external_id_variable": "securedr_vault_recovery_external_id",
            "aws_conn_id": RECOVERY_CONN,
        },
    }
    path.write_text(yaml.safe_dump(data))
    return path


def _vault_tags(plan_name: str, point: dict[str, Any], run_id: str) -> list[dict[str, str]]:
    from securedr.core.model import TAG_KIND, TAG_MANAGED, TAG_PLAN, TAG_RUN_ID, TAG_SOURCE_ID

    tags = {
        TAG_MANAGED: "true",
        TAG_PLAN: plan_name,
        TAG_RUN_ID: run_id,
        TAG_KIND: point["kind"],
        TAG_SOURCE_ID: point["source_id"],
    }
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def make_vault_copy(
    vault: Vault,
    plan_name: str,
    point: dict[str, Any],
    run_id: str,
    *,
    key_arn: str | None = None,
    lock: bool = True,
) -> dict[str, Any]:
    """A vault copy of ``point`` in the vault account; returns its manifest ``vault`` entry."""
    key = key_arn or vault.key_arn
    created = datetime.now(UTC).replace(microsecond=0)
    if point["kind"] == "ebs":
        ec2 = client("ec2", vault.account_id)
        volume = ec2.create_volume(
            AvailabilityZone=f"{DR}a", Size=int(point["size_gib"]), Encrypted=True, KmsKeyId=key
        )["VolumeId"]
        staged = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
        snapshot_id = ec2.copy_snapshot(
            SourceRegion=DR,
            SourceSnapshotId=staged,
            Encrypted=True,
            KmsKeyId=key,
            TagSpecifications=[
                {"ResourceType": "snapshot", "Tags": _vault_tags(plan_name, point, run_id)}
            ],
        )["SnapshotId"]
        ec2.delete_snapshot(SnapshotId=staged)
        ec2.delete_volume(VolumeId=volume)
        lock_entry = None
        if lock:
            locked = ec2.lock_snapshot(
                SnapshotId=snapshot_id,
                LockMode="compliance",
                CoolOffPeriod=LOCK_COOL_OFF_HOURS,
                LockDuration=15,
            )
            lock_entry = {
                "mode": "compliance",
                "cool_off_hours": LOCK_COOL_OFF_HOURS,
                "expires_on": locked["LockExpiresOn"].isoformat(),
            }
        entry = {
            "account_id": vault.account_id,
            "region": DR,
            "kind": "ebs",
            "snapshot_id": snapshot_id,
            "kms_key_arn": key,
            "created_at": created.isoformat(),
            "lock": lock_entry,
            "verified": True,
        }
    else:
        rds = client("rds", vault.account_id)
        staging = f"vault-staging-{point['source_id']}"[:63]
        rds.create_db_instance(
            DBInstanceIdentifier=staging,
            DBInstanceClass="db.t3.micro",
            Engine=point.get("engine") or "postgres",
            AllocatedStorage=int(point.get("size_gib") or 20),
            MasterUsername="admin",
            MasterUserPassword="not-a-real-password-1",
            StorageEncrypted=True,
            KmsKeyId=key,
            # moto keeps this from the snapshot's instance on restore (AWS applies the
            # restore's PubliclyAccessible=False); the estate's databases are private too.
            PubliclyAccessible=False,
        )
        rds.create_db_snapshot(
            DBInstanceIdentifier=staging, DBSnapshotIdentifier=f"{staging}-staged"
        )
        identifier = f"{point['dr_snapshot_id']}-vault"
        copy = rds.copy_db_snapshot(
            SourceDBSnapshotIdentifier=f"{staging}-staged",
            TargetDBSnapshotIdentifier=identifier,
            KmsKeyId=key,
            Tags=_vault_tags(plan_name, point, run_id),
        )["DBSnapshot"]
        rds.delete_db_snapshot(DBSnapshotIdentifier=f"{staging}-staged")
        rds.delete_db_instance(DBInstanceIdentifier=staging, SkipFinalSnapshot=True)
        entry = {
            "account_id": vault.account_id,
            "region": DR,
            "kind": "rds",
            "db_snapshot_identifier": identifier,
            "arn": copy["DBSnapshotArn"],
            "kms_key_arn": key,
            "created_at": created.isoformat(),
            "lock": None,
            "verified": True,
        }
    vault.copies[point["source_id"]] = entry
    return entry


def vault_manifest(backup, vault: Vault, private_key: bytes, plan) -> dict[str, Any]:
    """The nightly's signed manifest with each point's ``vault`` entry and the top-level
    ``vault`` section, written to the vault evidence bucket under the manifest's key."""
    from securedr.aws.evidence import EvidenceStore
    from securedr.core.signing import sign_document

    payload = json.loads(json.dumps(backup.document["payload"]))
    for point in payload["recovery_points"]:
        if point["source_id"] in vault.copies:
            point["vault"] = vault.copies[point["source_id"]]
    payload["vault"] = {
        "account_id": vault.account_id,
        "evidence_bucket": vault.bucket,
        "kms_keys": {DR: vault.key_arn},
    }
    document = sign_document(payload, private_key)
    store = EvidenceStore(
        client("s3", vault.account_id),
        bucket=vault.bucket,
        prefix="securedr",
        kms_key_arn=vault.key_arn,
        lock_mode="COMPLIANCE",
        lock_days=30,
    )
    store.put(backup.manifest_key, json.dumps(document, indent=2, sort_keys=True).encode())
    return document


def lose_the_workload_account(plan, backup, estate) -> None:
    """What an attacker (or a disaster) leaves of the workload account's DR side: every DR
    copy deleted, every manifest hidden by a delete marker, the DR key disabled and scheduled
    for deletion."""
    ec2 = boto3.client("ec2", region_name=DR)
    rds = boto3.client("rds", region_name=DR)
    for point in backup.points:
        if point["kind"] == "ebs":
            ec2.delete_snapshot(SnapshotId=point["dr_snapshot_id"])
        else:
            rds.delete_db_snapshot(DBSnapshotIdentifier=point["dr_snapshot_id"])
    s3 = boto3.client("s3", region_name=DR)
    bucket = plan.evidence_bucket.name
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    kms = boto3.client("kms", region_name=DR)
    key = estate.key_arns[DR].rsplit("/", 1)[1]  # moto's DisableKey takes the key id
    kms.disable_key(KeyId=key)
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)


def recovery_sessions() -> dict[str, str]:
    """Access key -> role ARN of every assumed-role session the sandbox handed out."""
    from moto.sts.models import sts_backends

    found = {}
    for _account, by_partition in list(sts_backends.items()):
        for backend in by_partition.values():
            for role in backend.assumed_roles:
                found[role.access_key_id] = role.role_arn
    return found


def aged(hours: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


def endpoint() -> str:
    return os.environ["AWS_ENDPOINT_URL"]


@pytest.fixture
def vault(restore_plan, monkeypatch):
    """The vault account, and the test plan (``SECUREDR_PLAN``) with its vault section."""
    from securedr.core.plan import load_plan

    found = seed_vault(restore_plan, monkeypatch)
    write_vault_plan(Path(os.environ["SECUREDR_PLAN"]), found)
    found.plan = load_plan(os.environ["SECUREDR_PLAN"])  # type: ignore[attr-defined]
    return found


@pytest.fixture
def vault_backup(vault, estate, signing_keys):
    """A nightly's recovery points, their vault copies and the signed manifest in the vault."""
    from tests.restore.conftest import make_backup

    plan = vault.plan
    backup = make_backup(plan, estate, signing_keys[0])
    for point in backup.points:
        make_vault_copy(vault, plan.name, point, backup.run_id)
    backup.vault_document = vault_manifest(backup, vault, signing_keys[0], plan)
    return backup
