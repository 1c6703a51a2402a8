"""``securedr mfa enroll``: the secret goes to an Airflow Variable, the user gets a QR code."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pyotp
import pytest

from securedr.cli import main
from securedr.core import mfa

URI = re.compile(r"otpauth://totp/\S+")


def enroll(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["mfa", "enroll", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def stored(user: str) -> str | None:
    from airflow.models.variable import Variable

    return Variable.get(mfa.secret_variable(user), default_var=None)


@pytest.fixture
def variables(airflow_db, monkeypatch):
    """A clean Variable table; no AIRFLOW_VAR_ overrides for the demo users."""
    from airflow.models.variable import Variable

    for user in ("dora", "erin"):
        monkeypatch.delenv(f"AIRFLOW_VAR_SECUREDR_MFA_SECRET_{user.upper()}", raising=False)
        Variable.delete(mfa.secret_variable(user))
    yield


def test_enroll_stores_the_secret_and_prints_uri_and_qr(variables, capsys):
    code, out, err = enroll(capsys, "dora")
    assert code == 0, err
    secret = stored("dora")
    assert secret and mfa.check_secret(secret) == secret
    (uri,) = URI.findall(out)
    totp = pyotp.parse_uri(uri)
    assert totp.secret == secret and totp.issuer == "SecureDR" and totp.name == "dora"
    assert totp.now() == mfa.code_at(secret, datetime.now(UTC))
    assert "\u2580" in out or "\u2584" in out or "\u2588" in out  # the QR code's half blocks
    assert secret not in err and "Variable securedr_mfa_secret_dora" in err


def test_enroll_refuses_to_replace_without_force(variables, capsys):
    assert enroll(capsys, "erin", "--no-qr")[0] == 0
    first = stored("erin")
    code, out, err = enroll(capsys, "erin")
    assert code == 2 and out == ""
    assert "already enrolled" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert stored("erin") == first
    code, out, _ = enroll(capsys, "erin", "--force", "--no-qr")
    assert code == 0 and stored("erin") != first
    assert "\u2584" not in out and URI.search(out)


def test_enroll_reports_a_shadowing_environment_variable(variables, capsys, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_SECUREDR_MFA_SECRET_DORA", "JBSWY3DPEHPK3PXP")
    code, _, err = enroll(capsys, "dora", "--force")
    assert code == 2 and "AIRFLOW_VAR_SECUREDR_MFA_SECRET_DORA" in err
    assert "JBSWY3DPEHPK3PXP" not in err


def test_enroll_refuses_odd_user_names(capsys):
    code, _, err = enroll(capsys, "../bob")
    assert code == 2 and "user name" in err
