"""dr_incident_response: contain a DR incident seconds after CloudTrail records it.

EventBridge rules (include/eventbridge/) send CloudTrail API calls that weaken the DR posture
to the plan's SQS queue (incident_response.queue_url): a snapshot shared publicly or outside the
plan, EBS snapshot block public access turned off, a plan KMS key disabled / scheduled for
deletion / given a new policy, the evidence bucket's policy, public access block, versioning or
Object Lock changed, evidence deleted, a DR copy deleted outside retention, a policy change on
the backup or restore role. The triggerer's AssetWatcher (the Amazon provider's
SqsSensorTrigger) turns each batch of messages into an asset event, which starts a run.

respond_to_incidents -> classify each event (SecureDR's own calls ignored) -> contain what is
safe and reversible (unshare, block public access back on, CancelKeyDeletion + EnableKey,
versioning back on) -> one SNS alert -> one audit entry per incident. Everything else is
alert-only; README "Detect and respond" lists each case. Trigger by hand with
``{"events": [<EventBridge event>, ...]}`` to replay events.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger
from airflow.sdk import DAG, Asset, AssetWatcher

from securedr.operators.incident import RespondToIncidentsOperator, incident_queue

queue = incident_queue()  # the plan file only: no AWS call while parsing
incident_events = Asset(
    "securedr-incident-events",
    watchers=[
        AssetWatcher(
            name="securedr-incident-queue",
            # Two long polls of up to 2 s each (the first returns as soon as a message is
            # there, the second gathers what follows within 2 s), then again after 1 s: an event
            # waits about a second to be seen, and a burst becomes a few runs rather than one
            # per message (each run costs a task process). Messages stay in the queue, hidden
            # for 2 minutes, until the run has handled them (respond_to_incidents deletes them):
            # a failed run, or an asset event Airflow drops, means the message comes back.
            trigger=SqsSensorTrigger(
                sqs_queue=queue[0],
                region_name=queue[1],
                aws_conn_id="aws_default",
                max_messages=10,
                num_batches=2,
                wait_time_seconds=2,
                waiter_delay=1,
                visibility_timeout=120,
                delete_message_on_reception=False,
            ),
        )
    ]
    if queue
    else [],
)

with DAG(
    dag_id="dr_incident_response",
    description="Contain DR incidents from CloudTrail events (EventBridge -> SQS -> AssetWatcher)",
    schedule=[incident_events] if queue else None,
    catchup=False,
    # Runs beyond max_active_runs wait, and Airflow 3.3 may then leave later asset events
    # unconsumed (they come back from the queue after the visibility timeout): room for bursts.
    max_active_runs=16,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=5),
        "execution_timeout": timedelta(minutes=10),
    },
    tags=["securedr", "dr", "incident"],
    doc_md=__doc__,
) as dag:
    RespondToIncidentsOperator(task_id="respond_to_incidents")
