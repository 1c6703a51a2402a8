"""HTML reports from the Jinja2 templates in ``securedr/templates/`` (one place for markup).

Guarantees: autoescaping is on for every template, so any value taken from a record, a
manifest or AWS (resource names, tags, error messages) is HTML-escaped; only the templates'
own markup is emitted unescaped. The pages the evidence bucket stores (drill and nightly
reports) are self-contained: inline CSS and SVG, no scripts, fonts or fetched resources.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader

from securedr.core import charts
from securedr.core.drill import format_duration, parse_history, verified_summary, when
from securedr.core.posture import format_age

TEMPLATES = Path(__file__).resolve().parent / "templates"

#: A drill with many failing resources would push the charts off the first screen; everything
#: cut is repeated in the resource table and the checks.
MAX_FAILURES_SHOWN = 12


@cache
def environment() -> Environment:
    """The one Jinja2 environment every report uses (autoescape on, whatever the suffix)."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        duration=format_duration,
        age=format_age,
        when=when,
        date=lambda iso: str(iso)[:10],
        f1=lambda value: f"{value:.1f}",
    )
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def render_drill_html(record: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> str:
    """A self-contained HTML report of one drill, with the trend across earlier drills.

    ``history`` holds earlier drill records (any order; malformed ones and the current drill
    itself are ignored). Everything shown is derived from the record, so a stored record
    re-renders to the same page.
    """
    resources = list(record["resources"])
    targets = record["targets"]
    earlier = [
        h
        for h in parse_history(history)
        if not (h.get("run_id") == record["run_id"] and h.get("plan") == record["plan"])
    ]
    drills = [*earlier, record]
    rto_rows = [
        (
            r["label"],
            r["measurement"]["rto_seconds"],
            "not verified \u2014 no RTO"
            if not r["measurement"]["verified"]
            else "RTO not measurable",
        )
        for r in resources
    ]
    rpo_rows = [(r["label"], r["measurement"]["rpo_seconds"], "RPO unknown") for r in resources]

    def trend(key: str) -> list[tuple[str, float | None, float, bool]]:
        return [
            (
                str(d["started_at"])[:10],
                d["overall"][f"{key}_seconds"],
                d["targets"][f"{key}_seconds"],
                d is record,
            )
            for d in drills
        ]

    context: dict[str, Any] = {
        "record": record,
        "resources": resources,
        "leftovers": list(record["leftovers"]),
        "failures": list(record["failures"]),
        "max_failures": MAX_FAILURES_SHOWN,
        "verified_summary": verified_summary(record["overall"]),
        "earlier": earlier,
        "drills": drills,
        "rto_trend": charts.trend_chart(
            chart_id="rto-trend",
            title="Overall RTO per drill",
            axis_title="RTO",
            points=trend("rto"),
            fmt=format_duration,
        ),
        "rpo_trend": charts.trend_chart(
            chart_id="rpo-trend",
            title="Overall RPO per drill",
            axis_title="RPO",
            points=trend("rpo"),
            fmt=format_duration,
        ),
    }
    if resources:
        context["rto_chart"] = charts.bar_chart(
            chart_id="rto-chart",
            title="RTO: drill start \u2192 restore verified",
            axis_title="time to recover",
            rows=rto_rows,
            target=targets["rto_seconds"],
            fmt=format_duration,
        )
        context["rpo_chart"] = charts.bar_chart(
            chart_id="rpo-chart",
            title="RPO: age of the recovery point at drill start",
            axis_title="data at risk",
            rows=rpo_rows,
            target=targets["rpo_seconds"],
            fmt=format_duration,
        )
    return render("drill.html.j2", **context)


def render_nightly_html(report: Mapping[str, Any]) -> str:
    """The nightly run report (its JSON record) as a self-contained HTML page."""
    from securedr.core.report import describe_refusal, render_copy_durations

    return render(
        "nightly.html.j2",
        report=report,
        copy_durations=render_copy_durations(report.get("dr_copy_seconds")),
        refusals=[describe_refusal(r) for r in report.get("retention_refusals") or []],
    )


def render_posture_html(reading: Mapping[str, Any], *, links: Mapping[str, str]) -> str:
    """The DR posture page (see :mod:`securedr.posture_plugin`): ``reading`` is
    :meth:`securedr.aws.posture.PostureReading.to_dict`; ``links`` maps report names to URLs."""
    return render("posture.html.j2", p=reading, links=links)
