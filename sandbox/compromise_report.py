"""Render what :mod:`sandbox.compromise` measured: each attack and its result, what changed,
the restore and drill from the vault, and one verdict line."""

from __future__ import annotations

from collections import Counter
from typing import Any

RESULTS = ("worked", "denied", "refused")


def summary_line(result: dict[str, Any]) -> str:
    """``compromise simulation: PASSED`` or ``compromise simulation: FAILED: <what>``."""
    failures = result.get("failures") or []
    if not failures:
        return "compromise simulation: PASSED"
    return f"compromise simulation: FAILED: {'; '.join(failures)}"


def attack_rows(attacks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (goal, principal, action, account): how many calls, and how each ended,
    with the first reason seen for each way it ended."""
    rows: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for attack in attacks:
        key = (attack["goal"], attack["principal"], attack["action"], attack["account"])
        row = rows.setdefault(
            key,
            {
                "goal": key[0],
                "principal": key[1],
                "action": key[2],
                "account": key[3],
                "counts": Counter(),
                "reasons": {},
            },
        )
        row["counts"][attack["result"]] += 1
        if attack.get("detail"):
            row["reasons"].setdefault(attack["result"], attack["detail"])
    return list(rows.values())


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} s"


def _result(counts: Counter) -> str:
    return ", ".join(f"{counts[r]} {r}" for r in RESULTS if counts[r])


def render(result: dict[str, Any]) -> str:
    lines: list[str] = []
    nightly = result.get("nightly", {})
    lines.append(
        f"Nightly run      {nightly.get('state', '-')} in {_seconds(nightly.get('seconds'))} "
        f"({nightly.get('run_id', '-')})"
    )
    before = result.get("vault_before") or {}
    if before:
        locked = sum(1 for s in before["snapshots"].values() if s.get("lock"))
        lines.append(
            f"Vault before     {len(before['snapshots'])} EBS copies ({locked} locked), "
            f"{len(before['db_snapshots'])} RDS copies, {len(before['evidence'])} evidence "
            f"object versions, key(s) {', '.join(k['state'] for k in before['keys'].values())}"
        )
    attacks = result.get("attacks") or []
    if attacks:
        lines.append(
            f"\nAttacks ({len(attacks)} calls in {_seconds(result.get('attack_seconds'))})"
        )
        goal = None
        for row in attack_rows(attacks):
            if row["goal"] != goal:
                goal = row["goal"]
                lines.append(f"  The attacker tries to {goal}:")
            where = "vault" if row["account"] == _vault_account(result) else "workload"
            lines.append(
                f"    {row['action']:<28} as {row['principal']:<24} on the {where:<8} "
                f"{_result(row['counts'])}"
            )
            for outcome in RESULTS:
                if outcome in row["reasons"] and outcome != "worked":
                    lines.append(f"      {outcome}: {row['reasons'][outcome][:150]}")
        worked = Counter(a["account"] for a in attacks if a["result"] == "worked")
        vault = _vault_account(result)
        lines.append(
            f"\nWhat it changed  workload: {sum(v for k, v in worked.items() if k != vault)} "
            f"call(s) worked; vault: {worked.get(vault, 0)} call(s) worked"
        )
    changes = result.get("vault_changes")
    if changes is not None:
        if changes:
            lines.append(f"Vault changes    {len(changes)}:")
            lines.extend(f"  {change}" for change in changes[:50])
        else:
            lines.append(
                "Vault changes    none: every copy, lock, key and evidence version as before"
            )
    restore = result.get("restore")
    if restore:
        lines.append(
            f"\nRestore (vault)  {restore['state']}: {restore['resources']} resource(s); RTO "
            f"{_seconds(restore['rto_seconds'])} (target {_seconds(restore['rto_target_seconds'])})"
            f"; RPO {_seconds(restore['rpo_seconds'])} "
            f"(target {_seconds(restore['rpo_target_seconds'])})"
        )
    drill = result.get("drill")
    if drill:
        lines.append(
            f"Drill (vault)    {drill['state']}, {'passed' if drill['passed'] else 'FAILED'}: "
            f"{drill.get('verified') or 0} of {drill.get('resources') or 0} resource(s) "
            f"verified; RTO {_seconds(drill['rto_seconds'])}; RPO {_seconds(drill['rpo_seconds'])}"
        )
    return "\n".join(lines)


def _vault_account(result: dict[str, Any]) -> str | None:
    return result.get("vault_account")
