"""Every HTML report comes from the templates in securedr/templates, with autoescaping on."""

from __future__ import annotations

import json
import re
from pathlib import Path

from securedr import rendering
from tests.core.test_drill import parse
from tests.core.test_report import report, verification

HOSTILE = '<script>alert("x")</script>'
ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"


def test_every_report_template_lives_in_one_place_and_escapes():
    names = {p.name for p in rendering.TEMPLATES.glob("*.j2")}
    assert {"drill.html.j2", "nightly.html.j2", "posture.html.j2"} <= names
    env = rendering.environment()
    assert env.from_string("{{ v }}").render(v=HOSTILE) == ESCAPED
    assert env.autoescape is True  # for every template, whatever its suffix


def test_no_report_markup_is_built_in_python_any_more():
    plugin = Path(rendering.__file__).resolve().parent
    for module in ("core/drill.py", "core/report.py", "core/restore.py", "core/posture.py"):
        source = (plugin / module).read_text()
        assert not re.search(r"<(html|table|td|tr|svg|div|span)\b", source), module


def test_nightly_report_html_escapes_everything_from_the_record():
    rec = report(
        [
            verification("ebs", "us-east-1", "vol-0aaa"),
            verification("ebs", "us-east-1", f"vol-{HOSTILE}", passed=False, problems=[HOSTILE]),
        ],
        failed_tasks=[HOSTILE],
    )
    rec["report_url"] = "s3://b/securedr/reports/nightly/demo-estate/x.json"
    page = rendering.render_nightly_html(json.loads(json.dumps(rec)))
    parse(page)
    assert "<script" not in page.lower()
    assert ESCAPED in page
    assert "vol-0aaa" in page and "FAIL" in page and "ed25519:0123456789abcdef" in page


def test_nightly_report_html_shows_the_vault_when_there_is_one():
    from securedr.core.model import Verification
    from securedr.core.report import nightly_report
    from tests.core.test_vault import RUN, T0, point

    ebs = point()
    entry = {
        "account_id": "222222222222",
        "region": "us-west-2",
        "verified": False,
        "snapshot_id": "snap-0vault",
        "problems": [f"lock refused {HOSTILE}"],
    }
    rec = nightly_report(
        plan="demo",
        run_id=RUN,
        started_at=T0.isoformat(),
        finished_at=T0.isoformat(),
        duration_seconds=1,
        verifications=[Verification(point=ebs.to_dict(), passed=True)],
        manifest={"url": "s3://w/m.json", "key_id": "k", "vault_url": "s3://v/m.json"},
        retention=None,
        vault={"vault": {"account_id": "222222222222"}, "points": {ebs.label: entry}},
    )
    page = rendering.render_nightly_html(rec)
    parse(page)
    assert "Vault (account 222222222222)" in page
    assert "222222222222/us-west-2/snap-0vault" in page and "NOT IN VAULT" in page
    assert "NOT PROTECTED IN THE VAULT us-east-1/vol-1: lock refused " + ESCAPED in page
    assert "s3://v/m.json" in page
