"""Tests for securedr.core.report: the nightly record and its text rendering."""

from __future__ import annotations

import json
from typing import Any

import pytest

from securedr.core.model import Kind, RecoveryPoint, Verification
from securedr.core.report import nightly_report, render_nightly_text

PLAN = "demo-estate"
RUN = "scheduled__2025-03-01T02:00:00+00:00"
DR_KEY = "arn:aws:kms:us-west-2:123456789012:key/11111111-2222-3333-4444-555555555555"
MANIFEST = {
    "url": "s3://securedr-evidence-demo/securedr/manifests/demo-estate/20250301T020007Z-ab.json",
    "key_id": "ed25519:0123456789abcdef",
    "sha256": "f" * 64,
}


def verification(
    kind: Kind,
    region: str,
    source: str,
    *,
    passed: bool = True,
    encrypted: bool = True,
    problems: list[str] | None = None,
    incidents: list[str] | None = None,
    dr_key: str | None = DR_KEY,
) -> Verification:
    rp = RecoveryPoint(
        kind=kind,
        source_id=source,
        source_region=region,
        snapshot_id=f"src-{source}",
        size_gib=8,
        source_encrypted=encrypted,
        run_id=RUN,
        dr_region="us-west-2",
        dr_snapshot_id=f"dr-{source}",
        dr_kms_key_arn=dr_key,
    )
    return Verification(
        point=rp.to_dict(),
        passed=passed,
        problems=problems or ([] if passed else ["the copy is NOT encrypted"]),
        incidents=incidents or [],
    )


GOOD = [
    verification("ebs", "us-east-1", "vol-0aaa"),
    verification("rds", "eu-west-1", "orders-db"),
]


def report(verifications: list[Verification] = GOOD, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "plan": PLAN,
        "run_id": RUN,
        "started_at": "2025-03-01T02:00:00+00:00",
        "finished_at": "2025-03-01T02:31:00+00:00",
        "duration_seconds": 1860.04,
        "verifications": verifications,
        "manifest": MANIFEST,
        "retention": None,
    }
    args.update(kw)
    return nightly_report(**args)


# --------------------------------------------------------------------------- record


def test_all_good_run_succeeded() -> None:
    r = report()
    assert r["succeeded"] is True
    assert r["report"] == "securedr-nightly-backup"
    assert r["plan"] == PLAN
    assert r["run_id"] == RUN
    assert r["verified"] == 2
    assert r["failed_verification"] == []
    assert r["failed_tasks"] == []
    assert r["incidents"] == []
    assert r["duration_seconds"] == 1860.0
    assert r["manifest"] == MANIFEST


def test_a_failed_verification_fails_the_run() -> None:
    bad = verification("ebs", "us-east-1", "vol-0bad", passed=False)
    r = report([*GOOD, bad])
    assert r["succeeded"] is False
    assert r["verified"] == 2
    assert r["failed_verification"] == ["us-east-1/vol-0bad -> us-west-2/dr-vol-0bad"]


def test_a_failed_task_fails_the_run() -> None:
    r = report(failed_tasks=["enforce_retention"])
    assert r["succeeded"] is False
    assert r["failed_tasks"] == ["enforce_retention"]
    assert r["verified"] == 2


def test_no_recovery_points_and_no_failures_succeeded() -> None:
    r = report([], manifest=None)
    assert r["succeeded"] is True
    assert r["recovery_points"] == []
    assert r["manifest"] is None


def test_points_describe_each_copy() -> None:
    r = report()
    assert r["recovery_points"][0] == {
        "kind": "ebs",
        "source": "us-east-1/vol-0aaa",
        "source_snapshot": "src-vol-0aaa",
        "source_encrypted": True,
        "dr_copy": "us-west-2/dr-vol-0aaa",
        "dr_key": DR_KEY,
        "size_gib": 8,
        "verified": True,
        "problems": [],
        "incidents": [],
    }
    assert r["recovery_points"][1]["source"] == "eu-west-1/orders-db"


def test_incidents_are_collected_from_every_point() -> None:
    vs = [
        verification("ebs", "us-east-1", "vol-1", incidents=["shared publicly; unshared"]),
        verification("ebs", "us-east-1", "vol-2"),
        verification("rds", "us-east-1", "db-1", incidents=["a", "b"]),
    ]
    assert report(vs)["incidents"] == ["shared publicly; unshared", "a", "b"]


def test_retention_decisions_are_left_out() -> None:
    retention = {"deleted": ["snap-1"], "kept": 3, "considered": 4, "decisions": [{"x": 1}]}
    r = report(retention=retention)
    assert r["retention"] == {"deleted": ["snap-1"], "kept": 3, "considered": 4}
    assert report(retention={"decisions": []})["retention"] is None
    assert report(retention=None)["retention"] is None


def test_report_is_plain_json() -> None:
    r = report(retention={"deleted": [], "kept": 1, "considered": 1})
    assert json.loads(json.dumps(r)) == r


# --------------------------------------------------------------------------- text


def test_text_of_a_good_run() -> None:
    text = render_nightly_text(report())
    lines = text.splitlines()
    assert lines[0] == f"SecureDR nightly backup - plan {PLAN} - SUCCEEDED"
    assert RUN in lines[1]
    assert "1860.0 s" in lines[1]
    assert "Protected resources: 2, verified in the DR Region: 2" in text
    assert "us-east-1/vol-0aaa" in text
    assert "eu-west-1/orders-db" in text
    assert "us-west-2/dr-orders-db" in text
    assert "unencrypted at source" not in text
    assert "Incidents: none" in text
    assert f"Manifest: {MANIFEST['url']} (signed by {MANIFEST['key_id']})" in text
    assert "Failed steps" not in text
    assert "Retention" not in text


def test_text_table_rows() -> None:
    lines = render_nightly_text(report()).splitlines()
    header = next(line for line in lines if "KIND" in line)
    assert header.split() == ["KIND", "SOURCE", "DR", "COPY", "DR", "KEY", "VERIFIED"]
    row = next(line for line in lines if "vol-0aaa" in line)
    assert row.split() == ["ebs", "us-east-1/vol-0aaa", "us-west-2/dr-vol-0aaa", DR_KEY, "yes"]
    # Columns line up: every row starts its SOURCE column where the header does.
    assert row.index("us-east-1/vol-0aaa") == header.index("SOURCE")


def test_text_marks_unencrypted_sources() -> None:
    vs = [*GOOD, verification("ebs", "us-east-1", "vol-plain", encrypted=False)]
    text = render_nightly_text(report(vs))
    assert "us-east-1/vol-plain (unencrypted at source)" in text
    assert text.count("unencrypted at source") == 1


def test_text_of_a_failed_run() -> None:
    bad = verification(
        "rds", "us-east-1", "db-bad", passed=False, problems=["state is 'creating'"], dr_key=None
    )
    text = render_nightly_text(report([*GOOD, bad], failed_tasks=["verify_copies"]))
    lines = text.splitlines()
    assert lines[0].endswith(" - FAILED")
    row = next(line for line in lines if "db-bad" in line and "!" not in line)
    assert row.split()[-2:] == ["-", "NO"]  # no DR key, not verified
    assert "  ! us-east-1/db-bad: state is 'creating'" in lines
    assert "Failed steps: verify_copies" in lines
    assert "Protected resources: 3, verified in the DR Region: 2" in text


def test_text_lists_incidents() -> None:
    vs = [
        verification("ebs", "us-east-1", "vol-1", incidents=["vol-1 copy was public; unshared"]),
        verification("ebs", "eu-west-1", "vol-2", incidents=["vol-2 key was AWS-managed"]),
    ]
    lines = render_nightly_text(report(vs)).splitlines()
    i = lines.index("Incidents: ")
    assert lines[i + 1 : i + 3] == [
        "  - vol-1 copy was public; unshared",
        "  - vol-2 key was AWS-managed",
    ]
    assert "Incidents: none" not in lines


def test_text_without_manifest() -> None:
    text = render_nightly_text(report(manifest=None))
    assert "Manifest:" not in text


@pytest.mark.parametrize(
    ("retention", "expected"),
    [
        (
            {"dry_run": False, "deleted": ["a", "b"], "kept": 5, "considered": 7},
            "Retention: 2 to delete, 5 kept of 7 SecureDR snapshots",
        ),
        (
            {"dry_run": True, "would_delete": ["a"], "deleted": [], "kept": 6, "considered": 7},
            "Retention (dry run: nothing deleted): 1 to delete, 6 kept of 7 SecureDR snapshots",
        ),
    ],
)
def test_text_retention_line(retention: dict[str, Any], expected: str) -> None:
    assert expected in render_nightly_text(report(retention=retention)).splitlines()


# --------------------------------------------------------------------------- retention refusals

REFUSAL = {
    "copy": "snap-0inuse",
    "kind": "ebs",
    "region": "us-west-2",
    "source": "us-east-1/vol-0aaa",
    "code": "InvalidSnapshot.InUse",
    "message": "The snapshot snap-0inuse is currently in use by ami-0abc",
}


def test_a_retention_refusal_is_reported_and_fails_the_run() -> None:
    r = report(retention={"dry_run": False, "deleted": [], "retention_refusals": [REFUSAL]})
    assert r["succeeded"] is False
    assert r["retention_refusals"] == [REFUSAL]
    text = render_nightly_text(r)
    assert "retention could not delete us-west-2/snap-0inuse (InvalidSnapshot.InUse:" in text


def test_no_refusals_no_failure() -> None:
    r = report(retention={"dry_run": False, "deleted": ["us-west-2/snap-1"]})
    assert r["succeeded"] is True and r["retention_refusals"] == []


# --------------------------------------------------------------------------- copy durations


def timed(source: str, started: str | None, checked: str | None) -> Verification:
    base = verification("ebs", "us-east-1", source)
    point = {**base.point, "dr_created_at": started}
    return Verification(point=point, passed=True, problems=[], checked_at=checked)


def test_the_report_says_how_long_the_dr_copies_took() -> None:
    verifications = [
        timed("vol-a", "2025-03-01T02:00:00+00:00", "2025-03-01T02:00:04+00:00"),
        timed("vol-b", "2025-03-01T02:00:00+00:00", "2025-03-01T02:00:10+00:00"),
        timed("vol-c", "2025-03-01T02:00:00+00:00", "2025-03-01T05:00:00+00:00"),
        timed("vol-d", None, "2025-03-01T02:00:10+00:00"),  # no AWS start time recorded
    ]
    record = report(verifications)
    assert record["dr_copy_seconds"] == {
        "count": 3,
        "unknown": 1,
        "min": 4.0,
        "median": 10.0,
        "max": 10800.0,
    }
    assert (
        "DR copy time (start -> verified): min 4.0 s, median 10.0 s, max 3.0 h over 3 copies "
        "(1 without an AWS start time)"
    ) in render_nightly_text(record)


def test_without_copies_there_is_no_copy_time() -> None:
    record = report([])
    assert record["dr_copy_seconds"] is None
    assert "DR copy time" not in render_nightly_text(record)


def test_preflight_warnings_and_the_copy_window_are_shown_without_failing_the_run() -> None:
    window = {"fits": False, "message": "the nightly copy window does NOT fit the RPO: ..."}
    quota = "retention keeps 14 nightly snapshot(s) of each of 9 protected database(s) ..."
    r = report(preflight={"warnings": [quota, window["message"]], "copy_window": window})
    assert r["succeeded"] is True
    assert r["copy_window"] == window and r["warnings"] == [quota, window["message"]]
    text = render_nightly_text(r)
    assert "Copy window vs RPO: DOES NOT FIT - the nightly copy window does NOT fit" in text
    assert f"  - {quota}" in text
    assert text.count("does NOT fit the RPO") == 1  # not repeated among the warnings


def test_a_copy_window_without_history_is_shown_as_unknown() -> None:
    window = {"fits": None, "message": "copy window not estimated: no signed manifest ..."}
    text = render_nightly_text(report(preflight={"warnings": [], "copy_window": window}))
    assert "Copy window vs RPO: unknown - copy window not estimated" in text
    assert "Warnings:" not in text
    assert report()["copy_window"] is None  # pre-flight did not run (or failed)
