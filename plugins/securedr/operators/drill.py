"""The steps of a recovery drill that dr_restore does not have: sandbox, verdict, teardown, report.

A drill re-uses dr_restore's retrieve, restore and wait steps (the restore operators take the
sandbox as their target). Around them: :class:`StartDrillOperator` fixes what the drill restores
and when it started; :class:`CreateDrillSandboxOperator` (an Airflow setup task) builds the
isolated network; :class:`VerifyDrillOperator` checks every restored resource as dr_restore's
confirmation does and timestamps each verification; :class:`TeardownDrillSandboxOperator` (the
teardown task) deletes everything the drill created and fails loudly, by name, on anything left;
:class:`DrillReportOperator` measures RTO and RPO, maps the checks to NIST SP 800-53 controls,
writes the JSON record and the HTML report to the evidence bucket, and fails the run unless the
drill passed. Every step runs under the restore role and appends to the audit trail.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from securedr.aws import drill_sandbox
from securedr.aws.evidence import EvidenceExists
from securedr.aws.filesets import verify_file_set_objects
from securedr.core.audit import render_report
from securedr.core.drill import (
    ResourceResult,
    drill_record,
    measure,
    parse_history,
    render_text,
    standard_checks,
    trend_key,
)
from securedr.core.manifest import run_token
from securedr.core.restore_request import (
    ALL_RESOURCES,
    LATEST,
    RestoreRequestError,
    parse_restore_request,
)
from securedr.operators.audit import RestoreStepOperator, initiator_of
from securedr.operators.restore import REPORTS_DIR_ENV, RestoredResourceChecks, _flatten, _request
from securedr.rendering import render_drill_html

#: Actor recorded in the audit trail for drills the scheduler started.
SCHEDULER_ACTOR = "airflow-scheduler"
#: How many earlier drill records the trend chart reads (newest first).
HISTORY_LIMIT = 40

TEARDOWN_TASK_ID = "teardown_sandbox"


def _drill_actor(context: Any) -> str:
    return initiator_of(context) or SCHEDULER_ACTOR


def _drill_id(initiation: Any) -> str:
    return str(dict(initiation or {})["drill_id"])


class StartDrillOperator(RestoreStepOperator):
    """Fix what the drill restores and when it started; audit the start.

    Guarantees: the plan is checked for what a drill needs (a restore role) before any AWS call;
    the drill restores the latest signed manifest's every recovery point - from the vault, under
    the vault recovery role and into a sandbox in the recovery account, when the run's
    ``source`` is ``vault`` (the default for a plan with a vault); the drill id is
    derived from the run id, so a retried task and every later step agree on it. Returns the
    same ``{"request", "initiator"}`` shape dr_restore's initiation does, plus ``drill_id`` and
    ``started_at`` (the run's start, which RTO and RPO are measured from).
    """

    ui_color = "#e0e7ff"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("retries", 1)
        super().__init__(**kwargs)

    def execute(self, context: Any) -> dict[str, Any]:
        run_id = self.bind_run(context)
        plan = self.plan
        if not self.from_vault and not plan.restore.role_arn:
            raise AirflowFailException(
                "the plan has no restore.role_arn; a drill runs under the restore role. Create "
                "it from include/iam/ (README, 'Restore role') and set restore.role_arn"
            )
        try:
            request = parse_restore_request(
                {
                    "recovery_point": LATEST,
                    "resources": [ALL_RESOURCES],
                    "reason": f"Recovery drill {run_id}",
                    "source": self._source,
                },
                plan,
            )
        except RestoreRequestError as exc:
            raise AirflowFailException(str(exc)) from None
        started = (getattr(context["dag_run"], "start_date", None) or datetime.now(UTC)).astimezone(
            UTC
        )
        drill_id = run_token(run_id)
        self.audit(
            context,
            action="drill.start",
            resource=f"plan/{plan.name}",
            outcome="started",
            details={"drill_id": drill_id, "dr_region": plan.regions.dr, "source": self._source},
            actor=_drill_actor(context),
        )
        self.log.info(
            "Recovery drill %s of plan %s started at %s: restoring the latest verified recovery "
            "points (%s) into an isolated sandbox in %s%s.",
            drill_id,
            plan.name,
            started.isoformat(),
            "vault copies" if self.from_vault else "DR copies",
            plan.regions.dr,
            f" of the recovery account {self.role_settings().role_arn}" if self.from_vault else "",
        )
        return {
            "request": request.to_dict(),
            "initiator": _drill_actor(context),
            "drill_id": drill_id,
            "started_at": started.isoformat(),
        }


class _SandboxStep(RestoreStepOperator):
    """A drill step that works on the sandbox of the drill ``initiation`` names."""

    template_fields: Sequence[str] = ("initiation", "plan_path")

    def __init__(self, *, initiation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.initiation = initiation

    def sandbox_clients(self, context: Any) -> tuple[str, Any, Any]:
        """(drill id, EC2 client, RDS client) in the DR Region, under the restore role."""
        self.bind_run(context)
        dr = self.plan.regions.dr
        return _drill_id(self.initiation), self.clients.ec2(dr), self.clients.rds(dr)


class CreateDrillSandboxOperator(_SandboxStep):
    """Build (or, on a retry, find) the drill's isolated network in the DR Region.

    Guarantees: the sandbox is its own VPC with no internet or NAT gateway and a security group
    with no rules, all tagged with the drill id; a sandbox that is not isolated is refused. If
    building it fails part-way, what was built is deleted before the task fails (an Airflow
    teardown task does not run when its setup task failed). Returns the sandbox as a dict.
    """

    ui_color = "#dcfce7"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("retries", 1)
        super().__init__(**kwargs)

    def execute(self, context: Any) -> dict[str, Any]:
        drill_id, ec2, rds = self.sandbox_clients(context)
        dr = self.plan.regions.dr
        try:
            sandbox = drill_sandbox.create_sandbox(
                ec2, rds, region=dr, plan=self.plan.name, drill_id=drill_id
            )
            problems = drill_sandbox.isolation_problems(ec2, sandbox)
            if problems:
                raise AirflowFailException(
                    f"the drill sandbox {sandbox.vpc_id} is not isolated: {'; '.join(problems)}. "
                    "Nothing was restored into it; it has been deleted"
                )
        except Exception as exc:
            cleanup = drill_sandbox.teardown(
                ec2, rds, drill_id=drill_id, poll=self.plan.waits.poll_seconds
            )
            self.audit(
                context,
                action="drill.sandbox",
                resource=f"drill/{drill_id}",
                outcome="failed",
                details={"error": str(exc)[:500], "cleaned_up": cleanup.deleted},
                actor=_drill_actor(context),
            )
            if isinstance(
                exc, (drill_sandbox.SandboxQuotaExceeded, drill_sandbox.SandboxZonesUnavailable)
            ):
                # A retry would meet the same quota: fail now with what to do.
                raise AirflowFailException(str(exc)) from exc
            raise
        self.audit(
            context,
            action="drill.sandbox",
            resource=sandbox.vpc_id,
            outcome="succeeded",
            details=sandbox.to_dict(),
            actor=_drill_actor(context),
        )
        self.log.info(
            "Sandbox %s ready: subnets %s in %s, closed security group %s, DB subnet group %s.",
            sandbox.vpc_id,
            ", ".join(sandbox.subnet_ids),
            ", ".join(sandbox.availability_zones),
            sandbox.security_group_id,
            sandbox.db_subnet_group,
        )
        return sandbox.to_dict()


class VerifyDrillOperator(RestoredResourceChecks):
    """Verify every recovery point the drill was to restore, as dr_restore's confirmation does.

    Runs whatever happened upstream (``all_done``): a point whose restore failed or never started
    is reported unverified with the reason, never skipped. Each verified resource gets the time
    it was verified (its RTO end). Returns ``{"results": [ResourceResult dicts],
    "encrypted_under_dr_key": bool, "manifest": {...} | None}``; the verdict is the report's.
    """

    template_fields: Sequence[str] = ("initiation", "retrieval", "restored", "plan_path")
    ui_color = "#fef3c7"

    def __init__(self, *, initiation: Any, retrieval: Any, restored: Any, **kwargs: Any) -> None:
        kwargs.setdefault("retries", 1)
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.initiation = initiation
        self.retrieval = retrieval
        self.restored = restored

    def execute(self, context: Any) -> dict[str, Any]:
        run_id = self.bind_run(context)
        initiation = dict(self.initiation or {})
        retrieval = dict(self.retrieval or {})
        points = list(retrieval.get("points") or [])
        if not initiation or not retrieval:
            self.log.error("No recovery points were retrieved; there is nothing to verify.")
            return {"results": [], "encrypted_under_dr_key": False, "manifest": None}
        request = _request(initiation)
        started = datetime.fromisoformat(initiation["started_at"])
        restored = {(r["kind"], r["source_id"]): r for r in _flatten(self.restored)}
        live = [restored[k] for k in restored if restored[k].get("resource_id")]
        checked = {
            (c["kind"], c["source_id"]): c
            for c in (self.check_restored(live, request, run_id, started) if live else [])
        }
        verified_at = datetime.now(UTC).isoformat()
        results = []
        # Retrieval already refused DR copies not under the DR key; this adds the restores.
        keys_ok = bool(checked) and all(
            c["encrypted_under"] == c["expected_key_arn"] for c in checked.values()
        )
        for point in points:
            item = restored.get((point["kind"], point["source_id"]))
            check = checked.get((point["kind"], point["source_id"]))
            problems = (
                list(check["problems"])
                if check is not None
                else ["not restored: the restore step failed or did not run (see its task log)"]
            )
            result = ResourceResult(
                kind=point["kind"],
                source_id=str(point["source_id"]),
                source_region=str(point["source_region"]),
                recovery_point_id=str(point["dr_snapshot_id"]),
                point_created_at=point.get("created_at"),
                restored_id=(item or {}).get("resource_id"),
                verified=not problems,
                problems=problems,
                restore_started_at=(item or {}).get("requested_at"),
                verified_at=verified_at if not problems else None,
            )
            for problem in problems:
                self.log.error("%s: %s", result.label, problem)
            if not problems:
                self.log.info("%s verified as %s.", result.label, result.restored_id)
            results.append(result.to_dict())
        results += [r.to_dict() for r in self._file_sets(retrieval)]
        self.audit(
            context,
            action="drill.verify",
            resource=f"drill/{initiation['drill_id']}",
            outcome="succeeded" if all(r["verified"] for r in results) else "failed",
            details={
                "verified": [r["restored_id"] for r in results if r["verified"]],
                "failed": {
                    f"{r['kind']}:{r['source_id']}": r["problems"]
                    for r in results
                    if not r["verified"]
                },
            },
            actor=_drill_actor(context),
        )
        return {
            "results": results,
            "encrypted_under_dr_key": keys_ok,
            "manifest": retrieval.get("manifest"),
        }

    def _file_sets(self, retrieval: dict[str, Any]) -> list[ResourceResult]:
        """One result per file set: every file decrypted to a hash sink and checked against the
        signed manifest (file id, SHA-256, size); no plaintext is kept."""
        file_sets = list(retrieval.get("file_sets") or [])
        if not file_sets:
            return []
        checks_started = datetime.now(UTC).isoformat()
        checks = verify_file_set_objects(
            self.clients,
            file_sets,
            self.plan,
            dr_key_arn=self.key_arn(self.plan.regions.dr),
            log=self.log,
        )
        manifest = dict(retrieval.get("manifest") or {})
        verified_at = datetime.now(UTC).isoformat()
        results = []
        for file_set in file_sets:
            name = str(file_set["name"])
            mine = [c for c in checks if c.file_set == name]
            problems = [f"{c.path}: {p}" for c in mine for p in c.problems]
            if not mine:
                problems.append("no files were checked")
            result = ResourceResult(
                kind="fileset",
                source_id=name,
                source_region=str(file_set.get("source_region") or "local"),
                recovery_point_id=f"{len(mine)} files of {manifest.get('key', '?')}",
                point_created_at=manifest.get("created_at"),
                restored_id=f"{sum(c.verified for c in mine)} files verified",
                verified=not problems,
                problems=problems,
                restore_started_at=checks_started,
                verified_at=verified_at if not problems else None,
            )
            self.log.info(
                "%s: %d of %d files decrypted and matched the signed manifest.",
                result.label,
                sum(c.verified for c in mine),
                len(mine),
            )
            results.append(result)
        return results


class TeardownDrillSandboxOperator(_SandboxStep):
    """Delete everything the drill created, then prove nothing carrying its tag remains.

    Use as the drill's Airflow teardown task, so it runs on success, failure and timeout of the
    steps in between. Guarantees: one failed deletion does not stop the others; the network is
    deleted only after the deleted DB instances' interfaces are gone, and refusals as "still in
    use" (``DependencyViolation``, ``InvalidDBSubnetGroupStateFault``) are retried with backoff
    until a deadline; afterwards every resource still tagged with the drill id (and any
    interface left in its VPC) is listed, and if there is any the task fails naming each one
    (and why its deletion failed). Returns ``{"deleted": [...], "leftovers": []}``.
    """

    ui_color = "#fee2e2"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("retries", 2)
        super().__init__(**kwargs)

    def execute(self, context: Any) -> dict[str, Any]:
        drill_id, ec2, rds = self.sandbox_clients(context)
        result = drill_sandbox.teardown(
            ec2,
            rds,
            drill_id=drill_id,
            wait_seconds=self.plan.waits.snapshot_timeout_minutes * 60,
            poll=self.plan.waits.poll_seconds,
        )
        for name in result.deleted:
            self.log.info("Deleted %s.", name)
        left = drill_sandbox.leftovers(ec2, rds, drill_id=drill_id)
        self.audit(
            context,
            action="drill.teardown",
            resource=f"drill/{drill_id}",
            outcome="failed" if left or result.errors else "succeeded",
            details={"deleted": result.deleted, "leftovers": left, "errors": result.errors},
            actor=_drill_actor(context),
        )
        if left:
            raise AirflowFailException(
                f"LEFTOVER drill resources after teardown of drill {drill_id}: {', '.join(left)}"
                + (f" (deletion errors: {'; '.join(result.errors)})" if result.errors else "")
                + f". Delete them by hand (they carry the tag {drill_sandbox.TAG_DRILL}="
                f"{drill_id}) - they may cost money and hold restored data"
            )
        if result.errors:
            raise AirflowFailException("teardown errors: " + "; ".join(result.errors))
        self.log.info("Teardown complete: nothing tagged %s=%s remains.", "drill", drill_id)
        return {"deleted": result.deleted, "leftovers": []}


class DrillReportOperator(RestoreStepOperator):
    """Measure, judge, report, audit - and fail the run unless the drill passed.

    Runs whatever happened upstream (``all_done``). Guarantees: leftovers are listed again from
    AWS here (not trusted from the teardown task); the audit trail's hash chain is verified end
    to end; any failed step is named; the JSON record and the HTML report (with the trend across
    the earlier drills stored in the evidence bucket) are written once under Object Lock to
    ``<prefix>/drills/<plan>/``; the verdict is appended to the audit trail and the trail's head
    anchored (signed, write-once). The task fails with
    every reason the drill did not pass, after all of that is written.
    """

    template_fields: Sequence[str] = ("initiation", "verification", "plan_path")
    ui_color = "#ede9fe"

    def __init__(self, *, initiation: Any, verification: Any, **kwargs: Any) -> None:
        kwargs.setdefault("retries", 1)
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.initiation = initiation
        self.verification = verification

    def execute(self, context: Any) -> dict[str, Any]:
        run_id = self.bind_run(context)
        plan = self.plan
        if not self.initiation:
            raise AirflowFailException(
                "the drill did not start (see start_drill's log); nothing was created, so there "
                "is nothing to report or tear down"
            )
        initiation = dict(self.initiation)
        drill_id = initiation["drill_id"]
        started = datetime.fromisoformat(initiation["started_at"])
        verification = dict(self.verification or {})
        results = [ResourceResult.from_dict(r) for r in verification.get("results") or []]
        dr = plan.regions.dr
        left = drill_sandbox.leftovers(
            self.clients.ec2(dr), self.clients.rds(dr), drill_id=drill_id
        )
        failed_tasks = self._failed_tasks(context)
        chain = self.audit_trail.verify(self.trusted_public_keys())
        if not chain.ok:
            # Every hidden, deleted or rewritten entry, not only the first break.
            self.log.error("Audit trail verification failed: %s", render_report(chain))
        measurement = measure(
            results,
            drill_started_at=started,
            rpo_target_hours=plan.targets.rpo_hours,
            rto_target_minutes=plan.targets.rto_minutes,
        )
        checks = standard_checks(
            measurement,
            manifest_verified=verification.get("manifest") is not None,
            all_encrypted_under_dr_key=bool(verification.get("encrypted_under_dr_key")),
            audit_chain_ok=chain.ok,
            teardown_clean=TEARDOWN_TASK_ID not in failed_tasks,
            leftovers=left,
        )
        record = drill_record(
            plan=plan.name,
            run_id=run_id,
            sandbox_id=drill_id,
            finished_at=datetime.now(UTC),
            measurement=measurement,
            checks=checks,
            leftovers=left,
            dr_region=dr,
            failed_tasks=[t for t in failed_tasks if t != TEARDOWN_TASK_ID],
        )
        key = self.evidence.key(trend_key(plan.name, started, run_id=run_id))
        history = self._history(exclude=key)
        record["report_url"] = self.evidence.url(key[: -len(".json")] + ".html")
        record["record_url"] = self.evidence.url(key)
        text = render_text(record)
        page = render_drill_html(record, history)
        self._write(key, record, text, page)
        self.audit(
            context,
            action="drill.report",
            resource=f"drill/{drill_id}",
            outcome="passed" if record["passed"] else "failed",
            details={
                "rto_seconds": record["overall"]["rto_seconds"],
                "rpo_seconds": record["overall"]["rpo_seconds"],
                "failures": record["failures"][:20],
                "report": record["report_url"],
            },
            actor=_drill_actor(context),
        )
        # The verdict is the drill's last entry: anchor the head after it.
        self.anchor_audit_head(context)
        self.log.info(
            "Drill report: %s\nDrill record: %s\n%s",
            record["report_url"],
            record["record_url"],
            text,
        )
        if not record["passed"]:
            raise AirflowFailException(
                f"Recovery drill {drill_id} FAILED ({len(record['failures'])} problem(s)): "
                + "; ".join(record["failures"])
                + f". Report: {record['report_url']}"
            )
        return record

    def _failed_tasks(self, context: Any) -> list[str]:
        """Task ids of this run that failed or never ran because an upstream step failed."""
        dag_id, run_id = str(context["dag"].dag_id), str(context["run_id"])
        try:
            states = context["ti"].get_task_states(dag_id=dag_id, run_ids=[run_id])
        except Exception as exc:  # the states enrich the report; their absence must not hide it
            self.log.warning("Could not read the run's task states: %s", exc)
            return []
        mine = states.get(run_id, {}) if isinstance(states, dict) else {}
        return sorted(
            task_id
            for task_id, state in mine.items()
            if str(state) in ("failed", "upstream_failed") and task_id != self.task_id
        )

    def _history(self, *, exclude: str) -> list[dict[str, Any]]:
        keys = [
            k
            for k in self.evidence.list("drills", self.plan.name)
            if k.endswith(".json") and k != exclude
        ][-HISTORY_LIMIT:]
        records = []
        for key in keys:
            try:
                records.append(json.loads(self.evidence.get(key)))
            except (ValueError, UnicodeDecodeError):
                self.log.warning("Ignoring unreadable drill record %s.", key)
        return parse_history(records)

    def _write(self, key: str, record: dict[str, Any], text: str, page: str) -> None:
        stem = key[: -len(".json")]
        for object_key, body, ctype in (
            (key, json.dumps(record, indent=2, default=str).encode(), "application/json"),
            (stem + ".html", page.encode(), "text/html; charset=utf-8"),
            (stem + ".txt", text.encode(), "text/plain; charset=utf-8"),
        ):
            try:
                self.evidence.put(object_key, body, ctype)
            except EvidenceExists:
                self.log.info("%s already written by an earlier try.", object_key)
        local = os.environ.get(REPORTS_DIR_ENV)
        if local:
            path = Path(local) / ("drill-" + Path(stem).name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str))
            path.with_suffix(".html").write_text(page)
            path.with_suffix(".txt").write_text(text + "\n")
            self.log.info("Local copy of the drill report: %s", path.with_suffix(".html"))


__all__ = [
    "CreateDrillSandboxOperator",
    "DrillReportOperator",
    "StartDrillOperator",
    "TeardownDrillSandboxOperator",
    "VerifyDrillOperator",
]
