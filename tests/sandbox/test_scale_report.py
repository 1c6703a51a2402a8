"""make scale's parameters and rendering (the e2e run is tests/e2e/test_scale.py)."""

from __future__ import annotations

import re

from sandbox import scale, scale_report


def figures() -> dict:
    return {
        "parameters": {
            "copy_seconds": 20.0,
            "snapshot_seconds": 5.0,
            "throttle": False,
            "source_regions": ["eu-west-1", "us-east-1"],
        },
        "resources": {"total": 1100, "ebs": 1000, "rds": 100},
        "seed_seconds": 40.0,
        "run": {"state": "success", "verified": 1100, "not_protected": 0},
        "wall_seconds": 1500.4,
        "aws_pending_seconds": {"our_copies": 1200.0, "all_copies": 1200.0, "source_snapshots": 6},
        "overhead_seconds": 300.4,
        "scheduling_gap_seconds": 12.0,
        "phases": [
            {
                "task_id": "copy_to_dr_region",
                "start_offset_seconds": 30.0,
                "seconds": 1300.0,
                "try_number": 1,
                "state": "success",
            }
        ],
        "aws_calls": {
            "total": 4125,
            "per_resource": 3.75,
            "by_operation": {"ec2:CopySnapshot": {"calls": 1000, "per_resource": 0.909}},
            "errors": {},
            "standing_polls": {"sqs:ReceiveMessage": 490},
        },
        "copies_started": {"ebs": {"ours": 1000, "all": 1000}, "rds": {"ours": 100, "all": 100}},
        "max_copies_in_flight": {
            "us-west-2": {"ebs": {"ours": 20, "all": 20}, "rds": {"ours": 5, "all": 5}}
        },
        "max_our_copies_in_flight": 20,
        "task_instances": {"count": 12, "tries": 12},
        "largest_xcom": {"task_id": "verify_dr_copies", "key": "return_value", "bytes": 900000},
        "xcom_total_bytes": 3000000,
        "peak_rss": {
            "scheduler": {
                "process_peak_bytes": 2**28,
                "tree_peak_bytes": 2**30,
                "tree_processes_peak": 8,
            }
        },
    }


def test_summary_line_has_the_exact_format():
    assert scale_report.summary_line(figures()) == (
        "scale: 1100 resources; overhead 300 s; 3.75 calls per resource; 12 task instances; "
        "at most 20 copies in flight"
    )


def test_table_shows_every_figure():
    table = scale_report.render(figures())
    for expected in (
        r"Wall time\s+1,500.4 s",
        r"SecureDR overhead 300.4 s",
        r"copy_to_dr_region\s+30.0 s\s+1,300.0 s",
        r"ec2:CopySnapshot\s+1,000\s+0.909",
        r"not counted: sqs:ReceiveMessage 490 \(dr_incident_response's queue watcher",
        r"us-west-2\s+EBS 20 / 20\s+RDS 5 / 5",
        r"900,000 bytes \(verify_dr_copies return_value\)",
        r"scheduler\s+256 MiB\s+1,024 MiB \(8 processes\)",
    ):
        assert re.search(expected, table), expected


def test_the_incident_queue_watchers_polls_are_set_apart_from_the_runs_calls():
    served = {
        "ec2": {"CopySnapshot": 1000, "DescribeSnapshots": 239},
        "sqs": {"ReceiveMessage": 490},
        "rds": {"CopyDBSnapshot": 100},
    }
    run, standing = scale.split_standing_polls(served)
    assert run == {
        "ec2": {"CopySnapshot": 1000, "DescribeSnapshots": 239},
        "rds": {"CopyDBSnapshot": 100},
    }
    assert standing == {"sqs:ReceiveMessage": 490}


def test_realism_is_the_e2e_profile_with_the_runs_durations_quotas_and_meter():
    sections = scale.realism_sections(scale.ScaleParams(rds=300, copy_seconds=30))
    assert "throttle" not in sections  # fault injection would add its retries to the counts
    assert sections["timing"]["copy_seconds"] == 30
    assert sections["quotas"]["ebs_copies_per_region"] == 20
    assert sections["quotas"]["rds_copies_per_region"] == 20
    assert sections["quotas"]["rds_manual_snapshots"] == 320  # raised for 300 databases
    assert "metrics" in sections and "consistency" in sections
    assert "throttle" in scale.realism_sections(scale.ScaleParams(throttle=True))
    assert scale.ScaleParams(rds=50).rds_manual_snapshots == 100  # AWS's default


def test_the_union_of_task_intervals_gives_phases_relative_to_the_run():
    rows = scale.phases(
        [
            {
                "task_id": "b",
                "start_date": "2026-01-01T00:00:10+00:00",
                "end_date": "2026-01-01T00:00:15+00:00",
                "try_number": 1,
                "state": "success",
            },
            {"task_id": "never", "start_date": None, "end_date": None, "state": "skipped"},
            {
                "task_id": "a",
                "start_date": "2026-01-01T00:00:01+00:00",
                "end_date": "2026-01-01T00:00:04+00:00",
                "try_number": 2,
                "state": "success",
            },
        ],
        run_start=scale._time("2026-01-01T00:00:00+00:00"),
    )
    assert [(r["task_id"], r["start_offset_seconds"], r["seconds"]) for r in rows] == [
        ("a", 1.0, 3.0),
        ("b", 10.0, 5.0),
        ("never", None, None),
    ]
