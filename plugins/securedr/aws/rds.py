"""RDS DB snapshots: discovery, creation, cross-Region copy, sharing and deletion.

Describes are batched through the ``db-snapshot-id`` filter and paginated (MaxRecords 100).
Snapshot identifiers are deterministic per (database, run), so a retried call finds its own work.
"""

from __future__ import annotations

from typing import Any

from securedr.aws.errors import chunks
from securedr.core.model import Resource, dict_to_tags, tags_to_dict

DESCRIBE_BATCH = 50
PAGE_SIZE = 100


def unsupported_reason(db: dict[str, Any]) -> str | None:
    """Why SecureDR cannot snapshot and copy this DB instance, or None if it can."""
    cluster = db.get("DBClusterIdentifier")
    if cluster:
        # CreateDBSnapshot refuses cluster members: "use CreateDBClusterSnapshot" instead.
        # https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBSnapshot.html
        return (
            f"unsupported: member of DB cluster {cluster!r}; a cluster is backed up with DB "
            "cluster snapshots, which SecureDR does not take yet. Remove the selection tag from "
            "the instance (protect the cluster with AWS Backup meanwhile)"
        )
    engine = str(db.get("Engine") or "")
    if engine.startswith("custom-"):
        # "This command doesn't apply to RDS Custom."
        # https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CopyDBSnapshot.html
        return (
            f"unsupported: RDS Custom (engine {engine}) snapshots cannot be copied to another "
            "Region with CopyDBSnapshot. Remove the selection tag from the instance"
        )
    return None


def discover_instances(rds: Any, region: str, tag_key: str, tag_value: str) -> list[Resource]:
    """DB instances carrying ``tag_key=tag_value`` (all pages); cluster members and RDS Custom
    instances come back with ``unsupported`` set, so the run names them instead of failing."""
    found: list[Resource] = []
    pages = rds.get_paginator("describe_db_instances").paginate(
        PaginationConfig={"PageSize": PAGE_SIZE}
    )
    for page in pages:
        for db in page["DBInstances"]:
            tags = tags_to_dict(db.get("TagList"))
            if tags.get(tag_key) != tag_value or db.get("DBInstanceStatus") == "deleting":
                continue
            found.append(
                Resource(
                    kind="rds",
                    region=region,
                    resource_id=db["DBInstanceIdentifier"],
                    name=tags.get("Name", db["DBInstanceIdentifier"]),
                    size_gib=int(db.get("AllocatedStorage", 0)),
                    encrypted=bool(db.get("StorageEncrypted")),
                    kms_key_id=db.get("KmsKeyId"),
                    engine=db.get("Engine"),
                    option_group=next(
                        (
                            m.get("OptionGroupName")
                            for m in db.get("OptionGroupMemberships") or []
                            if m.get("OptionGroupName")
                        ),
                        None,
                    ),
                    unsupported=unsupported_reason(db),
                )
            )
    return found


def describe_requests(identifiers: list[str]) -> list[dict[str, Any]]:
    return [
        {"Filters": [{"Name": "db-snapshot-id", "Values": batch}], "MaxRecords": PAGE_SIZE}
        for batch in chunks(sorted(set(identifiers)), DESCRIBE_BATCH)
    ]


def describe_snapshots(rds: Any, identifiers: list[str]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for request in describe_requests(identifiers):
        for page in rds.get_paginator("describe_db_snapshots").paginate(**request):
            result.update({s["DBSnapshotIdentifier"]: s for s in page["DBSnapshots"]})
    return result


async def describe_snapshots_async(rds: Any, identifiers: list[str]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for request in describe_requests(identifiers):
        async for page in rds.get_paginator("describe_db_snapshots").paginate(**request):
            result.update({s["DBSnapshotIdentifier"]: s for s in page["DBSnapshots"]})
    return result


def list_manual_snapshots(rds: Any) -> list[dict[str, Any]]:
    """Every manual DB snapshot in the Region, with its tags."""
    snapshots: list[dict[str, Any]] = []
    pages = rds.get_paginator("describe_db_snapshots").paginate(
        SnapshotType="manual", PaginationConfig={"PageSize": PAGE_SIZE}
    )
    for page in pages:
        snapshots.extend(page["DBSnapshots"])
    return snapshots


def create_snapshot(rds: Any, db_identifier: str, snapshot_identifier: str, tags: dict) -> dict:
    return rds.create_db_snapshot(
        DBInstanceIdentifier=db_identifier,
        DBSnapshotIdentifier=snapshot_identifier,
        Tags=dict_to_tags(tags),
    )["DBSnapshot"]


def copy_request(
    *,
    source_region: str,
    source_arn: str,
    target_identifier: str,
    kms_key_arn: str,
    tags: dict[str, str],
    option_group: str | None = None,
) -> dict[str, Any]:
    """CopyDBSnapshot's parameters: a cross-Region copy encrypted under ``kms_key_arn`` (with
    ``SourceRegion`` set, botocore and aiobotocore presign the source URL).

    ``option_group`` is the DR Region's option group for the copy. AWS: "Specify this option if
    you are copying a snapshot from one AWS Region to another, and your DB instance uses a
    nondefault option group. If your source DB instance uses Transparent Data Encryption for
    Oracle or Microsoft SQL Server, you must specify this option when copying across AWS Regions."
    https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CopyDBSnapshot.html
    """
    request: dict[str, Any] = {
        "SourceDBSnapshotIdentifier": source_arn,
        "TargetDBSnapshotIdentifier": target_identifier,
        "KmsKeyId": kms_key_arn,
        "SourceRegion": source_region,
        "Tags": dict_to_tags(tags),
        "CopyTags": False,
    }
    if option_group:
        request["OptionGroupName"] = option_group
    return request


def sharing(rds: Any, identifier: str) -> list[str]:
    """Accounts (or ``all``) allowed to restore the snapshot; ``[]`` means private."""
    result = rds.describe_db_snapshot_attributes(DBSnapshotIdentifier=identifier)
    for attribute in result["DBSnapshotAttributesResult"]["DBSnapshotAttributes"]:
        if attribute["AttributeName"] == "restore":
            return list(attribute.get("AttributeValues", []))
    return []


def make_private(rds: Any, identifier: str, accounts: list[str]) -> None:
    rds.modify_db_snapshot_attribute(
        DBSnapshotIdentifier=identifier, AttributeName="restore", ValuesToRemove=accounts
    )


def add_tags(rds: Any, arn: str, tags: dict[str, str]) -> None:
    rds.add_tags_to_resource(ResourceName=arn, Tags=dict_to_tags(tags))


def delete_snapshot(rds: Any, identifier: str) -> None:
    rds.delete_db_snapshot(DBSnapshotIdentifier=identifier)
