"""Tests for securedr.core.audit: building, storing and verifying the hash-chained trail."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securedr.core.audit import (
    GENESIS_HASH,
    AuditEntry,
    ChainReport,
    MalformedEntryError,
    entry_from_json,
    entry_hash,
    entry_to_json,
    new_entry,
    object_key,
    render_report,
    seq_from_object_key,
    verify_chain,
)
from securedr.core.signing import (
    canonical_json,
    generate_signing_key,
    key_id,
    load_private_key,
    load_public_key,
)

KEY = generate_signing_key()
OTHER_KEY = generate_signing_key()  # trusted after a rotation
ATTACKER_KEY = generate_signing_key()  # never trusted
T0 = datetime(2025, 1, 31, 8, 0, tzinfo=UTC)


def _entry(prev: AuditEntry | None, i: int, key: tuple[bytes, bytes] = KEY) -> AuditEntry:
    return new_entry(
        prev,
        time=T0 + timedelta(minutes=i),
        actor="airflow:securedr_backup",
        action="ebs.copy_snapshot",
        resource=f"snap-{i:04d}",
        outcome="succeeded",
        details={"i": i, "region": "eu-central-1"},
        run_id="scheduled__2025-01-31",
        private_key_pem=key[0],
    )


def _chain(n: int, key: tuple[bytes, bytes] = KEY) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    prev = None
    for i in range(n):
        prev = _entry(prev, i, key)
        entries.append(prev)
    return entries


CHAIN = _chain(10)
TRUSTED = [KEY[1]]


def _resign(entry: AuditEntry, key: tuple[bytes, bytes], **changes: object) -> AuditEntry:
    """Rebuild ``entry`` with ``changes``; key id, hash and signature made with ``key``.

    This is what someone holding ``key`` (and write access to the bucket) can do.
    """
    fields = dataclasses.asdict(entry) | changes
    fields["key_id"] = key_id(key[1])
    fields["hash"] = hashlib.sha256(
        canonical_json({k: v for k, v in fields.items() if k not in ("hash", "signature")})
    ).hexdigest()
    fields["signature"] = base64.b64encode(
        load_private_key(key[0]).sign(bytes.fromhex(fields["hash"]))
    ).decode()
    return AuditEntry(**fields)


# --------------------------------------------------------------------------- building


def test_first_entry_starts_the_chain() -> None:
    first = CHAIN[0]
    assert first.seq == 0
    assert first.prev_hash == GENESIS_HASH == "0" * 64
    assert first.time == "2025-01-31T08:00:00.000000Z"
    assert first.key_id == key_id(KEY[1])
    assert first.details == {"i": 0, "region": "eu-central-1"}


def test_entries_link_to_their_predecessor() -> None:
    for prev, entry in itertools.pairwise(CHAIN):
        assert entry.seq == prev.seq + 1
        assert entry.prev_hash == prev.hash


def test_hash_covers_every_field_but_hash_and_signature() -> None:
    entry = CHAIN[3]
    fields = dataclasses.asdict(entry)
    del fields["hash"], fields["signature"]
    assert entry.hash == hashlib.sha256(canonical_json(fields)).hexdigest() == entry_hash(entry)


def test_signature_is_ed25519_over_the_hash_bytes() -> None:
    entry = CHAIN[2]
    load_public_key(KEY[1]).verify(base64.b64decode(entry.signature), bytes.fromhex(entry.hash))


def test_time_accepts_utc_strings_and_aware_datetimes_only() -> None:
    kwargs = dict(
        actor="a", action="x", resource="r", outcome="started", run_id="", private_key_pem=KEY[0]
    )
    assert new_entry(None, time="2025-01-31T08:00:00Z", **kwargs).time == "2025-01-31T08:00:00Z"
    plus_two = datetime(2025, 1, 31, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    assert new_entry(None, time=plus_two, **kwargs).time == "2025-01-31T08:00:00.000000Z"
    with pytest.raises(ValueError, match="must be UTC"):
        new_entry(None, time="2025-01-31T10:00:00+02:00", **kwargs)
    with pytest.raises(ValueError, match="not ISO-8601"):
        new_entry(None, time="yesterday", **kwargs)
    with pytest.raises(ValueError, match="timezone-aware"):
        new_entry(None, time=datetime(2025, 1, 31), **kwargs)
    default = new_entry(None, **kwargs)  # the one allowed clock read
    assert datetime.fromisoformat(default.time).tzinfo is not None


def test_details_are_copied_and_must_be_json() -> None:
    details = {"ids": ["snap-1"]}
    entry = new_entry(
        None,
        time=T0,
        actor="a",
        action="x",
        resource="r",
        outcome="failed",
        details=details,
        run_id="r1",
        private_key_pem=KEY[0],
    )
    details["ids"].append("snap-2")
    assert entry.details == {"ids": ["snap-1"]}
    with pytest.raises(TypeError, match=r"\$\.when"):
        new_entry(
            None,
            time=T0,
            actor="a",
            action="x",
            resource="r",
            outcome="failed",
            details={"when": T0},
            run_id="r1",
            private_key_pem=KEY[0],
        )


def test_required_text_fields_are_validated() -> None:
    with pytest.raises(ValueError, match="actor must be a non-empty string"):
        new_entry(
            None,
            time=T0,
            actor="",
            action="x",
            resource="r",
            outcome="failed",
            run_id="r",
            private_key_pem=KEY[0],
        )


def test_entry_is_hashable_despite_dict_details() -> None:
    assert len({CHAIN[0], CHAIN[1], CHAIN[0]}) == 2


# --------------------------------------------------------------------------- serialisation


def test_json_round_trip_is_exact() -> None:
    for entry in CHAIN:
        data = entry_to_json(entry)
        assert entry_from_json(data) == entry
        assert entry_to_json(entry_from_json(data)) == data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[1]", "expected a JSON object"),
        (b'{"seq": 0}', "missing fields"),
        (b'{"seq": NaN}', "NaN is not valid JSON"),
        (b'{"seq": 1, "seq": 2}', "duplicate field 'seq'"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_json_is_rejected_clearly(data: bytes, message: str) -> None:
    with pytest.raises(MalformedEntryError, match=message):
        entry_from_json(data)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("seq", True, "seq True is not a valid number"),
        ("seq", -1, "seq -1 is not a valid number"),
        ("actor", 5, "actor must be a string"),
        ("details", [], "details must be an object"),
        ("hash", "ABC", "hash must be 64 lowercase hex"),
        ("prev_hash", "0" * 63, "prev_hash must be 64 lowercase hex"),
        ("signature", "***", "signature must be base64"),
        ("extra", 1, r"unexpected fields \['extra'\]"),
    ],
)
def test_badly_typed_fields_are_rejected(field: str, value: object, message: str) -> None:
    raw = json.loads(entry_to_json(CHAIN[1]))
    raw[field] = value
    with pytest.raises(MalformedEntryError, match=message):
        entry_from_json(json.dumps(raw).encode())


def test_object_keys_sort_in_seq_order_and_parse_back() -> None:
    assert object_key("audit/prod", 7) == "audit/prod/000000000007.json"
    assert object_key("audit/prod/", 7) == "audit/prod/000000000007.json"
    seqs = [0, 1, 2, 9, 10, 11, 99, 100, 1000, 123456789]
    keys = [object_key("a", s) for s in seqs]
    assert sorted(keys) == keys
    assert [seq_from_object_key(k) for k in keys] == seqs
    with pytest.raises(ValueError, match="seq must be an int"):
        object_key("a", -1)
    with pytest.raises(ValueError, match="not an audit entry key"):
        seq_from_object_key("a/7.json")


# --------------------------------------------------------------------------- verification


def test_intact_chain_verifies() -> None:
    report = verify_chain(CHAIN, TRUSTED)
    assert report == ChainReport(
        ok=True,
        entries_checked=10,
        first_broken_seq=None,
        reason="entries 0..9 intact",
        first_seq=0,
        last_seq=9,
        last_hash=CHAIN[9].hash,
    )
    assert "intact: 10 entries verified" in render_report(report)


def test_chain_survives_storage_round_trip() -> None:
    stored = {object_key("audit", e.seq): entry_to_json(e) for e in reversed(CHAIN)}
    loaded = [entry_from_json(stored[k]) for k in sorted(stored)]
    assert verify_chain(loaded, TRUSTED).ok


def test_empty_chain_is_ok_but_says_so() -> None:
    report = verify_chain([], TRUSTED)
    assert report.ok and report.entries_checked == 0
    assert "empty" in render_report(report)


def test_deleted_entry_is_reported_at_the_gap() -> None:
    tampered = CHAIN[:6] + CHAIN[7:]
    report = verify_chain(tampered, TRUSTED)
    assert not report.ok
    assert report.first_broken_seq == 6
    assert report.entries_checked == 6
    assert report.reason == (
        "entry 6: missing - entry 7 directly follows entry 5, so it was deleted"
    )
    assert report.last_seq == 5 and report.last_hash == CHAIN[5].hash


def test_several_deleted_entries_are_named_as_a_range() -> None:
    report = verify_chain(CHAIN[:3] + CHAIN[6:], TRUSTED)
    assert report.first_broken_seq == 3
    assert "entries 3..5 were deleted" in report.reason


def test_deleted_first_entries_are_reported() -> None:
    report = verify_chain(CHAIN[2:], TRUSTED)
    assert report.first_broken_seq == 0
    assert report.entries_checked == 0
    assert (
        report.reason
        == "entry 0: missing - the trail starts at entry 2, so entries 0..1 were deleted"
    )
    assert "No entry before it could be verified" in render_report(report)


def test_deleted_last_entries_need_an_expected_head() -> None:
    truncated = CHAIN[:7]
    assert verify_chain(truncated, TRUSTED).ok  # a chain alone cannot see a cut tail
    report = verify_chain(truncated, TRUSTED, expected_head=(9, CHAIN[9].hash))
    assert not report.ok
    assert report.first_broken_seq == 7
    assert report.entries_checked == 7
    assert report.reason == (
        "entry 7: missing - the trail ends at entry 6 but entry 9 was recorded earlier, "
        "so the newest entries were deleted: entries 7..9 are gone"
    )
    assert verify_chain(CHAIN, TRUSTED, expected_head=(9, CHAIN[9].hash)).ok
    assert verify_chain(CHAIN, TRUSTED, expected_head=(4, CHAIN[4].hash)).ok
    emptied = verify_chain([], TRUSTED, expected_head=(0, CHAIN[0].hash))
    assert emptied.first_broken_seq == 0
    assert emptied.reason.startswith(
        "entry 0: missing - the trail is empty but entry 0 was recorded"
    )


def test_rewritten_chain_is_caught_by_expected_head() -> None:
    # Someone with the signing key rewrote history from entry 4 on: every link is valid, but
    # entry 4 no longer matches what the last run report recorded.
    forged = CHAIN[:4]
    prev = CHAIN[3]
    for i in range(4, 10):
        prev = new_entry(
            prev,
            time=T0,
            actor="x",
            action="y",
            resource="z",
            outcome="succeeded",
            run_id="forged",
            private_key_pem=KEY[0],
        )
        forged.append(prev)
        assert prev.seq == i
    assert verify_chain(forged, TRUSTED).ok
    report = verify_chain(forged, TRUSTED, expected_head=(4, CHAIN[4].hash))
    assert report.first_broken_seq == 4
    assert "hash differs from the one recorded earlier" in report.reason


def test_edited_entry_is_reported_as_edited() -> None:
    tampered = list(CHAIN)
    tampered[4] = dataclasses.replace(CHAIN[4], outcome="failed")
    report = verify_chain(tampered, TRUSTED)
    assert report.first_broken_seq == 4
    assert report.entries_checked == 4
    assert report.reason == (
        "entry 4: content does not match its hash - the entry was edited after it was written"
    )


def test_edited_details_in_place_are_detected() -> None:
    tampered = [entry_from_json(entry_to_json(e)) for e in CHAIN]
    tampered[8].details["i"] = 80
    assert verify_chain(tampered, TRUSTED).first_broken_seq == 8


def test_edited_and_rehashed_entry_fails_the_signature() -> None:
    fields = dataclasses.asdict(CHAIN[5]) | {"resource": "snap-evil"}
    del fields["hash"], fields["signature"]
    rehashed = dataclasses.replace(
        CHAIN[5], resource="snap-evil", hash=hashlib.sha256(canonical_json(fields)).hexdigest()
    )
    report = verify_chain([*CHAIN[:5], rehashed, *CHAIN[6:]], TRUSTED)
    assert report.first_broken_seq == 5
    assert report.reason == (
        "entry 5: signature does not verify - the entry was modified or signed by another key"
    )


def test_entry_resigned_by_an_untrusted_key_is_reported() -> None:
    # The attacker re-signs entry 3 and re-chains everything after it with their own key:
    # every hash link is consistent, only the key betrays them.
    tampered = CHAIN[:3]
    prev = CHAIN[2]
    for entry in CHAIN[3:]:
        changes: dict[str, object] = {"prev_hash": prev.hash}
        if entry.seq == 3:
            changes["outcome"] = "refused"
        prev = _resign(entry, ATTACKER_KEY, **changes)
        tampered.append(prev)
    report = verify_chain(tampered, TRUSTED)
    assert report.first_broken_seq == 3
    attacker_id, trusted_id = key_id(ATTACKER_KEY[1]), key_id(KEY[1])
    assert report.reason.startswith(
        f"entry 3: signed by key {attacker_id} which is not among the trusted keys ['{trusted_id}']"
    )


def test_key_id_swapped_to_a_trusted_key_fails_the_signature() -> None:
    # Claiming the trusted key id while signing with another key changes the hash (key_id
    # is hashed), and a re-hash cannot be signed without the trusted private key.
    forged = _resign(CHAIN[2], ATTACKER_KEY)
    forged = dataclasses.replace(forged, key_id=key_id(KEY[1]))
    report = verify_chain([*CHAIN[:2], forged, *CHAIN[3:]], TRUSTED)
    assert report.first_broken_seq == 2
    assert "content does not match its hash" in report.reason


def test_reordered_entries_are_reported_as_reordered() -> None:
    tampered = list(CHAIN)
    tampered[5], tampered[6] = tampered[6], tampered[5]
    report = verify_chain(tampered, TRUSTED)
    assert report.first_broken_seq == 5
    assert report.reason == (
        "entry 5: out of place - entry 6 stands where entry 5 belongs and entry 5 comes later: "
        "the chain was reordered"
    )


def test_duplicated_entry_is_reported() -> None:
    report = verify_chain([*CHAIN[:5], CHAIN[2], *CHAIN[5:]], TRUSTED)
    assert report.first_broken_seq == 5
    assert "entry 2 appears again" in report.reason


def test_entry_replaced_by_a_validly_signed_one_breaks_the_link() -> None:
    # Entry 6 of another trail signed with the same key is spliced in: its hash and signature
    # are fine, only its prev_hash betrays that it does not belong here.
    other = _resign(CHAIN[6], KEY, prev_hash=hashlib.sha256(b"another trail").hexdigest())
    tampered = [*CHAIN[:6], other, *CHAIN[7:]]
    report = verify_chain(tampered, TRUSTED)
    assert report.first_broken_seq == 6
    assert report.reason == (
        "entry 6: prev_hash does not match the hash of entry 5 - an entry was deleted or "
        "replaced, or the chain was reordered"
    )


def test_spliced_successor_is_reported_on_its_own_link() -> None:
    replaced = _resign(CHAIN[6], KEY, details={"edited": True})
    report = verify_chain([*CHAIN[:6], replaced, *CHAIN[7:]], TRUSTED)
    assert report.first_broken_seq == 7
    assert report.reason.startswith("entry 7: prev_hash does not match the hash of entry 6")
    assert "BROKEN at entry 7" in render_report(report)


def test_first_entry_must_carry_the_genesis_prev_hash() -> None:
    fake_start = _resign(CHAIN[0], KEY, prev_hash="f" * 64)
    report = verify_chain([fake_start], TRUSTED)
    assert report.first_broken_seq == 0
    assert "genesis prev_hash" in report.reason


def test_pruned_chain_needs_the_exact_start() -> None:
    assert not verify_chain(CHAIN[4:], TRUSTED).ok
    assert verify_chain(CHAIN[4:], TRUSTED, allow_start_at=4).ok
    report = verify_chain(CHAIN[6:], TRUSTED, allow_start_at=4)
    assert report.first_broken_seq == 4
    assert "entries 4..5 were deleted" in report.reason


def test_key_rotation_mid_chain() -> None:
    rotated = CHAIN[:5]
    prev = CHAIN[4]
    for i in range(5, 8):
        prev = _entry(prev, i, OTHER_KEY)
        rotated.append(prev)
    assert verify_chain(rotated, [KEY[1], OTHER_KEY[1]]).ok
    only_new = verify_chain(rotated, [OTHER_KEY[1]])
    assert only_new.first_broken_seq == 0
    only_old = verify_chain(rotated, [KEY[1]])
    assert only_old.first_broken_seq == 5
    assert "not among the trusted keys" in only_old.reason


def test_render_report_for_a_break_mentions_intact_prefix() -> None:
    report = verify_chain(CHAIN[:6] + CHAIN[7:], TRUSTED)
    text = render_report(report)
    assert text.startswith("Audit trail BROKEN at entry 6: missing")
    assert "The 6 entries before it (seq 0 to 5) are intact" in text
    assert "\n" not in text


# --------------------------------------------------------------------------- properties


@st.composite
def _tampering(draw: st.DrawFn) -> tuple[str, list[AuditEntry], int]:
    """A random tampering of CHAIN and the seq where the first break must be reported."""
    n = len(CHAIN)
    op = draw(st.sampled_from(["delete", "edit", "swap", "resign", "truncate_head"]))
    entries = list(CHAIN)
    if op == "delete":
        i = draw(st.integers(0, n - 2))  # deleting the last one is undetectable without a head
        del entries[i]
        return op, entries, i
    if op == "edit":
        i = draw(st.integers(0, n - 1))
        entries[i] = dataclasses.replace(entries[i], actor="mallory")
        return op, entries, i
    if op == "swap":
        i = draw(st.integers(0, n - 2))
        j = draw(st.integers(i + 1, n - 1))
        entries[i], entries[j] = entries[j], entries[i]
        return op, entries, i
    if op == "resign":
        i = draw(st.integers(0, n - 1))
        entries[i] = _resign(entries[i], ATTACKER_KEY)
        return op, entries, i
    i = draw(st.integers(1, n - 1))
    return op, entries[i:], 0


@settings(max_examples=60, deadline=None)
@given(_tampering())
def test_any_tampering_is_reported_at_its_first_broken_link(
    case: tuple[str, list[AuditEntry], int],
) -> None:
    op, entries, expected = case
    report = verify_chain(entries, TRUSTED)
    assert not report.ok, op
    assert report.first_broken_seq == expected, (op, report.reason)
    assert report.entries_checked == expected
    assert report.reason.startswith(f"entry {expected}: ")
    # Everything before the break really is the untouched original prefix.
    assert entries[:expected] == CHAIN[:expected]
