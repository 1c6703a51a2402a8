"""Judge AWS calls by the policies SecureDR ships, across accounts, the way IAM decides them.

moto does not enforce IAM (and its optional IAM mode knows nothing of SCPs, key policies across
accounts or most condition keys), so the compromise simulation and the tests decide each call
here, from the rendered documents in ``include/iam/``. The evaluation follows AWS's policy
evaluation logic:
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html

1. An explicit ``Deny`` in any policy that applies - the SCPs of the caller's account, the
   caller's identity policies, the resource's policy (key policy, bucket policy, role trust
   policy) - decides: denied.
2. SCPs only ever restrict: every account here runs under AWS's default ``FullAWSAccess``
   plus the shipped deny-only SCP (the example in ``securedr-vault-scp.json``).
3. Same account: an ``Allow`` in an identity policy or in the resource's policy naming the
   caller suffices - except for KMS keys, where the key policy must allow, either the caller
   directly or the account (then an identity policy must allow too):
   https://docs.aws.amazon.com/kms/latest/developerguide/control-access.html
4. Another account: the resource's policy must allow the caller (or its account) AND the
   caller's identity policy must allow; a resource with no resource policy (an EBS snapshot,
   an RDS snapshot) is never reachable through IAM from another account:
   https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html

Conditions are evaluated, not noted: the string, ARN, numeric, ``Bool`` and ``Null`` operators,
``...IfExists``, ``ForAllValues:`` / ``ForAnyValue:``, and AWS's rule for keys missing from the
request (a negated operator matches, any other does not):
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
An operator this module does not know raises, so a policy it cannot judge is never "allowed".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ADMIN_POLICY",
    "Decision",
    "Principal",
    "World",
    "authorizations",
    "conditions_match",
    "judge",
    "judge_call",
    "statement_matches",
    "vault_world",
]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True)
class Principal:
    """Who calls: a role (``arn:aws:iam::<account>:role/<name>``), a user, or an account root."""

    arn: str

    @property
    def account(self) -> str:
        match = re.match(r"^arn:aws[a-z-]*:(?:iam|sts)::(\d{12}):", self.arn)
        if not match:
            raise ValueError(f"not a principal ARN: {self.arn!r}")
        return match[1]

    @property
    def root(self) -> str:
        return f"arn:aws:iam::{self.account}:root"

    @classmethod
    def role(cls, account: str, name: str) -> Principal:
        return cls(f"arn:aws:iam::{account}:role/{name}")

    @classmethod
    def account_root(cls, account: str) -> Principal:
        return cls(f"arn:aws:iam::{account}:root")


# --------------------------------------------------------------------------- matching


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, value: str, *, case: bool = True) -> bool:
    # IAM wildcards: * any run of characters, ? one character; nothing else is special.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE | re.DOTALL) is not None


def _arn_like(pattern: str, value: str) -> bool:
    """ArnLike / ArnEquals: six colon-separated parts, each matched with wildcards."""
    p_parts, v_parts = pattern.split(":", 5), value.split(":", 5)
    if len(p_parts) != 6 or len(v_parts) != 6:
        return False
    return all(_wildcard(p, v) for p, v in zip(p_parts, v_parts, strict=True))


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _bool(value: Any) -> str:
    return str(value).lower()


_STRING_OPS = {
    "StringEquals": lambda p, v: str(p) == str(v),
    "StringEqualsIgnoreCase": lambda p, v: str(p).lower() == str(v).lower(),
    "StringLike": lambda p, v: _wildcard(str(p), str(v)),
    "ArnEquals": lambda p, v: _arn_like(str(p), str(v)),
    "ArnLike": lambda p, v: _arn_like(str(p), str(v)),
    "Bool": lambda p, v: _bool(p) == _bool(v),
}
_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
    "NumericNotEquals": "NumericEquals",
}


def _numeric(op: str):  # type: ignore[no-untyped-def]
    compare = {
        "NumericEquals": lambda a, b: a == b,
        "NumericLessThan": lambda a, b: a < b,
        "NumericLessThanEquals": lambda a, b: a <= b,
        "NumericGreaterThan": lambda a, b: a > b,
        "NumericGreaterThanEquals": lambda a, b: a >= b,
    }[op]

    def test(pattern: Any, value: Any) -> bool:
        a, b = _number(value), _number(pattern)
        return a is not None and b is not None and compare(a, b)

    return test


for _op in (
    "NumericEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
):
    _STRING_OPS[_op] = _numeric(_op)


def _lookup(context: Mapping[str, Any], key: str) -> list[Any] | None:
    # Condition key names are case-insensitive; tag keys in them are matched as written.
    lowered = key.lower()
    for name, value in context.items():
        if name.lower() == lowered:
            return [_bool(v) if isinstance(v, bool) else str(v) for v in _as_list(value)]
    return None


def _one_condition(operator: str, key: str, patterns: list[Any], context: Mapping) -> bool:
    qualifier = ""
    if ":" in operator:
        qualifier, operator = operator.split(":", 1)
    if_exists = operator.endswith("IfExists")
    if if_exists:
        operator = operator.removesuffix("IfExists")
    values = _lookup(context, key)
    if operator == "Null":
        want_absent = _bool(patterns[0]) == "true"
        return (values is None) == want_absent
    negated = operator in _NEGATED
    base = _NEGATED.get(operator, operator)
    if base not in _STRING_OPS:
        raise ValueError(f"condition operator {operator!r} is not evaluated by iam_judge")
    test = _STRING_OPS[base]
    if values is None:
        # A key missing from the request: only negated operators (and IfExists) match.
        return if_exists or negated
    if qualifier == "ForAllValues":
        hit = all(any(test(p, v) for p in patterns) for v in values)
        return not hit if negated else hit
    matched = any(test(p, v) for p in patterns for v in values)
    return not matched if negated else matched


def conditions_match(condition: Mapping[str, Any] | None, context: Mapping[str, Any]) -> bool:
    """Whether a statement's ``Condition`` block holds for the request ``context``."""
    for operator, keys in (condition or {}).items():
        for key, patterns in keys.items():
            if not _one_condition(operator, key, _as_list(patterns), context):
                return False
    return True


def _principal_match(statement: Mapping[str, Any], principal: Principal) -> str | None:
    """``"direct"`` if the statement names the caller, ``"account"`` if it names the caller's
    account (then the account must also delegate through an identity policy), else None."""
    if "NotPrincipal" in statement:
        raise ValueError("NotPrincipal is not evaluated by iam_judge")
    named = statement.get("Principal")
    if named == "*" or named == {"AWS": "*"}:
        return "direct"
    aws = _as_list(named.get("AWS")) if isinstance(named, dict) else []
    for entry in aws:
        if entry == principal.arn or _wildcard(entry, principal.arn):
            return "direct"
    for entry in aws:
        if entry in (principal.root, principal.account):
            return "account"
    return None


def statement_matches(
    statement: Mapping[str, Any], action: str, resource: str, context: Mapping[str, Any]
) -> bool:
    """Action (any case), resource (exact case) and conditions all match."""
    if "Action" in statement:
        action_ok = any(_wildcard(a, action, case=False) for a in _as_list(statement["Action"]))
    else:
        action_ok = not any(
            _wildcard(a, action, case=False) for a in _as_list(statement["NotAction"])
        )
    if not action_ok:
        return False
    if "Resource" in statement:
        resource_ok = any(_wildcard(r, resource) for r in _as_list(statement["Resource"]))
    elif "NotResource" in statement:
        resource_ok = not any(_wildcard(r, resource) for r in _as_list(statement["NotResource"]))
    else:
        resource_ok = True  # SCP statements may omit Resource only together with "*"
    return resource_ok and conditions_match(statement.get("Condition"), context)


def _sid(statement: Mapping[str, Any]) -> str:
    return str(statement.get("Sid") or "<no Sid>")


# --------------------------------------------------------------------------- the world


@dataclass
class World:
    """The policies in force: identity policies per principal ARN, resource policies per
    resource ARN pattern (a key, a bucket and its objects, a role's trust), owners of resources
    whose ARN carries no account (snapshots, buckets), and the SCPs of each account."""

    identities: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    resource_policies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    scps: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: ARN pattern -> owning account, for ARNs without an account field.
    owners: list[tuple[str, str]] = field(default_factory=list)
    #: (ARN pattern, account): snapshots the owner shared with another account (EBS
    #: createVolumePermission, RDS "restore" attribute) - the snapshot's stand-in for a
    #: resource policy.
    shares: list[tuple[str, str]] = field(default_factory=list)

    def add_identity(self, principal: str, *policies: dict[str, Any]) -> None:
        self.identities.setdefault(principal, []).extend(policies)

    def add_resource_policy(self, pattern: str, policy: dict[str, Any]) -> None:
        self.resource_policies.append((pattern, policy))

    def add_scp(self, account: str, policy: dict[str, Any]) -> None:
        self.scps.setdefault(account, []).append(policy)

    def own(self, pattern: str, account: str) -> None:
        self.owners.append((pattern, account))

    def share(self, pattern: str, account: str) -> None:
        self.shares.append((pattern, account))

    def shared_with(self, resource: str, account: str) -> bool:
        return any(a == account and _wildcard(p, resource) for p, a in self.shares)

    def resource_account(self, resource: str) -> str | None:
        parts = resource.split(":")
        if len(parts) > 4 and parts[4]:
            return parts[4]
        for pattern, account in self.owners:
            if _wildcard(pattern, resource):
                return account
        return None

    def resource_policy(self, resource: str) -> dict[str, Any] | None:
        for pattern, policy in self.resource_policies:
            if _wildcard(pattern, resource):
                return policy
        return None

    def judge(
        self,
        principal: Principal | str,
        action: str,
        resource: str,
        context: Mapping[str, Any] | None = None,
    ) -> Decision:
        return judge(self, principal, action, resource, context)


def _context(
    principal: Principal, resource: str, context: Mapping[str, Any] | None
) -> dict[str, Any]:
    full: dict[str, Any] = {
        "aws:PrincipalArn": principal.arn,
        "aws:PrincipalAccount": principal.account,
        "aws:SecureTransport": "true",
    }
    parts = resource.split(":")
    if len(parts) > 3 and parts[3]:
        full["aws:RequestedRegion"] = parts[3]
    full.update(context or {})
    return full


def judge(
    world: World,
    principal: Principal | str,
    action: str,
    resource: str,
    context: Mapping[str, Any] | None = None,
) -> Decision:
    """May ``principal`` perform ``action`` on ``resource`` (an ARN, or ``*``) in ``context``
    (condition keys of the request: ``sts:ExternalId``, ``ec2:CoolOffPeriod``,
    ``aws:ResourceTag/...``, ...)? See the module docstring for the rules."""
    caller = principal if isinstance(principal, Principal) else Principal(principal)
    ctx = _context(caller, resource, context)
    identity = world.identities.get(caller.arn, [])
    resource_policy = world.resource_policy(resource) if resource != "*" else None
    owner = world.resource_account(resource) if resource != "*" else caller.account
    owner = owner or caller.account
    is_key = action.lower().startswith("kms:") and ":key/" in resource

    def matching(
        policies: Iterable[dict[str, Any]], effect: str, with_principal: bool
    ) -> list[tuple[dict[str, Any], str]]:
        found = []
        for policy in policies:
            for statement in policy["Statement"]:
                if statement["Effect"] != effect:
                    continue
                how = "direct"
                if with_principal:
                    how = _principal_match(statement, caller) or ""
                    if not how:
                        continue
                if statement_matches(statement, action, resource, ctx):
                    found.append((statement, how))
        return found

    scps = world.scps.get(caller.account, [])
    for statement, _ in matching(scps, "Deny", with_principal=False):
        return Decision(
            False, f"explicit deny in the SCP of account {caller.account}: {_sid(statement)}"
        )
    for statement, _ in matching(identity, "Deny", with_principal=False):
        return Decision(False, f"explicit deny in {caller.arn}'s policy: {_sid(statement)}")
    resource_allows: list[tuple[dict[str, Any], str]] = []
    if resource_policy is not None:
        for statement, _ in matching([resource_policy], "Deny", with_principal=True):
            return Decision(
                False, f"explicit deny in the resource policy of {resource}: {_sid(statement)}"
            )
        resource_allows = matching([resource_policy], "Allow", with_principal=True)
    identity_allows = matching(identity, "Allow", with_principal=False)
    direct = [s for s, how in resource_allows if how == "direct"]
    via_account = [s for s, how in resource_allows if how == "account"]
    same_account = owner == caller.account
    granted = f"{caller.arn}'s policy ({_sid(identity_allows[0][0])})" if identity_allows else ""
    if not same_account and resource_policy is None and world.shared_with(resource, caller.account):
        # A shared snapshot: the share lets the account in; its principals need IAM allows.
        # https://docs.aws.amazon.com/ebs/latest/userguide/ebs-modifying-snapshot-permissions.html
        if identity_allows:
            return Decision(True, f"{resource} is shared with {caller.account} and {granted}")
        return Decision(
            False,
            f"{resource} is shared with {caller.account} but no identity policy of "
            f"{caller.arn} allows {action}",
        )
    if is_key or not same_account or action.lower() == "sts:assumerole":
        # The resource's own policy must let this caller (or its account) in.
        if resource_policy is None:
            return Decision(
                False,
                f"{resource} is in account {owner} and has no resource policy: no principal of "
                f"account {caller.account} can reach it through IAM",
            )
        if same_account and direct:
            return Decision(
                True, f"the resource policy of {resource} allows {caller.arn} ({_sid(direct[0])})"
            )
        if not (direct or via_account):
            return Decision(
                False,
                f"the resource policy of {resource} allows no {action} for {caller.arn}",
            )
        if not identity_allows:
            return Decision(
                False,
                f"the resource policy of {resource} lets {caller.arn} in "
                f"({_sid((direct or via_account)[0])}) but no identity policy of "
                f"{caller.arn} allows {action}",
            )
        return Decision(
            True, f"the resource policy ({_sid((direct or via_account)[0])}) and {granted}"
        )
    if identity_allows:
        return Decision(True, granted)
    if direct:
        return Decision(
            True, f"the resource policy of {resource} allows {caller.arn} ({_sid(direct[0])})"
        )
    return Decision(
        False, f"no policy allows {action} on {resource} for {caller.arn} (implicit deny)"
    )


# --------------------------------------------------------------------------- requests


def _tags(spec: Any) -> dict[str, str]:
    tags: dict[str, str] = {}
    for entry in _as_list(spec):
        for tag in entry.get("Tags", []) if isinstance(entry, dict) and "Tags" in entry else []:
            tags[tag["Key"]] = tag["Value"]
        if isinstance(entry, dict) and "Key" in entry:
            tags[entry["Key"]] = entry["Value"]
    return tags


def _request_tags(tags: Mapping[str, str]) -> dict[str, Any]:
    context: dict[str, Any] = {f"aws:RequestTag/{k}": v for k, v in tags.items()}
    if tags:
        context["aws:TagKeys"] = sorted(tags)
    return context


def _resource_tags(tags: Mapping[str, str] | None) -> dict[str, Any]:
    return {f"aws:ResourceTag/{k}": v for k, v in (tags or {}).items()}


def authorizations(
    service: str,
    operation: str,
    params: Mapping[str, Any],
    *,
    region: str,
    account: str,
    resource_tags: Mapping[str, str] | None = None,
) -> list[tuple[str, str, dict[str, Any]]]:
    """The (IAM action, resource ARN, condition keys) AWS authorizes for one API call made in
    ``account`` and ``region``, for the calls the vault's documents are about.

    ``resource_tags`` are the tags of the existing resource the call acts on (for
    ``aws:ResourceTag/...``). Resource-level support and condition keys per action:
    https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html,
    .../list_amazonrds.html, .../list_amazons3.html, .../list_awskeymanagementservice.html,
    .../list_awssecuritytokenservice.html; snapshot lock keys ``ec2:SnapshotLockDuration``
    (days) and ``ec2:CoolOffPeriod`` (hours):
    https://docs.aws.amazon.com/ebs/latest/userguide/snapshot-lock-iam.html
    """
    p = params
    existing = _resource_tags(resource_tags)

    def snap(ident: str, where: str = region) -> str:
        return f"arn:aws:ec2:{where}::snapshot/{ident}"

    def rds(kind: str, ident: str) -> str:
        return (
            ident if ident.startswith("arn:") else f"arn:aws:rds:{region}:{account}:{kind}:{ident}"
        )

    if service == "ec2":
        action = f"ec2:{operation}"
        if operation.startswith("Describe") and operation != "DescribeSnapshotAttribute":
            return [(action, "*", {})]
        if operation == "CopySnapshot":
            tags = _tags(p.get("TagSpecifications"))
            request = _request_tags(tags)
            out = [
                (action, snap("*"), request),
                (
                    action,
                    snap(p["SourceSnapshotId"], p.get("SourceRegion", region)),
                    {**request, **existing},
                ),
            ]
            if tags:
                out.append(
                    ("ec2:CreateTags", snap("*"), {**request, "ec2:CreateAction": "CopySnapshot"})
                )
            return out
        if operation == "CreateTags":
            tags = _tags([{"Tags": p.get("Tags", [])}])
            return [
                (
                    action,
                    snap(r) if r.startswith("snap-") else r,
                    {**_request_tags(tags), **existing},
                )
                for r in p["Resources"]
            ]
        if operation == "LockSnapshot":
            context: dict[str, Any] = dict(existing)
            if p.get("CoolOffPeriod") is not None:
                context["ec2:CoolOffPeriod"] = str(p["CoolOffPeriod"])
            if p.get("LockDuration") is not None:
                context["ec2:SnapshotLockDuration"] = str(p["LockDuration"])
            return [(action, snap(p["SnapshotId"]), context)]
        if operation in (
            "UnlockSnapshot",
            "DeleteSnapshot",
            "ModifySnapshotAttribute",
            "DescribeSnapshotAttribute",
        ):
            return [(action, snap(p["SnapshotId"]), existing)]
        if operation == "CreateVolume":
            tags = _tags(p.get("TagSpecifications"))
            request = {**_request_tags(tags), "ec2:Encrypted": _bool(p.get("Encrypted", True))}
            out = [(action, f"arn:aws:ec2:{region}:{account}:volume/*", request)]
            if p.get("SnapshotId"):
                out.append((action, snap(p["SnapshotId"]), {**request, **existing}))
            return out
    if service == "rds":
        action = f"rds:{operation}"
        if operation == "CopyDBSnapshot":
            target = rds("snapshot", p["TargetDBSnapshotIdentifier"])
            request = _request_tags(_tags(p.get("Tags")))
            out = [
                (action, target, request),
                (action, rds("snapshot", p["SourceDBSnapshotIdentifier"]), request),
            ]
            if p.get("Tags"):
                out.append(("rds:AddTagsToResource", target, request))
            return out
        if operation == "AddTagsToResource":
            return [(action, p["ResourceName"], _request_tags(_tags(p.get("Tags"))))]
        if operation in (
            "DeleteDBSnapshot",
            "ModifyDBSnapshotAttribute",
            "DescribeDBSnapshotAttributes",
        ):
            return [(action, rds("snapshot", p["DBSnapshotIdentifier"]), existing)]
        if operation == "DescribeDBSnapshots":
            return [(action, rds("snapshot", p.get("DBSnapshotIdentifier") or "*"), {})]
        if operation == "RestoreDBInstanceFromDBSnapshot":
            request = _request_tags(_tags(p.get("Tags")))
            out = [
                (action, rds("db", p["DBInstanceIdentifier"]), request),
                (action, rds("snapshot", p["DBSnapshotIdentifier"]), request),
            ]
            if p.get("DBSubnetGroupName"):
                out.append((action, rds("subgrp", p["DBSubnetGroupName"]), request))
            return out
    if service == "kms":
        key = str(p.get("KeyId", ""))
        if not key.startswith("arn:"):
            key = f"arn:aws:kms:{region}:{account}:key/{key}"
        return [(f"kms:{operation}", key, {})]
    if service == "s3":
        bucket = f"arn:aws:s3:::{p['Bucket']}"
        renamed = {
            "HeadBucket": "s3:ListBucket",
            "ListObjectsV2": "s3:ListBucket",
            "ListObjectVersions": "s3:ListBucketVersions",
            "HeadObject": "s3:GetObject",
            "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
            "PutObjectLockConfiguration": "s3:PutBucketObjectLockConfiguration",
        }
        action = renamed.get(operation, f"s3:{operation}")
        if "Key" not in p:
            context = {"s3:prefix": p["Prefix"]} if p.get("Prefix") is not None else {}
            return [(action, bucket, context)]
        obj = f"{bucket}/{p['Key']}"
        if operation in ("GetObject", "HeadObject") and p.get("VersionId"):
            action = "s3:GetObjectVersion"
        if operation == "DeleteObject" and p.get("VersionId"):
            action = "s3:DeleteObjectVersion"
        context = {}
        if p.get("ObjectLockMode"):
            context["s3:object-lock-mode"] = p["ObjectLockMode"]
        out = [(action, obj, context)]
        if p.get("ObjectLockMode") and operation == "PutObject":
            out.append(("s3:PutObjectRetention", obj, context))
        if p.get("BypassGovernanceRetention"):
            out.append(("s3:BypassGovernanceRetention", obj, {}))
        return out
    if service == "sts" and operation == "AssumeRole":
        context = {}
        if p.get("ExternalId") is not None:
            context["sts:ExternalId"] = p["ExternalId"]
        return [("sts:AssumeRole", p["RoleArn"], context)]
    raise ValueError(f"iam_judge has no resource mapping for {service}:{operation} - add one")


def judge_call(
    world: World,
    principal: Principal | str,
    service: str,
    operation: str,
    params: Mapping[str, Any],
    *,
    region: str,
    account: str | None = None,
    resource_tags: Mapping[str, str] | None = None,
) -> Decision:
    """Judge one API call: allowed only if every authorization it needs is allowed.

    ``account`` is the account the call is made in (the caller's, unless given)."""
    caller = principal if isinstance(principal, Principal) else Principal(principal)
    pairs = authorizations(
        service,
        operation,
        params,
        region=region,
        account=account or caller.account,
        resource_tags=resource_tags,
    )
    for action, resource, context in pairs:
        decision = judge(
            world, caller, action, resource, {"aws:RequestedRegion": region, **context}
        )
        if not decision.allowed:
            return Decision(False, f"{action} on {resource}: {decision.reason}")
    return Decision(True, "; ".join(f"{a} on {r}" for a, r, _ in pairs))


# --------------------------------------------------------------------------- the vault


#: What an account administrator (or an attacker holding one) has: everything IAM can grant.
ADMIN_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "Administrator", "Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def _default_key_policy(account: str) -> dict[str, Any]:
    """AWS's default key policy: the account administers the key through IAM.
    https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html"""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }


def vault_world(
    values: Mapping[str, Any],
    *,
    airflow_policy: dict[str, Any] | None = None,
    workload_admins: Iterable[str] = (),
    vault_admins: Iterable[str] = (),
    vault_snapshots: Iterable[str] = (),
    workload_snapshots: Iterable[str] = (),
    shared_with_vault: Iterable[str] = (),
) -> World:
    """The policies in force around a DR vault, rendered from ``include/iam`` with ``values``
    (:func:`securedr.core.iam.vault_policy_values`).

    The vault account's three roles carry their shipped policies and trust; each vault key its
    key policy; the workload's DR key AWS's default key policy plus the shipped vault
    statement; the vault evidence bucket its shipped policy; the vault account the shipped SCP.
    ``airflow_policy`` is the workload Airflow principal's policy (the rendered backup policy);
    ``workload_admins`` / ``vault_admins`` are principals with :data:`ADMIN_POLICY` in those
    accounts (the workload's root always is one); the break-glass principal is an administrator
    of the vault account. ``*_snapshots`` are snapshot ids owned by each account (EBS snapshot
    ARNs carry no account); ``shared_with_vault`` are ARN patterns of the workload's DR copies
    shared with the vault account for the handshake.
    """
    from securedr.core import iam

    def rendered(name: str) -> dict[str, Any]:
        return iam.render_vault(name, values)

    vault, workload = str(values["VaultAccountId"]), str(values["WorkloadAccountId"])
    region = str(values["DrRegion"])
    world = World()
    for role, name in (
        (values["IntakeRoleArn"], "intake"),
        (values["RetentionRoleArn"], "retention"),
        (values["RecoveryRoleArn"], "recovery"),
    ):
        world.add_identity(str(role), rendered(f"{name}-policy"))
        world.add_resource_policy(str(role), rendered(f"{name}-trust-policy"))
    if airflow_policy is not None:
        world.add_identity(str(values["AirflowPrincipalArn"]), airflow_policy)
    for admin in (f"arn:aws:iam::{workload}:root", *workload_admins):
        world.add_identity(admin, ADMIN_POLICY)
    for admin in (
        f"arn:aws:iam::{vault}:root",
        str(values["BreakGlassPrincipalArn"]),
        *vault_admins,
    ):
        world.add_identity(admin, ADMIN_POLICY)
    key_policy = rendered("key-policy")
    for key in values["VaultKeyArns"]:
        world.add_resource_policy(str(key), key_policy)
    dr_key = _default_key_policy(workload)
    dr_key["Statement"].extend(rendered("dr-key-vault-statement")["Statement"])
    world.add_resource_policy(str(values["WorkloadDrKeyArn"]), dr_key)
    bucket = f"arn:aws:s3:::{values['VaultEvidenceBucket']}"
    bucket_policy = rendered("evidence-bucket-policy")
    world.add_resource_policy(bucket, bucket_policy)
    world.add_resource_policy(f"{bucket}/*", bucket_policy)
    world.own(bucket, vault)
    world.own(f"{bucket}/*", vault)
    for ident in vault_snapshots:
        world.own(f"arn:aws:ec2:{region}::snapshot/{ident}", vault)
    for ident in workload_snapshots:
        world.own(f"arn:aws:ec2:{region}::snapshot/{ident}", workload)
    for pattern in shared_with_vault:
        world.share(pattern, vault)
    world.add_scp(vault, rendered("scp"))
    return world
