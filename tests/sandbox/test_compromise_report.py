"""The compromise simulation's rendering: the exact last line, and one row per kind of attack."""

from __future__ import annotations

from sandbox.compromise_report import attack_rows, render, summary_line

VAULT = "222222222222"


def outcome(result: str, action: str = "ec2:DeleteSnapshot", account: str = VAULT, **kw):
    return {
        "goal": "delete every snapshot and manifest it can",
        "principal": kw.get("principal", "vault intake role"),
        "action": action,
        "target": kw.get("target", "snap-1"),
        "account": account,
        "result": result,
        "detail": kw.get("detail", ""),
    }


def test_the_last_line_passes_only_without_failures() -> None:
    assert summary_line({"failures": []}) == "compromise simulation: PASSED"
    assert (
        summary_line({"failures": ["the attacker changed the vault (x)", "drill failed"]})
        == "compromise simulation: FAILED: the attacker changed the vault (x); drill failed"
    )


def test_rows_group_calls_and_keep_the_first_reason_of_each_result() -> None:
    attacks = [
        outcome("denied", detail="no Allow in securedr-vault-intake-policy"),
        outcome("denied", target="snap-2", detail="other reason"),
        outcome(
            "worked",
            account="123456789012",
            principal="workload administrator",
            target="snap-w",
        ),
        outcome("refused", action="ec2:UnlockSnapshot", detail="OperationNotPermitted: locked"),
    ]
    rows = attack_rows(attacks)
    assert [(r["principal"], r["action"], dict(r["counts"])) for r in rows] == [
        ("vault intake role", "ec2:DeleteSnapshot", {"denied": 2}),
        ("workload administrator", "ec2:DeleteSnapshot", {"worked": 1}),
        ("vault intake role", "ec2:UnlockSnapshot", {"refused": 1}),
    ]
    assert rows[0]["reasons"] == {"denied": "no Allow in securedr-vault-intake-policy"}


def test_render_names_each_attack_where_it_landed_and_the_restore_figures() -> None:
    result = {
        "vault_account": VAULT,
        "failures": [],
        "nightly": {"state": "success", "seconds": 80.0, "run_id": "r1"},
        "attacks": [
            outcome("denied", detail="explicit Deny in SCP"),
            outcome("worked", account="123456789012", principal="workload administrator"),
        ],
        "attack_seconds": 3.0,
        "vault_changes": [],
        "restore": {
            "state": "success",
            "resources": 3,
            "rto_seconds": 95.0,
            "rto_target_seconds": 3600.0,
            "rpo_seconds": 300.0,
            "rpo_target_seconds": 93600.0,
        },
        "drill": {
            "state": "success",
            "passed": True,
            "resources": 3,
            "verified": 3,
            "rto_seconds": 60.0,
            "rpo_seconds": 400.0,
        },
    }
    text = render(result)
    assert "on the vault    1 denied" in text
    assert "denied: explicit Deny in SCP" in text
    assert "on the workload 1 worked" in text
    assert "workload: 1 call(s) worked; vault: 0 call(s) worked" in text
    assert "Vault changes    none" in text
    assert "RTO 95 s (target 3,600 s); RPO 300 s" in text
    assert "Drill (vault)    success, passed: 3 of 3 resource(s) verified; RTO 60 s" in text
