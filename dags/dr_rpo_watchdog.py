"""dr_rpo_watchdog: every hour, is each protected resource's newest verified DR copy young enough?

read the newest signed manifests + discover the protected resources -> RPO age per resource
against the plan's targets.rpo_hours -> SNS alert for a breach or a resource with no copy;
posture metrics (RPO age, last drill verdict, open incidents) through Airflow's Stats.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG

from securedr.operators.posture import RpoWatchdogOperator
from securedr.schedules import next_cron

with DAG(
    dag_id="dr_rpo_watchdog",
    description="Hourly RPO check of every protected resource, from the signed manifests",
    schedule=next_cron("17 * * * *"),  # off the hour: clear of the nightly run's own start
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=50),
    default_args={"retries": 1, "retry_delay": timedelta(minutes=2)},
    tags=["securedr", "dr", "monitoring"],
    doc_md=__doc__,
) as dag:
    RpoWatchdogOperator(task_id="check_rpo")
