"""The closing step of a nightly run: the report, and the run's final verdict."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from securedr.core.manifest import run_token
from securedr.core.model import Verification
from securedr.core.report import describe_refusal, nightly_report, render_nightly_text
from securedr.operators.base import SecureDrOperator, run_identity

#: Where a local copy of each report goes, besides the evidence bucket.
REPORTS_DIR_ENV = "SECUREDR_REPORTS_DIR"


class NightlyReportOperator(SecureDrOperator):
    """Write the run report (JSON and text) to the evidence bucket and log it; fail the run if
    any resource could not be protected, any DR copy failed verification, any file set failed,
    any verified DR copy is not verified in the vault (``vault``, the vault verification's
    result, when the plan has a vault), any earlier step failed, AWS refused a retention
    deletion or any retained DR copy of an earlier night failed its re-check (``retained``, the
    re-verification step's result), naming them. It is the last step, so the manifest of
    everything that WAS protected and the report are already written when it fails.

    Runs whatever happened upstream (use ``trigger_rule=ALL_DONE``), so a failed night still
    leaves a report behind. Pre-flight's warnings (``preflight``, its result) - among them a
    copy window that does not fit the RPO - are shown in the report without failing it.
    """

    template_fields: Sequence[str] = (
        "verifications",
        "manifest",
        "retention",
        "file_sets",
        "retained",
        "preflight",
        "vault",
        "plan_path",
    )

    def __init__(
        self,
        *,
        verifications: Any,
        manifest: Any,
        retention: Any,
        file_sets: Any = None,
        retained: Any = None,
        preflight: Any = None,
        vault: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.vault = vault
        self.preflight = preflight
        self.file_sets = file_sets
        self.retained = retained
        self.verifications = verifications
        self.manifest = manifest
        self.retention = retention

    def execute(self, context: Any) -> dict[str, Any]:
        _, run_id = run_identity(context)
        dag_run = context["dag_run"]
        now = datetime.now(UTC)
        started = (getattr(dag_run, "start_date", None) or now).astimezone(UTC)
        failed_tasks = sorted(
            task_id
            for task_id, state in _task_states(context).items()
            if task_id != self.task_id and str(state) in ("failed", "upstream_failed")
        )
        verdicts = [Verification.from_dict(v) for v in self.verifications or []]
        report = nightly_report(
            plan=self.plan.name,
            run_id=run_id,
            started_at=started.isoformat(),
            finished_at=now.isoformat(),
            duration_seconds=(now - started).total_seconds(),
            verifications=verdicts,
            manifest=self.manifest or None,
            retention=self.retention or None,
            failed_tasks=failed_tasks,
            file_sets=list(self.file_sets or []),
            retained=self.retained or None,
            preflight=self.preflight or None,
            vault=self.vault or None,
        )
        text = render_nightly_text(report)
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        base = self.evidence.key(
            "reports", "nightly", self.plan.name, f"{stamp}-{run_token(run_id)}"
        )
        report["report_url"] = self.evidence.url(base + ".json")
        for suffix, body, ctype in (
            (".json", json.dumps(report, indent=2).encode(), "application/json"),
            (".txt", text.encode(), "text/plain; charset=utf-8"),
        ):
            if not self.evidence.exists(base + suffix):
                self.evidence.put(base + suffix, body, ctype)
        local = os.environ.get(REPORTS_DIR_ENV)
        if local:
            path = Path(local) / f"nightly-{stamp}-{run_token(run_id)}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.with_suffix(".json").write_text(json.dumps(report, indent=2))
            path.with_suffix(".txt").write_text(text + "\n")
            report["local_report"] = str(path.with_suffix(".txt"))
        self.log.info("Run report (%s):\n%s", report["report_url"], text)
        if not report["succeeded"]:
            reasons = []
            if report["not_protected"]:
                reasons.append(
                    "resources NOT protected: "
                    + "; ".join(f"{n['source']} ({n['reason']})" for n in report["not_protected"])
                )
            if report["failed_verification"]:
                reasons.append(
                    "DR copies failed verification: " + ", ".join(report["failed_verification"])
                )
            if report.get("not_in_vault"):
                reasons.append(
                    "DR copies NOT protected in the vault (kept in the workload account): "
                    + "; ".join(report["not_in_vault"])
                )
            if report["failed_retained_copies"]:
                reasons.append(
                    "retained DR copies failed re-verification: "
                    + "; ".join(report["failed_retained_copies"])
                )
            if report["failed_file_sets"]:
                reasons.append("file sets failed: " + "; ".join(report["failed_file_sets"]))
            if failed_tasks:
                reasons.append("steps failed: " + ", ".join(failed_tasks))
            if report["retention_refusals"]:
                reasons.append(
                    "AWS refused retention deletions (kept): "
                    + "; ".join(describe_refusal(r) for r in report["retention_refusals"])
                )
            raise AirflowFailException("Nightly backup failed - " + "; ".join(reasons))
        return report


def _task_states(context: Any) -> dict[str, Any]:
    """task_id -> state for this run, as the Airflow API reports it."""
    dag_id, run_id = run_identity(context)
    states = context["ti"].get_task_states(dag_id=dag_id, run_ids=[run_id])
    return dict(states.get(run_id, {}))
