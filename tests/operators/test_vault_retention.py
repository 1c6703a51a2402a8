"""Vault retention against the sandbox AWS, in the vault account: only listed, unlocked, expired
vault copies go, never the last good ones, and only as a principal of the vault account."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from securedr.aws import clients as clients_module
from securedr.core import signing
from securedr.core.manifest import MANIFEST_KIND, MANIFEST_VERSION, manifest_key
from securedr.core.plan import load_plan
from securedr.operators.vault_retention import (
    VAULT_RETENTION_CONN_ID,
    ApplyVaultRetentionOperator,
)
from tests.conftest import REPO
from tests.operators.helpers import task_context

VAULT_PLAN = REPO / "include" / "dr_plan.vault.yaml"
VAULT = "222222222222"
DR = "us-west-2"


def _vault_credentials() -> dict[str, str]:
    """Credentials of a principal in the vault account: moto maps the keys an AssumeRole into
    a role of another account returns to that account."""
    sts = boto3.client("sts", region_name=DR)
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{VAULT}:role/securedr-vault-retention",
        RoleSessionName="securedr-vault-retention-test",
    )["Credentials"]
    return {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }


def _forget_cached_clients() -> None:
    with clients_module._LOCK:
        for key in [k for k in clients_module._CLIENTS if k[0] == VAULT_RETENTION_CONN_ID]:
            del clients_module._CLIENTS[key]


@pytest.fixture
def vault_plan():
    return load_plan(VAULT_PLAN)


@pytest.fixture
def vault(aws, vault_plan, signing_keys, monkeypatch):
    """The vault account's side: its evidence bucket, and the retention connection as a
    principal of the vault account."""
    credentials = _vault_credentials()
    monkeypatch.setenv(
        "AIRFLOW_CONN_" + VAULT_RETENTION_CONN_ID.upper(),
        json.dumps(
            {
                "conn_type": "aws",
                "login": credentials["aws_access_key_id"],
                "password": credentials["aws_secret_access_key"],
                "extra": {"aws_session_token": credentials["aws_session_token"]},
            }
        ),
    )
    _forget_cached_clients()
    session = boto3.Session(region_name=DR, **credentials)
    assert session.client("sts").get_caller_identity()["Account"] == VAULT
    s3 = session.client("s3")
    s3.create_bucket(
        Bucket=vault_plan.vault.evidence_bucket,
        CreateBucketConfiguration={"LocationConstraint": DR},
        ObjectLockEnabledForBucket=True,
    )
    ec2 = session.client("ec2")
    volume = ec2.create_volume(AvailabilityZone=f"{DR}a", Size=1)["VolumeId"]
    state = {"session": session, "ec2": ec2, "s3": s3, "volume": volume, "private": signing_keys[0]}
    yield state
    _forget_cached_clients()


def _ec2_backend(account: str):
    from moto.ec2.models import ec2_backends

    return ec2_backends[account][DR]


def _vault_copy(vault, age_days: float, *, tags: dict[str, str] | None = None) -> str:
    tags = tags or {"securedr:managed": "true", "securedr:plan": "demo-estate-vault"}
    snapshot_id = vault["ec2"].create_snapshot(
        VolumeId=vault["volume"],
        TagSpecifications=[
            {"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )["SnapshotId"]
    _ec2_backend(VAULT).snapshots[snapshot_id].start_time = datetime.now(UTC) - timedelta(
        days=age_days
    )
    return snapshot_id


def _lock(vault, snapshot_id: str, *, days: int) -> str:
    response = vault["ec2"].lock_snapshot(
        SnapshotId=snapshot_id, LockMode="compliance", CoolOffPeriod=1, LockDuration=days
    )
    return response["LockExpiresOn"].astimezone(UTC).isoformat()


def _vault_entry(kind: str, copy_id: str, *, age_days: float, lock_expires: str | None = None):
    entry = {
        "account_id": VAULT,
        "region": DR,
        "kind": kind,
        "kms_key_arn": f"arn:aws:kms:{DR}:{VAULT}:key/5ec0dd00-0000-4000-8000-00000000a001",
        "created_at": (datetime.now(UTC) - timedelta(days=age_days)).isoformat(),
        "lock": (
            {"mode": "compliance", "cool_off_hours": 1, "expires_on": lock_expires}
            if lock_expires
            else None
        ),
        "verified": True,
    }
    if kind == "ebs":
        entry["snapshot_id"] = copy_id
    else:
        entry["db_snapshot_identifier"] = copy_id
        entry["arn"] = f"arn:aws:rds:{DR}:{VAULT}:snapshot:{copy_id}"
    return entry


def _sign_vault_manifest(
    vault, plan, run_id: str, points: list[dict], *, days_ago: float, private: bytes | None = None
) -> str:
    """A signed manifest (VAULT.md shape) written to the vault evidence bucket."""
    created = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()
    payload = {
        "kind": MANIFEST_KIND,
        "version": MANIFEST_VERSION,
        "plan": plan.name,
        "run_id": run_id,
        "dag_id": "dr_nightly_backup",
        "created_at": created,
        "dr_region": DR,
        "dr_kms_key_arn": f"arn:aws:kms:{DR}:123456789012:key/dr",
        "recovery_points": [
            {
                "kind": p["kind"],
                "source_id": p["source_id"],
                "source_region": "us-east-1",
                "dr_region": DR,
                "dr_snapshot_id": p.get("intermediate", "snap-intermediate"),
                "dr_created_at": created,
                "verified": p.get("verified", True),
                "vault": p["vault"],
            }
            for p in points
        ],
        "vault": {
            "account_id": VAULT,
            "evidence_bucket": plan.vault.evidence_bucket,
            "kms_keys": dict(plan.vault.kms_keys),
        },
    }
    document = signing.sign_document(payload, private or vault["private"])
    key = f"{plan.vault.evidence_prefix}/{manifest_key(plan.name, run_id, created)}"
    vault["s3"].put_object(
        Bucket=plan.vault.evidence_bucket,
        Key=key,
        Body=json.dumps(document).encode(),
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=datetime.now(UTC) + timedelta(days=1),
    )
    return key


def _history(vault, plan, ages, *, source="vol-app", lock_days=None):
    """One vault copy per night of ``ages`` (days old), each listed by its night's manifest."""
    copies = {}
    for age in ages:
        snapshot_id = _vault_copy(vault, age)
        expires = _lock(vault, snapshot_id, days=lock_days) if lock_days else None
        _sign_vault_manifest(
            vault,
            plan,
            f"scheduled__{source}-{age}",
            [
                {
                    "kind": "ebs",
                    "source_id": source,
                    "vault": _vault_entry("ebs", snapshot_id, age_days=age, lock_expires=expires),
                }
            ],
            days_ago=age,
        )
        copies[age] = snapshot_id
    return copies


def _run(**kwargs):
    operator = ApplyVaultRetentionOperator(
        task_id="apply_vault_retention", plan_path=str(VAULT_PLAN), **kwargs
    )
    return operator.execute(task_context(dag_id="dr_vault_retention"))


def _existing(vault) -> set[str]:
    return {
        s["SnapshotId"] for s in vault["ec2"].describe_snapshots(OwnerIds=["self"])["Snapshots"]
    }


def test_expired_unlocked_listed_copies_go_the_newest_and_the_minimum_stay(vault, vault_plan):
    keep_days = vault_plan.retention.keep_days
    assert vault_plan.retention.min_copies == 3
    copies = _history(
        vault, vault_plan, [1, keep_days + 2, keep_days + 5, keep_days + 9, keep_days + 12]
    )
    # In the vault but no signed manifest lists it: never a candidate.
    stranger = _vault_copy(vault, keep_days + 30)
    report = _run()
    # 1 day old, plus the two newest expired ones held for min_copies = 3.
    gone = {copies[keep_days + 9], copies[keep_days + 12]}
    assert set(report["deleted"]) == gone
    existing = _existing(vault)
    assert not gone & existing
    assert (set(copies.values()) - gone) | {stranger} <= existing
    assert report["vault_account"] == VAULT and report["identity"].startswith("arn:aws:sts::")
    reasons = {d["copy"]: d["reason"] for d in report["decisions"]}
    assert "minimum of 3" in reasons[copies[keep_days + 5]]
    assert stranger not in reasons


def test_a_copy_under_its_compliance_lock_is_never_deleted(vault, vault_plan):
    keep_days = vault_plan.retention.keep_days
    copies = _history(vault, vault_plan, [1, 2, 3])
    old = _history(vault, vault_plan, [keep_days + 20], lock_days=30)[keep_days + 20]
    report = _run()
    assert report["deleted"] == []
    assert old in _existing(vault)
    assert "AWS reports lock state compliance" in report["locked"][old]
    assert set(copies.values()) <= _existing(vault)


def test_a_signed_lock_that_has_not_expired_holds_even_if_aws_shows_none(vault, vault_plan):
    keep_days = vault_plan.retention.keep_days
    _history(vault, vault_plan, [1, 2, 3])
    old = _vault_copy(vault, keep_days + 20)
    future = (datetime.now(UTC) + timedelta(days=5)).isoformat()
    _sign_vault_manifest(
        vault,
        vault_plan,
        "scheduled__unlocked",
        [
            {
                "kind": "ebs",
                "source_id": "vol-app",
                "vault": _vault_entry("ebs", old, age_days=keep_days + 20, lock_expires=future),
            }
        ],
        days_ago=keep_days + 20,
    )
    report = _run()
    assert report["deleted"] == [] and old in _existing(vault)
    assert "signed lock until" in report["locked"][old]


def test_dry_run_deletes_nothing_and_says_what_it_would(vault, vault_plan):
    keep_days = vault_plan.retention.keep_days
    copies = _history(vault, vault_plan, [1, 2, 3, keep_days + 4])
    report = _run(dry_run="True")
    assert report["dry_run"] and report["deleted"] == []
    assert report["would_delete"] == [copies[keep_days + 4]]
    assert set(copies.values()) <= _existing(vault)


def test_a_manifest_signed_by_another_key_vouches_for_nothing(vault, vault_plan):
    keep_days = vault_plan.retention.keep_days
    copies = _history(vault, vault_plan, [1, 2, 3])
    forged_copy = _vault_copy(vault, keep_days + 10)
    other_private, _ = signing.generate_signing_key()
    _sign_vault_manifest(
        vault,
        vault_plan,
        "scheduled__forged",
        [
            {
                "kind": "ebs",
                "source_id": "vol-app",
                "vault": _vault_entry("ebs", forged_copy, age_days=keep_days + 10),
            }
        ],
        days_ago=keep_days + 10,
        private=other_private,
    )
    report = _run()
    assert report["deleted"] == []
    assert forged_copy in _existing(vault) and set(copies.values()) <= _existing(vault)
    assert any("cannot be trusted" in r for r in report["rejected"])


def test_entries_naming_another_account_are_ignored(vault, vault_plan):
    keep_days = vault_plan.retention.keep_days
    _history(vault, vault_plan, [1, 2, 3])
    old = _vault_copy(vault, keep_days + 10)
    entry = {**_vault_entry("ebs", old, age_days=keep_days + 10), "account_id": "333333333333"}
    _sign_vault_manifest(
        vault,
        vault_plan,
        "scheduled__elsewhere",
        [{"kind": "ebs", "source_id": "vol-app", "vault": entry}],
        days_ago=keep_days + 10,
    )
    report = _run()
    assert report["deleted"] == [] and old in _existing(vault)
    assert any("not this vault" in r for r in report["rejected"])


def test_rds_vault_copies_expire_by_age_and_the_minimum(vault, vault_plan):
    keep_days = vault_plan.retention.keep_days
    rds = vault["session"].client("rds")
    rds.create_db_instance(
        DBInstanceIdentifier="vault-restore-scratch",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="admin",
        MasterUserPassword="not-a-secret-1",
        AllocatedStorage=20,
    )
    from moto.rds.models import rds_backends

    names = {}
    for age in (1, 2, 3, keep_days + 6):
        name = f"securedr-orders-db-vault-{age}"
        rds.create_db_snapshot(
            DBInstanceIdentifier="vault-restore-scratch", DBSnapshotIdentifier=name
        )
        rds_backends[VAULT][DR].database_snapshots[name].created = datetime.now(UTC) - timedelta(
            days=age
        )
        _sign_vault_manifest(
            vault,
            vault_plan,
            f"scheduled__rds-{age}",
            [
                {
                    "kind": "rds",
                    "source_id": "orders-db",
                    "vault": _vault_entry("rds", name, age_days=age),
                }
            ],
            days_ago=age,
        )
        names[age] = name
    report = _run()
    assert report["deleted"] == [names[keep_days + 6]]
    left = {
        s["DBSnapshotIdentifier"]
        for s in rds.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]
    }
    assert left == {names[1], names[2], names[3]}


def test_the_workload_connection_is_refused_before_anything_is_read(
    aws, vault_plan, signing_keys, monkeypatch
):
    # aws_vault_retention pointed at the workload account's own credentials.
    monkeypatch.setenv("AIRFLOW_CONN_" + VAULT_RETENTION_CONN_ID.upper(), '{"conn_type": "aws"}')
    _forget_cached_clients()
    with pytest.raises(AirflowFailException, match="not a principal of the vault account"):
        _run()
    _forget_cached_clients()


def test_a_plan_without_a_vault_skips(aws, plan):
    operator = ApplyVaultRetentionOperator(task_id="apply_vault_retention")
    assert plan.vault is None
    with pytest.raises(AirflowSkipException, match="no vault section"):
        operator.execute(task_context(dag_id="dr_vault_retention"))


def test_the_dag_runs_under_the_vault_retention_connection_only():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "dr_vault_retention", REPO / "dags" / "dr_vault_retention.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (task,) = module.dag.tasks
    assert task.aws_conn_id == VAULT_RETENTION_CONN_ID != "aws_default"
    assert task.dry_run == "{{ params.dry_run }}"
    assert os.environ.get("AIRFLOW_CONN_AWS_VAULT_RETENTION") is None


def test_every_call_of_a_vault_retention_run_is_allowed_by_the_shipped_retention_role(
    vault, vault_plan
):
    """Resource level, judged with the vault's documents (identity policy, SCP, bucket policy):
    the run needs nothing the retention role lacks."""
    from sandbox.iam_judge import Principal, authorizations, judge, vault_world
    from securedr.core import iam
    from tests.iam_eval import recorded_requests

    keep_days = vault_plan.retention.keep_days
    copies = _history(vault, vault_plan, [1, 2, 3, keep_days + 3])
    values = iam.vault_policy_values(
        vault_plan,
        workload_account_id="123456789012",
        dr_key_arn=f"arn:aws:kms:{DR}:123456789012:key/dr",
        airflow_principal_arn="arn:aws:iam::123456789012:role/securedr-airflow",
        external_id="x",
        retention_principal_arn=f"arn:aws:iam::{VAULT}:role/securedr-vault-operations",
        recovery_principal_arns=[f"arn:aws:iam::{VAULT}:role/securedr-recovery-operator"],
        recovery_external_id="y",
        break_glass_principal_arn=f"arn:aws:iam::{VAULT}:role/securedr-break-glass",
    )
    world = vault_world(values, vault_snapshots=list(copies.values()))
    tags = {"securedr:managed": "true", "securedr:plan": vault_plan.name}
    with recorded_requests() as requests:
        report = _run()
    assert report["deleted"] == [copies[keep_days + 3]]
    role = Principal(values["RetentionRoleArn"])
    judged = set()
    for request in requests:
        if (request.service, request.operation) == ("sts", "GetCallerIdentity"):
            # "No permissions are required to perform this operation."
            # https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html
            continue
        for action, resource, context in authorizations(
            request.service,
            request.operation,
            request.params,
            region=request.region,
            account=VAULT,
            resource_tags=tags,
        ):
            decision = judge(
                world, role, action, resource, {"aws:RequestedRegion": request.region, **context}
            )
            assert decision.allowed, (action, resource, decision.reason)
            judged.add(action)
    assert {
        "ec2:DeleteSnapshot",
        "ec2:DescribeLockedSnapshots",
        "s3:GetObjectVersion",
        "s3:ListBucketVersions",
    } <= judged
