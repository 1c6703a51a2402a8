"""Seed the demo estate into the sandbox AWS.

The estate exercises what a real one has: tagged EBS volumes in two source Regions (one of them
unencrypted, which must come out encrypted in the DR Region), an encrypted RDS instance, an
untagged volume that must be left alone, a customer-managed key per Region with rotation on, EBS
snapshot block-public-access on, and the Object-Locked evidence bucket in the DR Region.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from securedr.core.plan import Plan, plan_dir

#: Demo contents of the file sets: small config files and a "database dump".
DEMO_FILES = {
    "app.yaml": b"service: orders\nreplicas: 3\nregion: us-east-1\n",
    "feature-flags.json": b'{"checkout_v2": true, "legacy_reports": false}\n',
    "nginx/orders.conf": b"server { listen 443 ssl; server_name orders.example.internal; }\n",
}
DEMO_DUMP = b"-- PostgreSQL database dump (demo)\n" + b"INSERT INTO orders VALUES (1);\n" * 4000


@dataclass
class Estate:
    """What was seeded, by Region."""

    key_arns: dict[str, str] = field(default_factory=dict)
    protected_volumes: dict[str, list[str]] = field(default_factory=dict)
    unprotected_volumes: dict[str, list[str]] = field(default_factory=dict)
    protected_databases: dict[str, list[str]] = field(default_factory=dict)
    bucket: str = ""
    file_sets: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@functools.cache
def _client(service: str, region: str, endpoint_url: str | None) -> Any:
    # Cached: building a botocore client costs about half a second, and tests seed often.
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url)


#: Error codes AWS answers while a resource that was just created is not yet visible.
NOT_YET_VISIBLE = {
    "InvalidVolume.NotFound",
    "InvalidGroup.NotFound",
    "InvalidSnapshot.NotFound",
    "DBInstanceNotFound",
    "DBSnapshotNotFound",
}


def wait_until_visible(describe: Any, *, timeout: float = 60.0, **kwargs: Any) -> Any:
    """Call ``describe(**kwargs)`` until what it asks for by id is visible; return its answer.

    AWS's describes are eventually consistent: a resource created a moment ago can answer
    NotFound (https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html). The
    estate is only handed over once everything in it can be seen.
    """
    import time

    from botocore.exceptions import ClientError

    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        try:
            return describe(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code not in NOT_YET_VISIBLE or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def ensure_key(region: str, alias: str, endpoint_url: str | None) -> str:
    """A customer-managed key with rotation on, reachable by ``alias``; returns its ARN."""
    kms = _client("kms", region, endpoint_url)
    for page in kms.get_paginator("list_aliases").paginate():
        for entry in page["Aliases"]:
            if entry["AliasName"] == alias and entry.get("TargetKeyId"):
                return kms.describe_key(KeyId=alias)["KeyMetadata"]["Arn"]
    key = kms.create_key(Description=f"SecureDR {alias} ({region})", KeyUsage="ENCRYPT_DECRYPT")
    key_id = key["KeyMetadata"]["KeyId"]
    kms.enable_key_rotation(KeyId=key_id)
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    return key["KeyMetadata"]["Arn"]


def _tags(name: str, plan: Plan | None, protected: bool) -> list[dict[str, str]]:
    tags = [{"Key": "Name", "Value": name}, {"Key": "env", "Value": "demo"}]
    if protected and plan is not None:
        tags.append({"Key": plan.selection.tag_key, "Value": plan.selection.tag_value})
    return tags


def create_volume(
    region: str,
    name: str,
    *,
    plan: Plan | None,
    protected: bool,
    kms_key_arn: str | None,
    endpoint_url: str | None,
    size: int = 8,
) -> str:
    ec2 = _client("ec2", region, endpoint_url)
    kwargs: dict[str, Any] = {"AvailabilityZone": f"{region}a", "Size": size, "VolumeType": "gp3"}
    if kms_key_arn:
        kwargs.update(Encrypted=True, KmsKeyId=kms_key_arn)
    kwargs["TagSpecifications"] = [{"ResourceType": "volume", "Tags": _tags(name, plan, protected)}]
    return ec2.create_volume(**kwargs)["VolumeId"]


def create_database(
    region: str, name: str, *, plan: Plan, kms_key_arn: str, endpoint_url: str | None
) -> str:
    rds = _client("rds", region, endpoint_url)
    rds.create_db_instance(
        DBInstanceIdentifier=name,
        DBInstanceClass="db.t4g.micro",
        Engine="postgres",
        EngineVersion="16.3",
        AllocatedStorage=20,
        MasterUsername="dbadmin",
        ManageMasterUserPassword=False,
        MasterUserPassword="sandbox-only-password",  # emulator only, never a real DB
        StorageEncrypted=True,
        KmsKeyId=kms_key_arn,
        PubliclyAccessible=False,
        Tags=_tags(name, plan, protected=True),
    )
    return name


def ensure_evidence_bucket(plan: Plan, key_arn: str, endpoint_url: str | None) -> str:
    """The DR-Region bucket: versioned, Object Lock on with a default retention, SSE-KMS."""
    region = plan.regions.dr
    s3 = _client("s3", region, endpoint_url)
    name = plan.evidence_bucket.name
    try:
        s3.head_bucket(Bucket=name)
    except s3.exceptions.ClientError:
        s3.create_bucket(
            Bucket=name,
            CreateBucketConfiguration={"LocationConstraint": region},
            ObjectLockEnabledForBucket=True,
        )
    s3.put_object_lock_configuration(
        Bucket=name,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {
                "DefaultRetention": {
                    "Mode": plan.evidence_bucket.object_lock_mode,
                    "Days": plan.evidence_bucket.object_lock_days,
                }
            },
        },
    )
    harden_bucket(s3, name, key_arn)
    return name


def harden_bucket(s3: Any, name: str, key_arn: str) -> None:
    """Default SSE-KMS under ``key_arn`` (with a bucket key) and every public access blocked."""
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": key_arn,
                    },
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )


def block_public_snapshots(region: str, endpoint_url: str | None) -> None:
    _client("ec2", region, endpoint_url).enable_snapshot_block_public_access(
        State="block-all-sharing"
    )


def seed(plan: Plan, endpoint_url: str | None) -> Estate:
    """Create the demo estate for ``plan``. Re-running adds resources; run it on a fresh sandbox."""
    estate = Estate()
    for region in plan.all_regions:
        estate.key_arns[region] = ensure_key(region, plan.kms_key(region), endpoint_url)
        block_public_snapshots(region, endpoint_url)
    first, *others = plan.regions.sources
    estate.protected_volumes[first] = [
        create_volume(
            first,
            "orders-data",
            plan=plan,
            protected=True,
            kms_key_arn=estate.key_arns[first],
            endpoint_url=endpoint_url,
            size=50,
        )
    ]
    estate.unprotected_volumes[first] = [
        create_volume(
            first,
            "scratch",
            plan=plan,
            protected=False,
            kms_key_arn=estate.key_arns[first],
            endpoint_url=endpoint_url,
        )
    ]
    estate.protected_databases[first] = [
        create_database(
            first,
            "orders-db",
            plan=plan,
            kms_key_arn=estate.key_arns[first],
            endpoint_url=endpoint_url,
        )
    ]
    for region in others:
        # Unencrypted on purpose: its DR copy must still come out encrypted under the DR key.
        estate.protected_volumes[region] = [
            create_volume(
                region,
                "legacy-reports",
                plan=plan,
                protected=True,
                kms_key_arn=None,
                endpoint_url=endpoint_url,
                size=20,
            )
        ]
    estate.bucket = ensure_evidence_bucket(plan, estate.key_arns[plan.regions.dr], endpoint_url)
    estate.file_sets = seed_file_sets(plan, endpoint_url)
    _wait_for_estate(estate, endpoint_url)
    return estate


def _wait_for_estate(estate: Estate, endpoint_url: str | None) -> None:
    """Return once every volume and database of the estate shows in describes."""
    volumes: dict[str, list[str]] = {}
    for by_region in (estate.protected_volumes, estate.unprotected_volumes):
        for region, ids in by_region.items():
            volumes.setdefault(region, []).extend(ids)
    for region, ids in volumes.items():
        wait_until_visible(_client("ec2", region, endpoint_url).describe_volumes, VolumeIds=ids)
    for region, names in estate.protected_databases.items():
        rds = _client("rds", region, endpoint_url)
        for name in names:
            wait_until_visible(rds.describe_db_instances, DBInstanceIdentifier=name)


def seed_file_sets(plan: Plan, endpoint_url: str | None) -> dict[str, str]:
    """Source data for the plan's file sets: objects in each S3 source (its bucket is created
    in the set's Region), files in each local source directory. Returns set name -> source."""
    seeded: dict[str, str] = {}
    for file_set in plan.file_sets.sets if plan.file_sets else []:
        if file_set.is_s3:
            region = str(file_set.region)
            s3 = _client("s3", region, endpoint_url)
            extra = {} if region == "us-east-1" else {"LocationConstraint": region}
            try:
                s3.head_bucket(Bucket=file_set.bucket)
            except s3.exceptions.ClientError:
                s3.create_bucket(
                    Bucket=file_set.bucket,
                    **({"CreateBucketConfiguration": extra} if extra else {}),
                )
            for name, body in DEMO_FILES.items():
                s3.put_object(Bucket=file_set.bucket, Key=file_set.prefix + name, Body=body)
        else:
            directory = file_set.directory(plan_dir())
            (directory / "daily").mkdir(parents=True, exist_ok=True)
            (directory / "orders-db.sql").write_bytes(DEMO_DUMP)
            (directory / "daily" / "orders-db.schema.sql").write_bytes(
                b"CREATE TABLE orders (id bigint primary key);\n"
            )
        seeded[file_set.name] = file_set.source
    return seeded


#: File names of the demo recovery key pair under ``<home>/keys``.
RECOVERY_PUBLIC_KEY_FILE = "recovery-public-key.txt"
RECOVERY_PRIVATE_KEY_FILE = "offline/recovery-private-key.txt"


def ensure_recovery_key(keys_dir: Path) -> Path:
    """The demo's offline recovery key pair; returns the public key file the plan names.

    Demo only: a real private key is created by ``securedr keygen`` on an offline machine and
    never stored next to the system (here it sits in ``keys/offline/`` for the demo's
    offline-recovery walk-through). Idempotent.
    """
    from securedr.core.envelope import generate_recovery_keypair, identity_file_contents

    public_path = keys_dir / RECOVERY_PUBLIC_KEY_FILE
    private_path = keys_dir / RECOVERY_PRIVATE_KEY_FILE
    if not public_path.exists():
        private, public = generate_recovery_keypair()
        private_path.parent.mkdir(parents=True, exist_ok=True)
        private_path.write_bytes(identity_file_contents(private))
        private_path.chmod(0o600)
        public_path.write_text(
            "# SecureDR offline recovery public key (the private key is kept offline)\n"
            + public.decode("ascii")
            + "\n"
        )
    return public_path


# ---------------------------------------------------------------------- restore (dr_restore)
RESTORE_ROLE_NAME = "securedr-restore"


def ensure_restore_role(
    plan: Plan,
    endpoint_url: str | None,
    *,
    external_id: str,
    dr_key_arn: str,
    principal_arn: str | None = None,
    role_name: str = RESTORE_ROLE_NAME,
) -> str:
    """The restore role with the shipped trust and permissions policies; returns its ARN.

    The policies are rendered from include/iam for ``plan`` (the emulator does not enforce IAM,
    but the documents it holds are the ones a real account would get). Idempotent.
    """
    import json

    from securedr.core import iam

    client = _client("iam", plan.regions.dr, endpoint_url)
    account = _client("sts", plan.regions.dr, endpoint_url).get_caller_identity()["Account"]
    trust = iam.render(
        iam.TRUST_TEMPLATE.read_text(),
        {
            "AirflowPrincipalArn": principal_arn or f"arn:aws:iam::{account}:root",
            "ExternalId": external_id,
        },
    )
    policy = iam.render(
        iam.POLICY_TEMPLATE.read_text(),
        iam.policy_values(plan, account_id=account, dr_key_arn=dr_key_arn),
    )
    try:
        arn = client.get_role(RoleName=role_name)["Role"]["Arn"]
        client.update_assume_role_policy(RoleName=role_name, PolicyDocument=json.dumps(trust))
    except client.exceptions.NoSuchEntityException:
        arn = client.create_role(
            RoleName=role_name,
            AssumeRolePolicyDocument=json.dumps(trust),
            Description="SecureDR restores (dr_restore): least privilege, one run per session",
            MaxSessionDuration=3600,
        )["Role"]["Arn"]
    client.put_role_policy(
        RoleName=role_name, PolicyName="securedr-restore", PolicyDocument=json.dumps(policy)
    )
    return str(arn)


def ensure_restore_network(
    plan: Plan,
    endpoint_url: str | None,
    *,
    name: str = "securedr-restore",
    credentials: Mapping[str, str] | None = None,
) -> tuple[str, str]:
    """A private VPC, two subnets, a security group and a DB subnet group in the DR Region.

    Returns ``(db subnet group name, security group id)`` for ``restore.db_subnet_group`` and
    ``restore.security_group_ids``. Idempotent by name. ``credentials`` (boto3 keyword
    arguments) build it in another account than the default credentials' (the recovery account
    of a vault, see :func:`sandbox.accounts.ensure_recovery_environment`).
    """
    region = plan.regions.dr
    if credentials is None:
        ec2 = _client("ec2", region, endpoint_url)
        rds = _client("rds", region, endpoint_url)
    else:
        ec2 = boto3.client("ec2", region_name=region, endpoint_url=endpoint_url, **credentials)
        rds = boto3.client("rds", region_name=region, endpoint_url=endpoint_url, **credentials)
    groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])
    if groups["SecurityGroups"]:
        sg_id = groups["SecurityGroups"][0]["GroupId"]
    else:
        vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=f"{region}{zone}")[
                "Subnet"
            ]["SubnetId"]
            for cidr, zone in (("10.42.1.0/24", "a"), ("10.42.2.0/24", "b"))
        ]
        sg_id = ec2.create_security_group(
            GroupName=name, Description="SecureDR restored databases", VpcId=vpc
        )["GroupId"]
        rds.create_db_subnet_group(
            DBSubnetGroupName=name,
            DBSubnetGroupDescription="SecureDR restored databases (private)",
            SubnetIds=subnets,
        )
        # Visible by id (and by name, so a second call finds it) before it is handed over.
        wait_until_visible(ec2.describe_security_groups, GroupIds=[sg_id])
    return name, str(sg_id)


def ensure_notification_topic(
    plan: Plan, endpoint_url: str | None, *, name: str = "securedr-restore"
) -> str:
    """An SNS topic in the DR Region for restore notifications; returns its ARN."""
    sns = _client("sns", plan.regions.dr, endpoint_url)
    return str(sns.create_topic(Name=name)["TopicArn"])
