"""Tests for securedr.core.drill: measurement, NIST evidence, the record and its reports."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securedr.core.drill import (
    CONTROLS,
    DRILL_RECORD_KIND,
    Check,
    DrillMeasurement,
    ResourceResult,
    drill_record,
    evidence,
    format_duration,
    measure,
    parse_history,
    render_text,
    standard_checks,
    trend_key,
)
from securedr.rendering import render_drill_html as render_html

START = datetime(2025, 6, 3, 9, 0, tzinfo=UTC)
RTO_MIN = 60.0
RPO_H = 24.0


def iso(moment: datetime) -> str:
    return moment.isoformat()


def result(
    source_id: str = "vol-0aaa",
    *,
    kind: str = "ebs",
    region: str = "us-east-1",
    rto_minutes: float | None = 30,
    rpo_hours: float = 6,
    verified: bool = True,
    problems: list[str] | None = None,
    **overrides: Any,
) -> ResourceResult:
    """A result whose RTO/RPO are exactly ``rto_minutes``/``rpo_hours`` when drilled at START."""
    fields: dict[str, Any] = {
        "kind": kind,
        "source_id": source_id,
        "source_region": region,
        "recovery_point_id": f"snap-{source_id}",
        "point_created_at": iso(START - timedelta(hours=rpo_hours)),
        "restored_id": f"restored-{source_id}" if verified else None,
        "verified": verified,
        "problems": problems if problems is not None else ([] if verified else ["not encrypted"]),
        "restore_started_at": iso(START + timedelta(minutes=1)),
        "verified_at": (
            iso(START + timedelta(minutes=rto_minutes))
            if verified and rto_minutes is not None
            else None
        ),
    }
    fields.update(overrides)
    return ResourceResult(**fields)


def run(results: list[ResourceResult]) -> DrillMeasurement:
    return measure(
        results, drill_started_at=START, rpo_target_hours=RPO_H, rto_target_minutes=RTO_MIN
    )


def record(
    results: list[ResourceResult],
    *,
    leftovers: list[str] | None = None,
    run_id: str = "manual__2025-06-03T09:00:00+00:00",
    started: datetime = START,
    **flags: bool,
) -> dict[str, Any]:
    m = measure(
        results, drill_started_at=started, rpo_target_hours=RPO_H, rto_target_minutes=RTO_MIN
    )
    opts = {
        "manifest_verified": True,
        "all_encrypted_under_dr_key": True,
        "audit_chain_ok": True,
        "teardown_clean": True,
    } | flags
    checks = standard_checks(m, leftovers=leftovers or [], **opts)
    return drill_record(
        plan="demo-estate",
        run_id=run_id,
        sandbox_id="drill-7f3a",
        finished_at=started + timedelta(hours=2),
        measurement=m,
        checks=checks,
        leftovers=leftovers or [],
        dr_region="us-west-2",
    )


GOOD = [
    result("vol-0aaa", rto_minutes=20, rpo_hours=3),
    result("orders-db", kind="rds", region="eu-west-1", rto_minutes=45, rpo_hours=8),
    result("home-share", kind="fileset", rto_minutes=12, rpo_hours=20),
]


# --------------------------------------------------------------------------- measurement


def test_a_drill_within_both_targets_passes() -> None:
    m = run(GOOD)
    assert m.passed and not m.failures
    assert m.rto_seconds == 45 * 60  # the slowest resource
    assert m.rpo_seconds == 20 * 3600  # the oldest recovery point
    assert m.rto_met and m.rpo_met
    assert all(r.passed and r.verified for r in m.resources)
    assert "within the 1h 00m target (15m 00s to spare)" in m.resources[1].rto_reason

    rec = record(GOOD)
    assert rec["passed"] and rec["failures"] == []
    assert rec["kind"] == DRILL_RECORD_KIND
    assert rec["overall"]["verified"] == 3
    assert all(c["status"] == "PASS" for c in rec["controls"])
    json.dumps(rec)  # stored as JSON evidence
    text = render_text(rec)
    assert "PASSED" in text and "FAIL" not in text


def test_meeting_a_target_exactly_passes() -> None:
    m = run([result(rto_minutes=RTO_MIN, rpo_hours=RPO_H)])
    assert m.passed


def test_a_missed_rto_names_the_resource_and_the_excess() -> None:
    slow = result("orders-db", kind="rds", region="eu-west-1", rto_minutes=75)
    m = run([GOOD[0], slow])
    assert not m.passed and not m.rto_met and m.rpo_met
    assert m.rto_seconds == 75 * 60
    (failure,) = m.failures
    assert failure.startswith("rds:eu-west-1/orders-db: RTO 1h 15m")
    assert "exceeds the 1h 00m target by 15m 00s" in failure
    assert m.resources[0].passed and not m.resources[1].passed

    rec = record([GOOD[0], slow])
    assert not rec["passed"]
    assert any("orders-db" in f and "by 15m 00s" in f for f in rec["failures"])
    rto_check = next(c for c in rec["checks"] if c["name"] == "rto-within-target")
    assert not rto_check["passed"] and "orders-db" in rto_check["detail"]
    text = render_text(rec)
    assert "FAILED" in text and "by 15m 00s" in text and "MISSED" in text


def test_a_missed_rpo_names_the_resource_and_the_excess() -> None:
    stale = result("vol-0old", rpo_hours=30)
    m = run([stale])
    assert not m.passed and m.rto_met and not m.rpo_met
    assert m.failures == (
        "ebs:us-east-1/vol-0old: RPO 30h 00m (recovery point age at drill start) exceeds the "
        "24h 00m target by 6h 00m",
    )
    rec = record([stale])
    assert {c["name"]: c["passed"] for c in rec["checks"]}["recovery-points-within-rpo"] is False
    assert next(c for c in rec["controls"] if c["control"] == "CP-9")["status"] == "FAIL"


def test_an_unverified_resource_fails_with_no_rto() -> None:
    broken = result("vol-0bad", verified=False, problems=["restored volume is NOT encrypted"])
    m = run([GOOD[0], broken])
    assert not m.passed
    bad = m.resources[1]
    assert bad.rto_seconds is None and not bad.rto_met and not bad.verified
    assert bad.rpo_met  # the point's age is still measured and reported
    assert m.rto_seconds is None  # the estate was not recovered
    assert any("vol-0bad" in f and "NOT encrypted" in f for f in m.failures)
    assert m.verified_count == 1


def test_no_resources_fails() -> None:
    m = run([])
    assert not m.passed
    assert m.rto_seconds is None and m.rpo_seconds is None
    assert "no resources were restored" in m.failures[0]
    rec = record([])
    assert not rec["passed"]
    checks = {c["name"]: c["passed"] for c in rec["checks"]}
    assert not checks["restores-verified"] and not checks["recovery-points-within-rpo"]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"point_created_at": None}, "point_created_at is missing"),
        ({"point_created_at": ""}, "point_created_at is missing"),
        ({"point_created_at": "yesterday"}, "is not an ISO-8601 time"),
        ({"point_created_at": "2025-06-03T01:00:00"}, "has no time zone"),
        ({"point_created_at": iso(START + timedelta(minutes=5))}, "after the drill started"),
        ({"verified_at": None}, "verified_at is missing"),
        ({"verified_at": "2025-06-03T09:30:00"}, "has no time zone"),
        ({"verified_at": iso(START - timedelta(minutes=1))}, "before the drill started"),
        ({"restore_started_at": None}, "restore_started_at is missing"),
        ({"restore_started_at": iso(START - timedelta(days=1))}, "before the drill started"),
        ({"restore_started_at": iso(START + timedelta(hours=1))}, "after verified_at"),
        ({"restored_id": None}, "no restored resource id"),
        ({"problems": ["tag missing"]}, "marked verified but reports problems"),
    ],
)
def test_missing_or_contradictory_evidence_fails_with_a_reason(
    override: dict[str, Any], expected: str
) -> None:
    m = run([result("vol-0x", rto_minutes=30, **override)])
    assert not m.passed
    assert any(expected in f and "vol-0x" in f for f in m.failures), m.failures


def test_times_in_other_zones_are_compared_as_instants() -> None:
    plus2 = timezone(timedelta(hours=2))
    r = result(
        point_created_at=(START - timedelta(hours=5)).astimezone(plus2).isoformat(),
        verified_at="2025-06-03T09:40:00Z",
    )
    m = run([r])
    assert m.passed and m.rpo_seconds == 5 * 3600 and m.rto_seconds == 40 * 60


def test_measure_rejects_programming_errors() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        measure(
            GOOD, drill_started_at=datetime(2025, 1, 1), rpo_target_hours=1, rto_target_minutes=1
        )
    with pytest.raises(ValueError, match="rto_target_minutes"):
        measure(GOOD, drill_started_at=START, rpo_target_hours=1, rto_target_minutes=0)


@settings(max_examples=200, deadline=None)
@given(
    resources=st.lists(
        st.tuples(
            st.booleans(),
            st.integers(min_value=0, max_value=6 * 3600),
            st.integers(min_value=0, max_value=4 * 86400),
        ),
        max_size=6,
    ),
    rto_target=st.floats(min_value=1, max_value=300),
    rpo_target=st.floats(min_value=0.5, max_value=72),
)
def test_passed_iff_every_resource_verified_and_within_both_targets(
    resources: list[tuple[bool, int, int]], rto_target: float, rpo_target: float
) -> None:
    results = [
        ResourceResult(
            kind="ebs",
            source_id=f"vol-{i}",
            source_region="us-east-1",
            recovery_point_id=f"snap-{i}",
            point_created_at=iso(START - timedelta(seconds=rpo)),
            restored_id=f"r-{i}" if verified else None,
            verified=verified,
            problems=[] if verified else ["verification failed"],
            restore_started_at=iso(START),
            verified_at=iso(START + timedelta(seconds=rto)) if verified else None,
        )
        for i, (verified, rto, rpo) in enumerate(resources)
    ]
    m = measure(
        results, drill_started_at=START, rpo_target_hours=rpo_target, rto_target_minutes=rto_target
    )
    expected = bool(resources) and all(
        verified and rto <= rto_target * 60 and rpo <= rpo_target * 3600
        for verified, rto, rpo in resources
    )
    assert m.passed is expected
    assert m.passed == (not m.failures and bool(results))
    assert m.rto_met is (
        bool(resources) and all(v and t <= rto_target * 60 for v, t, _ in resources)
    )


# --------------------------------------------------------------------------- results


def test_resource_result_round_trips_and_rejects_bad_shapes() -> None:
    r = GOOD[1]
    assert ResourceResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert r.label == "rds:eu-west-1/orders-db"
    with pytest.raises(ValueError, match="unknown field"):
        ResourceResult.from_dict({**r.to_dict(), "extra": 1})
    data = r.to_dict()
    del data["point_created_at"]
    with pytest.raises(ValueError, match="missing field"):
        ResourceResult.from_dict(data)
    with pytest.raises(ValueError, match="kind"):
        ResourceResult.from_dict({**r.to_dict(), "kind": "s3"})
    with pytest.raises(ValueError, match="bool"):
        ResourceResult.from_dict({**r.to_dict(), "verified": "false"})


# --------------------------------------------------------------------------- NIST evidence


def test_every_control_is_evidenced_by_a_standard_check() -> None:
    checks = standard_checks(
        run(GOOD),
        manifest_verified=True,
        all_encrypted_under_dr_key=True,
        audit_chain_ok=True,
        teardown_clean=True,
        leftovers=[],
    )
    assert all(c.passed for c in checks)
    controls = evidence(checks)
    assert [c.control for c in controls] == list(CONTROLS)
    assert all(c.evidenced and c.passed and c.status == "PASS" for c in controls)
    assert set(CONTROLS) == {"CP-4", "CP-9", "CP-9(8)", "CP-10", "AU-9", "SC-12", "SC-28"}


@pytest.mark.parametrize(
    ("flag", "check", "controls"),
    [
        ("manifest_verified", "signed-manifest", {"CP-9(8)", "SC-12"}),
        ("all_encrypted_under_dr_key", "encrypted-under-dr-key", {"CP-9(8)", "SC-12", "SC-28"}),
        ("audit_chain_ok", "audit-chain-intact", {"AU-9"}),
        ("teardown_clean", "sandbox-torn-down", {"CP-4"}),
    ],
)
def test_a_failed_check_fails_the_controls_it_evidences(
    flag: str, check: str, controls: set[str]
) -> None:
    rec = record(GOOD, **{flag: False})
    assert not rec["passed"]
    assert any(check in f for f in rec["failures"])
    failed = {c["control"] for c in rec["controls"] if c["status"] == "FAIL"}
    assert failed == controls
    for c in rec["controls"]:
        if c["control"] in controls:
            assert check in c["failed_checks"]


def test_leftovers_fail_teardown_even_if_reported_clean() -> None:
    rec = record(GOOD, leftovers=["vpc-0abc"], teardown_clean=True)
    assert not rec["passed"]
    teardown = next(c for c in rec["checks"] if c["name"] == "sandbox-torn-down")
    assert not teardown["passed"] and "vpc-0abc" in teardown["detail"]
    assert "vpc-0abc" in render_text(rec)


def test_a_record_without_the_teardown_check_still_fails_on_leftovers() -> None:
    m = run(GOOD)
    checks = [
        c
        for c in standard_checks(
            m,
            manifest_verified=True,
            all_encrypted_under_dr_key=True,
            audit_chain_ok=True,
            teardown_clean=True,
            leftovers=[],
        )
        if c.name != "sandbox-torn-down"
    ]
    rec = drill_record(
        plan="p",
        run_id="r",
        sandbox_id=None,
        finished_at=START,
        measurement=m,
        checks=checks,
        leftovers=["subnet-1"],
        failed_tasks=["teardown"],
    )
    assert not rec["passed"]
    assert any("subnet-1" in f for f in rec["failures"])
    assert "step teardown failed" in rec["failures"]


def test_unevidenced_controls_are_not_satisfied() -> None:
    controls = evidence([Check("audit", True, "ok", ("AU-9",))])
    by_id = {c.control: c for c in controls}
    assert by_id["AU-9"].passed
    assert by_id["CP-4"].status == "NO EVIDENCE" and not by_id["CP-4"].passed
    rec = drill_record(
        plan="p",
        run_id="r",
        sandbox_id=None,
        finished_at=START,
        measurement=run(GOOD),
        checks=[Check("audit", True, "ok", ("AU-9",))],
        leftovers=[],
    )
    assert not rec["passed"] and "control CP-4 has no evidence" in rec["failures"]
    with pytest.raises(ValueError, match="unknown control"):
        Check("x", True, "", ("CP-99",))


# --------------------------------------------------------------------------- keys and history


def test_trend_keys_sort_in_time_order() -> None:
    moments = [
        datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(
            2025, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=2))
        ),  # 23:30 UTC the day before
        datetime(2025, 3, 1, 9, 0, tzinfo=UTC),
        datetime(2025, 10, 1, 9, 0, tzinfo=UTC),
    ]
    keys = [trend_key("demo-estate", t, run_id=f"run-{i}") for i, t in enumerate(moments)]
    assert sorted(keys) == [keys[1], keys[0], keys[2], keys[3]]
    assert re.fullmatch(r"drills/demo-estate/20250301T090000Z-[0-9a-f]{16}\.json", keys[2])
    assert trend_key("demo-estate", "2025-03-01T09:00:00+00:00", run_id="run-2") == keys[2]
    assert trend_key("p", START) == trend_key("p", START)  # a retry writes the same key
    with pytest.raises(ValueError):
        trend_key("../etc", START)
    with pytest.raises(ValueError):
        trend_key("p", datetime(2025, 1, 1))


def test_parse_history_sorts_and_drops_malformed_records() -> None:
    first = record(GOOD, run_id="q1", started=START - timedelta(days=182))
    second = record(GOOD, run_id="q2", started=START - timedelta(days=91))
    retried = record(GOOD, run_id="q2", started=START - timedelta(days=91))
    retried["sandbox_id"] = "retried"
    bad_bool = record(GOOD, run_id="b1")
    bad_bool["overall"]["rto_seconds"] = True
    naive = record(GOOD, run_id="b2")
    naive["started_at"] = "2025-01-01T00:00:00"
    negative = record(GOOD, run_id="b3")
    negative["overall"]["rpo_seconds"] = -1
    no_targets = {k: v for k, v in record(GOOD, run_id="b4").items() if k != "targets"}
    history = parse_history(
        [
            second,
            "junk",
            None,
            {"kind": "other"},
            first,
            bad_bool,
            naive,
            negative,
            no_targets,
            retried,
        ]
    )
    assert [h["run_id"] for h in history] == ["q1", "q2"]
    assert history[1]["sandbox_id"] == "retried"


# --------------------------------------------------------------------------- reports

_VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


class _Balance(HTMLParser):
    """Checks every non-void element is closed in order and counts the main ones."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.counts: dict[str, int] = {}
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> _Balance:
    p = _Balance()
    p.feed(page)
    p.close()
    assert not p.errors, p.errors[:5]
    assert not p.stack, p.stack
    for tag in ("html", "head", "body", "main", "header", "footer"):
        assert p.counts.get(tag) == 1, tag
    return p


def history_of(n: int) -> list[dict[str, Any]]:
    return [
        record(
            [result(rto_minutes=20 + 10 * i, rpo_hours=4 + i)],
            run_id=f"q{i}",
            started=START - timedelta(days=91 * (n - i)),
        )
        for i in range(n)
    ]


def test_html_report_is_balanced_self_contained_and_shows_targets() -> None:
    hostile = result("share-<script>alert(1)</script>", kind="fileset", rto_minutes=75)
    rec = record([GOOD[0], hostile, result("vol-0bad", verified=False)], leftovers=["vpc-0abc"])
    page = render_html(rec, history_of(3))
    p = parse(page)
    assert p.counts["svg"] == 4  # RTO, RPO, RTO trend, RPO trend
    assert p.counts["section"] >= 6 and p.counts["table"] == 4
    assert "<script" not in page.lower()  # escaped, and the page needs no JavaScript
    assert "share-&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "target 1h 00m" in page and "target 24h 00m" in page
    assert 'stroke-dasharray="6 4"' in page  # the target lines
    assert "\u25b2 OVER 1h 15m" in page  # over-target bars are marked in text, not only colour
    assert "not verified \u2014 no RTO" in page  # the None RTO is shown, not drawn as zero
    assert "FAIL" in page and "vpc-0abc" in page
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<link|<img|<iframe|src=|href=|url\(|@import", page, re.I)
    text = "".join(p.text)
    for control in CONTROLS:
        assert control in text


@pytest.mark.parametrize("earlier", [0, 1, 12])
def test_html_renders_with_any_amount_of_history(earlier: int) -> None:
    rec = record(GOOD)
    page = render_html(rec, history_of(earlier))
    p = parse(page)
    assert p.counts["svg"] == 4
    text = "".join(p.text)
    assert "PASS" in text and "this drill" in text
    assert ("No earlier drills" in text) is (earlier == 0)
    assert page.count("(this drill)") == 1


def test_html_ignores_malformed_history_and_the_current_drill() -> None:
    rec = record(GOOD)
    page = render_html(rec, [rec, {"kind": DRILL_RECORD_KIND}, "junk", *history_of(1)])  # type: ignore[list-item]
    parse(page)
    assert page.count("(this drill)") == 1
    assert "<td>2025-03-04T09:00:00Z</td>" in page  # the one valid earlier drill


@pytest.mark.parametrize("count", [1, 50])
def test_html_renders_one_or_many_resources(count: int) -> None:
    results = [
        result(f"vol-{i:04d}", rto_minutes=5 + i % 50, rpo_hours=1 + i % 20) for i in range(count)
    ]
    page = render_html(record(results), [])
    parse(page)
    assert all(f"vol-{i:04d}" in page for i in range(count))


def test_html_renders_an_empty_drill() -> None:
    page = render_html(record([]), [])
    p = parse(page)
    assert p.counts["svg"] == 2  # only the trend; nothing to chart per resource
    assert "No resources were restored" in page


def test_text_report_lists_failures() -> None:
    rec = record([result("vol-0bad", verified=False, problems=["snapshot not found"])])
    text = render_text(rec)
    assert text.splitlines()[0] == "SecureDR recovery drill - plan demo-estate - FAILED"
    assert "ebs:us-east-1/vol-0bad: not restored and verified (snapshot not found)" in text
    assert "RTO n/a" in text and "NO" in text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "n/a"),
        (0, "0s"),
        (59.4, "59s"),
        (430, "7m 10s"),
        (3600, "1h 00m"),
        (30 * 3600, "30h 00m"),
        (100 * 3600, "4d 04h"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text
