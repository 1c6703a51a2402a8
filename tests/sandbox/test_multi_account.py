"""Several accounts in the sandbox: credentials per account, the vault, and what crosses accounts.

The workload account (moto's default, 123456789012) shares DR copies with the vault account;
the vault copies them under its own key. Every refusal is AWS's (see sandbox.cross_account).
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox import accounts, realism
from sandbox.realism import timing

REPO = Path(__file__).resolve().parents[2]
VAULT_PLAN = REPO / "include" / "dr_plan.vault.yaml"
DR = "us-west-2"
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
VAULT = accounts.VAULT_ACCOUNT
WORKLOAD = accounts.WORKLOAD_ACCOUNT


@pytest.fixture
def vault_plan():
    from securedr.core.plan import load_plan

    return load_plan(VAULT_PLAN)


def _client(service: str, account: str | None = None, region: str = DR):
    creds = accounts.credentials(account) if account else {}
    return boto3.client(service, region_name=region, config=NO_RETRIES, **creds)


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = exc.value.response["Error"]
    return error["Code"], error.get("Message", "")


def _workload_key(kms, *, vault_may_use: bool) -> str:
    arn = kms.create_key(Description="workload DR key")["KeyMetadata"]["Arn"]
    if vault_may_use:
        accounts.allow_vault_on_key(DR, arn, VAULT)
    return arn


def _shared_dr_copy(ec2, key_arn: str, *, share_with: str | None = VAULT) -> str:
    """A workload DR copy (encrypted under ``key_arn``), shared with ``share_with``."""
    volume = ec2.create_volume(AvailabilityZone=f"{DR}a", Size=8, Encrypted=True, KmsKeyId=key_arn)[
        "VolumeId"
    ]
    snapshot = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    copy = ec2.copy_snapshot(SourceSnapshotId=snapshot, SourceRegion=DR, KmsKeyId=key_arn)
    if share_with:
        ec2.modify_snapshot_attribute(
            SnapshotId=copy["SnapshotId"],
            Attribute="createVolumePermission",
            OperationType="add",
            UserIds=[share_with],
        )
    return copy["SnapshotId"]


def _vault_key(account: str = VAULT) -> str:
    return _client("kms", account).create_key(Description="vault key")["KeyMetadata"]["Arn"]


# -- accounts and credentials -------------------------------------------------------------------


@pytest.mark.parametrize("account", [accounts.VAULT_ACCOUNT, accounts.THIRD_ACCOUNT, WORKLOAD])
def test_credentials_act_in_their_account(aws, account):
    identity = _client("sts", account).get_caller_identity()
    assert identity["Account"] == account
    assert identity["Arn"].startswith(f"arn:aws:sts::{account}:assumed-role/")


def test_accounts_hold_separate_resources(aws):
    workload, vault = _client("ec2"), _client("ec2", VAULT)
    volume = workload.create_volume(AvailabilityZone=f"{DR}a", Size=1)["VolumeId"]
    snapshot = workload.create_snapshot(VolumeId=volume)["SnapshotId"]
    assert snapshot not in {s["SnapshotId"] for s in vault.describe_snapshots()["Snapshots"]}
    with pytest.raises(ClientError) as exc:
        vault.delete_snapshot(SnapshotId=snapshot)
    assert _error(exc)[0] == "InvalidSnapshot.NotFound"
    with pytest.raises(ClientError) as exc:
        vault.modify_snapshot_attribute(
            SnapshotId=snapshot,
            Attribute="createVolumePermission",
            OperationType="add",
            UserIds=[accounts.THIRD_ACCOUNT],
        )
    assert _error(exc)[0] == "InvalidSnapshot.NotFound"
    workload.describe_snapshots(SnapshotIds=[snapshot])  # still there


def test_credentials_refuse_a_malformed_account(aws):
    with pytest.raises(ValueError, match="12-digit"):
        accounts.credentials("vault")


# -- seed_vault ----------------------------------------------------------------------------------


def test_seed_vault_builds_the_vault_in_the_vault_account(aws, vault_plan):
    first = accounts.seed_vault(vault_plan, aws)
    _client("s3", VAULT).put_object(Bucket=first["evidence_bucket"], Key="securedr/x", Body=b"x")
    again = accounts.seed_vault(vault_plan, aws)  # also once the vault holds evidence
    assert first == again  # idempotent

    assert first["account_id"] == VAULT
    assert first["kms_keys"] == vault_plan.vault.kms_keys  # the key id the plan names
    assert first["role_arn"] == vault_plan.vault.role_arn
    assert first["recovery_role_arn"] == vault_plan.vault.recovery.role_arn

    iam = _client("iam", VAULT)
    roles = {r["RoleName"] for r in iam.list_roles()["Roles"]}
    assert {accounts.INTAKE_ROLE, accounts.RETENTION_ROLE, accounts.RECOVERY_ROLE} <= roles
    assert accounts.INTAKE_ROLE not in {r["RoleName"] for r in _client("iam").list_roles()["Roles"]}
    intake_trust = iam.get_role(RoleName=accounts.INTAKE_ROLE)["Role"]["AssumeRolePolicyDocument"]
    assert accounts.SANDBOX_EXTERNAL_ID in json.dumps(intake_trust)
    for name in (accounts.RETENTION_ROLE, accounts.RECOVERY_ROLE):
        trust = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
        trusted = [
            json.dumps(statement.get("Principal"))
            for statement in trust["Statement"]
            if statement["Effect"] == "Allow"
        ]
        assert trusted and not any(WORKLOAD in p for p in trusted)  # never the workload

    key = _client("kms", VAULT).describe_key(KeyId=first["kms_keys"][DR])["KeyMetadata"]
    assert key["KeyManager"] == "CUSTOMER" and key["Enabled"]
    assert key["AWSAccountId"] == VAULT

    s3 = _client("s3", VAULT)
    bucket = first["evidence_bucket"]
    assert bucket == vault_plan.vault.evidence_bucket
    lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    assert lock["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert bucket not in {b["Name"] for b in _client("s3").list_buckets()["Buckets"]}

    policy = json.loads(
        _client("kms").get_key_policy(KeyId=first["workload_dr_key_arn"], PolicyName="default")[
            "Policy"
        ]
    )
    sids = [s.get("Sid") for s in policy["Statement"]]
    # The shipped statement (include/iam/securedr-dr-key-vault-statement.json), once.
    assert sids.count("VaultIntakeCopiesSharedDrCopiesThroughEbsRds") == 1
    assert "VaultIntakeGrantsOnlyToEbsAndRds" in sids
    # The shipped vault bucket policy, rendered for the IAM evaluator (not put on the bucket).
    sids = {s.get("Sid") for s in first["evidence_bucket_policy"]["Statement"]}
    assert "IntakeWritesVaultEvidenceUnderItsPrefix" in sids


def test_seed_vault_without_a_vault_section_uses_the_contract_defaults(aws, plan):
    seeded = accounts.seed_vault(plan, aws)
    assert seeded["account_id"] == VAULT
    assert seeded["role_arn"] == f"arn:aws:iam::{VAULT}:role/securedr-vault-intake"
    assert seeded["evidence_bucket"] == f"securedr-vault-evidence-{VAULT}"
    assert seeded["kms_keys"][DR].startswith(f"arn:aws:kms:{DR}:{VAULT}:key/")
    assert accounts.seed_vault(plan, aws)["kms_keys"] == seeded["kms_keys"]


def test_seed_vault_takes_a_vault_plan_as_it_is(aws, vault_plan):
    with pytest.raises(ValueError, match="vault section"):
        accounts.seed_vault(vault_plan, aws, account_id=accounts.THIRD_ACCOUNT)


def test_seed_vault_refuses_a_key_arn_outside_the_vault_account(aws, plan):
    with pytest.raises(ValueError, match="vault account"):
        accounts.seed_vault(
            plan, aws, kms_keys={DR: f"arn:aws:kms:{DR}:{WORKLOAD}:key/5ec0dd00-0000-4000-8000-1"}
        )


def test_intake_role_can_be_assumed_from_the_workload_with_its_external_id(aws, vault_plan):
    seeded = accounts.seed_vault(vault_plan, aws)
    creds = _client("sts").assume_role(
        RoleArn=seeded["role_arn"],
        RoleSessionName="securedr-vault",
        ExternalId=seeded["external_id"],
    )["Credentials"]
    identity = boto3.client(
        "sts",
        region_name=DR,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    ).get_caller_identity()
    assert identity["Account"] == VAULT


def _intake(seeded: dict) -> dict[str, str]:
    """Credentials of the intake role, assumed from the workload as the nightly does."""
    answer = _client("sts").assume_role(
        RoleArn=seeded["role_arn"],
        RoleSessionName="securedr-vault",
        ExternalId=seeded["external_id"],
    )["Credentials"]
    return {
        "aws_access_key_id": answer["AccessKeyId"],
        "aws_secret_access_key": answer["SecretAccessKey"],
        "aws_session_token": answer["SessionToken"],
    }


def test_the_seeded_vault_lets_the_intake_role_copy_and_no_one_else(aws, vault_plan):
    """The shipped DR key statement names the intake role, through EBS and RDS only."""
    seeded = accounts.seed_vault(vault_plan, aws)
    shared = _shared_dr_copy(_client("ec2"), seeded["workload_dr_key_arn"])
    vault_key = seeded["kms_keys"][DR]
    intake = boto3.client("ec2", region_name=DR, config=NO_RETRIES, **_intake(seeded))
    copy_id = intake.copy_snapshot(SourceSnapshotId=shared, SourceRegion=DR, KmsKeyId=vault_key)[
        "SnapshotId"
    ]
    admin = _client("ec2", VAULT)  # a vault administrator, not the intake role
    other = admin.copy_snapshot(SourceSnapshotId=shared, SourceRegion=DR, KmsKeyId=vault_key)[
        "SnapshotId"
    ]
    states = {
        s["SnapshotId"]: s["State"]
        for s in admin.describe_snapshots(SnapshotIds=[copy_id, other])["Snapshots"]
    }
    assert states == {copy_id: "completed", other: "error"}

    arn = _shared_db_snapshot(seeded["workload_dr_key_arn"])
    rds = boto3.client("rds", region_name=DR, config=NO_RETRIES, **_intake(seeded))
    copy = rds.copy_db_snapshot(
        SourceDBSnapshotIdentifier=arn, TargetDBSnapshotIdentifier="vault-copy", KmsKeyId=vault_key
    )["DBSnapshot"]
    assert copy["KmsKeyId"] == vault_key
    with pytest.raises(ClientError) as exc:
        _client("rds", VAULT).copy_db_snapshot(
            SourceDBSnapshotIdentifier=arn, TargetDBSnapshotIdentifier="other", KmsKeyId=vault_key
        )
    assert _error(exc)[0] == "KMSKeyNotAccessibleFault"
    # The intake role may describe the workload key (the shipped statement says so), not use it
    # directly outside EBS and RDS.
    kms = boto3.client("kms", region_name=DR, config=NO_RETRIES, **_intake(seeded))
    assert kms.describe_key(KeyId=seeded["workload_dr_key_arn"])["KeyMetadata"]["Enabled"]
    with pytest.raises(ClientError) as exc:
        kms.generate_data_key(KeyId=seeded["workload_dr_key_arn"], KeySpec="AES_256")
    assert _error(exc)[0] == "AccessDeniedException"


# -- EBS -----------------------------------------------------------------------------------------


def test_vault_copies_a_snapshot_shared_with_it_under_its_own_key(aws):
    workload = _client("ec2")
    dr_key = _workload_key(_client("kms"), vault_may_use=True)
    shared = _shared_dr_copy(workload, dr_key)
    vault_key = _vault_key()
    vault = _client("ec2", VAULT)

    copy = vault.copy_snapshot(
        SourceSnapshotId=shared,
        SourceRegion=DR,
        KmsKeyId=vault_key,
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "a", "Value": "b"}]}],
    )
    (info,) = vault.describe_snapshots(SnapshotIds=[copy["SnapshotId"]])["Snapshots"]
    assert info["OwnerId"] == VAULT
    assert info["State"] == "completed"
    assert info["Encrypted"] is True
    assert info["KmsKeyId"] == vault_key
    assert {"Key": "a", "Value": "b"} in info["Tags"]
    # The copy belongs to the vault: the workload neither sees nor deletes it.
    with pytest.raises(ClientError) as exc:
        workload.describe_snapshots(SnapshotIds=[copy["SnapshotId"]])
    assert _error(exc)[0] == "InvalidSnapshot.NotFound"
    with pytest.raises(ClientError) as exc:
        workload.delete_snapshot(SnapshotId=copy["SnapshotId"])
    assert _error(exc)[0] == "InvalidSnapshot.NotFound"


def test_a_snapshot_not_shared_with_the_vault_cannot_be_copied(aws):
    workload = _client("ec2")
    dr_key = _workload_key(_client("kms"), vault_may_use=True)
    private = _shared_dr_copy(workload, dr_key, share_with=accounts.THIRD_ACCOUNT)
    vault = _client("ec2", VAULT)
    with pytest.raises(ClientError) as exc:
        vault.copy_snapshot(SourceSnapshotId=private, SourceRegion=DR, KmsKeyId=_vault_key())
    assert _error(exc) == ("InvalidSnapshot.NotFound", f"The snapshot '{private}' does not exist.")
    with pytest.raises(ClientError) as exc:
        vault.describe_snapshots(SnapshotIds=[private])
    assert _error(exc)[0] == "InvalidSnapshot.NotFound"

    # Removing the share takes the right away again.
    shared = _shared_dr_copy(workload, dr_key)
    workload.modify_snapshot_attribute(
        SnapshotId=shared,
        Attribute="createVolumePermission",
        OperationType="remove",
        UserIds=[VAULT],
    )
    with pytest.raises(ClientError) as exc:
        vault.copy_snapshot(SourceSnapshotId=shared, SourceRegion=DR, KmsKeyId=_vault_key())
    assert _error(exc)[0] == "InvalidSnapshot.NotFound"


@pytest.mark.parametrize("why", ["key policy", "disabled key", "foreign destination key"])
def test_copy_without_the_right_to_a_key_ends_in_error(aws, why):
    kms = _client("kms")
    dr_key = _workload_key(kms, vault_may_use=why != "key policy")
    shared = _shared_dr_copy(_client("ec2"), dr_key)
    destination = _vault_key()
    if why == "disabled key":
        kms.disable_key(KeyId=dr_key)
    if why == "foreign destination key":
        destination = _vault_key(accounts.THIRD_ACCOUNT)  # the third account never allowed it
    vault = _client("ec2", VAULT)
    # AWS accepts the request and the copy fails: "Given key ID is not accessible".
    copy_id = vault.copy_snapshot(SourceSnapshotId=shared, SourceRegion=DR, KmsKeyId=destination)[
        "SnapshotId"
    ]
    (info,) = vault.describe_snapshots(SnapshotIds=[copy_id])["Snapshots"]
    assert info["State"] == "error"
    assert info["StateMessage"] == "Given key ID is not accessible"


def test_a_cross_account_copy_takes_its_copy_time(aws):
    dr_key = _workload_key(_client("kms"), vault_may_use=True)
    shared = _shared_dr_copy(_client("ec2"), dr_key)
    vault = _client("ec2", VAULT)
    realism.configure("timing", copy_seconds=3 * 3600)
    copy_id = vault.copy_snapshot(SourceSnapshotId=shared, SourceRegion=DR, KmsKeyId=_vault_key())[
        "SnapshotId"
    ]
    (info,) = vault.describe_snapshots(SnapshotIds=[copy_id])["Snapshots"]
    assert info["State"] == "pending"
    assert timing.in_flight("ec2", DR, VAULT) == 1
    assert timing.in_flight("ec2", DR, WORKLOAD) == 0
    realism.advance(3 * 3600)
    (info,) = vault.describe_snapshots(SnapshotIds=[copy_id])["Snapshots"]
    assert info["State"] == "completed"


def test_a_failing_copy_is_pending_first_then_error(aws):
    dr_key = _workload_key(_client("kms"), vault_may_use=False)
    shared = _shared_dr_copy(_client("ec2"), dr_key)
    vault = _client("ec2", VAULT)
    realism.configure("timing", copy_seconds=600)
    copy_id = vault.copy_snapshot(SourceSnapshotId=shared, SourceRegion=DR, KmsKeyId=_vault_key())[
        "SnapshotId"
    ]
    (info,) = vault.describe_snapshots(SnapshotIds=[copy_id])["Snapshots"]
    assert info["State"] == "pending" and "StateMessage" not in info
    realism.advance(600)
    (info,) = vault.describe_snapshots(SnapshotIds=[copy_id])["Snapshots"]
    assert info["State"] == "error"


def test_describe_snapshots_shows_what_is_shared_with_the_caller(aws):
    dr_key = _workload_key(_client("kms"), vault_may_use=True)
    workload = _client("ec2")
    shared = _shared_dr_copy(workload, dr_key)
    not_shared = _shared_dr_copy(workload, dr_key, share_with=None)
    vault = _client("ec2", VAULT)
    own = vault.copy_snapshot(SourceSnapshotId=shared, SourceRegion=DR, KmsKeyId=_vault_key())[
        "SnapshotId"
    ]

    def ids(**kwargs) -> set[str]:
        return {s["SnapshotId"] for s in vault.describe_snapshots(**kwargs)["Snapshots"]}

    # Unfiltered: the caller's own (moto's stand-in AMI snapshots among them) and what is shared.
    assert {shared, own} <= ids()
    assert ids(OwnerIds=["self"], Filters=[{"Name": "encrypted", "Values": ["true"]}]) == {own}
    assert ids(OwnerIds=[WORKLOAD]) == {shared}
    assert {shared, own} <= ids(RestorableByUserIds=["self"])
    assert ids(RestorableByUserIds=[VAULT], OwnerIds=[WORKLOAD]) == {shared}
    assert ids(SnapshotIds=[shared]) == {shared}
    assert not_shared not in ids()
    (info,) = vault.describe_snapshots(SnapshotIds=[shared])["Snapshots"]
    assert info["OwnerId"] == WORKLOAD
    # The owner's own view is unchanged: OwnerIds=self is what it owns.
    assert {shared, not_shared} <= {
        s["SnapshotId"] for s in workload.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    }
    assert own not in {s["SnapshotId"] for s in workload.describe_snapshots()["Snapshots"]}


def test_locks_are_per_account(aws):
    dr_key = _workload_key(_client("kms"), vault_may_use=True)
    workload = _client("ec2")
    shared = _shared_dr_copy(workload, dr_key)
    vault = _client("ec2", VAULT)
    copy_id = vault.copy_snapshot(SourceSnapshotId=shared, SourceRegion=DR, KmsKeyId=_vault_key())[
        "SnapshotId"
    ]
    vault.lock_snapshot(SnapshotId=copy_id, LockMode="compliance", CoolOffPeriod=1, LockDuration=1)
    assert workload.describe_locked_snapshots()["Snapshots"] == []
    for call in (
        lambda: workload.unlock_snapshot(SnapshotId=copy_id),
        lambda: workload.lock_snapshot(SnapshotId=copy_id, LockMode="governance", LockDuration=1),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _error(exc)[0] == "InvalidSnapshot.NotFound"
    # The workload cannot lock the vault out of deleting its own shared source either way round.
    with pytest.raises(ClientError) as exc:
        vault.lock_snapshot(SnapshotId=shared, LockMode="governance", LockDuration=1)
    assert _error(exc)[0] == "InvalidSnapshot.NotFound"
    (lock,) = vault.describe_locked_snapshots()["Snapshots"]
    assert lock["OwnerId"] == VAULT


# -- RDS -----------------------------------------------------------------------------------------


def _shared_db_snapshot(
    kms_key: str | None, *, share: bool = True, encrypted_by_default: bool = False
) -> str:
    rds = _client("rds")
    kwargs: dict = {"StorageEncrypted": True, "KmsKeyId": kms_key} if kms_key else {}
    if encrypted_by_default:
        kwargs = {"StorageEncrypted": True}  # under the account's aws/rds key
    rds.create_db_instance(
        DBInstanceIdentifier="orders-db",
        DBInstanceClass="db.t4g.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="dbadmin",
        MasterUserPassword="sandbox-only-password",
        **kwargs,
    )
    snapshot = rds.create_db_snapshot(
        DBInstanceIdentifier="orders-db", DBSnapshotIdentifier="orders-db-dr"
    )["DBSnapshot"]
    if share:
        rds.modify_db_snapshot_attribute(
            DBSnapshotIdentifier="orders-db-dr", AttributeName="restore", ValuesToAdd=[VAULT]
        )
    return str(snapshot["DBSnapshotArn"])


def test_vault_copies_a_shared_db_snapshot_under_its_own_key(aws):
    dr_key = _workload_key(_client("kms"), vault_may_use=True)
    arn = _shared_db_snapshot(dr_key)
    vault_key = _vault_key()
    vault = _client("rds", VAULT)
    copy = vault.copy_db_snapshot(
        SourceDBSnapshotIdentifier=arn,
        TargetDBSnapshotIdentifier="vault-orders-db",
        KmsKeyId=vault_key,
    )["DBSnapshot"]
    assert copy["DBSnapshotArn"].startswith(f"arn:aws:rds:{DR}:{VAULT}:snapshot:")
    assert copy["KmsKeyId"] == vault_key and copy["Encrypted"] is True
    (found,) = vault.describe_db_snapshots(DBSnapshotIdentifier="vault-orders-db")["DBSnapshots"]
    assert found["Status"] == "available"
    # The workload does not hold the vault's copy.
    with pytest.raises(ClientError) as exc:
        _client("rds").delete_db_snapshot(DBSnapshotIdentifier="vault-orders-db")
    assert _error(exc)[0] == "DBSnapshotNotFound"


def test_a_db_snapshot_not_shared_with_the_vault_is_not_found(aws):
    dr_key = _workload_key(_client("kms"), vault_may_use=True)
    arn = _shared_db_snapshot(dr_key, share=False)
    with pytest.raises(ClientError) as exc:
        _client("rds", VAULT).copy_db_snapshot(
            SourceDBSnapshotIdentifier=arn, TargetDBSnapshotIdentifier="copy", KmsKeyId=_vault_key()
        )
    assert _error(exc) == ("DBSnapshotNotFound", f"DBSnapshot {arn} not found.")


def test_a_shared_db_snapshot_under_a_key_the_vault_may_not_use_is_refused(aws):
    dr_key = _workload_key(_client("kms"), vault_may_use=False)
    arn = _shared_db_snapshot(dr_key)
    with pytest.raises(ClientError) as exc:
        _client("rds", VAULT).copy_db_snapshot(
            SourceDBSnapshotIdentifier=arn, TargetDBSnapshotIdentifier="copy", KmsKeyId=_vault_key()
        )
    code, message = _error(exc)
    assert code == "KMSKeyNotAccessibleFault"
    assert message.startswith(f"The source snapshot KMS key [{dr_key}] does not exist")


def test_a_shared_encrypted_db_snapshot_needs_a_kms_key_id(aws):
    dr_key = _workload_key(_client("kms"), vault_may_use=True)
    arn = _shared_db_snapshot(dr_key)
    with pytest.raises(ClientError) as exc:
        _client("rds", VAULT).copy_db_snapshot(
            SourceDBSnapshotIdentifier=arn, TargetDBSnapshotIdentifier="copy"
        )
    assert _error(exc)[0] == "InvalidParameterValue"


def test_a_cross_account_db_snapshot_copy_takes_its_copy_time(aws):
    dr_key = _workload_key(_client("kms"), vault_may_use=True)
    arn = _shared_db_snapshot(dr_key)
    vault = _client("rds", VAULT)
    realism.configure("timing", copy_seconds=1800)
    copy = vault.copy_db_snapshot(
        SourceDBSnapshotIdentifier=arn, TargetDBSnapshotIdentifier="copy", KmsKeyId=_vault_key()
    )["DBSnapshot"]
    assert copy["Status"] == "creating"
    realism.advance(1800)
    (found,) = vault.describe_db_snapshots(DBSnapshotIdentifier="copy")["DBSnapshots"]
    assert found["Status"] == "available"


# -- KMS -----------------------------------------------------------------------------------------


def test_the_vault_may_describe_the_workload_key_only_when_its_policy_says_so(aws):
    kms = _client("kms")
    key = _workload_key(kms, vault_may_use=False)
    vault = _client("kms", VAULT)
    with pytest.raises(ClientError) as exc:
        vault.describe_key(KeyId=key)
    code, message = _error(exc)
    assert code == "AccessDeniedException"
    assert message == (
        f"User: arn:aws:sts::{VAULT}:assumed-role/{accounts.ADMIN_ROLE_NAME}/securedr-sandbox "
        f"is not authorized to perform: kms:DescribeKey on resource: {key} because no "
        "resource-based policy allows the kms:DescribeKey action"
    )
    accounts.allow_vault_on_key(DR, key, VAULT)
    assert vault.describe_key(KeyId=key)["KeyMetadata"]["Arn"] == key
    # A grant the caller asks for itself is not one "for an AWS resource": refused.
    with pytest.raises(ClientError) as exc:
        vault.create_grant(
            KeyId=key, GranteePrincipal=f"arn:aws:iam::{VAULT}:root", Operations=["Decrypt"]
        )
    assert _error(exc)[0] == "AccessDeniedException"
    # Not shared with the third account.
    with pytest.raises(ClientError) as exc:
        _client("kms", accounts.THIRD_ACCOUNT).describe_key(KeyId=key)
    assert _error(exc)[0] == "AccessDeniedException"


@pytest.mark.parametrize(
    "call",
    [
        lambda kms, key: kms.disable_key(KeyId=key),
        lambda kms, key: kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7),
        lambda kms, key: kms.put_key_policy(KeyId=key, PolicyName="default", Policy="{}"),
        lambda kms, key: kms.get_key_policy(KeyId=key, PolicyName="default"),
    ],
    ids=["DisableKey", "ScheduleKeyDeletion", "PutKeyPolicy", "GetKeyPolicy"],
)
def test_key_administration_never_crosses_accounts(aws, call):
    vault_kms = _client("kms", VAULT)
    key = vault_kms.create_key(
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": [f"arn:aws:iam::{VAULT}:root", WORKLOAD]},
                        "Action": "kms:*",
                        "Resource": "*",
                    }
                ],
            }
        )
    )["KeyMetadata"]["Arn"]
    workload_kms = _client("kms")
    assert workload_kms.describe_key(KeyId=key)["KeyMetadata"]["Arn"] == key  # policy allows use
    with pytest.raises(ClientError) as exc:
        call(workload_kms, key)
    assert _error(exc)[0] == "AccessDeniedException"
    metadata = vault_kms.describe_key(KeyId=key)["KeyMetadata"]
    assert metadata["KeyState"] == "Enabled"
    assert WORKLOAD in vault_kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]


def test_a_key_id_alone_names_a_key_of_the_callers_own_account(aws):
    key = _client("kms", VAULT).create_key()["KeyMetadata"]
    with pytest.raises(ClientError) as exc:
        _client("kms").describe_key(KeyId=key["KeyId"])
    assert _error(exc)[0] == "NotFoundException"


def test_sandbox_key_id_tag_fixes_the_key_id(aws):
    wanted = "5ec0dd00-0000-4000-8000-00000000beef"
    kms = _client("kms", VAULT)
    key = kms.create_key(
        Tags=[
            {"TagKey": "securedr:sandbox-key-id", "TagValue": wanted},
            {"TagKey": "team", "TagValue": "dr"},
        ]
    )["KeyMetadata"]
    assert key["KeyId"] == wanted
    assert key["Arn"] == f"arn:aws:kms:{DR}:{VAULT}:key/{wanted}"
    assert kms.list_resource_tags(KeyId=wanted)["Tags"] == [{"TagKey": "team", "TagValue": "dr"}]
    ciphertext = kms.encrypt(KeyId=key["Arn"], Plaintext=b"x")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=ciphertext)["Plaintext"] == b"x"


def test_a_failed_copy_cannot_be_locked_and_loses_a_lock_taken_while_pending(aws):
    dr_key = _workload_key(_client("kms"), vault_may_use=False)
    shared = _shared_dr_copy(_client("ec2"), dr_key)
    vault = _client("ec2", VAULT)
    realism.configure("timing", copy_seconds=600)
    copy_id = vault.copy_snapshot(SourceSnapshotId=shared, SourceRegion=DR, KmsKeyId=_vault_key())[
        "SnapshotId"
    ]
    vault.lock_snapshot(SnapshotId=copy_id, LockMode="compliance", CoolOffPeriod=1, LockDuration=1)
    assert [s["SnapshotId"] for s in vault.describe_locked_snapshots()["Snapshots"]] == [copy_id]
    realism.advance(600)
    # "If the snapshot creation fails for any reason, the lock is canceled."
    assert vault.describe_locked_snapshots()["Snapshots"] == []
    with pytest.raises(ClientError) as exc:
        vault.lock_snapshot(SnapshotId=copy_id, LockMode="compliance", LockDuration=1)
    assert _error(exc)[0] == "IncorrectState"
    vault.delete_snapshot(SnapshotId=copy_id)  # a failed copy can be cleaned up


def test_vault_copies_restore_after_the_workload_lost_everything(aws):
    """The compromise case: the workload deletes its volumes, DB and snapshots and disables its
    key; the vault still restores from its own copies, under its own key."""
    kms, ec2, rds = _client("kms"), _client("ec2"), _client("rds")
    dr_key = _workload_key(kms, vault_may_use=True)
    shared = _shared_dr_copy(ec2, dr_key)
    db_arn = _shared_db_snapshot(dr_key)
    vault_key = _vault_key()
    vault_ec2, vault_rds = _client("ec2", VAULT), _client("rds", VAULT)
    ebs_copy = vault_ec2.copy_snapshot(
        SourceSnapshotId=shared, SourceRegion=DR, KmsKeyId=vault_key
    )["SnapshotId"]
    vault_rds.copy_db_snapshot(
        SourceDBSnapshotIdentifier=db_arn, TargetDBSnapshotIdentifier="vault-db", KmsKeyId=vault_key
    )

    for snapshot in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]:
        ec2.delete_snapshot(SnapshotId=snapshot["SnapshotId"])
    for volume in ec2.describe_volumes()["Volumes"]:
        ec2.delete_volume(VolumeId=volume["VolumeId"])
    rds.delete_db_snapshot(DBSnapshotIdentifier="orders-db-dr")
    rds.delete_db_instance(DBInstanceIdentifier="orders-db", SkipFinalSnapshot=True)
    kms.disable_key(KeyId=dr_key)
    kms.schedule_key_deletion(KeyId=dr_key, PendingWindowInDays=7)

    volume = vault_ec2.create_volume(AvailabilityZone=f"{DR}a", SnapshotId=ebs_copy)
    assert volume["Encrypted"] is True  # (moto does not carry the snapshot's key to the volume)
    restored = vault_rds.restore_db_instance_from_db_snapshot(
        DBInstanceIdentifier="orders-db-restored", DBSnapshotIdentifier="vault-db"
    )["DBInstance"]
    assert restored["DBInstanceArn"].startswith(f"arn:aws:rds:{DR}:{VAULT}:db:")
    assert restored["KmsKeyId"] == vault_key
    assert rds.describe_db_instances()["DBInstances"] == []  # nothing came back to the workload


def test_snapshots_under_the_owners_aws_managed_key_cannot_be_copied_by_another_account(aws):
    """AWS managed keys (aws/ebs, aws/rds) cannot be shared, so neither can what they encrypt."""
    ec2 = _client("ec2")
    volume = ec2.create_volume(AvailabilityZone=f"{DR}a", Size=1, Encrypted=True)["VolumeId"]
    snapshot = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    ec2.modify_snapshot_attribute(
        SnapshotId=snapshot,
        Attribute="createVolumePermission",
        OperationType="add",
        UserIds=[VAULT],
    )
    vault = _client("ec2", VAULT)
    copy_id = vault.copy_snapshot(
        SourceSnapshotId=snapshot, SourceRegion=DR, KmsKeyId=_vault_key()
    )["SnapshotId"]
    (info,) = vault.describe_snapshots(SnapshotIds=[copy_id])["Snapshots"]
    assert (info["State"], info["StateMessage"]) == ("error", "Given key ID is not accessible")

    arn = _shared_db_snapshot(None, encrypted_by_default=True)
    with pytest.raises(ClientError) as exc:
        _client("rds", VAULT).copy_db_snapshot(
            SourceDBSnapshotIdentifier=arn, TargetDBSnapshotIdentifier="copy", KmsKeyId=_vault_key()
        )
    assert _error(exc)[0] == "KMSKeyNotAccessibleFault"


def test_an_unencrypted_shared_snapshot_is_copied_encrypted_under_the_vault_key(aws):
    ec2 = _client("ec2")
    volume = ec2.create_volume(AvailabilityZone=f"{DR}a", Size=1)["VolumeId"]
    snapshot = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    ec2.modify_snapshot_attribute(
        SnapshotId=snapshot,
        Attribute="createVolumePermission",
        OperationType="add",
        UserIds=[VAULT],
    )
    vault, key = _client("ec2", VAULT), _vault_key()
    copy_id = vault.copy_snapshot(
        SourceSnapshotId=snapshot, SourceRegion=DR, Encrypted=True, KmsKeyId=key
    )["SnapshotId"]
    (info,) = vault.describe_snapshots(SnapshotIds=[copy_id])["Snapshots"]
    assert (info["State"], info["Encrypted"], info["KmsKeyId"]) == ("completed", True, key)


def test_the_recovery_environment_is_built_once_in_the_recovery_account(aws, vault_plan):
    first = accounts.ensure_recovery_environment(vault_plan, aws)
    assert first == accounts.ensure_recovery_environment(vault_plan, aws)  # found, not rebuilt
    assert first["account_id"] == VAULT
    name = vault_plan.restore.db_subnet_group
    groups = _client("rds", VAULT).describe_db_subnet_groups(DBSubnetGroupName=name)
    assert len(groups["DBSubnetGroups"][0]["Subnets"]) == 2
    with pytest.raises(ClientError):
        _client("rds").describe_db_subnet_groups(DBSubnetGroupName=name)  # not the workload's
