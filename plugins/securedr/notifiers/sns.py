"""Notify people through the plan's SNS topic (e-mail, chat, paging all subscribe to it).

Usable wherever Airflow takes a notifier (``on_failure_callback=SnsNotifier(...)``, HITL
``notifiers=[...]``) and directly from an operator (``SnsNotifier(...).notify(context)``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseNotifier

from securedr.core.plan import load_plan

# SNS: a subject is at most 100 printable ASCII characters, no line breaks.
_SUBJECT_BAD = re.compile(r"[^\x20-\x7e]")
_MAX_MESSAGE_BYTES = 256 * 1024 - 1024


class SnsNotifier(BaseNotifier):
    """Publish ``subject``/``message`` (both templated) to an SNS topic.

    The topic is ``topic_arn`` or else the plan's ``notifications.sns_topic_arn``; with neither,
    nothing is sent (logged, not an error). The call runs under the restore role (assumed for
    the current run) unless ``use_restore_role=False`` or ``clients`` is given. The message is
    trimmed to SNS's size limit; nothing secret is ever put into it by SecureDR.

    ``notify`` returns the SNS message id (None when no topic is configured) and raises when
    SNS refuses, so a caller can record the failure; Airflow callbacks log it.
    """

    template_fields: Sequence[str] = ("subject", "message", "topic_arn")

    def __init__(
        self,
        *,
        subject: str,
        message: str,
        topic_arn: str | None = None,
        plan_path: str | None = None,
        aws_conn_id: str | None = "aws_default",
        use_restore_role: bool = True,
        clients: Any = None,
    ) -> None:
        super().__init__()
        self.subject = subject
        self.message = message
        self.topic_arn = topic_arn
        self.plan_path = plan_path
        self.aws_conn_id = aws_conn_id
        self.use_restore_role = use_restore_role
        self.clients = clients

    def _clients(self, context: Any, region: str) -> Any:
        if self.clients is not None:
            return self.clients
        if not self.use_restore_role:
            from securedr.aws.clients import AwsClients

            return AwsClients(self.aws_conn_id)
        from securedr.aws.sts import assume_restore_role

        plan = load_plan(self.plan_path)
        if _from_vault(context, plan):
            recovery = plan.vault.recovery
            return assume_restore_role(
                recovery.aws_conn_id,
                region=plan.regions.dr,
                role_arn=recovery.role_arn,
                external_id_variable=recovery.external_id_variable,
                run_id=str(context["run_id"]),
                setting="vault.recovery.role_arn",
                trust_policy="include/iam/securedr-vault-recovery-trust-policy.json",
            )
        return assume_restore_role(
            self.aws_conn_id,
            region=plan.regions.dr,
            role_arn=plan.restore.role_arn,
            external_id_variable=plan.restore.external_id_variable,
            run_id=str(context["run_id"]),
        )

    def notify(self, context: Any) -> str | None:
        plan = load_plan(self.plan_path)
        topic = self.topic_arn or plan.notifications.sns_topic_arn
        if not topic:
            self.log.info("No SNS topic configured (notifications.sns_topic_arn); not notifying.")
            return None
        if self.clients is None and self.use_restore_role and _from_vault(context, plan):
            recovery_account = _account(plan.vault.recovery.role_arn)
            if _account(topic) != recovery_account:
                # A run from the vault relies on nothing of the workload account, which may be
                # lost: its topic is not used (the run's report and audit trail are the record).
                self.log.warning(
                    "Not publishing to %s: a run from the vault only notifies through a topic "
                    "of the recovery account %s.",
                    topic,
                    recovery_account,
                )
                return None
        region = topic.split(":")[3]
        subject = _SUBJECT_BAD.sub(" ", self.subject).strip()[:100] or "SecureDR"
        message = self.message.encode()[:_MAX_MESSAGE_BYTES].decode(errors="ignore")
        response = (
            self._clients(context, region)
            .client("sns", region)
            .publish(TopicArn=topic, Subject=subject, Message=message)
        )
        message_id = str(response["MessageId"])
        self.log.info("Published %r to %s (message %s).", subject, topic, message_id)
        return message_id


def _account(arn: str | None) -> str | None:
    parts = str(arn or "").split(":")
    return parts[4] if len(parts) > 5 and parts[4] else None


def _from_vault(context: Any, plan: Any) -> bool:
    """Whether the run restores from the vault (its ``source`` parameter against the plan)."""
    from securedr.core.restore_request import SOURCE_VAULT, resolve_source

    if plan.vault is None:
        return False
    try:
        return resolve_source((context.get("params") or {}).get("source"), plan) == SOURCE_VAULT
    except ValueError:
        return True  # a run whose source is unreadable does not reach for the workload account
