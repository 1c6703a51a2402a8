"""MFA step-up for DR actions: time-based one-time codes (RFC 6238), used once, with lockout.

Initiating or approving a restore needs the acting user's current TOTP code from the device
they enrolled (``securedr mfa enroll``). This module makes every decision about a code; the
state that must outlive a task - which time steps a user already spent, and when they failed -
lives in a :class:`MfaLedger` (in production the evidence bucket, see
:mod:`securedr.aws.mfa_store`).

Guarantees of :func:`verify_code`:

* a code is accepted only for the current 30-second step or one step either side
  (RFC 6238 section 5.2's "one time step" network-delay allowance), compared in constant time;
* an accepted code is spent: the ledger's write-once :meth:`MfaLedger.claim_step` decides, so of
  two concurrent uses of the same code exactly one wins and the other is a ``replay``;
* :data:`MAX_FAILURES` wrong codes within :data:`FAILURE_WINDOW` lock the user out of DR
  actions for :data:`LOCKOUT` from the last of them; while locked, no code is even looked at;
* the code and the secret never appear in a result, a message or an exception.

Pure module: pyotp for the RFC 6238 arithmetic, no Airflow, no boto3.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

import pyotp

#: RFC 6238 defaults, which every authenticator app implements.
TOTP_DIGITS = 6
TOTP_PERIOD_SECONDS = 30
#: Steps either side of the current one that are still accepted (clock skew, typing time).
VALID_WINDOW_STEPS = 1
#: Lockout policy: this many failures within the window lock the user out for LOCKOUT.
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)
#: How far back a ledger must report failures for :func:`locked_until` to be exact.
FAILURE_LOOKBACK = FAILURE_WINDOW + LOCKOUT
#: Issuer shown by authenticator apps.
ISSUER = "SecureDR"
#: The Airflow Variable holding a user's TOTP secret (its name contains "secret", so Airflow
#: masks the value in task logs).
SECRET_VARIABLE_PREFIX = "securedr_mfa_secret_"  # noqa: S105 - a name, not a secret

#: What a typed code looks like (the trigger form's check; verify_code re-checks everything).
MFA_CODE_PATTERN = rf"^ *\d{{3}} *\d{{{TOTP_DIGITS - 3}}} *$"

_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_CODE_RE = re.compile(rf"^\d{{{TOTP_DIGITS}}}$")
_SECRET_RE = re.compile(r"^[A-Z2-7]{16,128}$")


class MfaError(ValueError):
    """A user name or secret cannot be used; the message names what is wrong (never a secret)."""


class Outcome(StrEnum):
    """What a check decided. Only ``OK`` lets the DR action go on."""

    OK = "ok"
    BAD = "bad"  # missing, malformed or wrong code (counts towards the lockout)
    REPLAY = "replay"  # the code's time step was already spent
    LOCKED = "locked"  # too many recent failures; the code was not looked at
    NOT_ENROLLED = "not_enrolled"  # the user has no secret


@dataclass(frozen=True)
class MfaResult:
    """The verdict on one code. Safe to log and audit: holds neither the code nor the secret."""

    user: str
    purpose: str
    outcome: Outcome
    reason: str
    step: int | None = None
    locked_until: datetime | None = None
    failures: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    def to_audit(self) -> dict[str, object]:
        """The audit record of this check (what was decided, never the code)."""
        record: dict[str, object] = {
            "user": self.user,
            "purpose": self.purpose,
            "result": self.outcome.value,
            "reason": self.reason,
            "recent_failures": self.failures,
        }
        if self.step is not None:
            record["time_step"] = self.step
        if self.locked_until is not None:
            record["locked_until"] = self.locked_until.isoformat()
        return record


class MfaLedger(Protocol):
    """Durable MFA state shared by every task and process."""

    def recent_failures(self, user: str, since: datetime) -> list[datetime]:
        """When ``user`` entered a wrong code, at or after ``since``."""
        ...

    def record_failure(self, user: str, at: datetime, purpose: str, run_id: str) -> None:
        """Remember a wrong code entered by ``user`` at ``at``."""
        ...

    def claim_step(self, user: str, step: int, purpose: str, run_id: str) -> bool:
        """Spend ``user``'s code of time step ``step``; False if it was already spent.

        Must be atomic (write-once): of two concurrent claims exactly one returns True.
        """
        ...


@dataclass
class MemoryLedger:
    """An in-process :class:`MfaLedger` (tests, and the decision logic's reference)."""

    failures: dict[str, list[datetime]] = field(default_factory=dict)
    spent: set[tuple[str, int]] = field(default_factory=set)

    def recent_failures(self, user: str, since: datetime) -> list[datetime]:
        return [t for t in self.failures.get(user, []) if t >= since]

    def record_failure(self, user: str, at: datetime, purpose: str, run_id: str) -> None:
        self.failures.setdefault(user, []).append(at)

    def claim_step(self, user: str, step: int, purpose: str, run_id: str) -> bool:
        if (user, step) in self.spent:
            return False
        self.spent.add((user, step))
        return True


def check_user(user: str) -> str:
    """``user`` if it is an Airflow user name SecureDR can key MFA state by; raise otherwise."""
    if not isinstance(user, str) or not _USER_RE.match(user):
        raise MfaError(
            "a user name is 1-64 characters: letters, digits, '.', '_', '@' or '-', starting "
            "with a letter or digit"
        )
    return user


def secret_variable(user: str) -> str:
    """The Airflow Variable that holds ``user``'s TOTP secret."""
    return SECRET_VARIABLE_PREFIX + check_user(user).lower()


def generate_secret() -> str:
    """A new random base32 TOTP secret (160 bits, RFC 4226's recommended length)."""
    return pyotp.random_base32(length=32)


def check_secret(secret: str) -> str:
    """The secret in canonical form (upper case, no spaces or padding); raise if unusable."""
    canonical = str(secret or "").replace(" ", "").rstrip("=").upper()
    if not _SECRET_RE.match(canonical):
        raise MfaError(
            "the stored MFA secret is not a base32 TOTP secret of at least 80 bits; re-enrol "
            "the user with `securedr mfa enroll USER --force`"
        )
    return canonical


def provisioning_uri(secret: str, user: str, *, issuer: str = ISSUER) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app enrols from (it holds the secret)."""
    return pyotp.TOTP(
        check_secret(secret), digits=TOTP_DIGITS, interval=TOTP_PERIOD_SECONDS
    ).provisioning_uri(name=check_user(user), issuer_name=issuer)


def time_step(at: datetime) -> int:
    """The RFC 6238 time step (T) that ``at`` falls in."""
    return int(_utc(at).timestamp()) // TOTP_PERIOD_SECONDS


def code_at(secret: str, at: datetime) -> str:
    """The code an enrolled device shows at ``at`` (what the demo and the tests type)."""
    return _totp(secret).generate_otp(time_step(at))


def matching_step(secret: str, code: str | None, at: datetime) -> int | None:
    """The time step within the window whose code is ``code``, or None.

    Every candidate is compared (constant time, no early exit), so timing tells nothing.
    """
    candidate = normalize_code(code)
    if candidate is None:
        return None
    totp = _totp(secret)
    now = time_step(at)
    found: int | None = None
    # Current step first, so a code valid for two steps is charged to the current one.
    for step in (now, now - 1, now + 1)[: 1 + 2 * VALID_WINDOW_STEPS]:
        if hmac.compare_digest(totp.generate_otp(step), candidate) and found is None:
            found = step
    return found


def normalize_code(code: object) -> str | None:
    """The code as typed, without spaces; None if it is not six digits."""
    if not isinstance(code, str | int) or isinstance(code, bool):
        return None
    text = str(code).replace(" ", "").strip()
    return text if _CODE_RE.match(text) else None


def locked_until(failures: list[datetime], now: datetime) -> datetime | None:
    """When the lockout caused by ``failures`` ends, if it is still in force at ``now``.

    Locked when any :data:`MAX_FAILURES` consecutive failures fall within
    :data:`FAILURE_WINDOW`; the lockout lasts :data:`LOCKOUT` from the last of them.
    """
    ordered = sorted(_utc(t) for t in failures)
    until: datetime | None = None
    for i in range(len(ordered) - MAX_FAILURES + 1):
        first, last = ordered[i], ordered[i + MAX_FAILURES - 1]
        if last - first <= FAILURE_WINDOW:
            end = last + LOCKOUT
            if until is None or end > until:
                until = end
    return until if until is not None and until > _utc(now) else None


def verify_code(
    *,
    user: str,
    code: object,
    secret: str | None,
    ledger: MfaLedger,
    now: datetime,
    purpose: str,
    run_id: str,
) -> MfaResult:
    """Decide whether ``user`` may act now with ``code``; spend the code if so.

    ``purpose`` names the DR action (``initiate``, ``approve``) for the ledger and the result.
    Order: not enrolled -> locked -> wrong code (recorded as a failure) -> replay -> ok.
    """
    check_user(user)
    now = _utc(now)
    if not secret:
        return MfaResult(
            user,
            purpose,
            Outcome.NOT_ENROLLED,
            f"user {user!r} has no MFA device enrolled, so they cannot {purpose} a restore. "
            f"An administrator enrols one with `securedr mfa enroll {user}` (README, 'MFA "
            "step-up'); then scan the QR code with an authenticator app",
        )
    canonical = check_secret(secret)
    recent = ledger.recent_failures(user, now - FAILURE_LOOKBACK)
    window = [t for t in recent if t > now - FAILURE_WINDOW]
    until = locked_until(recent, now)
    if until is not None:
        return MfaResult(
            user,
            purpose,
            Outcome.LOCKED,
            f"user {user!r} is locked out of DR actions until {until.isoformat()} after "
            f"{MAX_FAILURES} wrong MFA codes within {_minutes(FAILURE_WINDOW)} minutes; the code "
            "was not checked. Wait, then try again with a fresh code (and find out who entered "
            "the wrong ones)",
            locked_until=until,
            failures=len(window),
        )
    step = matching_step(canonical, code, now)
    if step is None:
        ledger.record_failure(user, now, purpose, run_id)
        failures = len(window) + 1
        until = locked_until([*recent, now], now)
        if normalize_code(code) is None:
            what = "no MFA code was entered" if not code else "the MFA code is not six digits"
        else:
            what = "the MFA code is wrong or expired"
        left = (
            f"user {user!r} is now locked out of DR actions until {until.isoformat()}"
            if until
            else f"{MAX_FAILURES - failures} more failure(s) within "
            f"{_minutes(FAILURE_WINDOW)} minutes lock {user!r} out"
        )
        return MfaResult(
            user,
            purpose,
            Outcome.BAD,
            f"{what} for {user!r}; enter the current code from the authenticator app enrolled "
            f"for SecureDR ({left})",
            locked_until=until,
            failures=failures,
        )
    if not ledger.claim_step(user, step, purpose, run_id):
        return MfaResult(
            user,
            purpose,
            Outcome.REPLAY,
            f"this MFA code of {user!r} was already used; a code works once. Wait for the "
            "next code on the authenticator app and use that",
            step=step,
            failures=len(window),
        )
    return MfaResult(
        user, purpose, Outcome.OK, "MFA code verified", step=step, failures=len(window)
    )


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(check_secret(secret), digits=TOTP_DIGITS, interval=TOTP_PERIOD_SECONDS)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise MfaError("MFA times must be timezone-aware (UTC)")
    return at.astimezone(UTC)


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)
