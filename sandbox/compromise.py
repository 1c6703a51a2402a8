"""``make compromise``: the workload account is taken over; the vault must not care.

``python -m sandbox.compromise`` starts the embedded stack (sandbox AWS with the realism layer's
``e2e`` profile, Airflow's real api-server, scheduler, dag-processor and triggerer) in
``$SECUREDR_HOME/compromise`` on ``include/dr_plan.vault.yaml`` - the demo estate with a DR vault
in a second account - and then:

1. runs ``dr_nightly_backup``, which must end with every DR copy owned by the vault account,
   under the vault's key and (EBS) locked;
2. reads the vault as its own auditor sees it;
3. hands every credential the workload side holds to :mod:`sandbox.attacks` (the workload
   account's administrator, the vault's external id, so the intake role) and lets it try
   everything listed there;
4. reads the vault again: any difference fails the simulation;
5. restores from the vault with ``dr_restore`` (``source: vault``; alice triggers, bob approves,
   each with MFA) and runs ``dr_recovery_drill`` from the vault, under the recovery role of the
   vault account, whose connection is not the workload's; both must pass. Their RTO and RPO are
   reported.

The figures go to ``$SECUREDR_HOME/compromise.json``; :mod:`sandbox.compromise_report` renders
them. The last line reads ``compromise simulation: PASSED`` or
``compromise simulation: FAILED: <what>``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sandbox.stack import (
    DEFAULT_HOME,
    REPO,
    Stack,
    StackError,
    _alive,
    run_drill,
    run_nightly,
    run_restore,
)

VAULT_PLAN = REPO / "include" / "dr_plan.vault.yaml"
VAULT_SOURCE = {"source": "vault"}


class CompromiseStack(Stack):
    """The embedded stack on the vault plan, with the vault account seeded beside the estate."""

    def env(self, aws_url: str, api_port: int, jwt_secret: str, services: Any = None) -> dict:
        env = super().env(aws_url, api_port, jwt_secret, services)
        env["SECUREDR_PLAN"] = str(VAULT_PLAN)
        env["AIRFLOW_VAR_SECUREDR_VAULT_EXTERNAL_ID"] = self._secret("vault-external-id")
        env["AIRFLOW_VAR_SECUREDR_VAULT_RECOVERY_EXTERNAL_ID"] = self._secret(
            "vault-recovery-external-id"
        )
        recovery = self.home / "keys" / "vault-recovery-credentials.json"
        if recovery.exists():
            # The recovery principal's own credentials (an account that is not the workload's):
            # what the people who recover would configure after losing the workload account.
            creds = json.loads(recovery.read_text())
            env["AIRFLOW_CONN_AWS_VAULT_RECOVERY"] = json.dumps(
                {
                    "conn_type": "aws",
                    "login": creds["aws_access_key_id"],
                    "password": creds["aws_secret_access_key"],
                    "extra": {"aws_session_token": creds.get("aws_session_token")},
                }
            )
        return env

    def _secret(self, name: str) -> str:
        import secrets

        path = self.home / "keys" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(16))
            path.chmod(0o600)
        return path.read_text().strip()

    def _seed(self, env: dict[str, str]) -> dict[str, Any]:
        """The demo estate, then the vault account (its roles trust the external ids this
        stack's Variables hold) and the recovery account's restore environment."""
        estate = super()._seed(env)
        code = (
            "import json,os\n"
            "from sandbox import accounts\n"
            "from securedr.core.plan import load_plan\n"
            "env = os.environ\n"
            "plan, url = load_plan(), env['AWS_ENDPOINT_URL']\n"
            "vault = accounts.seed_vault(plan, url,\n"
            "    external_id=env['AIRFLOW_VAR_SECUREDR_VAULT_EXTERNAL_ID'],\n"
            "    recovery_external_id=env['AIRFLOW_VAR_SECUREDR_VAULT_RECOVERY_EXTERNAL_ID'])\n"
            "recovery = accounts.ensure_recovery_environment(plan, url)\n"
            "creds = accounts.credentials(plan.vault.account_id, url)\n"
            "print(json.dumps({'vault': vault, 'recovery': recovery, 'creds': creds},\n"
            "                 default=str))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
        )
        seeded = json.loads(out.stdout.strip().splitlines()[-1])
        estate["vault"] = seeded["vault"]
        estate["recovery"] = seeded["recovery"]
        recovery = self.home / "keys" / "vault-recovery-credentials.json"
        recovery.write_text(json.dumps(seeded["creds"]))
        recovery.chmod(0o600)
        # The components start with this very environment, after seeding.
        env.update(
            self.env(
                env["AWS_ENDPOINT_URL"],
                int(env["AIRFLOW__API__PORT"]),
                env["AIRFLOW__API_AUTH__JWT_SECRET"],
            )
        )
        return estate


def simulate(stack: CompromiseStack, state: dict[str, Any]) -> dict[str, Any]:
    """Nightly, attack, vault diff, restore and drill from the vault; the figures."""
    from sandbox import accounts, attacks
    from securedr.core.plan import load_plan

    result: dict[str, Any] = {"failures": []}
    env = stack.env(state["aws_url"], state["api_port"], state["jwt_secret"])
    previous = dict(os.environ)
    os.environ.update({"SECUREDR_HOME": env["SECUREDR_HOME"]})
    try:
        plan = load_plan(VAULT_PLAN)
    finally:
        os.environ.clear()
        os.environ.update(previous)
    assert plan.vault is not None
    result["vault_account"] = plan.vault.account_id

    nightly = run_nightly(stack, state)
    report = nightly["report"] or {}
    result["nightly"] = {
        "run_id": nightly["run_id"],
        "state": nightly["state"],
        "seconds": round(nightly["elapsed"], 1),
        "succeeded": bool(report.get("succeeded")),
    }
    if not result["nightly"]["succeeded"]:
        result["failures"].append(f"dr_nightly_backup ended {nightly['state']}")
        return result

    url = state["aws_url"]
    auditor = attacks.Session(
        "vault auditor",
        plan.vault.account_id,
        f"arn:aws:iam::{plan.vault.account_id}:root",
        accounts.credentials(plan.vault.account_id, url),
        url,
    )
    before = attacks.vault_inventory(plan, auditor)
    result["vault_before"] = before
    if not before["snapshots"] and not before["db_snapshots"]:
        result["failures"].append("the nightly run left no copy in the vault")
        return result

    attacker = make_attacker(
        plan,
        url,
        workload_credentials={"aws_access_key_id": "sandbox", "aws_secret_access_key": "sandbox"},
        external_id=env["AIRFLOW_VAR_SECUREDR_VAULT_EXTERNAL_ID"],
        recovery_external_id=env["AIRFLOW_VAR_SECUREDR_VAULT_RECOVERY_EXTERNAL_ID"],
        workload_dr_key_arn=state["estate"]["vault"]["workload_dr_key_arn"],
        vault_snapshots=list(before["snapshots"]),
    )
    started = time.monotonic()
    outcomes = attacks.run_attacks(attacker, before)
    result["attack_seconds"] = round(time.monotonic() - started, 1)
    result["attacks"] = attacks.outcomes_as_dicts(outcomes)
    after = attacks.vault_inventory(plan, auditor)
    result["vault_after"] = after
    changes = attacks.inventory_changes(before, after)
    result["vault_changes"] = changes
    if changes:
        result["failures"].append(f"the attacker changed the vault ({changes[0]}...)")
    worked_on_vault = [
        o for o in outcomes if o.account == plan.vault.account_id and o.result == "worked"
    ]
    if worked_on_vault:
        first = worked_on_vault[0]
        result["failures"].append(
            f"{len(worked_on_vault)} attack call(s) on the vault worked ({first.action} on "
            f"{first.target} as the {first.principal})"
        )
    if not any(o.result == "worked" for o in outcomes if o.account != plan.vault.account_id):
        # The attacker must really hold the workload account, or the simulation proves nothing.
        result["failures"].append("no attack on the workload account worked: no real attacker")

    restore = run_restore(stack, state, VAULT_SOURCE)
    restore_report = restore["report"] or {}
    result["restore"] = {
        "run_id": restore["run_id"],
        "state": restore["state"],
        "succeeded": bool(restore_report.get("succeeded")),
        "rto_seconds": restore_report.get("rto_seconds"),
        "rto_target_seconds": restore_report.get("rto_target_seconds"),
        "rpo_seconds": restore_report.get("rpo_seconds"),
        "rpo_target_seconds": restore_report.get("rpo_target_seconds"),
        "resources": len(restore_report.get("resources", [])),
    }
    if not result["restore"]["succeeded"]:
        result["failures"].append(f"dr_restore from the vault ended {restore['state']}")
    drill = run_drill(stack, state, VAULT_SOURCE)
    record = drill["record"] or {}
    result["drill"] = {
        "run_id": drill["run_id"],
        "state": drill["state"],
        "passed": drill["state"] == "success" and bool(record.get("passed")),
        "rto_seconds": record.get("rto_seconds"),
        "rpo_seconds": record.get("rpo_seconds"),
        "verdict": record.get("verdict"),
    }
    if not result["drill"]["passed"]:
        result["failures"].append(f"dr_recovery_drill from the vault ended {drill['state']}")
    return result


def make_attacker(
    plan: Any,
    url: str,
    *,
    workload_credentials: dict[str, str],
    external_id: str,
    recovery_external_id: str,
    workload_dr_key_arn: str,
    vault_snapshots: list[str],
) -> Any:
    """The attacker: the workload account's administrator, and - with the external id read
    from Airflow's Variables - a session of the vault intake role; judged by the policies the
    sandbox gave the vault (:func:`sandbox.accounts.seed_vault`)."""
    from sandbox import accounts, attacks, iam_judge

    workload_root = f"arn:aws:iam::{accounts.WORKLOAD_ACCOUNT}:root"
    workload = attacks.Session(
        attacks.WORKLOAD_ADMIN, accounts.WORKLOAD_ACCOUNT, workload_root, workload_credentials, url
    )
    creds = workload.client("sts", plan.regions.dr).assume_role(
        RoleArn=plan.vault.role_arn,
        RoleSessionName=attacks.ATTACKER_SESSION,
        ExternalId=external_id,
    )["Credentials"]
    intake = attacks.Session(
        attacks.VAULT_INTAKE,
        plan.vault.account_id,
        plan.vault.role_arn,  # IAM judges a role session by its role's policies
        {
            "aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"],
        },
        url,
    )
    # The policies in force: exactly those the sandbox gave the vault's roles, key and bucket
    # (include/iam/ rendered for this plan), the shipped SCP on the vault account, and an
    # administrator's rights in the workload account.
    values = accounts.template_values(
        plan,
        vault_account=plan.vault.account_id,
        kms_keys=dict(plan.vault.kms_keys),
        evidence_bucket=plan.vault.evidence_bucket,
        evidence_prefix=plan.vault.evidence_prefix,
        workload_dr_key_arn=workload_dr_key_arn,
        external_id=external_id,
        recovery_external_id=recovery_external_id,
        workload_principal_arn=workload_root,
        # seed_vault's default: the vault account and the third account may recover.
        recovery_principal_arns=[
            f"arn:aws:iam::{plan.vault.account_id}:root",
            f"arn:aws:iam::{accounts.THIRD_ACCOUNT}:root",
        ],
    )
    world = iam_judge.vault_world(
        values, workload_admins=[workload_root], vault_snapshots=vault_snapshots
    )

    def judge(principal: str, action: str, resource: str, context: Any) -> tuple[bool, str]:
        decision = world.judge(principal, action, resource, context)
        return decision.allowed, decision.reason

    return attacks.Attacker(plan, workload, intake, judge, plan.vault.account_id)


def run_compromise(home: Path, output: Path) -> tuple[int, dict[str, Any] | None]:
    """A fresh stack in ``home``; simulate; stop everything; write ``output``."""
    stack = CompromiseStack(home)
    stack.down(quiet=True)
    shutil.rmtree(home, ignore_errors=True)
    result: dict[str, Any] | None = None
    pids: dict[str, int] = {}
    try:
        state = stack.up()
        pids = dict(state["pids"])
        result = simulate(stack, state)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    except (StackError, subprocess.CalledProcessError, OSError) as exc:
        detail = getattr(exc, "stderr", None) or ""
        print(f"error: {exc}\n{detail[-2000:]}", file=sys.stderr)
    finally:
        stack.down(quiet=True)
    left = sorted(name for name, pid in pids.items() if _alive(pid))
    if left and result is not None:
        result["failures"].append(f"still running after tear-down: {', '.join(left)}")
    ok = result is not None and not result["failures"]
    return (0 if ok else 1), result


def main(argv: list[str] | None = None) -> int:
    from sandbox import compromise_report

    home = Path(os.environ.get("SECUREDR_HOME", DEFAULT_HOME)).resolve()
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.compromise",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--home", type=Path, default=home / "compromise")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    output = (args.output or home / "compromise.json").resolve()
    code, result = run_compromise(args.home.resolve(), output)
    if result is None:
        print("compromise simulation: FAILED: the stack did not start (see the error above)")
        return 1
    print()
    print(compromise_report.render(result))
    print(f"\nFigures: {output}")
    print(compromise_report.summary_line(result))
    return code


if __name__ == "__main__":
    sys.exit(main())
