"""MFA decisions: RFC 6238 codes, a one-step window, one use per code, lockout after failures."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from securedr.core import mfa
from securedr.core.mfa import MemoryLedger, Outcome

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NOW = datetime(2026, 12, 3, 7, 0, 10, tzinfo=UTC)


def check(code, *, ledger=None, now=NOW, user="alice", secret=SECRET, purpose="initiate"):
    return mfa.verify_code(
        user=user,
        code=code,
        secret=secret,
        ledger=ledger if ledger is not None else MemoryLedger(),
        now=now,
        purpose=purpose,
        run_id="manual__1",
    )


def test_codes_are_rfc6238_totp():
    # RFC 6238 appendix B, SHA-1, T = 59 s: 94287082 (8 digits); the 6-digit code is its tail.
    secret = base64.b32encode(b"12345678901234567890").decode()
    assert mfa.code_at(secret, datetime.fromtimestamp(59, UTC)) == "287082"
    assert mfa.code_at(secret, datetime.fromtimestamp(1111111109, UTC)) == "081804"


def test_the_current_code_passes_and_names_its_step():
    result = check(mfa.code_at(SECRET, NOW))
    assert result.ok and result.outcome is Outcome.OK
    assert result.step == mfa.time_step(NOW)


@pytest.mark.parametrize("offset", [-30, 30])
def test_one_step_either_side_is_accepted(offset):
    code = mfa.code_at(SECRET, NOW + timedelta(seconds=offset))
    assert check(code).ok


@pytest.mark.parametrize("offset", [-60, 60, -3600])
def test_codes_outside_the_window_are_refused(offset):
    code = mfa.code_at(SECRET, NOW + timedelta(seconds=offset))
    result = check(code)
    assert result.outcome is Outcome.BAD and "wrong or expired" in result.reason


def test_a_code_works_once():
    ledger = MemoryLedger()
    code = mfa.code_at(SECRET, NOW)
    assert check(code, ledger=ledger).ok
    replay = check(code, ledger=ledger, now=NOW + timedelta(seconds=5), purpose="approve")
    assert replay.outcome is Outcome.REPLAY and "already used" in replay.reason
    # Another user's code for the same step is their own.
    assert check(code, ledger=ledger, user="bob").ok


def test_a_replay_race_loses_when_the_ledger_refuses_the_claim():
    class RacingLedger(MemoryLedger):
        def claim_step(self, user, step, purpose, run_id):
            return False  # somebody else's write-once claim landed first

    assert check(mfa.code_at(SECRET, NOW), ledger=RacingLedger()).outcome is Outcome.REPLAY


@pytest.mark.parametrize("code", [None, "", "12345", "1234567", "abcdef", True, 3.5])
def test_missing_or_malformed_codes_are_failures(code):
    ledger = MemoryLedger()
    result = check(code, ledger=ledger)
    assert result.outcome is Outcome.BAD and result.failures == 1
    assert ledger.failures["alice"] == [NOW]


def test_spaces_in_a_typed_code_are_ignored():
    code = mfa.code_at(SECRET, NOW)
    assert check(f" {code[:3]} {code[3:]} ").ok


def test_five_failures_in_fifteen_minutes_lock_the_user_out():
    ledger = MemoryLedger()
    for i in range(4):
        result = check("000000", ledger=ledger, now=NOW + timedelta(minutes=3 * i))
        assert result.outcome is Outcome.BAD and result.locked_until is None
    fifth_at = NOW + timedelta(minutes=13)
    fifth = check("000000", ledger=ledger, now=fifth_at)
    assert fifth.outcome is Outcome.BAD
    assert fifth.locked_until == fifth_at + mfa.LOCKOUT
    assert "now locked out" in fifth.reason
    # Even the right code is not looked at while locked, and is not spent.
    later = fifth_at + timedelta(minutes=1)
    locked = check(mfa.code_at(SECRET, later), ledger=ledger, now=later)
    assert locked.outcome is Outcome.LOCKED and locked.step is None
    assert "locked out of DR actions until" in locked.reason
    assert ("alice", mfa.time_step(later)) not in ledger.spent
    # Other users are not affected.
    assert check(mfa.code_at(SECRET, later), ledger=ledger, now=later, user="bob").ok
    # After the lockout, a fresh code works again.
    after = fifth_at + mfa.LOCKOUT + timedelta(seconds=1)
    assert check(mfa.code_at(SECRET, after), ledger=ledger, now=after).ok


def test_failures_spread_wider_than_the_window_do_not_lock():
    ledger = MemoryLedger()
    for i in range(6):
        at = NOW + timedelta(minutes=4 * i)  # any five span 16 minutes
        assert check("000000", ledger=ledger, now=at).outcome is Outcome.BAD
    at = NOW + timedelta(minutes=21)
    assert check(mfa.code_at(SECRET, at), ledger=ledger, now=at).ok


def test_locked_until_is_pure_arithmetic():
    fails = [NOW + timedelta(minutes=m) for m in (0, 1, 2, 3, 15)]
    assert mfa.locked_until(fails, NOW + timedelta(minutes=16)) == fails[-1] + mfa.LOCKOUT
    assert mfa.locked_until(fails[:4], NOW + timedelta(minutes=16)) is None
    assert mfa.locked_until(fails, fails[-1] + mfa.LOCKOUT) is None


def test_a_user_without_a_secret_is_told_how_to_enrol():
    ledger = MemoryLedger()
    result = check("123456", secret=None, ledger=ledger)
    assert result.outcome is Outcome.NOT_ENROLLED
    assert "securedr mfa enroll alice" in result.reason
    assert not ledger.failures


def test_results_never_hold_the_code_or_the_secret():
    code = mfa.code_at(SECRET, NOW)
    ledger = MemoryLedger()
    for result in (check(code, ledger=ledger), check(code, ledger=ledger), check("999999")):
        text = repr(result) + repr(result.to_audit())
        assert code not in text.replace(str(result.step), "") and SECRET not in text
        assert "999999" not in text


def test_secrets_and_users_are_checked():
    with pytest.raises(mfa.MfaError, match="base32"):
        check("123456", secret="not-a-secret!")
    with pytest.raises(mfa.MfaError, match="user name"):
        mfa.secret_variable("../bob")
    assert mfa.secret_variable("Alice") == "securedr_mfa_secret_alice"
    with pytest.raises(mfa.MfaError, match="timezone"):
        mfa.time_step(datetime(2026, 1, 1))


def test_enrolment_material():
    secret = mfa.generate_secret()
    assert mfa.check_secret(secret) == secret and len(secret) == 32
    uri = mfa.provisioning_uri(secret, "alice")
    assert uri.startswith("otpauth://totp/SecureDR:alice?") and f"secret={secret}" in uri
    assert pyotp.parse_uri(uri).now() == pyotp.TOTP(secret).now()
