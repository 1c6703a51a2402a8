"""Restoring DR copies: EBS volumes from snapshots and RDS instances from DB snapshots.

Creation is idempotent under retries: volumes are found again by their run and source tags
(and carry an EC2 client token), DB instances have deterministic identifiers. Describes are
batched (filters, not id lists, so one missing resource does not fail the call) and paginated.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from securedr.aws import errors
from securedr.aws.errors import (
    EC2_FILTER_VALUES,
    chunks,
    error_code,
    page_config,
    until_visible,
)
from securedr.core.model import TAG_PLAN, TAG_ROLE, TAG_RUN_ID, dict_to_tags, tags_to_dict
from securedr.core.restore import ROLE_RESTORED, TAG_RESTORED_FROM, restored_state

#: Values per ``volume-id`` filter (EC2 accepts at most 200 values per filter).
DESCRIBE_BATCH = EC2_FILTER_VALUES
#: Values per ``db-instance-id`` filter; RDS documents no number, so batches stay small.
#: https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DescribeDBInstances.html
DB_DESCRIBE_BATCH = 50


class RestoreConflict(Exception):
    """A resource with the deterministic name exists but was not created by this run."""


# --------------------------------------------------------------------------- EBS


def volume_requests(volume_ids: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "Filters": [{"Name": "volume-id", "Values": batch}],
            "PaginationConfig": page_config("describe_volumes"),
        }
        for batch in chunks(sorted(set(volume_ids)), DESCRIBE_BATCH)
    ]


def describe_volumes(ec2: Any, volume_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Volumes by id; ids AWS does not know are absent from the result."""
    result: dict[str, dict[str, Any]] = {}
    for request in volume_requests(volume_ids):
        for page in ec2.get_paginator("describe_volumes").paginate(**request):
            result.update({v["VolumeId"]: v for v in page["Volumes"]})
    return result


async def describe_volumes_async(ec2: Any, volume_ids: list[str]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for request in volume_requests(volume_ids):
        async for page in ec2.get_paginator("describe_volumes").paginate(**request):
            result.update({v["VolumeId"]: v for v in page["Volumes"]})
    return result


def find_restored_volumes(ec2: Any, *, plan: str, run_id: str) -> dict[str, dict[str, Any]]:
    """Volumes this restore run already created, by the DR snapshot they were restored from."""
    filters = [
        {"Name": f"tag:{TAG_PLAN}", "Values": [plan]},
        {"Name": f"tag:{TAG_RUN_ID}", "Values": [run_id]},
        {"Name": f"tag:{TAG_ROLE}", "Values": [ROLE_RESTORED]},
    ]
    found: dict[str, dict[str, Any]] = {}
    pages = ec2.get_paginator("describe_volumes").paginate(
        Filters=filters, PaginationConfig=page_config("describe_volumes")
    )
    for page in pages:
        for volume in page["Volumes"]:
            if volume.get("State") in ("deleting", "deleted", "error"):
                continue
            source = tags_to_dict(volume.get("Tags")).get(TAG_RESTORED_FROM)
            if source:
                found.setdefault(source, volume)
    return found


def create_volume(
    ec2: Any,
    *,
    snapshot_id: str,
    availability_zone: str,
    kms_key_arn: str,
    tags: dict[str, str],
    client_token: str,
    performance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Start restoring ``snapshot_id``: always encrypted, under exactly ``kms_key_arn``.

    ``performance`` is CreateVolume's ``VolumeType`` / ``Iops`` / ``Throughput``
    (:func:`securedr.core.restore.volume_performance`); without it, gp3. The client token makes
    a retried call return the volume the first call created instead of a second one.
    https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html
    """
    return dict(
        ec2.create_volume(
            SnapshotId=snapshot_id,
            AvailabilityZone=availability_zone,
            Encrypted=True,
            KmsKeyId=kms_key_arn,
            **(performance or {"VolumeType": "gp3"}),
            ClientToken=client_token,
            TagSpecifications=[{"ResourceType": "volume", "Tags": dict_to_tags(tags)}],
        )
    )


# --------------------------------------------------------------------------- RDS


def db_requests(identifiers: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "Filters": [{"Name": "db-instance-id", "Values": batch}],
            "PaginationConfig": page_config("describe_db_instances"),
        }
        for batch in chunks(sorted(set(identifiers)), DB_DESCRIBE_BATCH)
    ]


def describe_db_instances(rds: Any, identifiers: list[str]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for request in db_requests(identifiers):
        for page in rds.get_paginator("describe_db_instances").paginate(**request):
            result.update({d["DBInstanceIdentifier"]: d for d in page["DBInstances"]})
    return result


async def describe_db_instances_async(
    rds: Any, identifiers: list[str]
) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for request in db_requests(identifiers):
        async for page in rds.get_paginator("describe_db_instances").paginate(**request):
            result.update({d["DBInstanceIdentifier"]: d for d in page["DBInstances"]})
    return result


def restore_db_instance(
    rds: Any,
    *,
    identifier: str,
    snapshot_identifier: str,
    availability_zone: str,
    subnet_group: str | None,
    security_group_ids: list[str],
    instance_class: str | None,
    tags: dict[str, str],
) -> tuple[dict[str, Any], bool]:
    """Restore ``snapshot_identifier`` as ``identifier``; return (instance, created now).

    Never public (``PubliclyAccessible=False``); storage stays encrypted under the snapshot's key
    (RDS offers no other choice for an encrypted snapshot). If ``identifier`` already exists it is
    adopted only when its tags say this run created it, else :class:`RestoreConflict`.
    """
    kwargs: dict[str, Any] = {
        "DBInstanceIdentifier": identifier,
        "DBSnapshotIdentifier": snapshot_identifier,
        "PubliclyAccessible": False,
        "MultiAZ": False,
        "AvailabilityZone": availability_zone,
        "CopyTagsToSnapshot": True,
        "DeletionProtection": False,
        "Tags": dict_to_tags(tags),
    }
    if subnet_group:
        kwargs["DBSubnetGroupName"] = subnet_group
    if security_group_ids:
        kwargs["VpcSecurityGroupIds"] = list(security_group_ids)
    if instance_class:
        kwargs["DBInstanceClass"] = instance_class
    try:
        return dict(rds.restore_db_instance_from_db_snapshot(**kwargs)["DBInstance"]), True
    except Exception as exc:
        if error_code(exc) not in ("DBInstanceAlreadyExists", "DBInstanceAlreadyExistsFault"):
            raise
    # An instance an earlier try created a moment ago may not be in describes yet.
    existing = until_visible(
        lambda: describe_db_instances(rds, [identifier]), missing=lambda f: identifier not in f
    ).get(identifier)
    if existing is None:
        raise RestoreConflict(
            f"DB instance {identifier} exists but still cannot be described after "
            f"{errors.NOT_FOUND_GRACE_SECONDS:.0f}s; check it in the RDS console"
        )
    owner = tags_to_dict(existing.get("TagList"))
    if owner.get(TAG_RUN_ID) != tags[TAG_RUN_ID] or owner.get(TAG_PLAN) != tags[TAG_PLAN]:
        raise RestoreConflict(
            f"DB instance {identifier} exists but was not created by this restore run "
            f"(its {TAG_RUN_ID} tag is {owner.get(TAG_RUN_ID)!r}); refusing to adopt it"
        )
    return existing, False


# --------------------------------------------------------------------------- waiting


def ref_key(ref: dict[str, Any]) -> str:
    """``kind:region:resource id`` of a restored resource reference."""
    return f"{ref['kind']}:{ref['region']}:{ref['resource_id']}"


def _grouped(refs: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for ref in refs:
        groups.setdefault((str(ref["region"]), str(ref["kind"])), []).append(ref)
    return groups


def _classify(
    kind: str, region: str, refs: list[dict[str, Any]], found: dict[str, Any]
) -> dict[str, Any]:
    """Each ref's state; one missing right after its creation was requested is pending."""
    now = datetime.now(UTC)
    return {
        f"{kind}:{region}:{r['resource_id']}": restored_state(
            kind, found.get(str(r["resource_id"])), requested_at=r.get("requested_at"), now=now
        )
        for r in refs
    }


def _ids(refs: list[dict[str, Any]]) -> list[str]:
    return [str(r["resource_id"]) for r in refs]


def restored_states(clients: Any, refs: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """``ref_key -> (completed|pending|failed, detail)``; one describe per (Region, kind).

    A ref may carry ``requested_at`` (ISO time): missing from describes within the grace period
    after it (:data:`securedr.core.restore.NOT_FOUND_GRACE_SECONDS`) is pending, not failed.
    """
    result: dict[str, tuple[str, str]] = {}
    for (region, kind), group in _grouped(refs).items():
        if kind == "ebs":
            found = describe_volumes(clients.ec2(region), _ids(group))
        else:
            found = describe_db_instances(clients.rds(region), _ids(group))
        result.update(_classify(kind, region, group, found))
    return result


async def restored_states_async(
    clients: Any, refs: list[dict[str, Any]]
) -> dict[str, tuple[str, str]]:
    result: dict[str, tuple[str, str]] = {}
    for (region, kind), group in _grouped(refs).items():
        if kind == "ebs":
            async with clients.async_client("ec2", region) as client:
                found = await describe_volumes_async(client, _ids(group))
        else:
            async with clients.async_client("rds", region) as client:
                found = await describe_db_instances_async(client, _ids(group))
        result.update(_classify(kind, region, group, found))
    return result
