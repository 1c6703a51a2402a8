"""The posture rules: newest verified copy, its age against the RPO, missing resources."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from securedr.core import posture

NOW = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)


def point(source_id: str, created_at: str, *, verified: bool = True, **extra) -> dict:
    return {
        "kind": "ebs",
        "source_region": "us-east-1",
        "source_id": source_id,
        "created_at": created_at,
        "dr_created_at": created_at,
        "dr_snapshot_id": f"snap-{source_id}-{created_at[:10]}",
        "verified": verified,
        **extra,
    }


def manifest(*points: dict) -> dict:
    return {"recovery_points": list(points)}


def test_the_newest_verified_copy_counts_and_unverified_ones_never_do():
    result = posture.assess(
        plan="p",
        rpo_hours=26,
        manifests=[
            ("m1", manifest(point("vol-a", "2026-03-04T02:00:00Z"))),
            # newer, but its verification failed: it must not make vol-a look fresher
            ("m2", manifest(point("vol-a", "2026-03-05T02:00:00Z", verified=False))),
        ],
        now=NOW,
    )
    (row,) = result.resources
    assert row.copy["dr_snapshot_id"] == "snap-vol-a-2026-03-04"
    assert row.age_seconds == 34 * 3600
    assert row.status == "over"
    assert result.alerts == [
        "ebs us-east-1/vol-a: newest verified DR copy is 34 h old, over the RPO target of 26 h "
        "(copy snap-vol-a-2026-03-04)"
    ]


@pytest.mark.parametrize(
    ("created", "status"),
    [
        ("2026-03-05T02:00:00Z", "ok"),
        ("2026-03-04T16:00:00Z", "warn"),
        ("2026-03-04T09:00:00Z", "over"),
    ],
)
def test_age_against_the_target_gives_the_colour(created, status):
    result = posture.assess(
        plan="p", rpo_hours=24, manifests=[("m", manifest(point("vol-a", created)))], now=NOW
    )
    assert result.resources[0].status == status
    assert bool(result.alerts) is (status == "over")


def test_a_discovered_resource_without_any_copy_is_missing_and_alerts():
    result = posture.assess(
        plan="p",
        rpo_hours=26,
        manifests=[("m", manifest(point("vol-a", "2026-03-05T02:00:00Z")))],
        now=NOW,
        discovered=[
            {"kind": "ebs", "region": "us-east-1", "resource_id": "vol-a", "name": "web"},
            {"kind": "rds", "region": "eu-west-1", "resource_id": "orders", "name": "orders"},
        ],
    )
    first, second = result.resources
    assert (first.label, first.status, first.age_seconds) == (
        "rds eu-west-1/orders",
        "missing",
        None,
    )
    assert second.status == "ok" and second.name == "web"
    assert (
        len(result.alerts) == 1
        and "rds eu-west-1/orders has no verified DR copy" in result.alerts[0]
    )


def test_vault_and_lock_state_come_from_the_point_when_present():
    vault = {
        "account_id": "222222222222",
        "snapshot_id": "snap-v",
        "verified": True,
        "lock": {"mode": "compliance", "cool_off_hours": 24, "expires_on": "2026-04-01T00:00:00Z"},
    }
    result = posture.assess(
        plan="p",
        rpo_hours=26,
        manifests=[("m", manifest(point("vol-a", "2026-03-05T02:00:00Z", vault=vault)))],
        now=NOW,
    )
    row = result.resources[0].to_dict()
    assert row["vault"]["snapshot_id"] == "snap-v"
    assert row["lock"] == {
        "mode": "compliance",
        "cool_off_hours": 24,
        "expires_on": "2026-04-01T00:00:00Z",
    }
    plain = posture.assess(
        plan="p",
        rpo_hours=26,
        manifests=[("m", manifest(point("vol-a", "2026-03-05T02:00:00Z")))],
        now=NOW,
    )
    assert plain.resources[0].vault is None and plain.resources[0].lock is None


def _entry(seq, action, resource, outcome="alert-only"):
    return SimpleNamespace(
        seq=seq,
        action=action,
        resource=resource,
        time="t",
        outcome=outcome,
        details={"summary": f"{action} on {resource}"},
    )


def test_open_incidents_are_those_not_resolved_since():
    entry = _entry

    entries = [
        entry(0, "backup", "vol-a"),
        entry(1, "incident.public_snapshot", "snap-1"),
        entry(2, "incident", "key-1"),
        entry(3, "incident.resolved", "snap-1"),
        entry(4, "incident.key_disabled", "key-1"),
    ]
    found = posture.open_incidents(entries)
    assert [(i["seq"], i["resource"]) for i in found] == [(2, "key-1"), (4, "key-1")]


def test_metrics_name_each_resource_and_carry_drill_and_incidents():
    result = posture.assess(
        plan="p",
        rpo_hours=26,
        manifests=[("m", manifest(point("vol-a", "2026-03-05T02:00:00Z")))],
        now=NOW,
        discovered=[
            {"kind": "ebs", "region": "us-east-1", "resource_id": "vol-a"},
            {"kind": "rds", "region": "eu-west-1", "resource_id": "orders"},
        ],
    )
    drill = posture.drill_summary(
        {"passed": False, "overall": {"rto_seconds": 1800.0}, "targets": {}}
    )
    got = {name: value for name, value, _ in posture.metrics(result, drill=drill, incidents=2)}
    assert got == {
        "securedr.posture.rpo_age_seconds.ebs.us-east-1.vol-a": 36000.0,
        "securedr.posture.rpo_age_seconds.rds.eu-west-1.orders": -1.0,
        "securedr.posture.rpo_breaches": 1.0,
        "securedr.drill.last_passed": 0.0,
        "securedr.drill.last_rto_seconds": 1800.0,
        "securedr.incidents.open": 2.0,
    }


def test_now_must_be_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        posture.assess(plan="p", rpo_hours=1, manifests=[], now=datetime(2026, 1, 1))


def test_incidents_as_incident_response_records_them_stay_open_unless_contained():
    """dr_incident_response audits ``incident:<kind>`` with the containment outcome."""
    entries = [
        _entry(1, "incident:snapshot-shared", "snap-1", outcome="contained"),
        _entry(2, "incident:dr-copy-deleted", "snap-2", outcome="alert-only"),
        _entry(3, "incident:key-disabled", "key-1", outcome="failed"),
        _entry(4, "incident:key-policy-changed", "key-2", outcome="alert-only"),
        _entry(5, "incident:resolved", "key-2"),
        _entry(
            6,
            "incident:snapshot-block-public-access-disabled",
            "us-east-1",
            outcome="already-contained",
        ),
    ]
    found = posture.open_incidents(entries)
    assert [(i["seq"], i["resource"]) for i in found] == [(2, "snap-2"), (3, "key-1")]
