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

from securedr.aws.errors import error_code
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


def create_sandbox(ec2: Any, rds: Any, *, region: str, plan: str, drill_id: str) -> Sandbox:
    """Create (or find, on a retry) the drill's isolated network. Idempotent."""
    tags = drill_tags(plan, drill_id)
    vpcs = ec2.describe_vpcs(Filters=_drill_filter(drill_id))["Vpcs"]
    if vpcs:
        vpc_id = vpcs[0]["VpcId"]
    else:
        vpc_id = ec2.create_vpc(CidrBlock=VPC_CIDR, TagSpecifications=_tag_spec("vpc", tags))[
            "Vpc"
        ]["VpcId"]
    zones = [
        z["ZoneName"]
        for z in ec2.describe_availability_zones(
            Filters=[{"Name": "state", "Values": ["available"]}]
        )["AvailabilityZones"]
    ][: len(SUBNET_CIDRS)]
    existing = {
        s["CidrBlock"]: s for s in ec2.describe_subnets(Filters=_drill_filter(drill_id))["Subnets"]
    }
    subnet_ids, subnet_zones = [], []
    for cidr, zone in zip(SUBNET_CIDRS, zones, strict=False):
        subnet = (
            existing.get(cidr)
            or ec2.create_subnet(
                VpcId=vpc_id,
                CidrBlock=cidr,
                AvailabilityZone=zone,
                TagSpecifications=_tag_spec("subnet", tags),
            )["Subnet"]
        )
        subnet_ids.append(subnet["SubnetId"])
        subnet_zones.append(subnet["AvailabilityZone"])
    groups = ec2.describe_security_groups(Filters=_drill_filter(drill_id))["SecurityGroups"]
    if groups:
        group_id = groups[0]["GroupId"]
    else:
        group_id = ec2.create_security_group(
            GroupName=f"securedr-drill-{drill_id}",
            Description="SecureDR recovery drill: no ingress, no egress",
            VpcId=vpc_id,
            TagSpecifications=_tag_spec("security-group", tags),
        )["GroupId"]
    _close_security_group(ec2, group_id)
    name = db_subnet_group_name(drill_id)
    try:
        rds.create_db_subnet_group(
            DBSubnetGroupName=name,
            DBSubnetGroupDescription=f"SecureDR recovery drill {drill_id}",
            SubnetIds=subnet_ids,
            Tags=dict_to_tags(tags),
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
    gateways = ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [sandbox.vpc_id]}]
    )["InternetGateways"]
    if gateways:
        problems.append(f"internet gateway attached: {[g['InternetGatewayId'] for g in gateways]}")
    nat = ec2.describe_nat_gateways(Filters=[{"Name": "vpc-id", "Values": [sandbox.vpc_id]}]).get(
        "NatGateways", []
    )
    if [g for g in nat if g.get("State") not in ("deleted", "deleting")]:
        problems.append("NAT gateway present")
    group = ec2.describe_security_groups(GroupIds=[sandbox.security_group_id])["SecurityGroups"][0]
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


def teardown(
    ec2: Any, rds: Any, *, drill_id: str, wait_seconds: float = 1800, poll: float = 10
) -> Teardown:
    """Delete everything tagged with the drill id, in dependency order.

    Safe to call more than once and on a half-built sandbox. One failed deletion never stops
    the others: it is recorded in ``errors`` and teardown goes on, so as little as possible is
    left behind (callers then list :func:`leftovers`). DB instances are deleted without a final
    snapshot (they are copies of a recovery point that still exists) and waited for, as a DB
    subnet group cannot be deleted while an instance uses it.
    """
    result = Teardown(deleted=[], errors=[])

    def attempt(name: str, call: Any, gone: tuple[str, ...] = ()) -> None:
        try:
            call()
        except Exception as exc:
            if error_code(exc) not in gone:
                result.errors.append(f"{name}: {exc}")
                return
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
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline and any(
        db.get("DBInstanceStatus") == "deleting" for db in drill_databases(rds, drill_id)
    ):
        time.sleep(poll)
    for volume in ec2.describe_volumes(Filters=_drill_filter(drill_id))["Volumes"]:
        volume_id = volume["VolumeId"]
        # A drill never attaches its volumes. One somebody attached is in use: it is not
        # force-detached from their instance but fails to delete and is named as a leftover.
        attempt(
            f"ec2:volume/{volume_id}",
            lambda v=volume_id: ec2.delete_volume(VolumeId=v),
            ("InvalidVolume.NotFound",),
        )
    if _subnet_group_exists(rds, name):
        attempt(
            f"rds:subgrp/{name}",
            lambda: rds.delete_db_subnet_group(DBSubnetGroupName=name),
            ("DBSubnetGroupNotFoundFault",),
        )
    for group in ec2.describe_security_groups(Filters=_drill_filter(drill_id))["SecurityGroups"]:
        attempt(
            f"ec2:security-group/{group['GroupId']}",
            lambda g=group["GroupId"]: ec2.delete_security_group(GroupId=g),
            ("InvalidGroup.NotFound",),
        )
    for subnet in ec2.describe_subnets(Filters=_drill_filter(drill_id))["Subnets"]:
        attempt(
            f"ec2:subnet/{subnet['SubnetId']}",
            lambda s=subnet["SubnetId"]: ec2.delete_subnet(SubnetId=s),
            ("InvalidSubnetID.NotFound",),
        )
    for vpc in ec2.describe_vpcs(Filters=_drill_filter(drill_id))["Vpcs"]:
        attempt(
            f"ec2:vpc/{vpc['VpcId']}",
            lambda v=vpc["VpcId"]: ec2.delete_vpc(VpcId=v),
            ("InvalidVpcID.NotFound",),
        )
    return result


def _subnet_group_exists(rds: Any, name: str) -> bool:
    try:
        rds.describe_db_subnet_groups(DBSubnetGroupName=name)
    except Exception as exc:
        if error_code(exc) == "DBSubnetGroupNotFoundFault":
            return False
        raise
    return True


def drill_databases(rds: Any, drill_id: str) -> list[dict[str, Any]]:
    found = []
    for page in rds.get_paginator("describe_db_instances").paginate():
        for db in page["DBInstances"]:
            if tags_to_dict(db.get("TagList")).get(TAG_DRILL) == drill_id:
                found.append(db)
    return found


def leftovers(ec2: Any, rds: Any, *, drill_id: str) -> list[str]:
    """Every resource still carrying the drill's tag (or its DB subnet group), by name."""
    found = [f"rds:db/{db['DBInstanceIdentifier']}" for db in drill_databases(rds, drill_id)]
    found += [
        f"ec2:volume/{v['VolumeId']}"
        for v in ec2.describe_volumes(Filters=_drill_filter(drill_id))["Volumes"]
    ]
    if _subnet_group_exists(rds, db_subnet_group_name(drill_id)):
        found.append(f"rds:subgrp/{db_subnet_group_name(drill_id)}")
    found += [
        f"ec2:security-group/{g['GroupId']}"
        for g in ec2.describe_security_groups(Filters=_drill_filter(drill_id))["SecurityGroups"]
    ]
    found += [
        f"ec2:subnet/{s['SubnetId']}"
        for s in ec2.describe_subnets(Filters=_drill_filter(drill_id))["Subnets"]
    ]
    found += [
        f"ec2:vpc/{v['VpcId']}" for v in ec2.describe_vpcs(Filters=_drill_filter(drill_id))["Vpcs"]
    ]
    return found
