"""The policy evaluator the vault tests and the compromise simulation rely on decides like IAM:
explicit denies win, conditions are evaluated (missing keys included), cross-account calls need
both sides, SCPs restrict, and it refuses to guess about what it does not know."""

from __future__ import annotations

import pytest

from sandbox.iam_judge import (
    ADMIN_POLICY,
    Principal,
    World,
    authorizations,
    conditions_match,
    judge,
    judge_call,
)
from tests.iam_eval import evaluate

A = "111111111111"
B = "222222222222"
ALICE = f"arn:aws:iam::{A}:role/alice"
BOB = f"arn:aws:iam::{B}:role/bob"
BUCKET = "arn:aws:s3:::bucket-b"


def _allow(action, resource="*", condition=None, **extra):
    statement = {"Effect": "Allow", "Action": action, "Resource": resource, **extra}
    if condition:
        statement["Condition"] = condition
    return {"Statement": [statement]}


def test_an_explicit_deny_wins_over_any_allow():
    policy = {
        "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Sid": "NoDeletes", "Effect": "Deny", "Action": "s3:Delete*", "Resource": "*"},
        ]
    }
    assert evaluate(policy, "s3:GetObject", f"{BUCKET}/k").allowed
    decision = evaluate(policy, "s3:DeleteObjectVersion", f"{BUCKET}/k")
    assert not decision.allowed and "NoDeletes" in decision.reason
    assert not evaluate({"Statement": []}, "s3:GetObject", f"{BUCKET}/k").allowed


@pytest.mark.parametrize(
    ("condition", "context", "expected"),
    [
        ({"StringEquals": {"sts:ExternalId": "x"}}, {"sts:ExternalId": "x"}, True),
        ({"StringEquals": {"sts:ExternalId": "x"}}, {"sts:ExternalId": "y"}, False),
        # A key missing from the request: positive operators fail, negated ones match.
        ({"StringEquals": {"sts:ExternalId": "x"}}, {}, False),
        ({"StringNotEquals": {"aws:PrincipalAccount": A}}, {}, True),
        ({"ArnNotEquals": {"aws:PrincipalArn": ALICE}}, {"aws:PrincipalArn": ALICE}, False),
        (
            {"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{A}:role/*"}},
            {"aws:PrincipalArn": ALICE},
            True,
        ),
        ({"StringEqualsIfExists": {"k": "v"}}, {}, True),
        ({"Null": {"ec2:CoolOffPeriod": "false"}}, {}, False),
        ({"Null": {"ec2:CoolOffPeriod": "false"}}, {"ec2:CoolOffPeriod": "24"}, True),
        ({"Null": {"ec2:CoolOffPeriod": "true"}}, {}, True),
        (
            {"NumericGreaterThanEquals": {"ec2:SnapshotLockDuration": "14"}},
            {"ec2:SnapshotLockDuration": "15"},
            True,
        ),
        (
            {"NumericGreaterThanEquals": {"ec2:SnapshotLockDuration": "14"}},
            {"ec2:SnapshotLockDuration": "13"},
            False,
        ),
        (
            {"Bool": {"kms:GrantIsForAWSResource": "true"}},
            {"kms:GrantIsForAWSResource": True},
            True,
        ),
        ({"StringLike": {"s3:prefix": ["p/*"]}}, {"s3:prefix": "p/x"}, True),
        ({"StringLike": {"s3:prefix": ["p/*"]}}, {"s3:prefix": "q/x"}, False),
        ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}}, {"aws:TagKeys": ["a"]}, True),
        ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}}, {"aws:TagKeys": ["a", "b"]}, False),
        # Condition key names are case-insensitive.
        ({"StringEquals": {"STS:externalid": "x"}}, {"sts:ExternalId": "x"}, True),
    ],
)
def test_conditions_are_evaluated(condition, context, expected):
    assert conditions_match(condition, context) is expected


def test_an_unknown_operator_is_never_guessed():
    with pytest.raises(ValueError, match="not evaluated"):
        conditions_match({"DateGreaterThan": {"aws:CurrentTime": "2026-01-01"}}, {})


def test_cross_account_needs_the_resource_policy_and_the_identity_policy():
    world = World()
    bucket_policy = {
        "Statement": [
            {
                "Sid": "LetAliceRead",
                "Effect": "Allow",
                "Principal": {"AWS": ALICE},
                "Action": "s3:GetObject",
                "Resource": f"{BUCKET}/*",
            }
        ]
    }
    world.add_resource_policy(f"{BUCKET}/*", bucket_policy)
    world.own(f"{BUCKET}/*", B)
    # The bucket lets Alice in, but her own account grants her nothing.
    assert not judge(world, ALICE, "s3:GetObject", f"{BUCKET}/k")
    world.add_identity(ALICE, _allow("s3:GetObject"))
    assert judge(world, ALICE, "s3:GetObject", f"{BUCKET}/k")
    # Her identity policy alone cannot write: the bucket does not let her.
    world.add_identity(ALICE, _allow("s3:PutObject"))
    assert not judge(world, ALICE, "s3:PutObject", f"{BUCKET}/k")
    # Same account: an identity allow suffices.
    world.add_identity(BOB, _allow("s3:PutObject"))
    assert judge(world, BOB, "s3:PutObject", f"{BUCKET}/k")


def test_a_snapshot_without_a_share_is_unreachable_from_another_account():
    world = World()
    snap = "arn:aws:ec2:us-west-2::snapshot/snap-1"
    world.own(snap, B)
    world.add_identity(ALICE, ADMIN_POLICY)
    assert not judge(world, ALICE, "ec2:CopySnapshot", snap)
    world.share(snap, A)
    assert judge(world, ALICE, "ec2:CopySnapshot", snap)
    assert not judge(world, f"arn:aws:iam::{A}:role/nobody", "ec2:CopySnapshot", snap)


def test_a_key_policy_must_allow_even_in_the_same_account():
    key = f"arn:aws:kms:us-west-2:{B}:key/k"
    world = World()
    world.add_identity(BOB, ADMIN_POLICY)
    world.add_resource_policy(key, {"Statement": []})
    assert not judge(world, BOB, "kms:Decrypt", key)
    world.resource_policies.clear()
    world.add_resource_policy(
        key,
        {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{B}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ]
        },
    )
    assert judge(world, BOB, "kms:Decrypt", key)  # the account delegates to IAM
    assert not judge(world, f"arn:aws:iam::{B}:role/no-policy", "kms:Decrypt", key)


def test_an_scp_deny_wins_for_the_accounts_principals_only():
    world = World()
    world.add_identity(BOB, ADMIN_POLICY)
    world.add_identity(f"arn:aws:iam::{B}:role/retention", ADMIN_POLICY)
    world.add_scp(
        B,
        {
            "Statement": [
                {
                    "Sid": "NoDeletes",
                    "Effect": "Deny",
                    "Action": "ec2:DeleteSnapshot",
                    "Resource": "*",
                    "Condition": {
                        "ArnNotLike": {"aws:PrincipalArn": f"arn:aws:iam::{B}:role/retention"}
                    },
                }
            ]
        },
    )
    snap = "arn:aws:ec2:us-west-2::snapshot/snap-1"
    world.own(snap, B)
    decision = judge(world, BOB, "ec2:DeleteSnapshot", snap)
    assert not decision and "SCP" in decision.reason
    assert judge(world, f"arn:aws:iam::{B}:role/retention", "ec2:DeleteSnapshot", snap)


def test_a_role_trust_decides_who_assumes_it():
    role = f"arn:aws:iam::{B}:role/vault"
    world = World()
    world.add_resource_policy(
        role,
        {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": ALICE},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"sts:ExternalId": "x"}},
                }
            ]
        },
    )
    world.add_identity(ALICE, _allow("sts:AssumeRole", role))
    world.add_identity(f"arn:aws:iam::{A}:root", ADMIN_POLICY)
    assume = {"RoleArn": role, "ExternalId": "x"}
    assert judge_call(world, ALICE, "sts", "AssumeRole", assume, region="us-east-1")
    assert not judge_call(world, ALICE, "sts", "AssumeRole", {"RoleArn": role}, region="us-east-1")
    assert not judge_call(
        world, f"arn:aws:iam::{A}:root", "sts", "AssumeRole", assume, region="us-east-1"
    )


def test_lock_requests_carry_the_documented_condition_keys():
    (compliance,) = authorizations(
        "ec2",
        "LockSnapshot",
        {"SnapshotId": "snap-1", "LockMode": "compliance", "CoolOffPeriod": 24, "LockDuration": 15},
        region="us-west-2",
        account=B,
    )
    assert compliance[:2] == ("ec2:LockSnapshot", "arn:aws:ec2:us-west-2::snapshot/snap-1")
    assert compliance[2] == {"ec2:CoolOffPeriod": "24", "ec2:SnapshotLockDuration": "15"}
    (governance,) = authorizations(
        "ec2",
        "LockSnapshot",
        {"SnapshotId": "snap-1", "LockMode": "governance", "LockDuration": 15},
        region="us-west-2",
        account=B,
    )
    assert "ec2:CoolOffPeriod" not in governance[2]
    with pytest.raises(ValueError, match="no resource mapping"):
        authorizations("ec2", "RunInstances", {}, region="us-west-2", account=B)


def test_principals_know_their_account():
    assert Principal(ALICE).account == A
    assert Principal.account_root(B).arn == f"arn:aws:iam::{B}:root"
    with pytest.raises(ValueError):
        _ = Principal("alice").account
