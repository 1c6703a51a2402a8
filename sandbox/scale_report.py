"""Render the figures :mod:`sandbox.scale` measured: a table, and one summary line."""

from __future__ import annotations

from typing import Any


def _mib(value: int) -> str:
    return f"{value / 2**20:,.0f} MiB"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} s"


def summary_line(result: dict[str, Any]) -> str:
    """``scale: N resources; overhead S s; C calls per resource; T task instances; at most F
    copies in flight`` (F: the most copies of the run in flight at once in one destination
    Region, EBS and RDS together)."""
    return (
        f"scale: {result['resources']['total']} resources; "
        f"overhead {result['overhead_seconds']:.0f} s; "
        f"{result['aws_calls']['per_resource']:.2f} calls per resource; "
        f"{result['task_instances']['count']} task instances; "
        f"at most {result['max_our_copies_in_flight']} copies in flight"
    )


def render(result: dict[str, Any]) -> str:
    params, resources, run = result["parameters"], result["resources"], result["run"]
    pending = result["aws_pending_seconds"]
    lines = [
        f"Resources        {resources['total']:,} ({resources['ebs']:,} EBS, "
        f"{resources['rds']:,} RDS) over {', '.join(params['source_regions'])}; "
        f"seeded in {result['seed_seconds']:.1f} s",
        f"Realism          copies pending {params['copy_seconds']:g} s, source snapshots "
        f"{params['snapshot_seconds']:g} s; 20 EBS / 20 RDS copies per destination Region; "
        f"throttling {'on' if params['throttle'] else 'off'}",
        f"Run              {run['state']}; {run['verified']:,} verified, "
        f"{run['not_protected']:,} not protected",
        f"Wall time        {_seconds(result['wall_seconds'])}",
        f"AWS pending      {_seconds(pending['our_copies'])} with at least one DR copy of the "
        f"run pending, in {pending.get('our_copies_stretches', '?')} stretch(es) "
        f"(source snapshots: {_seconds(pending['source_snapshots'])})",
        f"SecureDR overhead {_seconds(result['overhead_seconds'])} (wall time minus AWS pending)",
        f"Scheduling gaps  {_seconds(result['scheduling_gap_seconds'])} with no task running",
        "",
        "Phases (task instances)          start    duration  tries  state",
    ]
    for phase in result["phases"]:
        lines.append(
            f"  {phase['task_id']:<30} {_seconds(phase['start_offset_seconds']):>9} "
            f"{_seconds(phase['seconds']):>10}  {phase['try_number'] or 0:>4}  {phase['state']}"
        )
    calls = result["aws_calls"]
    lines += [
        f"Task instances   {result['task_instances']['count']} "
        f"({result['task_instances']['tries']} tries)",
        "",
        f"AWS calls        {calls['total']:,} in all, {calls['per_resource']:.2f} per resource",
        "  operation                              calls  per resource",
    ]
    for operation, row in calls["by_operation"].items():
        lines.append(f"  {operation:<36} {row['calls']:>7,}  {row['per_resource']:>12.3f}")
    for service, actions in calls["errors"].items():
        for action, codes in actions.items():
            for code, count in codes.items():
                lines.append(f"  error {service}:{action} {code}: {count:,}")
    for operation, count in calls.get("standing_polls", {}).items():
        lines.append(
            f"  not counted: {operation} {count:,} (dr_incident_response's queue watcher, "
            "polling for as long as the stack runs)"
        )
    lines += ["", "Most copies in flight per destination Region (ours / all)"]
    for region, seen in result["max_copies_in_flight"].items():
        ebs, rds = seen.get("ebs", {}), seen.get("rds", {})
        lines.append(
            f"  {region:<12} EBS {ebs.get('ours', 0)} / {ebs.get('all', 0)}   "
            f"RDS {rds.get('ours', 0)} / {rds.get('all', 0)}   "
            f"ours together {seen.get('ours_total', 0)}"
        )
    started = result["copies_started"]
    lines.append(
        f"  copies started: EBS {started['ebs']['ours']:,} ours of {started['ebs']['all']:,}, "
        f"RDS {started['rds']['ours']:,} ours of {started['rds']['all']:,}"
    )
    largest = result["largest_xcom"]
    lines += [
        "",
        "Largest XCom     "
        + (
            f"{largest['bytes']:,} bytes ({largest['task_id']} {largest['key']}); "
            f"{result['xcom_total_bytes']:,} bytes in all"
            if largest
            else "none"
        ),
        "",
        "Peak RSS         main process (VmHWM)   process tree (most at once)",
    ]
    for name, rss in result["peak_rss"].items():
        lines.append(
            f"  {name:<14} {_mib(rss['process_peak_bytes']):>18}   "
            f"{_mib(rss['tree_peak_bytes']):>10} ({rss['tree_processes_peak']} processes)"
        )
    return "\n".join(lines)
