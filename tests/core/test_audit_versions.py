"""The audit trail's version history and signed anchors: hidden, deleted, rewritten and cut
entries are named, pure logic only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from securedr.core.anchor import ANCHOR_KIND, AnchorError, anchor_document, newest, parse_anchor
from securedr.core.audit import (
    ObjectVersion,
    chosen_versions,
    new_entry,
    object_key,
    render_report,
    verify_chain,
    version_findings,
    with_findings,
)
from securedr.core.signing import generate_signing_key, sign_document

KEY = generate_signing_key()
ATTACKER = generate_signing_key()
T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
PREFIX = "securedr/audit/demo"


def _chain(n: int):
    entries, prev = [], None
    for i in range(n):
        prev = new_entry(
            prev,
            time=T0 + timedelta(minutes=i),
            actor="alice",
            action="restore.ebs",
            resource=f"vol-{i}",
            outcome="started",
            run_id="manual__1",
            private_key_pem=KEY[0],
        )
        entries.append(prev)
    return entries


def _v(seq: int, vid: str, *, latest: bool = True, marker: bool = False, order: int = 0):
    return ObjectVersion(
        key=object_key(PREFIX, seq),
        version_id=vid,
        is_latest=latest,
        delete_marker=marker,
        last_modified=f"2026-12-01T02:{order:02d}:00+00:00",
        order=order,
    )


def test_a_clean_history_has_no_findings_and_reads_the_only_version() -> None:
    versions = [_v(0, "a"), _v(1, "b")]
    assert version_findings(versions) == []
    assert chosen_versions(versions) == {object_key(PREFIX, 0): "a", object_key(PREFIX, 1): "b"}


def test_an_entry_hidden_by_a_delete_marker_is_named_and_still_read() -> None:
    versions = [_v(0, "a"), _v(1, "dm", marker=True, order=0), _v(1, "b", latest=False, order=1)]
    [finding] = version_findings(versions)
    assert finding.seq == 1
    assert finding.sentence().startswith("entry 1 is hidden by a delete marker (version dm")
    assert "stored version b still exists" in finding.sentence()
    assert chosen_versions(versions)[object_key(PREFIX, 1)] == "b"


def test_an_entry_with_only_a_delete_marker_left_is_named_deleted() -> None:
    versions = [_v(0, "a"), _v(1, "dm", marker=True)]
    [finding] = version_findings(versions)
    assert finding.sentence().startswith("entry 1 was deleted: only a delete marker remains")
    assert object_key(PREFIX, 1) not in chosen_versions(versions)


def test_a_rewritten_entry_is_named_and_its_first_version_is_the_one_checked() -> None:
    versions = [_v(2, "new", order=0), _v(2, "orig", latest=False, order=1)]
    [finding] = version_findings(versions)
    assert finding.sentence().startswith("entry 2 was rewritten: 2 stored versions")
    assert chosen_versions(versions)[object_key(PREFIX, 2)] == "orig"


def test_hidden_then_written_again_is_named() -> None:
    versions = [
        _v(3, "again", order=0),
        _v(3, "dm", marker=True, latest=False, order=1),
        _v(3, "orig", latest=False, order=2),
    ]
    sentences = [f.sentence() for f in version_findings(versions)]
    assert any("hidden by a delete marker" in s and "written again" in s for s in sentences)
    assert any(s.startswith("entry 3 was rewritten") for s in sentences)


def test_findings_make_an_intact_chain_a_failure_that_names_them() -> None:
    chain = _chain(4)
    report = verify_chain(chain, [KEY[1]])
    versions = [_v(3, "dm", marker=True), _v(3, "d", latest=False, order=1)]
    tampered = with_findings(report, version_findings(versions))
    assert not tampered.ok and tampered.chain_intact
    assert tampered.first_broken_seq == 3
    text = render_report(tampered)
    assert text.startswith("Audit trail TAMPERED WITH (1 finding(s)): entry 3 is hidden")
    assert with_findings(report, []) is report


def test_findings_are_added_to_a_broken_chain_without_hiding_the_break() -> None:
    chain = _chain(4)
    report = verify_chain(chain[:2] + chain[3:], [KEY[1]])
    tampered = with_findings(report, version_findings([_v(0, "x", order=0), _v(0, "y", order=1)]))
    assert tampered.reason == report.reason and not tampered.chain_intact
    assert "Also in the version history: entry 0 was rewritten" in render_report(tampered)


def test_a_cut_tail_after_the_anchor_is_named_by_range() -> None:
    chain = _chain(6)
    key, document = anchor_document(
        plan="demo",
        seq=5,
        hash_=chain[5].hash,
        run_id="manual__1",
        anchored_at=T0,
        private_key_pem=KEY[0],
        evidence_prefix="securedr",
    )
    assert key == "securedr/audit-anchors/demo/000000000005.json"
    anchor = parse_anchor(document, [KEY[1]], plan="demo", key=key)
    assert anchor.head == (5, chain[5].hash)
    report = verify_chain(chain[:3], [KEY[1]], expected_head=anchor.head)
    assert not report.ok
    assert report.reason.endswith("entries 3..5 are gone")
    assert verify_chain(chain, [KEY[1]], expected_head=anchor.head).ok


def _anchor(seq: int, key=KEY, **overrides):
    payload = {
        "kind": ANCHOR_KIND,
        "version": 1,
        "plan": "demo",
        "seq": seq,
        "hash": "a" * 64,
        "run_id": "r",
        "anchored_at": "2026-12-01T02:00:00.000000Z",
        **overrides,
    }
    return sign_document(payload, key[0])


@pytest.mark.parametrize(
    ("document", "key", "message"),
    [
        (_anchor(3, ATTACKER), "x/000000000003.json", "cannot be trusted"),
        (_anchor(3), "x/000000000007.json", "stored under another entry's name"),
        (_anchor(3, plan="other"), "x/000000000003.json", "anchors plan 'other'"),
        (_anchor(3, kind="securedr.manifest"), "x/000000000003.json", "not an anchor"),
        (sign_document({"run_id": "r"}, KEY[0]), "x/000000000003.json", "fields differ"),
    ],
)
def test_forged_replayed_or_foreign_anchors_are_refused(document, key, message) -> None:
    with pytest.raises(AnchorError, match=message):
        parse_anchor(document, [KEY[1]], plan="demo", key=key)


def test_the_newest_anchor_is_the_highest_entry() -> None:
    anchors = [
        parse_anchor(_anchor(s), [KEY[1]], plan="demo", key=object_key("x", s)) for s in (4, 9, 2)
    ]
    assert newest(anchors).seq == 9
    assert newest([]) is None
