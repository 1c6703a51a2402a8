"""Tests for securedr.core.verify: the verdict on a DR copy."""

from __future__ import annotations

from typing import Any

import pytest

from securedr.core.model import (
    LINEAGE_TAGS,
    ROLE_DR_COPY,
    ROLE_RECOVERY_POINT,
    TAG_PLAN,
    TAG_ROLE,
    TAG_SOURCE_ID,
    Kind,
    RecoveryPoint,
    dict_to_tags,
    lineage_tags,
)
from securedr.core.verify import dr_copy_problems

PLAN = "demo-estate"
DR_KEY = "arn:aws:kms:us-west-2:123456789012:key/11111111-2222-3333-4444-555555555555"
OTHER_KEY = "arn:aws:kms:us-west-2:123456789012:key/99999999-8888-7777-6666-555555555555"
RUN = "scheduled__2025-03-01T02:00:00+00:00"


def point(kind: Kind) -> RecoveryPoint:
    source = "vol-0abc" if kind == "ebs" else "orders-db"
    return RecoveryPoint(
        kind=kind,
        source_id=source,
        source_region="us-east-1",
        snapshot_id="snap-src" if kind == "ebs" else "securedr-orders-db-abc",
        size_gib=8,
        source_encrypted=True,
        run_id=RUN,
        dr_region="us-west-2",
        dr_snapshot_id="snap-dr" if kind == "ebs" else "securedr-orders-db-abc-dr",
        dr_kms_key_arn=DR_KEY,
    )


def tags(kind: Kind, **overrides: str | None) -> list[dict[str, str]]:
    values = lineage_tags(
        plan=PLAN,
        run_id=RUN,
        kind=kind,
        source_id=point(kind).source_id,
        source_region="us-east-1",
        role=ROLE_DR_COPY,
    )
    for key, value in overrides.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return dict_to_tags(values)


def snapshot(kind: Kind, tag_list: list[dict[str, str]] | None = None, **fields: Any) -> dict:
    """What describe_snapshots / describe_db_snapshots reports for a good DR copy."""
    tag_list = tags(kind) if tag_list is None else tag_list
    if kind == "ebs":
        snap: dict[str, Any] = {
            "SnapshotId": "snap-dr",
            "State": "completed",
            "Encrypted": True,
            "KmsKeyId": DR_KEY,
            "Tags": tag_list,
        }
    else:
        snap = {
            "DBSnapshotIdentifier": "securedr-orders-db-abc-dr",
            "Status": "available",
            "Encrypted": True,
            "KmsKeyId": DR_KEY,
            "TagList": tag_list,
        }
    snap.update(fields)
    return snap


def problems(kind: Kind, snap: dict[str, Any] | None) -> list[str]:
    return dr_copy_problems(point(kind), snap, expected_key_arn=DR_KEY, plan=PLAN)


KINDS: list[Kind] = ["ebs", "rds"]


@pytest.mark.parametrize("kind", KINDS)
def test_good_copy_passes(kind: Kind) -> None:
    assert problems(kind, snapshot(kind)) == []


@pytest.mark.parametrize("kind", KINDS)
def test_missing_copy(kind: Kind) -> None:
    assert problems(kind, None) == ["the DR copy does not exist"]


@pytest.mark.parametrize(
    ("kind", "field", "state", "done"),
    [
        ("ebs", "State", "pending", "completed"),
        ("ebs", "State", "error", "completed"),
        ("rds", "Status", "creating", "available"),
        ("rds", "Status", "failed", "available"),
    ],
)
def test_not_completed(kind: Kind, field: str, state: str, done: str) -> None:
    assert problems(kind, snapshot(kind, **{field: state})) == [
        f"state is {state!r}, expected {done!r}"
    ]


def test_each_kind_reads_its_own_state_field() -> None:
    # An EBS copy reporting an RDS-style status is not completed, and vice versa.
    ebs = snapshot("ebs")
    ebs.pop("State")
    ebs["Status"] = "available"
    assert problems("ebs", ebs) == ["state is None, expected 'completed'"]
    rds = snapshot("rds")
    rds.pop("Status")
    rds["State"] = "completed"
    assert problems("rds", rds) == ["state is None, expected 'available'"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("encrypted", [False, None])
def test_unencrypted(kind: Kind, encrypted: bool | None) -> None:
    snap = snapshot(kind, Encrypted=encrypted)
    snap.pop("KmsKeyId")
    assert problems(kind, snap) == ["the copy is NOT encrypted"]


@pytest.mark.parametrize("kind", KINDS)
def test_unencrypted_field_absent(kind: Kind) -> None:
    snap = snapshot(kind)
    snap.pop("Encrypted")
    assert "the copy is NOT encrypted" in problems(kind, snap)


@pytest.mark.parametrize("kind", KINDS)
def test_encrypted_under_another_key(kind: Kind) -> None:
    found = problems(kind, snapshot(kind, KmsKeyId=OTHER_KEY))
    assert len(found) == 1
    assert OTHER_KEY in found[0]
    assert DR_KEY in found[0]
    assert found[0] == f"encrypted under {OTHER_KEY}, not the plan's DR key {DR_KEY}"


@pytest.mark.parametrize("kind", KINDS)
def test_key_alias_is_not_the_key_arn(kind: Kind) -> None:
    # The verdict needs exactly the DR key ARN; an alias is not proof of the key.
    found = problems(kind, snapshot(kind, KmsKeyId="alias/securedr-dr"))
    assert len(found) == 1
    assert "alias/securedr-dr" in found[0]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tag", LINEAGE_TAGS)
def test_missing_lineage_tag(kind: Kind, tag: str) -> None:
    found = problems(kind, snapshot(kind, tags(kind, **{tag: None})))
    assert found == [f"lineage tags missing: {tag}"]


@pytest.mark.parametrize("kind", KINDS)
def test_no_tags_at_all(kind: Kind) -> None:
    snap = snapshot(kind)
    snap.pop("Tags" if kind == "ebs" else "TagList")
    found = problems(kind, snap)
    assert found == [f"lineage tags missing: {', '.join(LINEAGE_TAGS)}"]


def test_tags_in_the_wrong_field_do_not_count() -> None:
    # RDS reports tags as TagList; a "Tags" key on an RDS snapshot is not its lineage.
    snap = snapshot("rds", [])
    snap["Tags"] = tags("rds")
    assert problems("rds", snap) == [f"lineage tags missing: {', '.join(LINEAGE_TAGS)}"]


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_plan_tag(kind: Kind) -> None:
    found = problems(kind, snapshot(kind, tags(kind, **{TAG_PLAN: "other-plan"})))
    assert found == [f"tagged for plan 'other-plan', not {PLAN!r}"]


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_source_id_tag(kind: Kind) -> None:
    found = problems(kind, snapshot(kind, tags(kind, **{TAG_SOURCE_ID: "vol-other"})))
    assert found == [f"tagged as a copy of vol-other, not {point(kind).source_id}"]


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_role_tag(kind: Kind) -> None:
    found = problems(kind, snapshot(kind, tags(kind, **{TAG_ROLE: ROLE_RECOVERY_POINT})))
    assert found == [f"tagged with role {ROLE_RECOVERY_POINT!r}, not {ROLE_DR_COPY!r}"]


def test_every_problem_is_reported() -> None:
    bad_tags = tags("ebs", **{TAG_PLAN: "x", TAG_ROLE: "y", LINEAGE_TAGS[2]: None})
    found = problems("ebs", snapshot("ebs", bad_tags, State="pending", KmsKeyId=OTHER_KEY))
    assert len(found) == 5
    assert found[0].startswith("state is")
    assert found[1].startswith("encrypted under")
    assert found[2] == f"lineage tags missing: {LINEAGE_TAGS[2]}"
    assert found[3].startswith("tagged for plan")
    assert found[4].startswith("tagged with role")
