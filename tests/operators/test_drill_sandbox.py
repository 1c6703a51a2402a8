"""The drill sandbox: isolated on creation, idempotent, and gone after teardown."""

from __future__ import annotations

import time

import boto3
import pytest

from securedr.aws import drill_sandbox

DR = "us-west-2"


def clients():
    return boto3.client("ec2", region_name=DR), boto3.client("rds", region_name=DR)


def test_sandbox_is_isolated_idempotent_and_torn_down_completely(aws):
    ec2, rds = clients()
    sandbox = drill_sandbox.create_sandbox(ec2, rds, region=DR, plan="demo", drill_id="d1")
    again = drill_sandbox.create_sandbox(ec2, rds, region=DR, plan="demo", drill_id="d1")
    assert again == sandbox
    assert len(set(sandbox.availability_zones)) == 2
    assert drill_sandbox.isolation_problems(ec2, sandbox) == []
    group = ec2.describe_security_groups(GroupIds=[sandbox.security_group_id])["SecurityGroups"][0]
    assert group["IpPermissions"] == [] and group["IpPermissionsEgress"] == []

    volume = ec2.create_volume(
        AvailabilityZone=sandbox.availability_zones[0],
        Size=1,
        TagSpecifications=[
            {"ResourceType": "volume", "Tags": [{"Key": "securedr:drill", "Value": "d1"}]}
        ],
    )["VolumeId"]
    other = ec2.create_volume(AvailabilityZone=f"{DR}a", Size=1)["VolumeId"]
    before = drill_sandbox.leftovers(ec2, rds, drill_id="d1")
    assert f"ec2:volume/{volume}" in before and f"ec2:vpc/{sandbox.vpc_id}" in before

    result = drill_sandbox.teardown(ec2, rds, drill_id="d1", poll=0.1)
    assert result.errors == []
    assert f"ec2:volume/{volume}" in result.deleted
    assert f"ec2:vpc/{sandbox.vpc_id}" in result.deleted
    assert drill_sandbox.leftovers(ec2, rds, drill_id="d1") == []
    # Nothing outside the drill is touched, and a second teardown is harmless.
    assert ec2.describe_volumes(VolumeIds=[other])["Volumes"]
    assert drill_sandbox.teardown(ec2, rds, drill_id="d1", poll=0.1) == drill_sandbox.Teardown(
        [], []
    )


def test_internet_gateway_breaks_isolation(aws):
    ec2, rds = clients()
    sandbox = drill_sandbox.create_sandbox(ec2, rds, region=DR, plan="demo", drill_id="d2")
    gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=sandbox.vpc_id)
    assert any("internet gateway" in p for p in drill_sandbox.isolation_problems(ec2, sandbox))


def test_a_protected_database_is_left_over_by_name_and_the_rest_is_still_deleted(aws):
    ec2, rds = clients()
    sandbox = drill_sandbox.create_sandbox(ec2, rds, region=DR, plan="demo", drill_id="d3")
    rds.create_db_instance(
        DBInstanceIdentifier="drill-protected",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="admin",
        MasterUserPassword="not-a-real-secret-1",
        AllocatedStorage=20,
        DBSubnetGroupName=sandbox.db_subnet_group,
        DeletionProtection=True,
        Tags=[{"Key": "securedr:drill", "Value": "d3"}],
    )
    volume = ec2.create_volume(
        AvailabilityZone=sandbox.availability_zones[0],
        Size=1,
        TagSpecifications=[
            {"ResourceType": "volume", "Tags": [{"Key": "securedr:drill", "Value": "d3"}]}
        ],
    )["VolumeId"]

    result = drill_sandbox.teardown(ec2, rds, drill_id="d3", poll=0.1)

    assert [e.split(":", 2)[:2] for e in result.errors] == [["rds", "db/drill-protected"]]
    assert f"ec2:volume/{volume}" in result.deleted  # one failure does not stop the rest
    assert "rds:db/drill-protected" in drill_sandbox.leftovers(ec2, rds, drill_id="d3")
    rds.modify_db_instance(DBInstanceIdentifier="drill-protected", DeletionProtection=False)
    assert drill_sandbox.teardown(ec2, rds, drill_id="d3", poll=0.1).errors == []
    assert drill_sandbox.leftovers(ec2, rds, drill_id="d3") == []


# --------------------------------------------------------------------------- AWS as it behaves


def _lingering_interface(ec2, sandbox, *, linger_seconds: float):
    """An RDS-style network interface in the sandbox that RDS releases ``linger_seconds`` from
    now; until then AWS refuses to delete the sandbox's network as still in use."""
    from sandbox import realism

    eni = ec2.create_network_interface(
        SubnetId=sandbox.subnet_ids[0], Description="RDSNetworkInterface"
    )["NetworkInterface"]["NetworkInterfaceId"]
    released_at = time.monotonic() + linger_seconds
    calls: list[str] = []

    def before(call):
        calls.append(call.action)
        lingering = time.monotonic() < released_at
        if call.action == "DescribeNetworkInterfaces" and not lingering:
            backend = call.responder.ec2_backend
            if eni in backend.enis:
                backend.delete_network_interface(eni)
        if not lingering:
            return
        if call.action == "DeleteDBSubnetGroup":
            raise realism.AWSError(
                "InvalidDBSubnetGroupStateFault",
                f"Cannot delete the subnet group '{call.param('DBSubnetGroupName')}' because at "
                "least one database instance is still using it.",
            )
        if call.action in ("DeleteSecurityGroup", "DeleteSubnet", "DeleteVpc"):
            target = call.param("GroupId") or call.param("SubnetId") or call.param("VpcId")
            raise realism.AWSError(
                "DependencyViolation", f"resource {target} has a dependent object"
            )

    realism.behaviour("test-eni-linger", before=before)
    realism.configure("test-eni-linger")
    return eni, calls


def test_teardown_waits_out_a_deleted_databases_lingering_interfaces(aws):
    ec2, rds = clients()
    sandbox = drill_sandbox.create_sandbox(ec2, rds, region=DR, plan="demo", drill_id="d4")
    _, calls = _lingering_interface(ec2, sandbox, linger_seconds=1.5)

    result = drill_sandbox.teardown(ec2, rds, drill_id="d4", wait_seconds=60, poll=0.1)

    assert result.errors == []
    assert f"ec2:vpc/{sandbox.vpc_id}" in result.deleted
    assert f"rds:subgrp/{sandbox.db_subnet_group}" in result.deleted
    assert drill_sandbox.leftovers(ec2, rds, drill_id="d4") == []
    # It waited for the interfaces (DescribeNetworkInterfaces on the sandbox VPC) before it
    # deleted the network, rather than failing on the first DependencyViolation.
    first_delete = calls.index("DeleteDBSubnetGroup")
    assert calls[:first_delete].count("DescribeNetworkInterfaces") >= 2


def test_teardown_retries_in_use_refusals_with_backoff(aws, monkeypatch):
    from sandbox import realism

    ec2, rds = clients()
    sandbox = drill_sandbox.create_sandbox(ec2, rds, region=DR, plan="demo", drill_id="d5")
    refusals = {"DeleteSecurityGroup": 3, "DeleteVpc": 2, "DeleteDBSubnetGroup": 1}

    def before(call):
        if refusals.get(call.action, 0) > 0:
            refusals[call.action] -= 1
            code = (
                "InvalidDBSubnetGroupStateFault" if call.service == "rds" else "DependencyViolation"
            )
            raise realism.AWSError(code, "resource has a dependent object")

    realism.behaviour("test-in-use", before=before)
    realism.configure("test-in-use")
    sleeps: list[float] = []
    real_sleep = time.sleep
    monkeypatch.setattr(drill_sandbox.time, "sleep", lambda s: (sleeps.append(s), real_sleep(0)))

    result = drill_sandbox.teardown(ec2, rds, drill_id="d5", wait_seconds=600, poll=0.5)

    assert result.errors == []
    assert drill_sandbox.leftovers(ec2, rds, drill_id="d5") == []
    assert refusals == {"DeleteSecurityGroup": 0, "DeleteVpc": 0, "DeleteDBSubnetGroup": 0}
    # Exponential backoff per deletion: subnet group 0.5; security group 0.5, 1, 2; VPC 0.5, 1.
    assert sleeps == [0.5, 0.5, 1.0, 2.0, 0.5, 1.0]
    assert f"ec2:vpc/{sandbox.vpc_id}" in result.deleted


def test_interfaces_that_never_go_are_named_with_everything_they_hold(aws):
    ec2, rds = clients()
    sandbox = drill_sandbox.create_sandbox(ec2, rds, region=DR, plan="demo", drill_id="d6")
    eni, _ = _lingering_interface(ec2, sandbox, linger_seconds=3600)

    started = time.monotonic()
    # The network part has a deadline of its own, shorter than the wait for DB deletions.
    result = drill_sandbox.teardown(
        ec2, rds, drill_id="d6", wait_seconds=3600, poll=0.1, network_wait_seconds=1.5
    )
    assert time.monotonic() - started < 60

    failed = {e.split(": ", 1)[0] for e in result.errors}
    assert failed == {
        f"rds:subgrp/{sandbox.db_subnet_group}",
        f"ec2:security-group/{sandbox.security_group_id}",
        *(f"ec2:subnet/{s}" for s in sandbox.subnet_ids),
        f"ec2:vpc/{sandbox.vpc_id}",
    }
    assert any("DependencyViolation" in e for e in result.errors)
    left = drill_sandbox.leftovers(ec2, rds, drill_id="d6")
    assert f"ec2:network-interface/{eni} (RDSNetworkInterface)" in left
    assert f"ec2:vpc/{sandbox.vpc_id}" in left


def test_sandbox_uses_only_availability_zones_never_local_or_wavelength_zones(aws):
    from sandbox import realism

    ec2, rds = clients()
    zones = ["us-west-2-lax-1a", "us-west-2-wl1-las-wlz-1", f"{DR}a", f"{DR}b"]
    seen: list[dict] = []

    def after(call, result):
        # AWS lists opted-in Local and Wavelength Zones first here unless asked for zone-type.
        if call.action != "DescribeAvailabilityZones":
            return result
        seen.append(dict(call.params))
        if any(v == "availability-zone" for k, v in call.params.items() if ".Value." in k):
            return result
        status, headers, body = result
        body = body.decode() if isinstance(body, bytes) else body
        extra = "".join(
            f"<item><zoneName>{z}</zoneName><zoneState>available</zoneState>"
            f"<regionName>{DR}</regionName><zoneType>{kind}</zoneType></item>"
            for z, kind in zip(zones[:2], ("local-zone", "wavelength-zone"), strict=True)
        )
        return (
            status,
            headers,
            body.replace("<availabilityZoneInfo>", "<availabilityZoneInfo>" + extra, 1),
        )

    realism.behaviour("test-zones", after=after)
    realism.configure("test-zones")

    sandbox = drill_sandbox.create_sandbox(ec2, rds, region=DR, plan="demo", drill_id="d7")

    assert sandbox.availability_zones == (f"{DR}a", f"{DR}b")
    assert any(v == "zone-type" for v in seen[0].values())


def test_a_full_vpc_quota_says_which_quota_and_what_to_do(aws):
    from sandbox import realism

    def before(call):
        if call.action == "CreateVpc":
            raise realism.AWSError(
                "VpcLimitExceeded", "The maximum number of VPCs has been reached."
            )

    realism.behaviour("test-vpc-quota", before=before)
    realism.configure("test-vpc-quota")
    ec2, rds = clients()

    with pytest.raises(drill_sandbox.SandboxQuotaExceeded) as raised:
        drill_sandbox.create_sandbox(ec2, rds, region=DR, plan="demo", drill_id="d8")

    message = str(raised.value)
    assert "VpcLimitExceeded" in message and "VPCs per Region" in message
    assert "5" in message and DR in message and "Service Quotas" in message


def test_a_new_security_group_not_yet_visible_is_waited_for(aws, monkeypatch):
    from sandbox import realism
    from securedr.aws import errors

    monkeypatch.setattr(errors, "NOT_FOUND_POLL_SECONDS", 0.05)
    hidden = {"left": 3}

    def before(call):
        # https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html
        if call.action == "DescribeSecurityGroups" and call.param("GroupId.1") and hidden["left"]:
            hidden["left"] -= 1
            raise realism.AWSError(
                "InvalidGroup.NotFound",
                f"The security group '{call.param('GroupId.1')}' does not exist",
            )

    realism.behaviour("test-sg-consistency", before=before)
    realism.configure("test-sg-consistency")
    ec2, rds = clients()

    sandbox = drill_sandbox.create_sandbox(ec2, rds, region=DR, plan="demo", drill_id="d9")

    assert hidden["left"] == 0
    assert drill_sandbox.isolation_problems(ec2, sandbox) == []


def test_teardown_under_the_sandboxs_lingering_rds_interfaces(aws):
    """The sandbox's ``refusals`` section: a deleted instance's interfaces linger (here 3 s on the
    sandbox clock) and AWS refuses to delete its network meanwhile."""
    from sandbox import realism

    ec2, rds = clients()
    sandbox = drill_sandbox.create_sandbox(ec2, rds, region=DR, plan="demo", drill_id="d10")
    rds.create_db_instance(
        DBInstanceIdentifier="drill-linger",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="admin",
        MasterUserPassword="not-a-real-secret-1",
        AllocatedStorage=20,
        DBSubnetGroupName=sandbox.db_subnet_group,
        VpcSecurityGroupIds=[sandbox.security_group_id],
        Tags=[{"Key": "securedr:drill", "Value": "d10"}],
    )
    realism.configure("refusals", eni_linger_seconds=3)

    result = drill_sandbox.teardown(ec2, rds, drill_id="d10", wait_seconds=120, poll=0.2)

    assert result.errors == []
    assert "rds:db/drill-linger" in result.deleted
    assert f"ec2:vpc/{sandbox.vpc_id}" in result.deleted
    assert drill_sandbox.leftovers(ec2, rds, drill_id="d10") == []
