"""EBS snapshots: discovery, creation, cross-Region copy, sharing and deletion.

Every describe is batched (up to 200 ids per call through a ``snapshot-id`` filter, which, unlike
``SnapshotIds``, does not fail the whole call when one id is gone) and paginated.
"""

from __future__ import annotations

from typing import Any

from securedr.aws.errors import EC2_FILTER_VALUES, chunks, page_config
from securedr.core.model import Resource, dict_to_tags, tags_to_dict

DESCRIBE_BATCH = EC2_FILTER_VALUES


def discover_volumes(ec2: Any, region: str, tag_key: str, tag_value: str) -> list[Resource]:
    """Volumes tagged ``tag_key=tag_value`` (all pages), excluding ones being deleted; a volume
    in the ``error`` state comes back with ``unsupported`` set, so the run names it."""
    found: list[Resource] = []
    pages = ec2.get_paginator("describe_volumes").paginate(
        Filters=[{"Name": f"tag:{tag_key}", "Values": [tag_value]}],
        PaginationConfig=page_config("describe_volumes"),
    )
    for page in pages:
        for volume in page["Volumes"]:
            if volume.get("State") in ("deleting", "deleted"):
                continue
            tags = tags_to_dict(volume.get("Tags"))
            found.append(
                Resource(
                    kind="ebs",
                    region=region,
                    resource_id=volume["VolumeId"],
                    name=tags.get("Name", volume["VolumeId"]),
                    size_gib=int(volume.get("Size", 0)),
                    encrypted=bool(volume.get("Encrypted")),
                    kms_key_id=volume.get("KmsKeyId"),
                    volume_type=volume.get("VolumeType"),
                    iops=volume.get("Iops"),
                    throughput=volume.get("Throughput"),
                    unsupported=(
                        "the volume is in the 'error' state (its data may be lost); restore it "
                        "from an earlier recovery point or replace it"
                        if volume.get("State") == "error"
                        else None
                    ),
                )
            )
    return found


def describe_requests(snapshot_ids: list[str]) -> list[dict[str, Any]]:
    """The DescribeSnapshots calls that cover ``snapshot_ids`` (one per batch)."""
    return [
        {
            "Filters": [{"Name": "snapshot-id", "Values": batch}],
            "OwnerIds": ["self"],
            "PaginationConfig": page_config("describe_snapshots"),
        }
        for batch in chunks(sorted(set(snapshot_ids)), DESCRIBE_BATCH)
    ]


def describe_snapshots(ec2: Any, snapshot_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Snapshots by id; ids AWS does not know are simply absent from the result."""
    result: dict[str, dict[str, Any]] = {}
    for request in describe_requests(snapshot_ids):
        for page in ec2.get_paginator("describe_snapshots").paginate(**request):
            result.update({s["SnapshotId"]: s for s in page["Snapshots"]})
    return result


async def describe_snapshots_async(ec2: Any, snapshot_ids: list[str]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for request in describe_requests(snapshot_ids):
        async for page in ec2.get_paginator("describe_snapshots").paginate(**request):
            result.update({s["SnapshotId"]: s for s in page["Snapshots"]})
    return result


def _find_request(tags: dict[str, str]) -> dict[str, Any]:
    return {
        "Filters": [{"Name": f"tag:{k}", "Values": [v]} for k, v in sorted(tags.items())],
        "OwnerIds": ["self"],
        "PaginationConfig": page_config("describe_snapshots"),
    }


def find_snapshots(ec2: Any, tags: dict[str, str]) -> list[dict[str, Any]]:
    """Snapshots owned by this account that carry every one of ``tags``."""
    snapshots: list[dict[str, Any]] = []
    for page in ec2.get_paginator("describe_snapshots").paginate(**_find_request(tags)):
        snapshots.extend(page["Snapshots"])
    return snapshots


async def find_snapshots_async(ec2: Any, tags: dict[str, str]) -> list[dict[str, Any]]:
    snapshots: list[dict[str, Any]] = []
    async for page in ec2.get_paginator("describe_snapshots").paginate(**_find_request(tags)):
        snapshots.extend(page["Snapshots"])
    return snapshots


def create_snapshot(ec2: Any, volume_id: str, tags: dict[str, str], description: str) -> dict:
    return ec2.create_snapshot(
        VolumeId=volume_id,
        Description=description,
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": dict_to_tags(tags)}],
    )


def copy_request(
    *,
    source_region: str,
    snapshot_id: str,
    kms_key_arn: str,
    tags: dict[str, str],
    description: str,
) -> dict[str, Any]:
    """CopySnapshot's parameters: always encrypted, under ``kms_key_arn``, tagged at creation."""
    return {
        "SourceRegion": source_region,
        "SourceSnapshotId": snapshot_id,
        "Encrypted": True,
        "KmsKeyId": kms_key_arn,
        "Description": description,
        "TagSpecifications": [{"ResourceType": "snapshot", "Tags": dict_to_tags(tags)}],
    }


def sharing(ec2: Any, snapshot_id: str) -> list[dict[str, str]]:
    """Who may create volumes from the snapshot (``[]`` means nobody but the owner)."""
    response = ec2.describe_snapshot_attribute(
        SnapshotId=snapshot_id, Attribute="createVolumePermission"
    )
    return list(response.get("CreateVolumePermissions", []))


def make_private(ec2: Any, snapshot_id: str, permissions: list[dict[str, str]]) -> None:
    """Remove every ``createVolumePermission`` (public ``all`` group and account shares)."""
    ec2.modify_snapshot_attribute(
        SnapshotId=snapshot_id,
        Attribute="createVolumePermission",
        OperationType="remove",
        GroupNames=[p["Group"] for p in permissions if "Group" in p],
        UserIds=[p["UserId"] for p in permissions if "UserId" in p],
    )


def add_tags(ec2: Any, snapshot_ids: list[str], tags: dict[str, str]) -> None:
    for batch in chunks(snapshot_ids, 1000):
        ec2.create_tags(Resources=batch, Tags=dict_to_tags(tags))


def delete_snapshot(ec2: Any, snapshot_id: str) -> None:
    ec2.delete_snapshot(SnapshotId=snapshot_id)


#: Lock states in which AWS refuses DeleteSnapshot (``expired`` locks no longer protect).
#: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_LockedSnapshotsInfo.html
LOCKED_STATES = ("compliance-cooloff", "governance", "compliance")
LOCK_BATCH = 200


def locked_snapshots(ec2: Any, snapshot_ids: list[str]) -> dict[str, str]:
    """Which of ``snapshot_ids`` are under a snapshot lock now: id -> lock state.

    Read with DescribeLockedSnapshots (batched, every page followed), so retention never
    attempts a deletion AWS would refuse.
    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeLockedSnapshots.html
    """
    locked: dict[str, str] = {}
    for batch in chunks(sorted(set(snapshot_ids)), LOCK_BATCH):
        request: dict[str, Any] = {
            "SnapshotIds": batch,
            "Filters": [{"Name": "lock-state", "Values": list(LOCKED_STATES)}],
            "MaxResults": 1000,
        }
        while True:
            page = ec2.describe_locked_snapshots(**request)
            for info in page.get("Snapshots", []):
                if info.get("LockState") in LOCKED_STATES:
                    locked[str(info["SnapshotId"])] = str(info["LockState"])
            token = page.get("NextToken")
            if not token:
                break
            request["NextToken"] = token
    return locked
