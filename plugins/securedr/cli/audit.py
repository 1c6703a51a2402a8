"""``securedr audit-verify``: check the audit trail in the evidence bucket, link by link.

Reads every entry of the plan's trail from S3 by object versions (credentials and endpoint from
the usual AWS environment: profile, role, ``AWS_ENDPOINT_URL``), verifies hashes, signatures
against the plan's trusted keys and the chain, checks the trail against the newest signed anchor
of its head (every entry up to the anchored one must still be there), and prints a
one-paragraph verdict naming the first broken link and every entry hidden by a delete marker,
deleted or rewritten. Exit status: 0 intact, 1 broken, 2 could not check (the message says
why). No Airflow needed.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from securedr.core.audit import render_report

EXIT_OK = 0
EXIT_BROKEN = 1
EXIT_ERROR = 2

_PEM_PUBLIC = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)
_HEAD = re.compile(r"^(\d{1,12}):([0-9a-f]{64})$")


def register(subparsers: Any) -> None:
    """Add ``audit-verify`` to the ``securedr`` parser."""
    parser = subparsers.add_parser(
        "audit-verify",
        help="verify the audit trail in the evidence bucket and report the first broken link",
        description=(
            "Read the plan's audit trail from the evidence bucket and verify every entry's "
            "hash, signature (plan's trusted keys) and link to its predecessor. Exit 0 if "
            "intact, 1 if broken, 2 if it could not be checked."
        ),
    )
    parser.add_argument(
        "--plan",
        type=Path,
        default=None,
        help="the DR plan (default: $SECUREDR_PLAN or include/dr_plan.yaml)",
    )
    parser.add_argument(
        "--trusted-keys",
        type=Path,
        default=None,
        help="PEM bundle of trusted public keys (default: the plan's signing.trusted_keys)",
    )
    parser.add_argument(
        "--expected-head",
        default=None,
        metavar="SEQ:HASH",
        help="an entry recorded earlier (e.g. in a restore report); detects a truncated trail",
    )
    parser.set_defaults(func=_audit_verify)


def _fail(message: str) -> int:
    print(f"securedr audit-verify: {message}", file=sys.stderr)
    return EXIT_ERROR


def _audit_verify(args: argparse.Namespace) -> int:
    from securedr.core.plan import PlanError, load_plan, plan_dir

    try:
        plan = load_plan(args.plan)
    except PlanError as exc:
        return _fail(str(exc))
    keys_path = args.trusted_keys or plan.trusted_keys_path(plan_dir(args.plan))
    try:
        trusted = _PEM_PUBLIC.findall(keys_path.read_bytes())
    except OSError as exc:
        return _fail(f"cannot read the trusted keys {keys_path}: {exc.strerror}")
    if not trusted:
        return _fail(f"{keys_path} holds no PEM public key")
    expected_head = None
    if args.expected_head:
        match = _HEAD.match(args.expected_head)
        if not match:
            return _fail("--expected-head must be SEQ:HASH (64 lowercase hex characters)")
        expected_head = (int(match.group(1)), match.group(2))

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from securedr.aws.audit_store import S3AuditTrail
    from securedr.aws.errors import retry_config

    trail = S3AuditTrail(
        boto3.client("s3", region_name=plan.regions.dr, config=retry_config()),
        bucket=plan.evidence_bucket.name,
        evidence_prefix=plan.evidence_bucket.prefix,
        plan=plan.name,
    )
    try:
        anchor = trail.anchors(trusted).newest
        report = trail.verify(trusted, expected_head=expected_head)
    except (BotoCoreError, ClientError) as exc:
        return _fail(f"cannot read {trail.url}: {exc}")
    print(f"{trail.url}: {render_report(report)}")
    if anchor is None:
        print(
            "No signed anchor of the trail's head was found: entries deleted from the end of "
            "the trail could not be detected (runs anchor the head when they end)."
        )
    else:
        print(
            f"Checked against the newest anchor: entry {anchor.seq} (hash {anchor.hash}), "
            f"anchored by run {anchor.run_id} at {anchor.anchored_at} ({anchor.key})."
        )
    return EXIT_OK if report.ok else EXIT_BROKEN
