"""Resource-level IAM checks: which (action, resource ARN) pairs a run really asks AWS for, and
whether a shipped policy allows each one.

:func:`recorded_requests` records every boto3 / aiobotocore call with its parameters, Region and
credentials; :func:`authorizations` turns one call into the (IAM action, resource ARN) pairs AWS
authorizes for it - the action AND the resource the code uses, versioned S3 reads included
(``GetObject`` with a ``VersionId`` is ``s3:GetObjectVersion``); :func:`allowed` is a small
evaluator: an ``Allow`` statement matches when one of its actions and one of its resources match
with IAM's wildcards (``*`` and ``?``; actions case-insensitive). Conditions are not evaluated but
returned with the match, so a test can note or check them. Explicit denies do not occur in the
shipped policies (they are asserted Allow-only).

ARN formats and the resources each action is authorized against:
https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html
https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonrds.html
https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html
https://docs.aws.amazon.com/service-authorization/latest/reference/list_awskeymanagementservice.html
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# Deny statements, evaluated conditions and cross-account rules (identity AND resource policy,
# SCPs) live in sandbox.iam_judge, which `make compromise` uses too.
from sandbox.iam_judge import Decision, Principal, World, judge, judge_call

ACCOUNT = "123456789012"

#: S3 operations whose IAM action is named differently.
S3_ACTIONS = {
    "HeadBucket": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "HeadObject": "s3:GetObject",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
}
_S3_BUCKET_OPS = {
    "HeadBucket",
    "ListObjectsV2",
    "ListObjectVersions",
    "GetBucketVersioning",
    "GetBucketEncryption",
    "GetObjectLockConfiguration",
    "GetPublicAccessBlock",
}
#: EC2 id prefix -> ARN resource type.
_EC2_TYPES = {
    "snap": "snapshot",
    "vol": "volume",
    "vpc": "vpc",
    "subnet": "subnet",
    "sg": "security-group",
}
_CREATED_EC2 = {
    "CreateVolume": "volume",
    "CreateSnapshot": "snapshot",
    "CopySnapshot": "snapshot",
    "CreateVpc": "vpc",
    "CreateSubnet": "subnet",
    "CreateSecurityGroup": "security-group",
}


@dataclass(frozen=True)
class Request:
    service: str  #: IAM prefix (botocore signing name)
    operation: str
    params: dict[str, Any]
    region: str
    access_key: str


@contextmanager
def recorded_requests() -> Iterator[list[Request]]:
    """Every AWS API call made inside the block, sync (boto3) and async (aiobotocore)."""
    import aiobotocore.client
    import botocore.client

    calls: list[Request] = []
    sync_call = botocore.client.BaseClient._make_api_call
    async_call = aiobotocore.client.AioBaseClient._make_api_call

    def record(client: Any, operation: str, params: dict[str, Any]) -> None:
        credentials = client._request_signer._credentials
        try:
            access_key = getattr(credentials, "access_key", "") if credentials else ""
        except NotImplementedError:
            # aiobotocore's refreshable credentials refuse the synchronous property; the key
            # they hold is what the request is signed with (refreshed by the signer).
            access_key = getattr(credentials, "_access_key", "")
        calls.append(
            Request(
                service=client.meta.service_model.signing_name,
                operation=operation,
                params=dict(params),
                region=client.meta.region_name,
                access_key=access_key,
            )
        )

    def sync(self: Any, operation: str, params: dict[str, Any]) -> Any:
        record(self, operation, params)
        return sync_call(self, operation, params)

    async def asynchronous(self: Any, operation: str, params: dict[str, Any]) -> Any:
        record(self, operation, params)
        return await async_call(self, operation, params)

    botocore.client.BaseClient._make_api_call = sync
    aiobotocore.client.AioBaseClient._make_api_call = asynchronous
    try:
        yield calls
    finally:
        botocore.client.BaseClient._make_api_call = sync_call
        aiobotocore.client.AioBaseClient._make_api_call = async_call


def _ec2(region: str, kind: str, ident: str) -> str:
    account = "" if kind == "snapshot" else ACCOUNT  # snapshots have no account in their ARN
    return f"arn:aws:ec2:{region}:{account}:{kind}/{ident}"


def _ec2_id(region: str, ident: str) -> str:
    return _ec2(region, _EC2_TYPES[ident.split("-", 1)[0]], ident)


def _rds(region: str, kind: str, ident: str) -> str:
    return ident if ident.startswith("arn:") else f"arn:aws:rds:{region}:{ACCOUNT}:{kind}:{ident}"


def _kms(region: str, key: str | None, aliases: Mapping[str, str]) -> str:
    """The key ARN AWS authorizes against. KMS resolves an alias first: permissions on the
    operations SecureDR calls are evaluated on the key, never on the alias.
    https://docs.aws.amazon.com/kms/latest/developerguide/alias-authorization.html"""
    if not key:
        return f"arn:aws:kms:{region}:{ACCOUNT}:key/*"
    if key.startswith("alias/"):
        key = f"arn:aws:kms:{region}:{ACCOUNT}:{key}"
    if ":alias/" in key:
        return aliases.get(key, key)
    if key.startswith("arn:"):
        return key
    return f"arn:aws:kms:{region}:{ACCOUNT}:key/{key}"


def kms_aliases(regions: list[str]) -> dict[str, str]:
    """alias ARN -> key ARN in the sandbox, for :func:`authorizations`."""
    import boto3

    found = {}
    for region in regions:
        kms = boto3.client("kms", region_name=region)
        for alias in kms.list_aliases()["Aliases"]:
            if alias.get("TargetKeyId"):
                found[alias["AliasArn"]] = (
                    f"arn:aws:kms:{region}:{ACCOUNT}:key/{alias['TargetKeyId']}"
                )
    return found


def authorizations(
    request: Request, aliases: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs AWS authorizes for ``request``.

    Tags at creation add ``ec2:CreateTags`` / ``rds:AddTagsToResource`` on the new resource;
    S3 writes with Object Lock add ``s3:PutObjectRetention``. Actions with no resource-level
    permissions are authorized against ``*``.
    """
    service, op, p, region = request.service, request.operation, request.params, request.region
    pairs: list[tuple[str, str]] = []
    if service == "ec2":
        action = f"ec2:{op}"
        if op.startswith("Describe") and op != "DescribeSnapshotAttribute":
            return [(action, "*")]
        if op == "GetSnapshotBlockPublicAccessState":
            return [(action, "*")]
        if op in ("DescribeSnapshotAttribute", "ModifySnapshotAttribute", "DeleteSnapshot"):
            return [(action, _ec2(region, "snapshot", p["SnapshotId"]))]
        if op == "CreateTags":
            return [(action, _ec2_id(region, r)) for r in p["Resources"]]
        if op in _CREATED_EC2:
            kind = _CREATED_EC2[op]
            pairs.append((action, _ec2(region, kind, "*")))
            if op == "CreateVolume" and p.get("SnapshotId"):
                pairs.append((action, _ec2(region, "snapshot", p["SnapshotId"])))
            if op == "CreateSnapshot":
                pairs.append((action, _ec2(region, "volume", p["VolumeId"])))
            if op == "CopySnapshot":
                pairs.append((action, _ec2(p["SourceRegion"], "snapshot", p["SourceSnapshotId"])))
            if op in ("CreateSubnet", "CreateSecurityGroup"):
                pairs.append((action, _ec2(region, "vpc", p["VpcId"])))
            if p.get("TagSpecifications"):
                pairs.append(("ec2:CreateTags", _ec2(region, kind, "*")))
            return pairs
        for key in ("GroupId", "SubnetId", "VpcId", "VolumeId"):
            if key in p:
                return [(action, _ec2_id(region, p[key]))]
        raise AssertionError(f"no resource mapping for ec2:{op} - add one")
    if service == "rds":
        action = f"rds:{op}"
        if op == "DescribeDBInstances":
            return [(action, _rds(region, "db", p.get("DBInstanceIdentifier") or "*"))]
        if op == "DescribeDBSnapshots":
            return [(action, _rds(region, "snapshot", p.get("DBSnapshotIdentifier") or "*"))]
        if op in ("DescribeDBSnapshotAttributes", "ModifyDBSnapshotAttribute", "DeleteDBSnapshot"):
            return [(action, _rds(region, "snapshot", p["DBSnapshotIdentifier"]))]
        if op in ("DescribeDBSubnetGroups", "CreateDBSubnetGroup", "DeleteDBSubnetGroup"):
            pairs = [(action, _rds(region, "subgrp", p.get("DBSubnetGroupName") or "*"))]
            if p.get("Tags"):
                pairs.append(("rds:AddTagsToResource", pairs[0][1]))
            return pairs
        if op == "DeleteDBInstance":
            return [(action, _rds(region, "db", p["DBInstanceIdentifier"]))]
        if op == "AddTagsToResource":
            return [(action, p["ResourceName"])]
        if op == "CreateDBSnapshot":
            created = _rds(region, "snapshot", p["DBSnapshotIdentifier"])
            pairs = [(action, _rds(region, "db", p["DBInstanceIdentifier"])), (action, created)]
        elif op == "CopyDBSnapshot":
            created = _rds(region, "snapshot", p["TargetDBSnapshotIdentifier"])
            pairs = [(action, created), (action, p["SourceDBSnapshotIdentifier"])]
        elif op == "RestoreDBInstanceFromDBSnapshot":
            created = _rds(region, "db", p["DBInstanceIdentifier"])
            pairs = [
                (action, created),
                (action, _rds(region, "snapshot", p["DBSnapshotIdentifier"])),
            ]
            if p.get("DBSubnetGroupName"):
                pairs.append((action, _rds(region, "subgrp", p["DBSubnetGroupName"])))
        else:
            raise AssertionError(f"no resource mapping for rds:{op} - add one")
        if p.get("Tags"):
            pairs.append(("rds:AddTagsToResource", created))
        return pairs
    if service == "s3":
        bucket = p["Bucket"]
        if op in _S3_BUCKET_OPS:
            return [(S3_ACTIONS.get(op, f"s3:{op}"), f"arn:aws:s3:::{bucket}")]
        resource = f"arn:aws:s3:::{bucket}/{p['Key']}"
        action = S3_ACTIONS.get(op, f"s3:{op}")
        if op in ("GetObject", "HeadObject") and p.get("VersionId"):
            # Reading a given version is its own permission.
            # https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html
            action = "s3:GetObjectVersion"
        pairs = [(action, resource)]
        if p.get("ObjectLockMode"):
            pairs.append(("s3:PutObjectRetention", resource))
        return pairs
    if service == "kms":
        return [(f"kms:{op}", _kms(region, p.get("KeyId"), aliases or {}))]
    if service == "sns":
        return [(f"sns:{op}", p["TopicArn"])]
    if service == "sts":
        return [(f"sts:{op}", p.get("RoleArn", "*"))]
    raise AssertionError(f"no resource mapping for {service}:{op} - add one")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(pattern: str, value: str, *, case: bool) -> bool:
    # IAM wildcards: * any run of characters, ? one character; nothing else is special.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def allowed(policy: dict[str, Any], action: str, resource: str) -> list[dict[str, Any]]:
    """The Allow statements of ``policy`` matching ``action`` on ``resource`` (empty: denied).

    Each carries its ``Condition`` (if any) for the caller to note; conditions are not
    evaluated here.
    """
    found = []
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow", "the shipped policies only allow"
        if not any(_matches(a, action, case=False) for a in _as_list(statement["Action"])):
            continue
        if any(_matches(r, resource, case=True) for r in _as_list(statement["Resource"])):
            found.append(statement)
    return found


def denied(
    policy: dict[str, Any], requests: list[Request], aliases: Mapping[str, str] | None = None
) -> list[tuple[str, str, str]]:
    """Every (operation, action, resource) of ``requests`` that ``policy`` does not allow."""
    problems = []
    for request in requests:
        for action, resource in authorizations(request, aliases):
            if not allowed(policy, action, resource):
                problems.append((f"{request.service}:{request.operation}", action, resource))
    return sorted(set(problems))


def evaluate(
    policy: dict[str, Any],
    action: str,
    resource: str,
    context: Mapping[str, Any] | None = None,
    *,
    principal: str = f"arn:aws:iam::{ACCOUNT}:role/securedr",
) -> Decision:
    """``policy`` as the only identity policy of ``principal`` (same account, no resource
    policy): unlike :func:`allowed`, ``Deny`` statements win and conditions are evaluated
    against ``context`` (see :mod:`sandbox.iam_judge`)."""
    world = World()
    world.add_identity(principal, policy)
    return judge(world, Principal(principal), action, resource, context)


__all__ = [
    "Decision",
    "Principal",
    "Request",
    "World",
    "allowed",
    "authorizations",
    "denied",
    "evaluate",
    "judge",
    "judge_call",
    "kms_aliases",
    "recorded_requests",
]
