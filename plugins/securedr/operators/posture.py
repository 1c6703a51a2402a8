"""The RPO watchdog: is every protected resource's newest verified DR copy young enough?"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from securedr.aws.posture import DEFAULT_LATEST_MANIFESTS, read_posture
from securedr.core import posture as core
from securedr.operators.base import SecureDrOperator

#: SNS subjects are at most 100 characters.
_SUBJECT = "SecureDR RPO breach: {n} resource(s) - plan {plan}"


def emit_metrics(reading: Any) -> list[tuple[str, float, dict[str, str]]]:
    """Send the posture's gauges through Airflow's Stats (StatsD or OpenTelemetry, whichever
    the deployment configured in ``[metrics]``; nothing is sent when neither is on).

    ``airflow.sdk.observability.stats`` is Airflow 3.3's metrics API (``airflow.stats`` is a
    deprecated shim over it). Returns what was emitted.
    """
    from airflow.sdk.observability import stats

    count = None if reading.incidents is None else len(reading.incidents)
    emitted = core.metrics(reading.posture, drill=reading.drill, incidents=count)
    for name, value, tags in emitted:
        stats.gauge(stats.normalize_name_for_stats(name), value, tags=tags)
    return emitted


class RpoWatchdogOperator(SecureDrOperator):
    """Check the RPO of every protected resource against the plan's ``targets.rpo_hours``.

    Reads the newest ``latest_manifests`` signed manifests (bounded reads; forged or replayed
    manifests never count), discovers the resources the plan's selection tag finds, and alerts
    through the plan's SNS topic when a resource's newest verified copy is older than the
    target or a protected resource has no verified copy at all. Emits the posture metrics
    (RPO age per resource, last drill verdict, open incidents) on every run.

    Guarantees: changes nothing in AWS; a breach that could not be delivered to SNS (no topic
    configured, or SNS refused) fails the task, so the breach is never silent. Returns the
    posture (JSON-safe) for XCom.
    """

    template_fields: Sequence[str] = ("plan_path", "latest_manifests")
    ui_color = "#fde2e2"

    def __init__(self, *, latest_manifests: int = DEFAULT_LATEST_MANIFESTS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.latest_manifests = latest_manifests

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        reading = read_posture(
            plan,
            self.clients,
            self.trusted_public_keys(),
            latest_manifests=int(self.latest_manifests),
        )
        emit_metrics(reading)
        for problem in [*reading.problems, *reading.posture.rejected]:
            self.log.warning("%s", problem)
        result = reading.to_dict()
        for row in reading.posture.resources:
            self.log.info(
                "  %-7s %s: %s", row.status.upper(), row.label, core.format_age(row.age_seconds)
            )
        alerts = reading.posture.alerts
        if not alerts:
            self.log.info(
                "Every protected resource (%d) is within its RPO target of %s.",
                len(reading.posture.resources),
                core.format_age(reading.posture.rpo_target_seconds),
            )
            return result
        lines = [
            f"The RPO watchdog of plan {plan.name} found {len(alerts)} resource(s) whose "
            f"newest verified DR copy breaks the RPO target of {plan.targets.rpo_hours} h, "
            f"checked at {reading.posture.checked_at}:",
            "",
            *[f"- {a}" for a in alerts],
            "",
            "Check the last nightly backup run (dr_nightly_backup) and its report.",
        ]
        subject = _SUBJECT.format(n=len(alerts), plan=plan.name)
        delivered = self.publish_incident(context, subject, lines, "RPO breach")
        result["alerted"] = delivered
        if not delivered:
            raise AirflowFailException(
                "RPO breach could not be delivered to SNS (set notifications.sns_topic_arn in "
                "the plan): " + "; ".join(alerts)
            )
        return result
