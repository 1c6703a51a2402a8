"""Tests for securedr.core.manifest: building, checking, keys and signatures."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securedr.core.manifest import (
    MANIFEST_KIND,
    MANIFEST_VERSION,
    ManifestError,
    build_manifest,
    check_manifest,
    manifest_key,
    run_token,
)
from securedr.core.model import Kind, RecoveryPoint, Verification
from securedr.core.signing import (
    SignatureError,
    canonical_json,
    generate_signing_key,
    sign_document,
    verify_document,
)

PLAN = "demo-estate"
RUN = "scheduled__2025-03-01T02:00:00+00:00"
CREATED = "2025-03-01T02:00:07.123456+00:00"
DR_KEY = "arn:aws:kms:us-west-2:123456789012:key/11111111-2222-3333-4444-555555555555"
PRIVATE, PUBLIC = generate_signing_key()
OTHER_PRIVATE, OTHER_PUBLIC = generate_signing_key()


def verification(
    kind: Kind, region: str, source: str, *, passed: bool = True, **point: Any
) -> Verification:
    rp = RecoveryPoint(
        kind=kind,
        source_id=source,
        source_region=region,
        snapshot_id=f"src-{source}",
        size_gib=8,
        source_encrypted=True,
        run_id=RUN,
        dr_region="us-west-2",
        dr_snapshot_id=f"dr-{source}",
        dr_kms_key_arn=DR_KEY,
        **{"dr_created_at": "2025-03-01T02:10:00+00:00", **point},
    )
    return Verification(
        point=rp.to_dict(),
        passed=passed,
        problems=[] if passed else ["the copy is NOT encrypted"],
        incidents=["public share removed"] if source == "vol-b" else [],
        checked_at="2025-03-01T02:30:00+00:00",
    )


VERIFICATIONS = [
    verification("rds", "us-east-1", "orders-db", engine="postgres"),
    verification("ebs", "us-east-1", "vol-b", passed=False),
    verification("ebs", "eu-west-1", "vol-z"),
    verification("ebs", "us-east-1", "vol-a"),
]


def manifest(verifications: list[Verification] = VERIFICATIONS, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "plan": PLAN,
        "run_id": RUN,
        "dag_id": "securedr_nightly",
        "created_at": CREATED,
        "dr_region": "us-west-2",
        "dr_kms_key_arn": DR_KEY,
        "verifications": verifications,
    }
    args.update(kw)
    return build_manifest(**args)


# --------------------------------------------------------------------------- build


def test_build_manifest_header() -> None:
    payload = manifest()
    assert payload["kind"] == MANIFEST_KIND
    assert payload["version"] == MANIFEST_VERSION
    assert payload["plan"] == PLAN
    assert payload["run_id"] == RUN
    assert payload["dag_id"] == "securedr_nightly"
    assert payload["created_at"] == CREATED
    assert payload["dr_region"] == "us-west-2"
    assert payload["dr_kms_key_arn"] == DR_KEY
    assert payload["file_sets"] == []


def test_points_are_sorted_by_kind_region_source() -> None:
    points = manifest()["recovery_points"]
    assert [(p["kind"], p["source_region"], p["source_id"]) for p in points] == [
        ("ebs", "eu-west-1", "vol-z"),
        ("ebs", "us-east-1", "vol-a"),
        ("ebs", "us-east-1", "vol-b"),
        ("rds", "us-east-1", "orders-db"),
    ]


def test_point_fields_come_from_the_verification() -> None:
    points = {p["source_id"]: p for p in manifest()["recovery_points"]}
    bad = points["vol-b"]
    assert bad["verified"] is False
    assert bad["problems"] == ["the copy is NOT encrypted"]
    assert bad["incidents"] == ["public share removed"]
    assert bad["source_snapshot_id"] == "src-vol-b"
    assert bad["dr_snapshot_id"] == "dr-vol-b"
    assert bad["dr_kms_key_arn"] == DR_KEY
    assert bad["verified_at"] == "2025-03-01T02:30:00+00:00"
    assert points["orders-db"]["engine"] == "postgres"
    assert points["vol-a"]["verified"] is True


def test_summary_counts_verified() -> None:
    assert manifest()["summary"] == {"recovery_points": 4, "verified": 3}
    assert manifest([])["summary"] == {"recovery_points": 0, "verified": 0}
    none_ok = [verification("ebs", "us-east-1", f"vol-{i}", passed=False) for i in range(3)]
    assert manifest(none_ok)["summary"] == {"recovery_points": 3, "verified": 0}


@given(st.permutations(VERIFICATIONS))
def test_order_of_verifications_does_not_matter(order: list[Verification]) -> None:
    assert canonical_json(manifest(order)) == canonical_json(manifest())


def test_file_sets_sorted_by_name() -> None:
    sets = [{"name": "b", "files": 2}, {"name": "a", "files": 1}, {"files": 0}]
    payload = manifest(file_sets=sets)
    assert [f.get("name") for f in payload["file_sets"]] == [None, "a", "b"]


def test_manifest_is_plain_json() -> None:
    payload = manifest()
    assert json.loads(json.dumps(payload)) == payload


def test_manifest_does_not_alias_verification_lists() -> None:
    v = verification("ebs", "us-east-1", "vol-b", passed=False)
    payload = manifest([v])
    v.problems.append("later")
    assert payload["recovery_points"][0]["problems"] == ["the copy is NOT encrypted"]


# --------------------------------------------------------------------------- check


def test_check_manifest_accepts_a_built_manifest() -> None:
    payload = manifest()
    checked = check_manifest(payload, plan=PLAN)
    assert checked == payload
    assert checked is not payload
    assert check_manifest(payload) == payload  # no plan: any plan


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"kind": "something-else"}, "not a SecureDR run manifest"),
        ({"kind": None}, "not a SecureDR run manifest"),
        ({"version": 2}, "unsupported manifest version 2"),
        ({"version": "1"}, "unsupported manifest version '1'"),
        ({"plan": "other-plan"}, "belongs to plan 'other-plan', not 'demo-estate'"),
        ({"recovery_points": None}, "no recovery_points list"),
        ({"recovery_points": {"a": 1}}, "no recovery_points list"),
    ],
)
def test_check_manifest_rejects(change: dict[str, Any], match: str) -> None:
    payload = manifest()
    payload.update(change)
    with pytest.raises(ManifestError, match=match):
        check_manifest(payload, plan=PLAN)


@pytest.mark.parametrize("field", ["kind", "version", "recovery_points"])
def test_check_manifest_rejects_missing_field(field: str) -> None:
    payload = manifest()
    del payload[field]
    with pytest.raises(ManifestError):
        check_manifest(payload)


def test_manifest_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="kind"):
        check_manifest({})


# --------------------------------------------------------------------------- keys


def test_manifest_key_shape() -> None:
    key = manifest_key(PLAN, RUN, CREATED)
    assert key == f"manifests/{PLAN}/20250301T020007Z-{run_token(RUN)}.json"


def test_manifest_key_without_fraction() -> None:
    key = manifest_key(PLAN, RUN, "2025-03-01T02:00:07+00:00")
    assert key.startswith(f"manifests/{PLAN}/20250301T020007Z-")


def test_run_token_is_stable_and_path_safe() -> None:
    token = run_token(RUN)
    assert token == run_token(RUN)
    assert len(token) == 16
    assert set(token) <= set("0123456789abcdef")
    assert token != run_token(RUN + "x")


utc_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@given(utc_times, st.text(min_size=1, max_size=40))
def test_manifest_key_has_no_colon_or_plus(when: datetime, run_id: str) -> None:
    key = manifest_key(PLAN, run_id, when.isoformat())
    assert ":" not in key
    assert "+" not in key
    assert key.startswith(f"manifests/{PLAN}/")
    assert key.endswith(f"Z-{run_token(run_id)}.json")


@settings(max_examples=50)
@given(utc_times, utc_times, st.text(max_size=20), st.text(max_size=20))
def test_manifest_key_lexical_order_is_time_order(
    a: datetime, b: datetime, run_a: str, run_b: str
) -> None:
    key_a = manifest_key(PLAN, run_a, a.isoformat())
    key_b = manifest_key(PLAN, run_b, b.isoformat())
    second_a, second_b = a.replace(microsecond=0), b.replace(microsecond=0)
    if second_a < second_b:
        assert key_a < key_b
    elif second_a > second_b:
        assert key_a > key_b


def test_manifest_keys_sort_by_time_across_a_year() -> None:
    start = datetime(2025, 12, 31, 23, 59, 58, 999999, tzinfo=UTC)
    times = [start + timedelta(seconds=s) for s in (0, 1, 2, 3600, 86400 * 40)]
    keys = [manifest_key(PLAN, f"run-{i}", t.isoformat()) for i, t in enumerate(times)]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


# --------------------------------------------------------------------------- signatures


def test_signed_manifest_verifies() -> None:
    payload = manifest()
    document = sign_document(payload, PRIVATE)
    verified = verify_document(document, [PUBLIC])
    assert check_manifest(verified, plan=PLAN) == payload


def test_signed_manifest_survives_json_storage() -> None:
    document = json.loads(json.dumps(sign_document(manifest(), PRIVATE), indent=2))
    assert check_manifest(verify_document(document, [PUBLIC]), plan=PLAN)["run_id"] == RUN


@pytest.mark.parametrize(
    "tamper",
    [
        lambda p: next(q for q in p["recovery_points"] if not q["verified"]).update(verified=True),
        lambda p: p["recovery_points"][0].update(dr_snapshot_id="snap-attacker"),
        lambda p: p["summary"].update(verified=4),
        lambda p: p.update(dr_kms_key_arn="arn:aws:kms:us-west-2:999999999999:key/x"),
        lambda p: p["recovery_points"].pop(),
    ],
    ids=["flip-verdict", "swap-dr-copy", "inflate-summary", "swap-key", "drop-point"],
)
def test_modified_manifest_does_not_verify(tamper: Any) -> None:
    document = sign_document(manifest(), PRIVATE)
    forged = copy.deepcopy(document)
    tamper(forged["payload"])
    assert forged["payload"] != document["payload"]
    with pytest.raises(SignatureError, match="does not verify"):
        verify_document(forged, [PUBLIC])
    assert verify_document(document, [PUBLIC]) == document["payload"]


def test_manifest_signed_by_untrusted_key_does_not_verify() -> None:
    document = sign_document(manifest(), OTHER_PRIVATE)
    with pytest.raises(SignatureError, match="not among the trusted keys"):
        verify_document(document, [PUBLIC])
    assert verify_document(document, [PUBLIC, OTHER_PUBLIC])["plan"] == PLAN
