"""Respond to DR incidents: classify the triggering CloudTrail events, contain, alert, audit.

dr_incident_response runs this once per batch of events the AssetWatcher delivered (the SQS
messages ride in the asset events' ``extra.payload.message_batch``); a manual run can pass
events in ``conf["events"]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from securedr.aws import kms as kms_adapter
from securedr.aws.audit_store import S3AuditTrail
from securedr.aws.containment import (
    ALERT_ONLY,
    FAILED,
    ContainmentResult,
    SessionClients,
    contain,
)
from securedr.core import incident as inc
from securedr.core.plan import SQS_QUEUE_URL_RE, load_plan
from securedr.operators.base import SecureDrOperator, run_identity


def incident_queue(plan_path: str | None = None) -> tuple[str, str] | None:
    """(queue URL, Region) of the plan's incident queue, or None when the plan names none."""
    url = load_plan(plan_path).incident_response.queue_url
    match = SQS_QUEUE_URL_RE.match(url or "")
    return (url, match["region"]) if url and match else None


def sqs_messages(context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The SQS messages the triggering asset events carry (``extra.payload.message_batch``)."""
    messages: list[dict[str, Any]] = []
    triggering = context.get("triggering_asset_events") or {}
    for asset in list(triggering):
        for asset_event in triggering[asset]:
            payload = (getattr(asset_event, "extra", None) or {}).get("payload") or {}
            messages += [m for m in payload.get("message_batch") or [] if isinstance(m, dict)]
    return messages


def messages_from_context(context: Mapping[str, Any]) -> list[Any]:
    """The event bodies of this run: SQS messages of the triggering asset events, then conf."""
    bodies: list[Any] = [m.get("Body") for m in sqs_messages(context)]
    dag_run = context.get("dag_run")
    conf = (getattr(dag_run, "conf", None) or {}) if dag_run is not None else {}
    bodies += list(conf.get("events") or [])
    return bodies


class RespondToIncidentsOperator(SecureDrOperator):
    """Contain what is safe and reversible, alert once, and audit every incident.

    Guarantees: every incident among the events is audited (actor = the caller named by
    CloudTrail, action ``incident:<kind>``, outcome = the containment's) and published in one
    SNS message; containment only removes what the incident added or puts a protection back
    (:mod:`securedr.aws.containment`); events caused by SecureDR's own principals, failed calls
    and resources outside the plan are ignored; an unreadable message is logged and skipped.
    The task fails (after alerting and auditing) when a containment or an audit write failed,
    and a retry repeats nothing that already took effect.
    """

    ui_color = "#fee2e2"

    @cached_property
    def clients(self) -> SessionClients:  # type: ignore[override]
        return SessionClients(self.aws_conn_id)

    def _plan_key_arns(self, regions: Iterable[str]) -> list[str]:
        """The ARNs behind the plan's keys in ``regions`` (only KMS events need them)."""
        arns = []
        for region, key in sorted(self.plan.kms_keys.items()):
            if region not in regions:
                continue
            try:
                metadata = kms_adapter.describe_key(self.clients.kms(region), key)
            except Exception as exc:  # a key that cannot be described cannot be matched
                self.log.warning("Cannot describe plan key %s in %s: %s", key, region, exc)
                continue
            if metadata is not None:
                arns.append(str(metadata["Arn"]))
        return arns

    def classify_all(self, bodies: Iterable[Any], scope: inc.ResponseScope) -> list[inc.Incident]:
        incidents = []
        for body in bodies:
            try:
                incident = inc.classify(inc.parse_message_body(body), scope)
            except inc.EventShapeError as exc:
                self.log.warning("Skipping a message that is no CloudTrail event: %s", exc)
                continue
            if incident is not None:
                incidents.append(incident)
        return incidents

    def unprotected_by(self, incident: inc.Incident) -> str | None:
        """For a deleted snapshot: the resource whose signed DR copy it was, if any."""
        from securedr.aws.manifests import load_signed_manifests

        try:
            signed = load_signed_manifests(
                self.evidence,
                self.trusted_public_keys(),
                plan=self.plan.name,
                dr_region=self.plan.regions.dr,
                latest=7,
            )
        except Exception as exc:
            self.log.warning("Cannot read the signed manifests: %s", exc)
            return None
        for _key, payload in reversed(signed.manifests):
            for point in payload.get("recovery_points", []):
                if incident.resource in (
                    point.get("dr_snapshot_id"),
                    point.get("source_snapshot_id"),
                ):
                    return f"{point['kind']} {point['source_region']}/{point['source_id']}"
        return None

    def acknowledge(self, context: Any) -> int:
        """Delete this run's SQS messages now that they are handled; return how many.

        The watcher leaves messages in the queue (``delete_message_on_reception=False``), hidden
        for its visibility timeout, so that an event is lost neither when the run fails nor when
        Airflow drops an asset event: an unacknowledged message comes back and starts a run.
        A receipt handle that expired meanwhile only means the message will be handled again
        (every containment is idempotent); it is logged, not an error.
        """
        messages = [m for m in sqs_messages(context) if m.get("ReceiptHandle")]
        queue = incident_queue(self.plan_path)
        if not messages or queue is None:
            return 0
        sqs = self.clients.client("sqs", queue[1])
        deleted = 0
        for start in range(0, len(messages), 10):
            batch = messages[start : start + 10]
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ]
            try:
                result = sqs.delete_message_batch(QueueUrl=queue[0], Entries=entries)
            except Exception as exc:
                self.log.warning("Could not delete handled messages from %s: %s", queue[0], exc)
                continue
            deleted += len(result.get("Successful", []))
            for failure in result.get("Failed", []):
                self.log.warning("Handled message not deleted (it will come back): %s", failure)
        return deleted

    def execute(self, context: Any) -> dict[str, Any]:
        _, run_id = run_identity(context)
        events = []
        for body in messages_from_context(context):
            try:
                events.append(inc.parse_message_body(body))
            except inc.EventShapeError as exc:
                self.log.warning("Skipping a message that is no CloudTrail event: %s", exc)
        bodies = events
        kms_regions = {
            str((e.get("detail") or {}).get("awsRegion"))
            for e in events
            if isinstance(e.get("detail"), Mapping)
            and e["detail"].get("eventSource") == "kms.amazonaws.com"
        }
        scope = inc.ResponseScope.from_plan(self.plan, self._plan_key_arns(kms_regions))
        incidents = self.classify_all(bodies, scope)
        self.log.info("%d message(s), %d incident(s).", len(bodies), len(incidents))
        handled: list[tuple[inc.Incident, ContainmentResult, str | None]] = []
        for incident in incidents:
            result = contain(self.clients, incident, self.plan.name)
            unprotected = (
                self.unprotected_by(incident) if incident.kind == inc.DR_COPY_DELETED else None
            )
            self.log.info(
                "%s: %s -> %s (%s)", incident.kind, incident.resource, result.outcome, result.detail
            )
            handled.append((incident, result, unprotected))
        if not handled:
            self.acknowledge(context)
            return {"messages": len(bodies), "incidents": []}

        lines = []
        for incident, result, unprotected in handled:
            lines.append(f"INCIDENT {incident.kind}: {incident.summary}")
            lines.append(f"  by {incident.actor} at {incident.event_time} ({incident.event_name})")
            if result.outcome == ALERT_ONLY:
                lines.append("  containment: none (alert only) - review and act by hand")
            else:
                lines.append(f"  containment: {result.action} -> {result.outcome}: {result.detail}")
            if incident.kind == inc.DR_COPY_DELETED:
                lines.append(
                    f"  now unprotected: {unprotected} has one DR copy fewer; run "
                    "dr_nightly_backup to make a new one"
                    if unprotected
                    else "  no signed manifest of the last 7 names this snapshot"
                )
        self.publish_incident(
            context,
            f"SecureDR INCIDENT ({len(handled)}): plan {self.plan.name}",
            lines,
            "incident response",
        )

        audit_failed = []
        try:
            trail = S3AuditTrail.for_evidence(self.evidence, self.plan.name)
            key = self.signing_private_key()
        except Exception as exc:
            trail, key = None, b""
            audit_failed.append(str(exc))
        for incident, result, unprotected in handled:
            if trail is None:
                break
            try:
                trail.append(
                    actor=incident.actor,
                    action=f"incident:{incident.kind}",
                    resource=incident.resource,
                    outcome=result.outcome,
                    details={
                        "task_id": self.task_id,
                        "incident": incident.to_dict(),
                        "containment": result.to_dict(),
                        "unprotected": unprotected,
                    },
                    run_id=run_id,
                    private_key_pem=key,
                )
            except Exception as exc:
                self.log.error(
                    "Could not audit %s on %s: %s", incident.kind, incident.resource, exc
                )
                audit_failed.append(f"{incident.kind} {incident.resource}: {exc}")
        failed = [
            f"{i.kind} {i.resource}: {r.detail}" for i, r, _ in handled if r.outcome == FAILED
        ]
        if failed or audit_failed:
            # The messages stay in the queue: they come back after the watcher's visibility
            # timeout and start another run, until the incident is contained and audited.
            raise AirflowFailException(
                "Incident response incomplete: "
                + "; ".join(
                    [f"containment failed for {f}" for f in failed]
                    + [f"audit failed: {a}" for a in audit_failed]
                )
            )
        self.acknowledge(context)
        return {
            "messages": len(bodies),
            "incidents": [
                {**i.to_dict(), "outcome": r.outcome, "result": r.detail, "unprotected": u}
                for i, r, u in handled
            ],
        }
