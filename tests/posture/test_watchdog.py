"""The hourly RPO watchdog against the sandbox: alerts, metrics through Airflow's Stats."""

from __future__ import annotations

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.observability import stats

from sandbox.estate import ensure_notification_topic
from securedr.operators.posture import RpoWatchdogOperator
from tests.operators.helpers import ACCOUNT, sign_manifest, task_context


class RecordingStatsLogger:
    """Stands in for the StatsD/OpenTelemetry logger behind Airflow's documented
    ``stats.initialize(factory=...)`` seam and records every gauge."""

    def __init__(self) -> None:
        self.gauges: dict[str, tuple[float, dict]] = {}

    def gauge(self, stat, value, rate=1, delta=False, *, tags=None):
        self.gauges[stat] = (value, dict(tags or {}))

    def incr(self, *a, **k):
        pass

    def decr(self, *a, **k):
        pass

    def timing(self, *a, **k):
        pass


@pytest.fixture
def recorded_stats():
    from airflow.sdk._shared.observability.metrics import stats as impl

    logger = RecordingStatsLogger()
    saved = (impl._factory, impl._backend, impl._export_legacy_names)
    stats.initialize(factory=lambda: logger, export_legacy_names=False)
    try:
        yield logger
    finally:
        impl._factory, impl._backend, impl._export_legacy_names = saved


def _sns_messages(plan) -> list[tuple[str, str]]:
    from moto.sns.models import sns_backends

    topics = sns_backends[ACCOUNT][plan.regions.dr].topics
    return [(n[2], n[1]) for t in topics.values() for n in t.sent_notifications]


def _protected(estate) -> list[tuple[str, str, str]]:
    out = [("ebs", r, v) for r, ids in estate.protected_volumes.items() for v in ids]
    out += [("rds", r, d) for r, ids in estate.protected_databases.items() for d in ids]
    return out


def _night(resources, days_ago: float, run_id: str) -> str:
    return sign_manifest(
        run_id,
        [
            {
                "kind": kind,
                "source_id": rid,
                "source_region": region,
                "snapshot_id": f"snap-src-{rid}",
                "dr_snapshot_id": f"snap-dr-{rid}-{run_id[-2:]}",
            }
            for kind, region, rid in resources
        ],
        days_ago=days_ago,
    )


def test_fresh_copies_raise_no_alert_and_emit_each_resources_rpo_age(
    estate, plan, aws, recorded_stats
):
    ensure_notification_topic(plan, aws)
    protected = _protected(estate)
    _night(protected, days_ago=0.1, run_id="scheduled__2026-11-25T02:00:00+00:00")
    result = RpoWatchdogOperator(task_id="check_rpo").execute(
        task_context(dag_id="dr_rpo_watchdog")
    )
    assert result["alerts"] == []
    assert {r["status"] for r in result["resources"]} == {"ok"}
    assert _sns_messages(plan) == []
    for kind, region, rid in protected:
        value, tags = recorded_stats.gauges[
            f"securedr.posture.rpo_age_seconds.{kind}.{region}.{rid}"
        ]
        assert 0.05 * 86400 < value < 0.2 * 86400
        assert tags["status"] == "ok"
    assert recorded_stats.gauges["securedr.posture.rpo_breaches"][0] == 0
    assert recorded_stats.gauges["securedr.incidents.open"][0] == 0  # readable, empty trail
    assert "securedr.drill.last_passed" not in recorded_stats.gauges  # no drill yet


def test_a_stale_copy_and_a_resource_without_copy_alert_through_sns(
    estate, plan, aws, recorded_stats
):
    ensure_notification_topic(plan, aws)
    protected = _protected(estate)
    stale, *rest = protected
    # Two nights ago for one resource only (26 h target); the others were never copied.
    _night([stale], days_ago=2.5, run_id="scheduled__2026-11-24T02:00:00+00:00")
    result = RpoWatchdogOperator(task_id="check_rpo").execute(
        task_context(dag_id="dr_rpo_watchdog")
    )
    assert result["alerted"] is True
    by_id = {r["resource_id"]: r for r in result["resources"]}
    assert by_id[stale[2]]["status"] == "over"
    assert all(by_id[rid]["status"] == "missing" for _, _, rid in rest)
    ((subject, message),) = _sns_messages(plan)
    assert subject == f"SecureDR RPO breach: {len(protected)} resource(s) - plan {plan.name}"
    assert f"{stale[0]} {stale[1]}/{stale[2]}: newest verified DR copy is 2 d" in message
    for kind, region, rid in rest:
        assert f"{kind} {region}/{rid} has no verified DR copy" in message
    assert recorded_stats.gauges["securedr.posture.rpo_breaches"][0] == len(protected)
    missing = rest[0]
    assert (
        recorded_stats.gauges[
            f"securedr.posture.rpo_age_seconds.{missing[0]}.{missing[1]}.{missing[2]}"
        ][0]
        == -1
    )


def test_a_forged_manifest_cannot_hide_a_breach(estate, plan, aws, recorded_stats):
    ensure_notification_topic(plan, aws)
    protected = _protected(estate)
    _night(protected, days_ago=3, run_id="scheduled__2026-11-23T02:00:00+00:00")
    # Someone writes a fresh-looking, unsigned manifest into the evidence bucket.
    s3 = boto3.client("s3", region_name=plan.regions.dr)
    bucket = plan.evidence_bucket
    s3.put_object(
        Bucket=bucket.name,
        Key=f"{bucket.prefix}/manifests/{plan.name}/29991231T000000Z-0000000000000000.json",
        Body=b'{"payload": {"recovery_points": []}}',
    )
    result = RpoWatchdogOperator(task_id="check_rpo").execute(
        task_context(dag_id="dr_rpo_watchdog")
    )
    assert {r["status"] for r in result["resources"]} == {"over"}
    assert any("cannot be trusted" in r for r in result["rejected"])


def test_a_breach_nobody_can_be_told_about_fails_the_task(estate, plan, aws, recorded_stats):
    # No SNS topic exists: the alert cannot be delivered, so the task fails loudly.
    with pytest.raises(AirflowFailException, match="RPO breach could not be delivered"):
        RpoWatchdogOperator(task_id="check_rpo").execute(task_context(dag_id="dr_rpo_watchdog"))
