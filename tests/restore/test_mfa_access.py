"""MFA step-up on dr_restore: the initiator's code at trigger, the approver's at approval.

Runs the real access-control operators against the sandbox (restore role, evidence bucket,
audit trail); only the scheduler is left out (see tests/restore/conftest.py's Harness).
"""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException

from securedr.core import mfa
from tests.restore.conftest import MFA_SECRETS, Harness, audit_entries, mfa_code


def wrong_code(user: str) -> str:
    """A well-formed code that is none of the codes ``user``'s device shows in the window."""
    from securedr.operators.access import mfa_now

    now = mfa_now()
    valid = {mfa.code_at(MFA_SECRETS[user], now + timedelta(seconds=s)) for s in (-30, 0, 30)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def restored_volumes(plan) -> list[dict]:
    ec2 = boto3.client("ec2", region_name=plan.regions.dr)
    return ec2.describe_volumes(Filters=[{"Name": "tag:securedr:role", "Values": ["restored"]}])[
        "Volumes"
    ]


def trail(plan) -> list[tuple[str, str, str]]:
    return [(e.actor, e.action, e.outcome) for e in audit_entries(plan)]


def mfa_store_keys(plan) -> list[str]:
    s3 = boto3.client("s3", region_name=plan.regions.dr)
    bucket = plan.evidence_bucket
    prefix = f"{bucket.prefix.strip('/')}/mfa/{plan.name}/"
    listing = s3.list_objects_v2(Bucket=bucket.name, Prefix=prefix)
    return [o["Key"][len(prefix) :] for o in listing.get("Contents", [])]


# --------------------------------------------------------------------------- the initiator


@pytest.mark.parametrize("code", ["wrong", None], ids=["wrong-code", "no-code"])
def test_a_stolen_password_without_the_code_gets_nothing_restored(restore_plan, backup, code):
    # Whoever holds alice's Airflow password can trigger the run, but not type her code.
    h = Harness(params={"mfa_code": wrong_code("alice") if code == "wrong" else None})
    h.initiate()
    with pytest.raises(AirflowFailException, match="Refused: MFA check failed") as refused:
        h.check_initiator()
    assert "no MFA code was entered" in str(refused.value) or "wrong or expired" in str(
        refused.value
    )
    # The run stops at access control: nothing retrieved, nothing restored, the why audited.
    assert trail(restore_plan) == [
        ("alice", "mfa.initiate", "refused"),
        ("alice", "restore.initiate", "refused"),
    ]
    check, refusal = audit_entries(restore_plan)
    assert check.details["result"] == "bad" and check.details["recent_failures"] == 1
    assert "MFA check failed" in refusal.details["reason"]
    assert restored_volumes(restore_plan) == []
    assert [k.split("/")[:2] for k in mfa_store_keys(restore_plan)] == [["alice", "failures"]]


def test_the_right_code_passes_and_is_never_logged_returned_or_audited(restore_plan, backup, capfd):
    code = mfa_code("alice")
    h = Harness(params={"mfa_code": code})
    initiation = h.initiate()
    checked = h.check_initiator()
    assert checked["initiator"] == "alice"
    assert trail(restore_plan) == [
        ("alice", "mfa.initiate", "succeeded"),
        ("alice", "restore.request", "started"),
    ]
    entries = audit_entries(restore_plan)
    assert entries[0].details["result"] == "ok" and entries[0].details["purpose"] == "initiate"
    for text in (
        json.dumps(initiation),
        json.dumps(checked),
        *(json.dumps(e.details) for e in entries),
        "".join(capfd.readouterr()),  # the task log
    ):
        assert code not in text and MFA_SECRETS["alice"] not in text
    assert "mfa_code" not in initiation["request"]
    # The spent step is recorded write-once in the evidence bucket.
    step = entries[0].details["time_step"]
    assert f"alice/used/{step:012d}.json" in mfa_store_keys(restore_plan)


def test_a_code_works_once(restore_plan, backup):
    code = mfa_code("alice")
    first = Harness(params={"mfa_code": code}, run_id="manual__first")
    first.initiate()
    first.check_initiator()
    replay = Harness(params={"mfa_code": code}, run_id="manual__second")
    replay.initiate()
    with pytest.raises(AirflowFailException, match="already used; a code works once"):
        replay.check_initiator()
    results = [e.details.get("result") for e in audit_entries(restore_plan)]
    assert results.count("ok") == 1 and results.count("replay") == 1


def test_five_wrong_codes_lock_the_user_out_even_with_the_right_code(restore_plan, backup):
    for i in range(mfa.MAX_FAILURES):
        h = Harness(params={"mfa_code": wrong_code("alice")}, run_id=f"manual__guess{i}")
        h.initiate()
        with pytest.raises(AirflowFailException, match="MFA check failed"):
            h.check_initiator()
    h = Harness(run_id="manual__real")  # alice, with her genuine current code
    h.initiate()
    with pytest.raises(AirflowFailException, match="locked out of DR actions until"):
        h.check_initiator()
    checks = [e.details for e in audit_entries(restore_plan) if e.action == "mfa.initiate"]
    assert [c["result"] for c in checks] == ["bad"] * mfa.MAX_FAILURES + ["locked"]
    assert "locked_until" in checks[-2] and "locked_until" in checks[-1]
    # Locked means the code was not even checked, so it was not spent either.
    assert not [k for k in mfa_store_keys(restore_plan) if "/used/" in k]
    assert restored_volumes(restore_plan) == []


def test_a_user_without_an_enrolled_device_is_told_how_to_enrol(restore_plan, backup, monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_SECUREDR_MFA_SECRET_ALICE")
    h = Harness(params={"mfa_code": "123456"})
    h.initiate()
    with pytest.raises(AirflowFailException, match="securedr mfa enroll alice"):
        h.check_initiator()
    (check, _) = audit_entries(restore_plan)
    assert check.details["result"] == "not_enrolled"


# --------------------------------------------------------------------------- the approver


def test_the_approver_code_is_checked_with_the_approval_and_dropped(restore_plan, backup):
    h = Harness()
    h.initiate()
    h.check_initiator()
    code = mfa_code("bob")
    decision = h.approve("bob", code=code)
    # What goes to XCom: the verdict, never the code.
    assert decision["mfa"]["result"] == "ok" and decision["mfa"]["user"] == "bob"
    assert "approver_mfa_code" not in decision["params_input"]
    assert code not in json.dumps(decision)
    assert h.check_approval(decision)["approver"] == "bob"
    assert [a for _, a, _ in trail(restore_plan)][-2:] == ["mfa.approve", "restore.approve"]
    assert trail(restore_plan)[-2] == ("bob", "mfa.approve", "succeeded")


@pytest.mark.parametrize(
    ("code", "result", "says"),
    [("wrong", "bad", "wrong or expired"), (None, "bad", "no MFA code was entered")],
)
def test_an_approval_without_the_approver_code_restores_nothing(
    restore_plan, backup, code, result, says
):
    h = Harness()
    h.initiate()
    h.check_initiator()
    decision = h.approve("bob", code=wrong_code("bob") if code == "wrong" else None)
    assert decision["mfa"]["result"] == result
    with pytest.raises(AirflowFailException, match=f"bob's MFA check failed: .*{says}"):
        h.check_approval(decision)
    assert trail(restore_plan)[-2:] == [
        ("bob", "mfa.approve", "refused"),
        ("bob", "restore.approve", "refused"),
    ]
    assert restored_volumes(restore_plan) == []


def test_an_approver_cannot_reuse_the_code_the_initiator_just_typed(restore_plan, backup):
    # Codes are per user: bob typing alice's current code is a wrong code for bob.
    h = Harness()
    h.initiate()
    h.check_initiator()
    decision = h.approve("bob", code=mfa_code("alice"))
    assert decision["mfa"]["result"] == "bad"


def test_an_unenrolled_approver_cannot_approve(restore_plan, backup, monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_SECUREDR_MFA_SECRET_CAROL")
    h = Harness()
    h.initiate()
    h.check_initiator()
    with pytest.raises(AirflowFailException, match="securedr mfa enroll carol"):
        h.check_approval(h.approve("carol", code="123456"))


def test_an_approval_record_without_an_mfa_verdict_does_not_count(restore_plan, backup):
    from tests.restore.conftest import approval

    h = Harness()
    h.initiate()
    h.check_initiator()
    with pytest.raises(AirflowFailException, match="carries no MFA verification"):
        h.check_approval(approval("bob", mfa=None))


def test_a_rejection_needs_no_code_and_checks_none(restore_plan, backup):
    h = Harness()
    h.initiate()
    h.check_initiator()
    decision = h.approve("bob", "Reject", code=None)
    assert decision["mfa"] is None
    with pytest.raises(AirflowFailException, match="instead of approving"):
        h.check_approval(decision)
    assert "mfa.approve" not in [a for _, a, _ in trail(restore_plan)]
