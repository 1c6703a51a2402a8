"""Section ``consistency``: a new resource is not visible to describes straight away.

AWS: "The Amazon EC2 API follows an eventual consistency model ... the result of an API command
you run that affects your Amazon EC2 resources might not be immediately visible to all
subsequent commands you run"; for example a ``DescribeSecurityGroups`` right after
``CreateSecurityGroup`` can answer ``InvalidGroup.NotFound``
(https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html). RDS behaves the same
way for a DB instance or DB snapshot that was just created.

Parameter: ``seconds`` (sandbox clock). For that long after it was created, a new EBS snapshot
(CreateSnapshot, CopySnapshot), volume (CreateVolume), security group (CreateSecurityGroup), DB
instance (CreateDBInstance, RestoreDBInstanceFromDBSnapshot, CreateDBInstanceReadReplica) or DB
snapshot (CreateDBSnapshot, CopyDBSnapshot):

- asked for by id, answers the service's not-found error with AWS's code and message
  (``InvalidSnapshot.NotFound``, ``InvalidVolume.NotFound``, ``InvalidGroup.NotFound``,
  ``DBInstanceNotFound``, ``DBSnapshotNotFound``);
- is simply absent from listings and filtered describes.

Calls that act on the resource (tagging, copying, deleting...) are not affected.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import sandbox.realism as realism

NAME = "consistency"

_LOCK = threading.RLock()


@dataclass(frozen=True)
class _Kind:
    service: str
    create_actions: tuple[str, ...]
    describe_action: str
    id_param: str  #: the describe's by-id parameter (a query list prefix for EC2)
    container: str  #: XML element holding the described items
    item: str  #: XML element of one item
    id_tag: str  #: XML element of the item's id
    code: str
    message: str  #: ``{id}`` is replaced
    status: int


KINDS = {
    "snapshot": _Kind(
        "ec2",
        ("CreateSnapshot", "CopySnapshot"),
        "DescribeSnapshots",
        "SnapshotId",
        "snapshotSet",
        "item",
        "snapshotId",
        "InvalidSnapshot.NotFound",
        "The snapshot '{id}' does not exist.",
        400,
    ),
    "volume": _Kind(
        "ec2",
        ("CreateVolume",),
        "DescribeVolumes",
        "VolumeId",
        "volumeSet",
        "item",
        "volumeId",
        "InvalidVolume.NotFound",
        "The volume '{id}' does not exist.",
        400,
    ),
    "security-group": _Kind(
        "ec2",
        ("CreateSecurityGroup",),
        "DescribeSecurityGroups",
        "GroupId",
        "securityGroupInfo",
        "item",
        "groupId",
        "InvalidGroup.NotFound",
        "The security group '{id}' does not exist",
        400,
    ),
    # RDS error codes and messages as AWS sends them (the API reference lists the faults:
    # https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DescribeDBInstances.html#API_DescribeDBInstances_Errors
    # https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DescribeDBSnapshots.html#API_DescribeDBSnapshots_Errors
    # wire format seen in aws/aws-cli issue 8296: <Code>DBSnapshotNotFound</Code>
    # <Message>DBSnapshot not found: ...</Message>).
    "db-instance": _Kind(
        "rds",
        ("CreateDBInstance", "RestoreDBInstanceFromDBSnapshot", "CreateDBInstanceReadReplica"),
        "DescribeDBInstances",
        "DBInstanceIdentifier",
        "DBInstances",
        "DBInstance",
        "DBInstanceIdentifier",
        "DBInstanceNotFound",
        "DBInstance {id} not found.",
        404,
    ),
    "db-snapshot": _Kind(
        "rds",
        ("CreateDBSnapshot", "CopyDBSnapshot"),
        "DescribeDBSnapshots",
        "DBSnapshotIdentifier",
        "DBSnapshots",
        "DBSnapshot",
        "DBSnapshotIdentifier",
        "DBSnapshotNotFound",
        "DBSnapshot not found: {id}",
        404,
    ),
}

#: (kind, account, region, id) -> visible from
_HIDDEN: dict[tuple[str, str, str, str], dt.datetime] = {}

_EC2_IDS = {
    "CreateSnapshot": re.compile(r"<snapshotId>(snap-[0-9a-zA-Z]+)</snapshotId>"),
    "CopySnapshot": re.compile(r"<snapshotId>(snap-[0-9a-zA-Z]+)</snapshotId>"),
    "CreateVolume": re.compile(r"<volumeId>(vol-[0-9a-zA-Z]+)</volumeId>"),
    "CreateSecurityGroup": re.compile(r"<groupId>(sg-[0-9a-zA-Z]+)</groupId>"),
}
_RDS_ID_PARAMS = {
    "CreateDBInstance": "DBInstanceIdentifier",
    "RestoreDBInstanceFromDBSnapshot": "DBInstanceIdentifier",
    "CreateDBInstanceReadReplica": "DBInstanceIdentifier",
    "CreateDBSnapshot": "DBSnapshotIdentifier",
    "CopyDBSnapshot": "TargetDBSnapshotIdentifier",
}


def _text(body: Any) -> str:
    return body.decode() if isinstance(body, bytes) else str(body)


def hidden(kind: str, region: str, account: str | None = None) -> set[str]:
    """Ids of ``kind`` in ``region`` that describes do not show yet."""
    now = realism.now()
    with _LOCK:
        for key, until in list(_HIDDEN.items()):
            if until <= now:
                del _HIDDEN[key]
        return {
            key[3]
            for key in _HIDDEN
            if key[0] == kind and key[2] == region and (account is None or key[1] == account)
        }


def _kind_for_create(call: realism.Call) -> str | None:
    for name, kind in KINDS.items():
        if kind.service == call.service and call.action in kind.create_actions:
            return name
    return None


def _kind_for_describe(call: realism.Call) -> str | None:
    for name, kind in KINDS.items():
        if kind.service == call.service and call.action == kind.describe_action:
            return name
    return None


def _requested_ids(call: realism.Call, kind: _Kind) -> list[str]:
    if kind.service == "ec2":
        return [str(v) for v in call.param_list(kind.id_param)]
    value = call.param(kind.id_param)
    return [str(value)] if value else []


def before(call: realism.Call) -> None:
    name = _kind_for_describe(call)
    if name is None:
        return
    kind = KINDS[name]
    requested = _requested_ids(call, kind)
    if not requested:
        return
    invisible = hidden(name, call.region, call.account)
    for resource_id in requested:
        key = resource_id.lower() if kind.service == "rds" else resource_id
        if key in invisible:
            raise realism.AWSError(kind.code, kind.message.format(id=resource_id), kind.status)


def _drop_items(body: str, kind: _Kind, invisible: set[str]) -> str | None:
    """``body`` without the items whose id is invisible, or ``None`` if nothing changed."""
    root = ET.fromstring(body)  # noqa: S314 - moto's own answer, not untrusted input
    namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    ns = f"{{{namespace}}}" if namespace else ""
    changed = False
    for container in root.iter(f"{ns}{kind.container}"):
        for item in list(container.findall(f"{ns}{kind.item}")):
            item_id = (item.findtext(f"{ns}{kind.id_tag}") or "").strip()
            if (item_id.lower() if kind.service == "rds" else item_id) in invisible:
                container.remove(item)
                changed = True
    if not changed:
        return None
    return ET.tostring(root, encoding="unicode", default_namespace=namespace or None)


def after(call: realism.Call, result: realism.TYPE_RESPONSE) -> realism.TYPE_RESPONSE:
    status, headers, body = result
    if status != 200:
        return result
    seconds = float((realism.settings(NAME) or {}).get("seconds", 0) or 0)
    created = _kind_for_create(call)
    if created is not None and seconds > 0:
        if call.service == "ec2":
            found = _EC2_IDS[call.action].search(_text(body))
            resource_id = found.group(1) if found else None
        else:
            resource_id = str(call.param(_RDS_ID_PARAMS[call.action]) or "").lower() or None
        if resource_id:
            until = realism.now() + dt.timedelta(seconds=seconds)
            with _LOCK:
                _HIDDEN[(created, call.account, call.region, resource_id)] = until
        return result
    described = _kind_for_describe(call)
    if described is None:
        return result
    invisible = hidden(described, call.region, call.account)
    if not invisible:
        return result
    rewritten = _drop_items(_text(body), KINDS[described], invisible)
    if rewritten is None:
        return result
    headers = {k: v for k, v in dict(headers).items() if k.lower() != "content-length"}
    return status, headers, rewritten


def _forget() -> None:
    with _LOCK:
        _HIDDEN.clear()


realism.behaviour(NAME, before=before, after=after)
realism.on_reset(NAME, _forget)
realism.PROFILES["e2e"][NAME] = {"seconds": 1.5}
