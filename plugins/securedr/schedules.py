"""Schedules for SecureDR's DAGs."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import CronTriggerTimetable


def next_cron(expression: str, timezone: str = "UTC") -> CronTriggerTimetable:
    """A cron schedule whose first run is the next matching time after deployment.

    Guarantee: deploying or unpausing a DAG never starts a run for a time already past. A plain
    ``schedule="0 2 * * *"`` with ``catchup=False`` and no ``start_date`` does: Airflow 3.3's
    ``CronTriggerTimetable`` treats ``run_immediately=False`` like ``None`` and starts the most
    recent missed run when it lies within 10% of the cron period (2.4 h for a nightly job, 9 days
    for a quarterly drill). A zero buffer is the only value it honours as "never".
    """
    return CronTriggerTimetable(expression, timezone=timezone, run_immediately=timedelta(0))
