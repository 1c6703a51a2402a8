"""Tests for securedr.core.model: records, RDS identifiers and tag helpers."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from securedr.core.model import (
    LINEAGE_TAGS,
    ROLE_DR_COPY,
    TAG_MANAGED,
    TAG_ROLE,
    RecoveryPoint,
    Resource,
    SnapshotRef,
    Verification,
    dict_to_tags,
    lineage_tags,
    rds_snapshot_identifier,
    tags_to_dict,
)

RUN = "scheduled__2025-03-01T02:00:00+00:00"


def recovery_point(**overrides: object) -> RecoveryPoint:
    fields: dict[str, object] = {
        "kind": "ebs",
        "source_id": "vol-0abc",
        "source_region": "us-east-1",
        "snapshot_id": "snap-src",
        "size_gib": 8,
        "source_encrypted": True,
        "run_id": RUN,
    }
    fields.update(overrides)
    return RecoveryPoint(**fields)  # type: ignore[arg-type]


COPIED = recovery_point(
    snapshot_arn="arn:aws:ec2:us-east-1::snapshot/snap-src",
    created_at="2025-03-01T02:00:05+00:00",
    dr_region="us-west-2",
    dr_snapshot_id="snap-dr",
    dr_snapshot_arn="arn:aws:ec2:us-west-2::snapshot/snap-dr",
    dr_kms_key_arn="arn:aws:kms:us-west-2:123456789012:key/k",
    dr_created_at="2025-03-01T02:10:00+00:00",
    reused=True,
)

RECORDS = [
    Resource("ebs", "us-east-1", "vol-0abc", "web-data", 8, True, "arn:k"),
    Resource("rds", "eu-west-1", "orders-db", "orders", 20, False, engine="postgres"),
    SnapshotRef("rds", "us-west-2", "securedr-orders-db-abc"),
    recovery_point(),
    COPIED,
    Verification(
        point=COPIED.to_dict(),
        passed=False,
        problems=["the copy is NOT encrypted"],
        incidents=["shared publicly; sharing removed"],
        checked_at="2025-03-01T02:20:00+00:00",
    ),
]


# --------------------------------------------------------------------------- records


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_round_trip(record: object) -> None:
    data = record.to_dict()  # type: ignore[attr-defined]
    assert isinstance(data, dict)
    again = type(record).from_dict(data)  # type: ignore[attr-defined]
    assert again == record
    assert again.to_dict() == data


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_round_trip_through_json(record: object) -> None:
    # XCom carries plain JSON.
    data = json.loads(json.dumps(record.to_dict()))  # type: ignore[attr-defined]
    assert type(record).from_dict(data) == record  # type: ignore[attr-defined]


def test_to_dict_has_every_field() -> None:
    data = COPIED.to_dict()
    assert data["dr_snapshot_id"] == "snap-dr"
    assert data["reused"] is True
    assert data["kind"] == "ebs"
    assert set(data) == {f.name for f in dataclasses.fields(RecoveryPoint)}
    assert data["volume_type"] is None  # optional fields default, so older points still load


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_from_dict_rejects_unknown_fields(record: object) -> None:
    data = record.to_dict()  # type: ignore[attr-defined]
    data["colour"] = "blue"
    data["zeta"] = 1
    with pytest.raises(ValueError, match=type(record).__name__) as info:
        type(record).from_dict(data)  # type: ignore[attr-defined]
    assert "['colour', 'zeta']" in str(info.value)


def test_from_dict_rejects_missing_required_field() -> None:
    data = recovery_point().to_dict()
    del data["snapshot_id"]
    with pytest.raises(TypeError, match="snapshot_id"):
        RecoveryPoint.from_dict(data)


def test_verification_recovery_point() -> None:
    verification = Verification(point=COPIED.to_dict(), passed=True)
    assert verification.recovery_point == COPIED
    assert verification.problems == []
    assert verification.incidents == []


def test_verification_default_lists_are_not_shared() -> None:
    a = Verification(point={}, passed=True)
    b = Verification(point={}, passed=True)
    a.problems.append("x")
    assert b.problems == []


def test_source_ref_and_label() -> None:
    point = recovery_point(kind="rds", source_id="orders-db", snapshot_id="securedr-orders")
    assert point.source_ref == SnapshotRef("rds", "us-east-1", "securedr-orders")
    assert point.label == "rds:us-east-1/orders-db"


def test_dr_ref_raises_before_a_copy_exists() -> None:
    point = recovery_point()
    with pytest.raises(ValueError, match=r"ebs:us-east-1/vol-0abc has no DR copy yet"):
        _ = point.dr_ref
    point.dr_region = "us-west-2"
    with pytest.raises(ValueError, match="no DR copy"):
        _ = point.dr_ref  # Region alone is not a copy
    point.dr_region = None
    point.dr_snapshot_id = "snap-dr"
    with pytest.raises(ValueError, match="no DR copy"):
        _ = point.dr_ref


def test_dr_ref_after_copy() -> None:
    assert COPIED.dr_ref == SnapshotRef("ebs", "us-west-2", "snap-dr")


def test_snapshot_ref_is_hashable_and_frozen() -> None:
    ref = SnapshotRef("ebs", "us-east-1", "snap-1")
    assert {ref: 1}[SnapshotRef("ebs", "us-east-1", "snap-1")] == 1
    with pytest.raises(AttributeError):
        ref.snapshot_id = "snap-2"  # type: ignore[misc]


# --------------------------------------------------------------------------- RDS identifiers

RDS_ID = re.compile(r"^[a-z][a-z0-9-]*$")


def assert_valid_rds_identifier(identifier: str) -> None:
    assert RDS_ID.match(identifier), identifier
    assert "--" not in identifier, identifier
    assert not identifier.endswith("-"), identifier
    assert 1 <= len(identifier) <= 255, len(identifier)


def test_rds_identifier_shape() -> None:
    identifier = rds_snapshot_identifier("orders-db", RUN)
    assert re.fullmatch(r"securedr-orders-db-[0-9a-f]{12}", identifier)


def test_rds_identifier_is_deterministic() -> None:
    assert rds_snapshot_identifier("orders-db", RUN) == rds_snapshot_identifier("orders-db", RUN)


def test_rds_identifier_differs_across_runs_and_databases() -> None:
    a = rds_snapshot_identifier("orders-db", RUN)
    assert a != rds_snapshot_identifier("orders-db", RUN.replace("02:00", "03:00"))
    assert a != rds_snapshot_identifier("billing-db", RUN)


@pytest.mark.parametrize(
    ("db", "base"),
    [
        ("Orders_DB", "orders-db"),
        ("--orders--db--", "orders-db"),
        ("a_-_b", "a-b"),
        ("___", "db"),
        ("", "db"),
        ("数据库", "db"),
    ],
)
def test_rds_identifier_sanitises(db: str, base: str) -> None:
    identifier = rds_snapshot_identifier(db, RUN)
    assert identifier.startswith(f"securedr-{base}-")
    assert_valid_rds_identifier(identifier)


@pytest.mark.parametrize("cut", [198, 199, 200, 201])
def test_rds_identifier_long_name_with_separator_at_the_cut(cut: int) -> None:
    # The sanitised name is cut to 200 characters; a separator at the cut must not leave '--'.
    identifier = rds_snapshot_identifier("a" * cut + "-" + "b" * 100, RUN)
    assert_valid_rds_identifier(identifier)


@given(st.text(max_size=300), st.text(max_size=80))
@example("a" * 199 + "_b", RUN)
@example("Z" * 400, "")
def test_rds_identifier_always_valid(db: str, run_id: str) -> None:
    identifier = rds_snapshot_identifier(db, run_id)
    assert_valid_rds_identifier(identifier)
    assert identifier == rds_snapshot_identifier(db, run_id)


# No shrinking: the cut test above is the minimal reproducer, so a failure here stays fast.
@settings(phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(
    st.text(alphabet="ab-_.Z9", min_size=150, max_size=320),
    st.text(max_size=20),
)
def test_rds_identifier_valid_for_long_punctuated_names(db: str, run_id: str) -> None:
    assert_valid_rds_identifier(rds_snapshot_identifier(db, run_id))


@given(st.text(max_size=60), st.text(max_size=40), st.text(max_size=40))
def test_rds_identifier_per_run(db: str, run_a: str, run_b: str) -> None:
    a = rds_snapshot_identifier(db, run_a)
    b = rds_snapshot_identifier(db, run_b)
    assert (a == b) == (run_a == run_b)


# --------------------------------------------------------------------------- tags


def test_lineage_tags() -> None:
    tags = lineage_tags(
        plan="demo",
        run_id=RUN,
        kind="rds",
        source_id="orders-db",
        source_region="eu-west-1",
        role=ROLE_DR_COPY,
    )
    assert set(LINEAGE_TAGS) <= set(tags)
    assert tags[TAG_MANAGED] == "true"
    assert tags[TAG_ROLE] == ROLE_DR_COPY
    assert set(tags.values()) >= {"demo", RUN, "rds", "orders-db", "eu-west-1"}


def test_dict_to_tags_is_sorted_aws_shape() -> None:
    assert dict_to_tags({"b": "2", "a": "1"}) == [
        {"Key": "a", "Value": "1"},
        {"Key": "b", "Value": "2"},
    ]


def test_tags_to_dict_handles_absent_lists_and_values() -> None:
    assert tags_to_dict(None) == {}
    assert tags_to_dict([]) == {}
    assert tags_to_dict([{"Key": "k"}]) == {"k": ""}


@settings(max_examples=50)
@given(st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=10))
def test_tags_round_trip(tags: dict[str, str]) -> None:
    aws = dict_to_tags(tags)
    assert tags_to_dict(aws) == tags
    assert dict_to_tags(tags_to_dict(aws)) == aws
    assert [t["Key"] for t in aws] == sorted(tags)
