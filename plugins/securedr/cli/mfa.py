"""``securedr mfa enroll USER``: give a DR user the authenticator that step-up MFA checks.

Creates a random TOTP secret (RFC 6238), stores it as the Airflow Variable
``securedr_mfa_secret_<user>`` (Airflow's metadata database, encrypted with the deployment's
Fernet key; tasks read it through whatever secrets backend the deployment configures), and
prints the ``otpauth://`` URI and its QR code for the user to scan with an authenticator app.

Guarantees:

* an existing secret is never replaced without ``--force`` (re-enrolling invalidates the user's
  device), and a secret served from an ``AIRFLOW_VAR_...`` environment variable - which would
  shadow a stored one - is reported instead of silently ignored;
* the secret is written nowhere else: not to a log, not to a file; the terminal output is the
  one place it appears (clear the screen once the device is enrolled);
* failures exit with status 2 and one line on stderr.

Needs Airflow's configuration (``AIRFLOW_HOME`` / ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``) of
the deployment, like ``airflow variables set``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

from securedr.core import mfa

EXIT_FAILURE = 2


def register(subparsers: Any) -> None:
    """Add ``mfa enroll`` to the ``securedr`` parser."""
    parser = subparsers.add_parser(
        "mfa",
        help="MFA step-up for DR actions: enrol users' authenticator apps",
        description="Manage the TOTP authenticators dr_restore asks initiators and approvers for.",
    )
    commands = parser.add_subparsers(dest="mfa_command", required=True, metavar="MFA_COMMAND")
    enroll = commands.add_parser(
        "enroll",
        help="create USER's TOTP secret, store it in Airflow, print the QR code to scan",
        description=(
            "Create a TOTP secret for USER (their Airflow user name), store it as the Airflow "
            f"Variable {mfa.SECRET_VARIABLE_PREFIX}<user> and print an otpauth:// URI and a QR "
            "code for an authenticator app. The output contains the secret: run it where only "
            "USER can see the screen."
        ),
    )
    enroll.add_argument("user", metavar="USER", help="the Airflow user name, e.g. alice")
    enroll.add_argument(
        "--force", action="store_true", help="replace an existing secret (the old device stops)"
    )
    enroll.add_argument(
        "--no-qr", action="store_true", help="print only the otpauth:// URI (no QR code)"
    )
    enroll.set_defaults(func=_enroll)


def _fail(message: str) -> int:
    print(f"securedr mfa enroll: error: {message}", file=sys.stderr)
    return EXIT_FAILURE


def _enroll(args: argparse.Namespace) -> int:
    try:
        user = mfa.check_user(args.user)
    except mfa.MfaError as exc:
        return _fail(f"{args.user!r}: {exc}")
    name = mfa.secret_variable(user)
    env_name = f"AIRFLOW_VAR_{name.upper()}"
    if os.environ.get(env_name):
        return _fail(
            f"{user}'s secret comes from the environment variable {env_name}, which overrides "
            f"any stored Variable; unset it (or change it where it is set) to enrol {user} here"
        )
    try:
        from airflow.models.variable import Variable

        existing = Variable.get(name, default_var=None)
    except Exception as exc:  # no database, wrong AIRFLOW_HOME, ...
        return _fail(f"cannot read Airflow Variables ({type(exc).__name__}); {_airflow_hint()}")
    if existing and not args.force:
        return _fail(
            f"{user} is already enrolled (Variable {name} exists); pass --force to replace the "
            "secret - the device enrolled now stops working"
        )
    secret = mfa.generate_secret()
    try:
        Variable.set(
            name,
            secret,
            description=f"SecureDR MFA (TOTP) secret of {user}; `securedr mfa enroll`",
        )
    except Exception as exc:
        return _fail(f"cannot store the Variable {name} ({type(exc).__name__}); {_airflow_hint()}")
    uri = mfa.provisioning_uri(secret, user)
    out = sys.stdout
    print(f"Enrolled {user}: scan this with an authenticator app (TOTP, 6 digits, 30 s).", file=out)
    if not args.no_qr:
        _print_qr(uri, out)
    print(uri, file=out)
    print(
        f"Stored as the Airflow Variable {name}. The URI and the QR code hold the secret: "
        "clear the screen once the app shows SecureDR codes.",
        file=sys.stderr,
    )
    return 0


def _print_qr(uri: str, out: TextIO) -> None:
    import segno

    segno.make(uri, error="m").terminal(out=out, compact=True)


def _airflow_hint() -> str:
    return (
        "run this with the deployment's Airflow configuration (AIRFLOW_HOME, "
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN) after `airflow db migrate`"
    )
