"""The shipped evidence bucket policy denies deleting evidence under every prefix SecureDR
writes, for everyone but the break-glass principal - checked against the code's own keys."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime

from securedr.aws.audit_store import S3AuditTrail
from securedr.core import iam
from securedr.core.anchor import ANCHOR_FOLDER, anchor_prefix
from securedr.core.drill import trend_key
from securedr.core.filesets import FILE_SETS_FOLDER
from securedr.core.manifest import manifest_key
from tests.conftest import REPO

TEXT = iam.EVIDENCE_BUCKET_POLICY_TEMPLATE.read_text()
POLICY = json.loads(TEXT)
BY_SID = {s["Sid"]: s for s in POLICY["Statement"]}
OBJECTS = "arn:aws:s3:::${EvidenceBucket}/${EvidencePrefix}/"
BREAK_GLASS = {"ArnNotEquals": {"aws:PrincipalArn": "${BreakGlassPrincipalArn}"}}


def _literal_key_folders() -> set[str]:
    """First literal argument of every ``<evidence>.key("folder", ...)`` call in the plugins."""
    folders = set()
    for path in (REPO / "plugins" / "securedr").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "key"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                folders.add(node.args[0].value.split("/")[0])
    return folders


def written_folders() -> set[str]:
    """The top-level evidence folders SecureDR writes objects under."""
    now = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    trail = S3AuditTrail(None, bucket="b", evidence_prefix="", plan="demo")
    return _literal_key_folders() | {
        manifest_key("demo", "scheduled__x", now.isoformat()).split("/")[0],
        trend_key("demo", now, run_id="manual__x").split("/")[0],
        FILE_SETS_FOLDER,
        trail.prefix.split("/")[0],
        anchor_prefix("", "demo").split("/")[0],
    }


def test_the_scan_finds_every_kind_of_evidence() -> None:
    assert written_folders() == {
        "manifests",
        "audit",
        ANCHOR_FOLDER,
        "reports",
        "drills",
        FILE_SETS_FOLDER,
        "mfa",  # spent codes and failures: deleting them would allow replays and reset lockouts
    }


def test_deleting_evidence_is_denied_under_every_prefix_the_code_writes() -> None:
    deny = BY_SID["DenyDeletingEvidenceExceptBreakGlass"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
    # DeleteObject also creates delete markers, which hide evidence from plain listings.
    assert {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"} <= set(
        deny["Action"]
    )
    covered = {r.removeprefix(OBJECTS).removesuffix("/*") for r in deny["Resource"]}
    assert covered == written_folders(), "policy prefixes differ from what the code writes"
    assert deny["Condition"] == BREAK_GLASS


def test_weakening_the_bucket_is_denied_to_all_but_break_glass() -> None:
    deny = BY_SID["DenyWeakeningTheEvidenceBucketExceptBreakGlass"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
    assert {
        "s3:PutBucketPolicy",
        "s3:DeleteBucketPolicy",
        "s3:PutBucketVersioning",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutLifecycleConfiguration",
    } <= set(deny["Action"])
    assert deny["Resource"] == ["arn:aws:s3:::${EvidenceBucket}"]
    assert deny["Condition"] == BREAK_GLASS


def test_only_denies_so_it_never_grants_anything() -> None:
    assert {s["Effect"] for s in POLICY["Statement"]} == {"Deny"}
    # Writes are never denied: every SecureDR write, multipart parts included, must still work.
    for statement in POLICY["Statement"]:
        actions = set(statement["Action"])
        assert not actions & {"s3:PutObject", "s3:PutObjectRetention", "s3:AbortMultipartUpload"}
        assert "s3:*" not in actions or statement["Condition"] == {
            "Bool": {"aws:SecureTransport": "false"}
        }


def test_renders_completely_for_the_plan(plan) -> None:
    arn = "arn:aws:iam::123456789012:role/securedr-break-glass"
    values = iam.evidence_bucket_policy_values(plan, break_glass_principal_arn=arn)
    assert iam.placeholders(TEXT) == set(values)
    rendered = iam.render(TEXT, values)
    text = json.dumps(rendered)
    assert "${" not in text
    assert f"arn:aws:s3:::{plan.evidence_bucket.name}/{plan.evidence_bucket.prefix}/audit/*" in text
    assert rendered["Statement"][0]["Condition"]["ArnNotEquals"]["aws:PrincipalArn"] == arn
