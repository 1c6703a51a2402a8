"""The isolated sandbox a recovery drill restores into, and its guaranteed teardown.

The sandbox is a VPC of its own with two private subnets (RDS needs two Availability Zones), no
internet gateway, a security group with no ingress and no egress rules, and a DB subnet group;
everything carries ``securedr:drill=<drill id>``. Teardown deletes everything carrying that tag,
in dependency order, and :func:`leftovers` lists whatever still exists afterwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from securedr.aws.errors import EC2_FILTER_VALUES as FILTER_VALUES
from securedr.aws.errors import chunks, describe_all, error_code, until_visible
from securedr.core.model import TAG_MANAGED, TAG_PLAN, dict_to_tags, tags_to_dict

TAG_DRILL = "securedr:drill"
VPC_CIDR = "10.250.0.0/16"
SUBNET_CIDRS = ("10.250.1.0/24", "10.250.2.0/24")


@dataclass(frozen=True)
class Sandbox:
    drill_id: str
    region: str
    vpc_id: str
    subnet_ids: tuple[str, ...]
    availability_zones: tuple[str, ...]
    security_group_id: str
    db_subnet_group: str

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "subnet_ids": list(self.subnet_ids),
            "availability_zones": list(self.availability_zones),
        }


def drill_tags(plan: str, drill_id: str) -> dict[str, str]:
    return {
        TAG_MANAGED: "true",
        TAG_PLAN: plan,
        TAG_DRILL: drill_id,
        "Name": f"securedr-drill-{drill_id}",
    }


def _tag_spec(resource_type: str, tags: dict[str, str]) -> list[dict[str, Any]]:
    return [{"ResourceType": resource_type, "Tags": dict_to_tags(tags)}]


def _drill_filter(drill_id: str) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{TAG_DRILL}", "Values": [drill_id]}]


def db_subnet_group_name(drill_id: str) -> str:
    return f"securedr-drill-{drill_id}"


class SandboxQuotaExceeded(RuntimeError):
    """The DR Region has no room for the drill's VPC (AWS's VPCs-per-Region quota)."""


class SandboxZonesUnavailable(RuntimeError):
    """The DR Region has fewer than two available Availability Zones for the drill."""


def sandbox_zones(ec2: Any, count: int = len(SUBNET_CIDRS)) -> list[str]:
    """``count`` available zones of type ``availability-zone`` in the client's Region.

    Local Zones and Wavelength Zones (``local-zone`` / ``wavelength-zone``) are listed by
    DescribeAvailabilityZones too once opted in, but RDS cannot place a DB subnet group's
    subnets there for an ordinary restore, and they have their own capacity: never use them.
    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeAvailabilityZones.html
    (filters ``zone-type``, ``state``)
    """
    zones = ec2.describe_availability_zones(
        Filters=[
            {"Name": "state", "Values": ["available"]},
            {"Name": "zone-type", "Values": ["availability-zone"]},
        ]
    )["AvailabilityZones"]
    names = sorted(
        z["ZoneName"]
        for z in zones
        if z.get("ZoneType", "availability-zone") == "availability-zone"
    )
    if len(names) < count:
        raise SandboxZonesUnavailable(
            f"the drill sandbox needs {count} available Availability Zones (RDS DB subnet groups "
            f"span two) but the Region offers {len(names)}: {', '.join(names) or 'none'}"
        )
    return names[:count]


def _create_vpc(ec2: Any, region: str, tags: dict[str, str]) -> str:
    try:
        return str(
            ec2.create_vpc(CidrBlock=VPC_CIDR, TagSpecifications=_tag_spec("vpc", tags))["Vpc"][
                "VpcId"
            ]
        )
    except Exception as exc:
        if error_code(exc) != "VpcLimitExceeded":
            raise
        # https://docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html
        # (VPCs per Region: 5 by default, adjustable)
        raise SandboxQuotaExceeded(
            f"cannot create the drill sandbox's VPC in {region}: the account has reached its "
            "quota of VPCs per Region (5 by default) - AWS answered VpcLimitExceeded. A drill "
            "needs one VPC of its own for its duration. Delete an unused VPC in "
            f"{region} (check for VPCs left by earlier drills, tagged {TAG_DRILL}), or request "
            "a higher 'VPCs per Region' quota in Service Quotas, then run the drill again"
        ) from exc


def create_sandbox(ec2: Any, rds: Any, *, region: str, plan: str, drill_id: str) -> Sandbox:
    """Create (or find, on a retry) the drill's isolated network. Idempotent.

    Subnets go only into zones of type ``availability-zone`` (:func:`sandbox_zones`). A full
    VPC quota raises :class:`SandboxQuotaExceeded` saying what to do. The new security group is
    described until visible (EC2 answers ``InvalidGroup.NotFound`` for a while after
    CreateSecurityGroup) before its rules are removed.
    """
    tags = drill_tags(plan, drill_id)
    drill = _drill_filter(drill_id)
    zones = sandbox_zones(ec2)
    vpcs = describe_all(ec2, "describe_vpcs", "Vpcs", drill)
    vpc_id = vpcs[0]["VpcId"] if vpcs else _create_vpc(ec2, region, tags)
    existing = {s["CidrBlock"]: s for s in describe_all(ec2, "describe_subnets", "Subnets", drill)}
    subnet_ids, subnet_zones = [], []
    for cidr, zone in zip(SUBNET_CIDRS, zones, strict=False):
        subnet = existing.get(cidr) or until_visible(
            lambda c=cidr, z=zone: ec2.create_subnet(
                VpcId=vpc_id,
                CidrBlock=c,
                AvailabilityZone=z,
                TagSpecifications=_tag_spec("subnet", tags),
            )["Subnet"],
            ("InvalidVpcID.NotFound",),
        )
        subnet_ids.append(subnet["SubnetId"])
        subnet_zones.append(subnet["AvailabilityZone"])
    groups = describe_all(ec2, "describe_security_groups", "SecurityGroups", drill)
    if groups:
        group_id = groups[0]["GroupId"]
    else:
        group_id = until_visible(
            lambda: ec2.create_security_group(
                GroupName=f"securedr-drill-{drill_id}",
                Description="SecureDR recovery drill: no ingress, no egress",
                VpcId=vpc_id,
                TagSpecifications=_tag_spec("security-group", tags),
            )["GroupId"],
            ("InvalidVpcID.NotFound",),
        )
    until_visible(lambda: _close_security_group(ec2, group_id), ("InvalidGroup.NotFound",))
    name = db_subnet_group_name(drill_id)
    try:
        until_visible(
            lambda: rds.create_db_subnet_group(
                DBSubnetGroupName=name,
                DBSubnetGroupDescription=f"SecureDR recovery drill {drill_id}",
                SubnetIds=subnet_ids,
                Tags=dict_to_tags(tags),
            ),
            ("InvalidSubnet",),
        )
    except Exception as exc:
        if error_code(exc) != "DBSubnetGroupAlreadyExists":
            raise
    return Sandbox(drill_id, region, vpc_id, tuple(subnet_ids), tuple(subnet_zones), group_id, name)


def _close_security_group(ec2: Any, group_id: str) -> None:
    """Remove every rule: restored resources can neither be reached nor reach out."""
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    if group.get("IpPermissions"):
        ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=group["IpPermissions"])
    if group.get("IpPermissionsEgress"):
        ec2.revoke_security_group_egress(
            GroupId=group_id, IpPermissions=group["IpPermissionsEgress"]
        )


def isolation_problems(ec2: Any, sandbox: Sandbox) -> list[str]:
    """Why the sandbox is not isolated ([] when it is): gateways, routes out, open rules."""
    problems = []
    gateways = describe_all(
        ec2,
        "describe_internet_gateways",
        "InternetGateways",
        [{"Name": "attachment.vpc-id", "Values": [sandbox.vpc_id]}],
    )
    if gateways:
        problems.append(f"internet gateway attached: {[g['InternetGatewayId'] for g in gateways]}")
    nat = describe_all(
        ec2,
        "describe_nat_gateways",
        "NatGateways",
        None,
        Filter=[{"Name": "vpc-id", "Values": [sandbox.vpc_id]}],
    )
    if [g for g in nat if g.get("State") not in ("deleted", "deleting")]:
        problems.append("NAT gateway present")
    group = until_visible(
        lambda: ec2.describe_security_groups(GroupIds=[sandbox.security_group_id]),
        ("InvalidGroup.NotFound",),
    )["SecurityGroups"][0]
    if group.get("IpPermissions"):
        problems.append("security group allows ingress")
    if group.get("IpPermissionsEgress"):
        problems.append("security group allows egress")
    return problems


@dataclass
class Teardown:
    """What a teardown deleted, and every deletion that failed (``resource: error``)."""

    deleted: list[str]
    errors: list[str]


#: Answers meaning "still in use by something being deleted": a deleted DB instance's network
#: interfaces linger for minutes after DeleteDBInstance completes, and until they are released
#: DeleteDBSubnetGroup answers InvalidDBSubnetGroupStateFault and DeleteSecurityGroup,
#: DeleteSubnet and DeleteVpc answer DependencyViolation. Both are worth retrying with backoff.
#: https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DeleteDBSubnetGroup.html
#: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html (DependencyViolation)
IN_USE_CODES = ("DependencyViolation", "InvalidDBSubnetGroupStateFault")
#: Longest pause between two attempts of a deletion that is refused as in use.
MAX_BACKOFF_SECONDS = 60.0
#: How long the network part of a teardown waits out lingering interfaces and in-use refusals
#: (RDS releases a deleted instance's interfaces within minutes) before naming what is left.
NETWORK_WAIT_SECONDS = 1800.0


class _Clock:
    """One deadline for the whole teardown, and exponential backoff sleeps bounded by it."""

    def __init__(self, wait_seconds: float, poll: float) -> None:
        self.deadline = time.monotonic() + wait_seconds
        self.poll = max(poll, 0.01)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def backoff(self, attempt: int) -> bool:
        """Sleep before retry ``attempt`` (0-based); ``False`` when the deadline has passed."""
        remaining = self.remaining()
        if remaining <= 0:
            return False
        time.sleep(min(self.poll * 2**attempt, max(MAX_BACKOFF_SECONDS, self.poll), remaining))
        return True


def teardown(
    ec2: Any,
    rds: Any,
    *,
    drill_id: str,
    wait_seconds: float = 1800,
    poll: float = 10,
    network_wait_seconds: float = NETWORK_WAIT_SECONDS,
) -> Teardown:
    """Delete everything tagged with the drill id, in dependency order.

    Safe to call more than once and on a half-built sandbox. One failed deletion never stops
    the others: it is recorded in ``errors`` and teardown goes on, so as little as possible is
    left behind (callers then list :func:`leftovers`). DB instances are deleted without a final
    snapshot (they are copies of a recovery point that still exists) and waited for; then the
    network interfaces RDS placed in the sandbox VPC are waited for (they outlive the instance),
    and the network deletions AWS refuses as still in use (:data:`IN_USE_CODES`) are retried
    with exponential backoff. DB instances are waited for up to ``wait_seconds``; the network
    part then has one deadline of its own, ``min(wait_seconds, network_wait_seconds)``; what is
    still refused then is reported in ``errors`` with AWS's answer.
    """
    result = Teardown(deleted=[], errors=[])
    clock = _Clock(wait_seconds, poll)

    def attempt(
        name: str, call: Any, gone: tuple[str, ...] = (), retry_in_use: bool = False
    ) -> None:
        tries = 0
        while True:
            try:
                call()
            except Exception as exc:
                code = error_code(exc)
                if code in gone:
                    break
                if retry_in_use and code in IN_USE_CODES and clock.backoff(tries):
                    tries += 1
                    continue
                result.errors.append(f"{name}: {exc}")
                return
            break
        result.deleted.append(name)

    name = db_subnet_group_name(drill_id)
    for db in drill_databases(rds, drill_id):
        identifier = db["DBInstanceIdentifier"]
        if db.get("DBInstanceStatus") == "deleting":
            result.deleted.append(f"rds:db/{identifier}")
            continue
        attempt(
            f"rds:db/{identifier}",
            lambda i=identifier: rds.delete_db_instance(
                DBInstanceIdentifier=i, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
            ),
            ("DBInstanceNotFound", "DBInstanceNotFoundFault"),
        )
    while clock.remaining() > 0 and any(
        db.get("DBInstanceStatus") == "deleting" for db in drill_databases(rds, drill_id)
    ):
        time.sleep(min(poll, max(clock.remaining(), 0)))
    for volume in describe_all(ec2, "describe_volumes", "Volumes", _drill_filter(drill_id)):
        volume_id = volume["VolumeId"]
        # A drill never attaches its volumes. One somebody attached is in use: it is not
        # force-detached from their instance but fails to delete and is named as a leftover.
        attempt(
            f"ec2:volume/{volume_id}",
            lambda v=volume_id: ec2.delete_volume(VolumeId=v),
            ("InvalidVolume.NotFound",),
        )
    clock = _Clock(min(wait_seconds, network_wait_seconds), poll)
    vpc_ids = [
        v["VpcId"] for v in describe_all(ec2, "describe_vpcs", "Vpcs", _drill_filter(drill_id))
    ]
    _wait_for_network_interfaces(ec2, vpc_ids, clock)
    if _subnet_group_exists(rds, name):
        attempt(
            f"rds:subgrp/{name}",
            lambda: rds.delete_db_subnet_group(DBSubnetGroupName=name),
            ("DBSubnetGroupNotFoundFault",),
            retry_in_use=True,
        )
    for group in describe_all(
        ec2, "describe_security_groups", "SecurityGroups", _drill_filter(drill_id)
    ):
        attempt(
            f"ec2:security-group/{group['GroupId']}",
            lambda g=group["GroupId"]: ec2.delete_security_group(GroupId=g),
            ("InvalidGroup.NotFound",),
            retry_in_use=True,
        )
    for subnet in describe_all(ec2, "describe_subnets", "Subnets", _drill_filter(drill_id)):
        attempt(
            f"ec2:subnet/{subnet['SubnetId']}",
            lambda s=subnet["SubnetId"]: ec2.delete_subnet(SubnetId=s),
            ("InvalidSubnetID.NotFound",),
            retry_in_use=True,
        )
    for vpc_id in vpc_ids:
        attempt(
            f"ec2:vpc/{vpc_id}",
            lambda v=vpc_id: ec2.delete_vpc(VpcId=v),
            ("InvalidVpcID.NotFound",),
            retry_in_use=True,
        )
    return result


def network_interfaces(ec2: Any, vpc_ids: list[str]) -> list[dict[str, Any]]:
    """Network interfaces still in the given VPCs (a deleted DB instance's linger a while)."""
    if not vpc_ids:
        return []
    found: list[dict[str, Any]] = []
    for batch in chunks(sorted(set(vpc_ids)), FILTER_VALUES):
        found += describe_all(
            ec2,
            "describe_network_interfaces",
            "NetworkInterfaces",
            [{"Name": "vpc-id", "Values": batch}],
        )
    return found


def _wait_for_network_interfaces(ec2: Any, vpc_ids: list[str], clock: _Clock) -> None:
    """Wait (backoff, bounded by the teardown's deadline) until no interface is left in the VPCs.

    RDS releases a deleted instance's requester-managed interfaces on its own, minutes after the
    instance is gone; deleting the subnet group, security group, subnets or VPC before that is
    refused. Interfaces still there at the deadline are named by :func:`leftovers`.
    """
    tries = 0
    while network_interfaces(ec2, vpc_ids) and clock.backoff(tries):
        tries += 1


def _subnet_group_exists(rds: Any, name: str) -> bool:
    try:
        rds.describe_db_subnet_groups(DBSubnetGroupName=name)
    except Exception as exc:
        if error_code(exc) == "DBSubnetGroupNotFoundFault":
            return False
        raise
    return True


def drill_databases(rds: Any, drill_id: str) -> list[dict[str, Any]]:
    return [
        db
        for db in describe_all(rds, "describe_db_instances", "DBInstances")
        if tags_to_dict(db.get("TagList")).get(TAG_DRILL) == drill_id
    ]


def leftovers(ec2: Any, rds: Any, *, drill_id: str) -> list[str]:
    """Every resource still carrying the drill's tag (or its DB subnet group), by name, and
    any network interface still in the drill's VPC (which keeps the VPC from being deleted)."""
    drill = _drill_filter(drill_id)
    found = [f"rds:db/{db['DBInstanceIdentifier']}" for db in drill_databases(rds, drill_id)]
    found += [
        f"ec2:volume/{v['VolumeId']}"
        for v in describe_all(ec2, "describe_volumes", "Volumes", drill)
    ]
    if _subnet_group_exists(rds, db_subnet_group_name(drill_id)):
        found.append(f"rds:subgrp/{db_subnet_group_name(drill_id)}")
    found += [
        f"ec2:security-group/{g['GroupId']}"
        for g in describe_all(ec2, "describe_security_groups", "SecurityGroups", drill)
    ]
    found += [
        f"ec2:subnet/{s['SubnetId']}"
        for s in describe_all(ec2, "describe_subnets", "Subnets", drill)
    ]
    vpc_ids = [v["VpcId"] for v in describe_all(ec2, "describe_vpcs", "Vpcs", drill)]
    found += [
        f"ec2:network-interface/{n['NetworkInterfaceId']}"
        + (f" ({n['Description']})" if n.get("Description") else "")
        for n in network_interfaces(ec2, vpc_ids)
    ]
    found += [f"ec2:vpc/{v}" for v in vpc_ids]
    return found
