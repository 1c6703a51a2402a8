"""The nightly run report: a JSON record and the same facts as readable text."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from securedr.core.filesets import failed_file_sets, summarize
from securedr.core.model import Verification


def nightly_report(
    *,
    plan: str,
    run_id: str,
    started_at: str,
    finished_at: str,
    duration_seconds: float,
    verifications: Sequence[Verification],
    manifest: Mapping[str, Any] | None,
    retention: Mapping[str, Any] | None,
    failed_tasks: Sequence[str] = (),
    file_sets: Sequence[Mapping[str, Any]] = (),
    retained: Mapping[str, Any] | None = None,
    preflight: Mapping[str, Any] | None = None,
    vault: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's record. ``succeeded`` is true only if every resource was protected, every copy
    verified, every file set was backed up completely, every retained copy of earlier nights
    passed its re-check (``retained``, from the re-verification step), no step failed and AWS
    refused no retention deletion (``retention_refusals``: what could not be deleted, and AWS's
    reason). Resources the run could not protect are listed under ``not_protected`` with the
    reason and what to do; incidents on retained copies and possible forgeries retention found
    join tonight's under ``incidents``. Pre-flight's warnings (``preflight``: its result) and its
    copy-window estimate are listed under ``warnings`` and ``copy_window``; they never fail the
    run. With a vault (``vault``: the vault verification's result) every verified DR copy must
    also be verified in the vault: one that is not is listed under ``not_in_vault`` (its DR copy
    is kept) and fails the run."""
    vault_points = dict((vault or {}).get("points") or {})
    retained = dict(retained or {})
    retained_failed = [
        f"{p['source']} -> {p['copy']} ({p['age']} old): {'; '.join(p['problems'])}"
        for p in retained.get("problems") or []
    ]
    not_protected = [
        {
            "kind": v.recovery_point.kind,
            "source": f"{v.recovery_point.source_region}/{v.recovery_point.source_id}",
            "reason": v.recovery_point.not_protected,
        }
        for v in verifications
        if v.recovery_point.not_protected is not None
    ]
    verifications = [v for v in verifications if v.recovery_point.not_protected is None]
    failed = [v for v in verifications if not v.passed]
    refusals = [dict(r) for r in (retention or {}).get("retention_refusals") or []]
    failed_sets = failed_file_sets(file_sets)
    points = []
    not_in_vault: list[str] = []
    for v in verifications:
        p = v.recovery_point
        entry = vault_points.get(p.label) if vault else None
        if vault and v.passed and not (entry or {}).get("verified"):
            why = "; ".join((entry or {}).get("problems") or ["no vault copy"])
            not_in_vault.append(f"{p.source_region}/{p.source_id}: {why}")
        points.append(
            {
                "kind": p.kind,
                "source": f"{p.source_region}/{p.source_id}",
                "source_snapshot": p.snapshot_id,
                "source_encrypted": p.source_encrypted,
                "dr_copy": f"{p.dr_region}/{p.dr_snapshot_id}",
                "dr_key": p.dr_kms_key_arn,
                "size_gib": p.size_gib,
                "verified": v.passed,
                "problems": v.problems,
                "incidents": v.incidents,
                **(
                    {
                        "vault_copy": _vault_copy(entry),
                        "in_vault": bool((entry or {}).get("verified")),
                    }
                    if vault
                    else {}
                ),
            }
        )
    return {
        "report": "securedr-nightly-backup",
        "plan": plan,
        "run_id": run_id,
        "started_at": started_at,
        "finished_at": finished_at,
        "duration_seconds": round(duration_seconds, 1),
        "succeeded": not failed
        and not failed_tasks
        and not failed_sets
        and not not_protected
        and not refusals
        and not retained_failed
        and not not_in_vault,
        "not_in_vault": not_in_vault,
        "vault": dict(vault.get("vault") or {}) if vault else None,
        "failed_tasks": list(failed_tasks),
        "recovery_points": points,
        "dr_copy_seconds": copy_durations(verifications),
        "verified": len(verifications) - len(failed),
        "failed_verification": [
            f"{p['source']} -> {p['dr_copy']}" for p in points if not p["verified"]
        ],
        "not_protected": not_protected,
        "incidents": [i for v in verifications for i in v.incidents]
        + list(retained.get("incidents") or [])
        + list((retention or {}).get("incidents") or []),
        "retained_copies": {
            "manifests": retained.get("manifests", 0),
            "checked": retained.get("checked", 0),
            "calls": retained.get("calls"),
        }
        if retained
        else None,
        "failed_retained_copies": retained_failed,
        "file_sets": summarize(file_sets),
        "failed_file_sets": failed_sets,
        "manifest": dict(manifest) if manifest else None,
        "retention": {k: v for k, v in (retention or {}).items() if k != "decisions"} or None,
        "retention_refusals": refusals,
        "warnings": list((preflight or {}).get("warnings") or []),
        "copy_window": (preflight or {}).get("copy_window"),
    }


def _vault_copy(entry: Mapping[str, Any] | None) -> str | None:
    if not entry:
        return None
    name = entry.get("snapshot_id") or entry.get("db_snapshot_identifier")
    return f"{entry.get('account_id')}/{entry.get('region')}/{name}" if name else None


def describe_refusal(refusal: Mapping[str, Any]) -> str:
    """``us-west-2/snap-1 (InvalidSnapshot.InUse: The snapshot ... is in use by ami-...)``."""
    where = f"{refusal.get('region', '?')}/{refusal.get('copy', '?')}"
    reason = str(refusal.get("code", "")) + (
        f": {refusal['message']}" if refusal.get("message") else ""
    )
    return f"{where} ({reason})"


def copy_durations(verifications: Sequence[Verification]) -> dict[str, Any] | None:
    """How long tonight's DR copies took: from each copy's start as AWS reports it
    (``dr_created_at``) to its verification (``checked_at``), as count / min / median / max
    seconds. Copies without both times are counted under ``unknown``; ``None`` if there are no
    copies at all."""
    seconds: list[float] = []
    unknown = 0
    for v in verifications:
        started = _parse(v.recovery_point.dr_created_at)
        checked = _parse(v.checked_at)
        if started is None or checked is None or checked < started:
            unknown += 1
        else:
            seconds.append((checked - started).total_seconds())
    if not seconds and not unknown:
        return None
    summary: dict[str, Any] = {"count": len(seconds), "unknown": unknown}
    if seconds:
        summary.update(
            min=round(min(seconds), 1),
            median=round(statistics.median(seconds), 1),
            max=round(max(seconds), 1),
        )
    return summary


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def render_copy_durations(durations: Mapping[str, Any] | None) -> str | None:
    """``DR copy time (start -> verified): min 3.1 s, median 4.0 s, max 5.2 s over 3 copies``."""
    if not durations:
        return None
    if not durations.get("count"):
        return f"DR copy time: unknown for {durations.get('unknown', 0)} copies"
    text = (
        f"DR copy time (start -> verified): min {_span(durations['min'])}, "
        f"median {_span(durations['median'])}, max {_span(durations['max'])} "
        f"over {durations['count']} copies"
    )
    if durations.get("unknown"):
        text += f" ({durations['unknown']} without an AWS start time)"
    return text


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def render_nightly_text(report: Mapping[str, Any]) -> str:
    """The report as plain text for logs, terminals and e-mail."""
    outcome = "SUCCEEDED" if report["succeeded"] else "FAILED"
    lines = [
        f"SecureDR nightly backup - plan {report['plan']} - {outcome}",
        f"Run {report['run_id']}, {report['duration_seconds']:.1f} s "
        f"({report['started_at']} -> {report['finished_at']})",
        "",
        f"Protected resources: {len(report['recovery_points'])}, "
        f"verified in the DR Region: {report['verified']}",
    ]
    durations = render_copy_durations(report.get("dr_copy_seconds"))
    if durations:
        lines.append(durations)
    rows = [("KIND", "SOURCE", "DR COPY", "DR KEY", "VERIFIED")]
    for p in report["recovery_points"]:
        source = p["source"] + ("" if p["source_encrypted"] else " (unencrypted at source)")
        rows.append(
            (p["kind"], source, p["dr_copy"], p["dr_key"] or "-", "yes" if p["verified"] else "NO")
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines += [
        "  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in rows
    ]
    for p in report["recovery_points"]:
        for problem in p["problems"]:
            lines.append(f"  ! {p['source']}: {problem}")
    if report.get("vault"):
        in_vault = sum(1 for p in report["recovery_points"] if p.get("in_vault"))
        lines.append("")
        lines.append(
            f"Vault {report['vault'].get('account_id')}: {in_vault} of "
            f"{report['verified']} verified DR copies verified and locked in the vault"
        )
        lines += [f"  ! NOT PROTECTED IN THE VAULT {n}" for n in report.get("not_in_vault") or []]
    not_protected = report.get("not_protected") or []
    if not_protected:
        lines.append("")
        lines.append(f"NOT PROTECTED tonight: {len(not_protected)}")
        lines += [f"  ! {n['kind']} {n['source']}: {n['reason']}" for n in not_protected]
    file_sets = report.get("file_sets") or []
    if file_sets:
        lines.append("")
        lines.append(f"File sets: {len(file_sets)}")
        rows = [("NAME", "SOURCE", "FILES", "BYTES", "STORED")]
        for s in file_sets:
            rows.append(
                (
                    s["name"],
                    s["source"],
                    str(s["file_count"]),
                    str(s["total_size"]),
                    "yes" if s["succeeded"] else "NO",
                )
            )
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
        lines += [
            "  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows
        ]
        for s in file_sets:
            lines.extend(f"  ! {s['name']}: {p}" for p in s["problems"])
    retained = report.get("retained_copies")
    if retained:
        failed_retained = report.get("failed_retained_copies") or []
        lines.append("")
        lines.append(
            f"Retained DR copies re-verified: {retained['checked']} from "
            f"{retained['manifests']} signed manifests, {len(failed_retained)} failed"
        )
        lines += [f"  ! {f}" for f in failed_retained]
    lines.append("")
    lines.append("Incidents: " + ("none" if not report["incidents"] else ""))
    lines += [f"  - {i}" for i in report["incidents"]]
    retention = report.get("retention")
    if retention:
        mode = " (dry run: nothing deleted)" if retention.get("dry_run") else ""
        deleted = (
            retention.get("would_delete") if retention.get("dry_run") else retention.get("deleted")
        )
        lines.append(
            f"Retention{mode}: {len(deleted or [])} to delete, {retention.get('kept', 0)} kept "
            f"of {retention.get('considered', 0)} SecureDR snapshots"
        )
    for refusal in report.get("retention_refusals") or []:
        lines.append(f"  ! retention could not delete {describe_refusal(refusal)}")
    manifest = report.get("manifest")
    if manifest:
        lines.append(f"Manifest: {manifest['url']} (signed by {manifest['key_id']})")
        if manifest.get("vault_url"):
            lines.append(f"Manifest in the vault: {manifest['vault_url']} (COMPLIANCE)")
    window = report.get("copy_window")
    if window:
        verdict = {True: "fits", False: "DOES NOT FIT", None: "unknown"}[window.get("fits")]
        lines.append(f"Copy window vs RPO: {verdict} - {window.get('message')}")
    warnings = [w for w in report.get("warnings") or [] if not window or w != window["message"]]
    if warnings:
        lines.append("Warnings:")
        lines += [f"  - {w}" for w in warnings]
    if report["failed_tasks"]:
        lines.append(f"Failed steps: {', '.join(report['failed_tasks'])}")
    return "\n".join(lines)
