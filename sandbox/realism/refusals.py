"""Section ``refusals``: calls AWS refuses in states moto lets through.

Parameters (``realism.configure("refusals", ...)``; the first three default to on):

- ``ami_in_use``: ``DeleteSnapshot`` of a snapshot that a registered AMI names in its block device
  mappings answers ``InvalidSnapshot.InUse`` "The snapshot snap-... is currently in use by
  ami-..." ("You can't delete a snapshot of the root device of an EBS volume used by a registered
  AMI": https://docs.aws.amazon.com/ebs/latest/userguide/ebs-deleting-snapshot.html; code in
  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html). Moto refuses
  this only for the stand-in snapshots it invents; :mod:`sandbox.moto_ext` records the real ones.
- ``cluster_members``: ``CreateDBSnapshot`` of an instance that belongs to a DB cluster answers
  ``InvalidParameterValue`` "The specified instance is a member of a cluster and a snapshot cannot
  be created directly. Please use the CreateDBClusterSnapshot API instead."
  (https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBSnapshot.html: "This
  command doesn't apply to ... Aurora"; message as RDS sends it, quoted in
  cloud-custodian/cloud-custodian#313).
- ``unavailable_instances``: ``CreateDBSnapshot`` of an instance whose status is not
  ``available`` answers ``InvalidDBInstanceState`` "Cannot create a snapshot because the database
  instance ... is not currently in the available state." (code in the CreateDBSnapshot API
  reference above; message as quoted in fog/fog-aws#157). Put an instance in another state with
  :func:`set_instance_status`.
- ``eni_linger_seconds`` (default 0, off): after ``DeleteDBInstance``, the instance's
  requester-managed network interfaces (description ``RDSNetworkInterface``, requester
  ``amazon-rds``) stay in its subnet for that long on the sandbox clock
  (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/requester-managed-eni.html: the service
  detaches and deletes them after the resource goes). Meanwhile ``DescribeNetworkInterfaces``
  lists them, ``DeleteDBSubnetGroup`` answers ``InvalidDBSubnetGroupStateFault`` "Cannot delete
  the subnet group '...' because at least one database instance: ... is still using it."
  (https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DeleteDBSubnetGroup.html), and
  ``DeleteSubnet`` / ``DeleteVpc`` / ``DeleteSecurityGroup`` of the network they sit in answer
  ``DependencyViolation`` ("The subnet '...' has dependencies and cannot be deleted.", "The vpc
  '...' has dependencies and cannot be deleted.", "resource sg-... has a dependent object";
  code in the EC2 error codes page above, messages as EC2 sends them, quoted in aws/aws-cdk#14456).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import sandbox.realism as realism

SECTION = "refusals"
RDS_ENI_DESCRIPTION = "RDSNetworkInterface"
RDS_REQUESTER_ID = "amazon-rds"


@dataclass
class _LingeringNetwork:
    """What a deleted DB instance leaves behind in its VPC until AWS cleans it up."""

    account: str
    region: str
    db_instance_id: str
    subnet_group: str | None
    subnet_ids: list[str]
    vpc_id: str | None
    security_group_ids: list[str]
    zone: str | None = None
    eni_ids: list[str] = field(default_factory=list)
    until: Any = None


_LOCK = threading.RLock()
_LINGERING: list[_LingeringNetwork] = []
_PENDING: dict[tuple[str, str, str], _LingeringNetwork] = {}


def _on(params: dict[str, Any], name: str, default: Any = True) -> Any:
    return params.get(name, default)


# --- EC2 ------------------------------------------------------------------------------------


def _refuse_ami_snapshot(call: realism.Call) -> None:
    from sandbox import moto_ext

    snapshot_id = call.param("SnapshotId")
    backend = call.responder.ec2_backend
    for (account, region, ami_id), snapshot_ids in list(moto_ext.AMI_SNAPSHOTS.items()):
        if (account, region) != (call.account, call.region) or ami_id not in backend.amis:
            continue
        if snapshot_id in snapshot_ids:
            raise realism.AWSError(
                "InvalidSnapshot.InUse",
                f"The snapshot {snapshot_id} is currently in use by {ami_id}",
            )


def _refuse_network_delete(call: realism.Call) -> None:
    lingering = _lingering_in(call.account, call.region)
    if not lingering:
        return
    if call.action == "DeleteSubnet":
        subnet_id = call.param("SubnetId")
        if any(subnet_id in _eni_subnets(n) for n in lingering):
            raise realism.AWSError(
                "DependencyViolation",
                f"The subnet '{subnet_id}' has dependencies and cannot be deleted.",
            )
    elif call.action == "DeleteVpc":
        vpc_id = call.param("VpcId")
        if any(n.vpc_id == vpc_id for n in lingering):
            raise realism.AWSError(
                "DependencyViolation", f"The vpc '{vpc_id}' has dependencies and cannot be deleted."
            )
    elif call.action == "DeleteSecurityGroup":
        group_id = call.param("GroupId") or _group_id_by_name(call, call.param("GroupName"))
        if group_id and any(group_id in n.security_group_ids for n in lingering):
            raise realism.AWSError(
                "DependencyViolation", f"resource {group_id} has a dependent object"
            )


def _group_id_by_name(call: realism.Call, name: str | None) -> str | None:
    if not name:
        return None
    for group in call.responder.ec2_backend.describe_security_groups(group_names=[name]):
        return str(group.id)
    return None


def _eni_subnets(network: _LingeringNetwork) -> set[str]:
    from moto.ec2.models import ec2_backends

    enis = ec2_backends[network.account][network.region].enis
    return {enis[e].subnet.id for e in network.eni_ids if e in enis}


# --- RDS ------------------------------------------------------------------------------------


def _refuse_db_snapshot(call: realism.Call, params: dict[str, Any]) -> None:
    db_id = call.param("DBInstanceIdentifier")
    database = call.responder.backend.databases.get(db_id)
    if database is None:
        return  # moto answers DBInstanceNotFound
    if _on(params, "cluster_members") and getattr(database, "db_cluster_identifier", None):
        raise realism.AWSError(
            "InvalidParameterValue",
            "The specified instance is a member of a cluster and a snapshot cannot be created "
            "directly. Please use the CreateDBClusterSnapshot API instead.",
        )
    if _on(params, "unavailable_instances") and database.status != "available":
        raise realism.AWSError(
            "InvalidDBInstanceState",
            f"Cannot create a snapshot because the database instance {db_id} is not currently "
            "in the available state.",
        )


def _note_network_of(call: realism.Call) -> None:
    db_id = call.param("DBInstanceIdentifier")
    database = call.responder.backend.databases.get(db_id)
    if database is None:
        return
    group = getattr(database, "db_subnet_group", None)
    subnets = list(getattr(group, "_subnets", []) or []) if group is not None else []
    _PENDING[(call.account, call.region, db_id)] = _LingeringNetwork(
        account=call.account,
        region=call.region,
        db_instance_id=db_id,
        subnet_group=getattr(group, "name", None),
        subnet_ids=[s.id for s in subnets],
        vpc_id=getattr(group, "vpc_id", None),
        security_group_ids=list(getattr(database, "vpc_security_group_ids", []) or []),
        zone=getattr(database, "availability_zone", None),
    )


def _leave_interfaces(network: _LingeringNetwork, seconds: float) -> None:
    """Create the requester-managed ENIs the deleted instance leaves in its VPC."""
    from moto.ec2.models import ec2_backends

    if not network.subnet_ids:
        return
    backend = ec2_backends[network.account][network.region]
    subnets = [backend.get_subnet(s) for s in network.subnet_ids]
    subnet = next((s for s in subnets if s.availability_zone == network.zone), subnets[0])
    groups = [g for g in network.security_group_ids if backend.get_security_group_from_id(g)]
    network.security_group_ids = groups
    eni = backend.create_network_interface(
        subnet, None, group_ids=groups, description=RDS_ENI_DESCRIPTION
    )
    eni.requester_managed = True
    eni.requester_id = RDS_REQUESTER_ID
    network.eni_ids = [eni.id]
    network.until = realism.now().timestamp() + seconds
    _LINGERING.append(network)


def _refuse_subnet_group_delete(call: realism.Call) -> None:
    name = str(call.param("DBSubnetGroupName") or "").lower()
    for network in _lingering_in(call.account, call.region):
        if network.subnet_group == name:
            raise realism.AWSError(
                "InvalidDBSubnetGroupStateFault",
                f"Cannot delete the subnet group '{name}' because at least one database "
                f"instance: {network.db_instance_id} is still using it.",
            )


# --- lingering networks ---------------------------------------------------------------------


def _lingering_in(account: str, region: str) -> list[_LingeringNetwork]:
    return [n for n in _LINGERING if (n.account, n.region) == (account, region)]


def _expire(now: float | None = None) -> None:
    """Let AWS finish cleaning up after deleted instances whose linger time is over."""
    now = realism.now().timestamp() if now is None else now
    with _LOCK:
        for network in [n for n in _LINGERING if n.until <= now]:
            _LINGERING.remove(network)
            _drop_interfaces(network)


def _drop_interfaces(network: _LingeringNetwork) -> None:
    from moto.ec2.models import ec2_backends

    try:
        enis = ec2_backends[network.account][network.region].enis
    except KeyError:
        return
    for eni_id in network.eni_ids:
        enis.pop(eni_id, None)


def before(call: realism.Call) -> None:
    params = realism.settings(SECTION) or {}
    if _LINGERING:
        _expire()
    if call.service == "ec2":
        if call.action == "DeleteSnapshot" and _on(params, "ami_in_use"):
            _refuse_ami_snapshot(call)
        elif call.action in ("DeleteSubnet", "DeleteVpc", "DeleteSecurityGroup"):
            _refuse_network_delete(call)
    elif call.service == "rds":
        if call.action == "CreateDBSnapshot":
            _refuse_db_snapshot(call, params)
        elif call.action == "DeleteDBInstance" and _on(params, "eni_linger_seconds", 0):
            with _LOCK:
                _note_network_of(call)
        elif call.action == "DeleteDBSubnetGroup":
            _refuse_subnet_group_delete(call)


def after(call: realism.Call, result: realism.TYPE_RESPONSE) -> realism.TYPE_RESPONSE:
    if call.service == "rds" and call.action == "DeleteDBInstance":
        with _LOCK:
            network = _PENDING.pop(
                (call.account, call.region, str(call.param("DBInstanceIdentifier"))), None
            )
            seconds = float(_on(realism.settings(SECTION) or {}, "eni_linger_seconds", 0) or 0)
            if network is not None and int(result[0]) < 300 and seconds > 0:
                _leave_interfaces(network, seconds)
    return result


def set_instance_status(
    db_instance_id: str, status: str, region: str | None = None, account: str | None = None
) -> None:
    """Put a sandbox DB instance in ``status`` (``stopped``, ``modifying``, ``backing-up``...).

    Searches every Region (and the default account) unless told which.
    """
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.rds.models import rds_backends

    account_backends = rds_backends[account or DEFAULT_ACCOUNT_ID]
    regions = [region] if region else list(account_backends.keys())
    for name in regions:
        database = account_backends[name].databases.get(db_instance_id)
        if database is not None:
            database.status = status
            return
    raise KeyError(f"no sandbox DB instance {db_instance_id!r} in {', '.join(regions)}")


def lingering_interfaces(region: str, account: str | None = None) -> list[str]:
    """Ids of the RDS network interfaces still lingering in ``region`` (for tests)."""
    from moto.core import DEFAULT_ACCOUNT_ID

    return [eni for n in _lingering_in(account or DEFAULT_ACCOUNT_ID, region) for eni in n.eni_ids]


def _reset() -> None:
    with _LOCK:
        for network in _LINGERING:
            _drop_interfaces(network)
        _LINGERING.clear()
        _PENDING.clear()


realism.behaviour(SECTION, before=before, after=after)
realism.on_reset(SECTION, _reset)

# The correctness refusals are on for the e2e suites, and so are ENIs lingering after a drill's DB
# instance is deleted: drill teardown waits for them and retries DependencyViolation meanwhile.
realism.PROFILES["e2e"][SECTION] = {
    "ami_in_use": True,
    "cluster_members": True,
    "unavailable_instances": True,
    "eni_linger_seconds": 10,
}
