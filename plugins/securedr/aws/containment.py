"""Containment for DR incidents: only safe, reversible actions, each idempotent.

One function per action named in :mod:`securedr.core.incident`. Each reads the current state
first and changes only what is still wrong, so a retry (or a second event about the same
change) does nothing twice, and each returns a :class:`ContainmentResult`:

- ``contained``: this call put the protection back;
- ``already-contained``: nothing left to undo (someone, or an earlier try, already did);
- ``skipped``: the resource is not SecureDR's (a snapshot without SecureDR's lineage tags is
  left alone: unsharing someone else's snapshot is not ours to do);
- ``failed``: AWS refused; ``detail`` has its error code and message.

Nothing here deletes, overwrites a policy, or removes a share that the incident did not add.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from securedr.aws import ebs, rds
from securedr.aws.errors import ServiceClients, error_code, retry_config
from securedr.core import incident as inc
from securedr.core.model import TAG_MANAGED, TAG_PLAN, TAG_ROLE


class SessionClients(ServiceClients):
    """Clients built from one session of the Airflow connection, one per (service, Region).

    Seconds count in incident response: every :class:`~securedr.aws.clients.AwsClients` client
    builds its own provider hook, and each hook looks the connection up again (inside a task,
    a call to the API server). Here the hook, its connection and its session are made once;
    credentials, assumed roles and endpoints are the connection's, exactly as for the hook's
    own clients (``AwsBaseHook.get_client_type`` does the same per client).
    """

    def __init__(self, aws_conn_id: str | None = "aws_default") -> None:
        self.aws_conn_id = aws_conn_id
        self._hook: Any = None
        self._session: Any = None
        self._clients: dict[tuple[str, str], Any] = {}

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:
            if self._hook is None:
                from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

                self._hook = AwsBaseHook(
                    aws_conn_id=self.aws_conn_id, client_type="sts", config=retry_config()
                )
                self._session = self._hook.get_session()
            self._clients[key] = self._session.client(
                service,
                region_name=region,
                endpoint_url=self._hook.conn_config.get_service_endpoint_url(service),
                config=retry_config(),
                verify=self._hook.verify,
            )
        return self._clients[key]


CONTAINED = "contained"
ALREADY_CONTAINED = "already-contained"
SKIPPED = "skipped"
FAILED = "failed"
ALERT_ONLY = "alert-only"


@dataclass(frozen=True)
class ContainmentResult:
    action: str
    outcome: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"action": self.action, "outcome": self.outcome, "detail": self.detail}


def _ours(tags: Mapping[str, str], plan_name: str) -> bool:
    return tags.get(TAG_PLAN) == plan_name and bool(tags.get(TAG_ROLE) or tags.get(TAG_MANAGED))


def unshare_ebs_snapshot(
    ec2: Any, snapshot_id: str, group_names: list[str], user_ids: list[str], plan_name: str
) -> tuple[str, str]:
    """Remove the ``createVolumePermission`` entries the incident added, if still there.

    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_ModifySnapshotAttribute.html
    """
    found = ec2.describe_snapshots(SnapshotIds=[snapshot_id]).get("Snapshots", [])
    tags = {t["Key"]: t["Value"] for t in (found[0].get("Tags") or [])} if found else {}
    if not _ours(tags, plan_name):
        return SKIPPED, f"{snapshot_id} carries no {TAG_PLAN}={plan_name} lineage tag"
    current = ebs.sharing(ec2, snapshot_id)
    groups = [p["Group"] for p in current if p.get("Group") in group_names]
    users = [p["UserId"] for p in current if p.get("UserId") in user_ids]
    if not groups and not users:
        return ALREADY_CONTAINED, f"{snapshot_id} is no longer shared with {group_names + user_ids}"
    ebs.make_private(
        ec2, snapshot_id, [{"Group": g} for g in groups] + [{"UserId": u} for u in users]
    )
    return CONTAINED, f"removed {groups + users} from {snapshot_id}'s createVolumePermission"


def unshare_db_snapshot(
    rds_client: Any, snapshot_id: str, values: list[str], plan_name: str
) -> tuple[str, str]:
    """Remove the ``restore`` attribute values the incident added, if still there.

    https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_ModifyDBSnapshotAttribute.html
    """
    found = rds_client.describe_db_snapshots(DBSnapshotIdentifier=snapshot_id)["DBSnapshots"]
    tags = {t["Key"]: t["Value"] for t in (found[0].get("TagList") or [])} if found else {}
    if not _ours(tags, plan_name):
        return SKIPPED, f"{snapshot_id} carries no {TAG_PLAN}={plan_name} lineage tag"
    still = [v for v in rds.sharing(rds_client, snapshot_id) if v in values]
    if not still:
        return ALREADY_CONTAINED, f"{snapshot_id} is no longer shared with {values}"
    rds.make_private(rds_client, snapshot_id, still)
    return CONTAINED, f"removed {still} from {snapshot_id}'s restore attribute"


def block_snapshot_public_access(ec2: Any, state: str) -> tuple[str, str]:
    """Turn EBS snapshot block public access back on in the Region (``state``).

    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_EnableSnapshotBlockPublicAccess.html
    """
    current = ec2.get_snapshot_block_public_access_state()["State"]
    if current in ("block-all-sharing", "block-new-sharing"):
        return ALREADY_CONTAINED, f"snapshot block public access is {current}"
    ec2.enable_snapshot_block_public_access(State=state)
    return CONTAINED, f"snapshot block public access set to {state} (was {current})"


def restore_key(kms: Any, key_id: str) -> tuple[str, str]:
    """Cancel a pending deletion, then enable the key (CancelKeyDeletion leaves it Disabled).

    https://docs.aws.amazon.com/kms/latest/APIReference/API_CancelKeyDeletion.html
    https://docs.aws.amazon.com/kms/latest/APIReference/API_EnableKey.html
    """
    metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    # The key's id from here on: every KMS API takes it (moto 5.2.5's EnableKey and
    # CancelKeyDeletion do not resolve ARNs, which AWS accepts).
    key_id, state = metadata["KeyId"], metadata["KeyState"]
    done = []
    if state == "PendingDeletion":
        kms.cancel_key_deletion(KeyId=key_id)
        done.append("CancelKeyDeletion")
        state = kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"]
    if state == "Disabled":
        kms.enable_key(KeyId=key_id)
        done.append("EnableKey")
    if not done:
        return ALREADY_CONTAINED, f"key {key_id} is {state}"
    return CONTAINED, f"{' + '.join(done)} on {key_id}"


def enable_bucket_versioning(s3: Any, bucket: str) -> tuple[str, str]:
    """Versioning back to Enabled (https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutBucketVersioning.html)."""
    status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    if status == "Enabled":
        return ALREADY_CONTAINED, f"versioning of {bucket} is Enabled"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return CONTAINED, f"versioning of {bucket} set to Enabled (was {status or 'never enabled'})"


_ALL_BLOCKED = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def block_bucket_public_access(s3: Any, bucket: str) -> tuple[str, str]:
    """All four public access block settings on (https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutPublicAccessBlock.html)."""
    try:
        current = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except ClientError as exc:
        if error_code(exc) != "NoSuchPublicAccessBlockConfiguration":
            raise
        current = {}
    if all(current.get(k) for k in _ALL_BLOCKED):
        return ALREADY_CONTAINED, f"public access block of {bucket} is fully on"
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=dict(_ALL_BLOCKED))
    return CONTAINED, f"public access block of {bucket} fully on"


def contain(clients: Any, incident: inc.Incident, plan_name: str) -> ContainmentResult:
    """Run the incident's containment (or report it as alert-only); never raises for AWS errors."""
    action = incident.containment
    if action is None:
        return ContainmentResult(ALERT_ONLY, ALERT_ONLY, "nothing safe and reversible to undo")
    p, region = action.params, action.region
    runners: dict[str, Callable[[], tuple[str, str]]] = {
        inc.UNSHARE_EBS_SNAPSHOT: lambda: unshare_ebs_snapshot(
            clients.ec2(region), p["snapshot_id"], p["group_names"], p["user_ids"], plan_name
        ),
        inc.UNSHARE_DB_SNAPSHOT: lambda: unshare_db_snapshot(
            clients.rds(region), p["snapshot_id"], p["values"], plan_name
        ),
        inc.BLOCK_SNAPSHOT_PUBLIC_ACCESS: lambda: block_snapshot_public_access(
            clients.ec2(region), p["state"]
        ),
        inc.CANCEL_KEY_DELETION: lambda: restore_key(clients.kms(region), p["key_id"]),
        inc.ENABLE_KEY: lambda: restore_key(clients.kms(region), p["key_id"]),
        inc.ENABLE_BUCKET_VERSIONING: lambda: enable_bucket_versioning(
            clients.s3(region), p["bucket"]
        ),
        inc.BLOCK_BUCKET_PUBLIC_ACCESS: lambda: block_bucket_public_access(
            clients.s3(region), p["bucket"]
        ),
    }
    runner = runners.get(action.action)
    if runner is None:
        return ContainmentResult(action.action, FAILED, f"unknown containment {action.action!r}")
    try:
        outcome, detail = runner()
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        return ContainmentResult(action.action, FAILED, f"{error_code(exc)}: {message}")
    return ContainmentResult(action.action, outcome, detail)
