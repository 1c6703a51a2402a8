"""Pre-flight estimates tonight's copy window from the signed manifests of recent nights."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import pytest
import yaml

from sandbox.estate import create_database
from securedr.aws.evidence import EvidenceStore
from securedr.core import signing
from securedr.core.manifest import build_manifest, manifest_key
from securedr.core.model import Verification
from securedr.operators.manifest import SignRunManifestOperator
from securedr.operators.preflight import COPY_HISTORY_NIGHTS, PreflightChecksOperator
from securedr.operators.report import NightlyReportOperator
from tests.operators.helpers import task_context

TONIGHT = datetime.now(UTC).replace(microsecond=0)


def _verdicts(run_id: str, start: datetime, copy_minutes: float) -> list[dict]:
    """One verified EBS and one RDS copy of a night: snapshots 10 min, copies as given."""
    copy_started = start + timedelta(minutes=10)
    verified = copy_started + timedelta(minutes=copy_minutes)
    return [
        {
            "point": {
                "kind": kind,
                "source_id": source,
                "source_region": "us-east-1",
                "snapshot_id": f"snap-{source}-{run_id[-8:]}",
                "size_gib": 100,
                "source_encrypted": True,
                "run_id": run_id,
                "created_at": start.isoformat(),
                "dr_region": "us-west-2",
                "dr_snapshot_id": f"dr-{source}-{start:%m%d}",
                "dr_created_at": copy_started.isoformat(),
            },
            "passed": True,
            "problems": [],
            "incidents": [],
            "checked_at": verified.isoformat(),
        }
        for kind, source in (("ebs", "vol-0app"), ("rds", "orders-db"))
    ]


def _night(days_ago: int, copy_minutes: float) -> None:
    """Sign and store the manifest of an earlier night whose copies took ``copy_minutes``."""
    start = TONIGHT - timedelta(days=days_ago)
    run_id = f"scheduled__{start:%Y-%m-%dT%H:%M:%S}+00:00"
    ctx = task_context(run_id=run_id)
    ctx["dag_run"].start_date = start
    verdicts = _verdicts(run_id, start, copy_minutes)
    SignRunManifestOperator(task_id="manifest", verifications=verdicts).execute(ctx)


def _forged_night(days_ago: int, copy_minutes: float) -> None:
    """A manifest an insider wrote without the signing key (signed by a key nobody trusts)."""
    start = TONIGHT - timedelta(days=days_ago)
    run_id = f"scheduled__{start:%Y-%m-%dT%H:%M:%S}+00:00"
    operator = PreflightChecksOperator(task_id="forger")
    payload = build_manifest(
        plan=operator.plan.name,
        run_id=run_id,
        dag_id="dr_nightly_backup",
        created_at=start.isoformat(),
        dr_region=operator.plan.regions.dr,
        dr_kms_key_arn="arn:aws:kms:us-west-2:123456789012:key/forged",
        verifications=[Verification.from_dict(v) for v in _verdicts(run_id, start, copy_minutes)],
    )
    rogue, _ = signing.generate_signing_key()
    document = signing.sign_document(payload, rogue)
    key = operator.evidence.key(manifest_key(operator.plan.name, run_id, start.isoformat()))
    operator.evidence.put(key, json.dumps(document).encode())


def _preflight(monkeypatch) -> tuple[dict, mock.MagicMock]:
    log = mock.MagicMock()
    monkeypatch.setattr(PreflightChecksOperator, "log", log)
    ctx = task_context(run_id=f"scheduled__{TONIGHT:%Y-%m-%dT%H:%M:%S}+00:00")
    return PreflightChecksOperator(task_id="preflight").execute(ctx), log


def _window_warnings(result: dict) -> list[str]:
    return [w for w in result["warnings"] if "copy window" in w]


def test_long_copies_in_signed_history_make_preflight_warn(estate, plan, monkeypatch):
    for days_ago in (1, 2, 3):
        _night(days_ago, copy_minutes=180)  # 3 h per wave; an RPO of 26 h leaves under 2 h

    result, log = _preflight(monkeypatch)

    window = result["copy_window"]
    assert window["fits"] is False and window["nights"] == 3
    ebs = next(k for k in window["kinds"] if k["kind"] == "ebs")
    assert ebs["copy_hours"] == 3.0 and ebs["resources"] >= 1 and ebs["slots"] == 20
    assert window["window_hours"] >= 3.0
    (warning,) = _window_warnings(result)
    assert "does NOT fit the RPO" in warning and "RPO target of 26 h" in warning
    assert "targets.rpo_hours" in warning
    log.warning.assert_any_call("Pre-flight warning: %s", warning)

    # The run report shows it, and the night still succeeds.
    class TI:
        def get_task_states(self, dag_id, run_ids):
            return {run_ids[0]: {}}

    ctx = {**task_context(run_id=f"manual__{TONIGHT:%Y-%m-%dT%H:%M:%S}+00:00"), "ti": TI()}
    report = NightlyReportOperator(
        task_id="report_run", verifications=[], manifest=None, retention=None, preflight=result
    ).execute(ctx)
    assert report["succeeded"] is True and report["copy_window"]["fits"] is False
    key = report["report_url"].split(f"{plan.evidence_bucket.name}/", 1)[1]
    text = PreflightChecksOperator(task_id="read").evidence.get(key.replace(".json", ".txt"))
    assert "Copy window vs RPO: DOES NOT FIT" in text.decode()


def test_short_copies_fit_without_a_warning(estate, plan, monkeypatch):
    for days_ago in (1, 2, 3):
        _night(days_ago, copy_minutes=15)

    result, _ = _preflight(monkeypatch)

    assert result["copy_window"]["fits"] is True
    assert result["copy_window"]["window_hours"] == 0.25
    assert _window_warnings(result) == []
    assert result["warnings"] == []


def test_no_history_says_so_and_does_not_warn(estate, plan, monkeypatch):
    result, log = _preflight(monkeypatch)

    window = result["copy_window"]
    assert window["fits"] is None and window["window_hours"] is None
    assert "not estimated" in window["message"]
    assert result["warnings"] == []
    logged = " ".join(str(c.args) for c in log.info.call_args_list)
    assert "copy window not estimated" in logged


def test_forged_manifests_with_long_copies_are_not_believed(estate, plan, monkeypatch):
    _night(2, copy_minutes=15)
    _forged_night(1, copy_minutes=600)

    result, log = _preflight(monkeypatch)

    assert result["copy_window"]["fits"] is True and result["copy_window"]["nights"] == 1
    rejected = " ".join(str(c.args) for c in log.warning.call_args_list)
    assert "cannot be trusted" in rejected


def test_only_the_newest_nights_are_read(estate, plan, monkeypatch):
    # Slow copies long ago, fast ones in the last week: the old nights are not even read.
    for days_ago in (9, 10):
        _night(days_ago, copy_minutes=600)
    for days_ago in range(1, COPY_HISTORY_NIGHTS + 1):
        _night(days_ago, copy_minutes=15)
    gets = []
    original = EvidenceStore.get_version

    def counting(self, key, version_id):
        gets.append(key)
        return original(self, key, version_id)

    monkeypatch.setattr(EvidenceStore, "get_version", counting)

    result, _ = _preflight(monkeypatch)

    assert result["copy_window"]["nights"] == COPY_HISTORY_NIGHTS
    assert result["copy_window"]["fits"] is True
    assert len(gets) == COPY_HISTORY_NIGHTS


@pytest.mark.parametrize(("quota", "fits"), [(20, True), (1, False)])
def test_the_rds_copy_quota_setting_sets_the_rds_slots(
    estate, plan, aws, monkeypatch, tmp_path, quota, fits
):
    region = plan.regions.sources[0]
    create_database(
        region, "billing-db", plan=plan, kms_key_arn=estate.key_arns[region], endpoint_url=aws
    )
    data = yaml.safe_load(Path("include/dr_plan.yaml").read_text())
    data.setdefault("rds", {})["concurrent_copy_quota"] = quota
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("SECUREDR_PLAN", str(path))
    for days_ago in (1, 2, 3):
        _night(days_ago, copy_minutes=50)  # one 50-min wave fits in 88 min, two do not

    result, _ = _preflight(monkeypatch)

    rds = next(k for k in result["copy_window"]["kinds"] if k["kind"] == "rds")
    assert (rds["resources"], rds["slots"], rds["waves"]) == (2, quota, 2 if quota == 1 else 1)
    assert result["copy_window"]["fits"] is fits
    if not fits:
        assert "rds.concurrent_copy_quota" in result["copy_window"]["message"]


def test_objects_under_newer_names_do_not_push_the_signed_nights_out(estate, plan):
    from securedr.aws.manifests import load_signed_manifests

    for days_ago in (2, 3, 4):
        _night(days_ago, copy_minutes=15)
    _forged_night(1, copy_minutes=600)
    operator = PreflightChecksOperator(task_id="read")

    signed = load_signed_manifests(
        operator.evidence,
        operator.trusted_public_keys(),
        plan=plan.name,
        dr_region=plan.regions.dr,
        latest=2,
    )

    runs = [payload["run_id"] for _, payload in signed.manifests]
    newest = [TONIGHT - timedelta(days=d) for d in (3, 2)]  # oldest first
    assert runs == [f"scheduled__{s:%Y-%m-%dT%H:%M:%S}+00:00" for s in newest]
    (rejected,) = signed.rejected
    assert "cannot be trusted" in rejected
    assert signed.reads == 1 + 3  # one listing, the forged object and two signed nights
