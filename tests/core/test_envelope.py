"""Tests for securedr.core.envelope: round trips, every tamper case, the spec, keys."""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import io
import os
import struct
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securedr.core import envelope
from securedr.core.envelope import (
    ChecksumMismatchError,
    ChunkAuthenticationError,
    EnvelopeError,
    HeaderAuthenticationError,
    HeaderError,
    HeaderFromAnotherFileError,
    KeyFormatError,
    MalformedHeaderError,
    NotAnEnvelopeError,
    TrailingDataError,
    TruncatedError,
    UnsupportedVersionError,
    WrongDataKeyError,
    WrongKeyError,
    WrongRecoveryKeyError,
    decrypt_file,
    decrypt_stream,
    encrypt_stream,
    generate_recovery_keypair,
    identity_file_contents,
    read_header,
    recovery_key_id,
    recovery_public_key,
    verify_stream,
)

CS = 16  # small chunks keep the tests fast and make every file many chunks long
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BLOB = b"\x01\x02\x03kms-ciphertext-blob" * 8
PRIVATE, PUBLIC = generate_recovery_keypair()
OTHER_PRIVATE, OTHER_PUBLIC = generate_recovery_keypair()


def seal(
    data: bytes,
    *,
    chunk_size: int = CS,
    data_key: bytes = KEY,
    public: bytes | str = PUBLIC,
) -> tuple[bytes, envelope.EncryptResult]:
    out = io.BytesIO()
    result = encrypt_stream(
        io.BytesIO(data),
        out,
        data_key=data_key,
        kms_key_arn=ARN,
        kms_wrapped_key=BLOB,
        recovery_public_key=public,
        chunk_size=chunk_size,
    )
    return out.getvalue(), result


def unseal(blob: bytes, **keys: object) -> bytes:
    if not keys:
        keys = {"data_key": KEY}
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(blob), out, **keys)  # type: ignore[arg-type]
    return out.getvalue()


def layout(blob: bytes) -> tuple[int, list[tuple[int, int]]]:
    """(header size, [(record offset, record size), ...]) parsed from the record headers."""
    header_size = read_header(io.BytesIO(blob)).size
    records, pos = [], header_size
    while pos < len(blob):
        _, length = struct.unpack(">BI", blob[pos : pos + 5])
        size = 5 + length + 16
        records.append((pos, size))
        pos += size
    return header_size, records


def flip(blob: bytes, byte: int, bit: int = 0) -> bytes:
    changed = bytearray(blob)
    changed[byte] ^= 1 << bit
    return bytes(changed)


def data_of(size: int, seed: int = 0) -> bytes:
    return hashlib.shake_256(f"{seed}:{size}".encode()).digest(size) if size else b""


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- Round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CS - 1, CS, CS + 1, 2 * CS, 7 * CS + 3, 40 * CS])
def test_round_trip_around_chunk_boundaries(size: int) -> None:
    data = data_of(size)
    blob, result = seal(data)
    assert result.plaintext_sha256 == hashlib.sha256(data).hexdigest()
    assert result.plaintext_size == size
    assert result.ciphertext_size == len(blob)
    assert result.chunk_count == max(1, -(-size // CS))
    assert len(blob) == read_header(io.BytesIO(blob)).size + result.chunk_count * 21 + size
    assert unseal(blob) == data
    assert unseal(blob, recovery_private_key=PRIVATE) == data
    checked = verify_stream(io.BytesIO(blob), data_key=KEY, expected_sha256=result.plaintext_sha256)
    assert checked.plaintext_sha256 == result.plaintext_sha256
    assert checked.file_id == result.file_id
    assert checked.chunk_count == result.chunk_count
    assert checked.ciphertext_size == len(blob)


def test_exact_multiple_ends_with_a_full_final_record() -> None:
    blob, result = seal(data_of(3 * CS))
    _, records = layout(blob)
    assert len(records) == 3 == result.chunk_count
    flags = [blob[offset] for offset, _ in records]
    assert flags == [envelope.FLAG_NOT_FINAL, envelope.FLAG_NOT_FINAL, envelope.FLAG_FINAL]


def test_threaded_pipeline_round_trip_with_default_sized_chunks(tmp_path: Path) -> None:
    chunk = 64 << 10  # the smallest chunk size that uses the hash and write threads
    data = os.urandom(9 * chunk + 12345)
    blob, result = seal(data, chunk_size=chunk)
    assert result.chunk_count == 10
    assert unseal(blob) == data
    (tmp_path / "f.enc").write_bytes(blob)
    decrypt_file(tmp_path / "f.enc", tmp_path / "f", data_key=KEY)
    assert (tmp_path / "f").read_bytes() == data


class FailingSource(io.RawIOBase):
    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def, override]
        if self.left <= 0:
            raise OSError(5, "Input/output error")
        n = min(len(b), self.left)
        self.left -= n
        return n


class FailingSink(io.RawIOBase):
    def __init__(self, good: int) -> None:
        self.left = good

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[no-untyped-def, override]
        if self.left <= 0:
            raise OSError(28, "No space left on device")
        self.left -= len(b)
        return len(b)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (FailingSource(5 * (64 << 10)), io.BytesIO()),
        (io.BytesIO(bytes(10 << 20)), FailingSink(1 << 20)),
    ],
    ids=["read fails", "write fails"],
)
def test_io_errors_in_the_threaded_pipeline_propagate_and_stop_the_thread(
    src: io.RawIOBase, dst: io.RawIOBase
) -> None:
    threads = threading.active_count()
    with pytest.raises(OSError, match=r"Input/output|No space"):
        encrypt_stream(
            src,  # type: ignore[arg-type]
            dst,  # type: ignore[arg-type]
            data_key=KEY,
            kms_key_arn=ARN,
            kms_wrapped_key=BLOB,
            recovery_public_key=PUBLIC,
            chunk_size=64 << 10,
        )
    assert threading.active_count() == threads


def test_tampering_in_the_threaded_pipeline(tmp_path: Path) -> None:
    chunk = 64 << 10
    blob, _ = seal(os.urandom(12 * chunk), chunk_size=chunk)
    _, records = layout(blob)
    offset, _ = records[7]
    (tmp_path / "in.enc").write_bytes(flip(blob, offset + 100))
    threads = threading.active_count()
    with pytest.raises(ChunkAuthenticationError) as caught:
        decrypt_file(tmp_path / "in.enc", tmp_path / "out", data_key=KEY)
    assert caught.value.index == 7
    assert leftovers(tmp_path) == ["in.enc"]
    assert threading.active_count() == threads


# --- The threaded pipeline (chunks of at least 64 KiB, more than one chunk) -----------------

TCS = 64 << 10  # the smallest chunk size that runs the hash and write stages on threads


class Chunky(io.RawIOBase):
    """A sink that takes at most ``step`` bytes per write and records which thread wrote."""

    def __init__(self, step: int = 1000) -> None:
        self.step = step
        self.written = bytearray()
        self.writers: set[str] = set()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[no-untyped-def, override]
        self.writers.add(threading.current_thread().name)
        taken = bytes(b[: self.step])
        self.written += taken
        return len(taken)


def test_threaded_pipeline_writes_on_a_helper_thread_and_handles_partial_writes() -> None:
    data = os.urandom(6 * TCS + 777)
    sink = Chunky()
    result = encrypt_stream(
        io.BytesIO(data),
        sink,
        data_key=KEY,
        kms_key_arn=ARN,
        kms_wrapped_key=BLOB,
        recovery_public_key=PUBLIC,
        chunk_size=TCS,
    )
    assert result.ciphertext_size == len(sink.written) and result.chunk_count == 7
    # The header is written by the caller, every record by the write stage.
    assert sink.writers == {threading.current_thread().name, "securedr-write"}
    out = Chunky()
    got = decrypt_stream(io.BytesIO(bytes(sink.written)), out, data_key=KEY)
    assert bytes(out.written) == data and out.writers == {"securedr-write"}
    assert got.plaintext_sha256 == hashlib.sha256(data).hexdigest()


def test_threaded_round_trip_of_an_exact_multiple_of_the_chunk_size() -> None:
    data = os.urandom(5 * TCS)
    blob, result = seal(data, chunk_size=TCS)
    _, records = layout(blob)
    assert result.chunk_count == len(records) == 5
    assert blob[records[-1][0]] == envelope.FLAG_FINAL  # the last full chunk is the final one
    assert unseal(blob) == data
    assert verify_stream(io.BytesIO(blob), data_key=KEY).plaintext_size == len(data)


def test_decrypt_write_failure_in_the_threaded_pipeline_propagates() -> None:
    blob, _ = seal(os.urandom(10 * TCS), chunk_size=TCS)
    threads = threading.active_count()
    with pytest.raises(OSError, match="No space"):
        decrypt_stream(io.BytesIO(blob), FailingSink(3 * TCS), data_key=KEY)  # type: ignore[arg-type]
    assert threading.active_count() == threads


def assert_full_disk_leaves_only_the_earlier_output(tmp_path: Path) -> None:
    """decrypt_file of ``in.enc`` over an ``out`` holding "previous contents" fails with
    "No space", with no thread left running and nothing but those two files behind."""
    threads = threading.active_count()
    with pytest.raises(OSError, match="No space"):
        decrypt_file(tmp_path / "in.enc", tmp_path / "out", data_key=KEY)
    assert threading.active_count() == threads
    assert leftovers(tmp_path) == ["in.enc", "out"]
    assert (tmp_path / "out").read_bytes() == b"previous contents"


def unmappable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make decrypt_file's output file impossible to map, as on some FUSE file systems."""

    def no_mmap(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENODEV, "No such device")

    monkeypatch.setattr(envelope.mmap, "mmap", no_mmap)


def test_write_failure_in_decrypt_file_leaves_nothing_and_keeps_existing_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob, _ = seal(os.urandom(10 * TCS), chunk_size=TCS)
    (tmp_path / "in.enc").write_bytes(blob)
    (tmp_path / "out").write_bytes(b"previous contents")
    unmappable(monkeypatch)  # the output is written, not mapped
    real_write_all = envelope._write_all
    calls = 0

    def failing_write_all(dst: io.RawIOBase, view: memoryview) -> None:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise OSError(28, "No space left on device")
        real_write_all(dst, view)  # type: ignore[arg-type]

    monkeypatch.setattr(envelope, "_write_all", failing_write_all)
    assert_full_disk_leaves_only_the_earlier_output(tmp_path)


def test_decrypt_file_falls_back_to_writing_where_the_output_cannot_be_mapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(10 * TCS + 7)
    blob, _ = seal(data, chunk_size=TCS)
    (tmp_path / "in.enc").write_bytes(blob)
    unmappable(monkeypatch)
    result = decrypt_file(tmp_path / "in.enc", tmp_path / "out", data_key=KEY)
    assert (tmp_path / "out").read_bytes() == data
    assert result.plaintext_sha256 == hashlib.sha256(data).hexdigest()
    assert leftovers(tmp_path) == ["in.enc", "out"]


@pytest.mark.parametrize("chunk_size", [TCS, 100_003])  # page-aligned or not
def test_decrypt_file_maps_the_output_a_bounded_window_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_size: int
) -> None:
    # Small windows, so chunks straddle window edges and windows are unmapped and mapped
    # again many times; never more than two mapped at once, and every block reserved
    # before it is mapped.
    monkeypatch.setattr(envelope, "_WINDOW", 3 * TCS)
    data = os.urandom(40 * chunk_size + 1234)
    blob, _ = seal(data, chunk_size=chunk_size)
    (tmp_path / "in.enc").write_bytes(blob)
    mapped_at_once: list[int] = []
    reserved: list[tuple[int, int]] = []
    real_map, real_fallocate = envelope._MappedOutput._map, os.posix_fallocate

    def counting_map(self: envelope._MappedOutput, base: int, size: int) -> None:
        real_map(self, base, size)
        mapped_at_once.append(len(self._windows))

    def recording_fallocate(fd: int, offset: int, length: int) -> None:
        reserved.append((offset, length))
        real_fallocate(fd, offset, length)

    monkeypatch.setattr(envelope._MappedOutput, "_map", counting_map)
    monkeypatch.setattr(envelope.os, "posix_fallocate", recording_fallocate)
    threads = threading.active_count()
    result = decrypt_file(tmp_path / "in.enc", tmp_path / "out", data_key=KEY)
    assert (tmp_path / "out").read_bytes() == data  # cut to size after the last window
    assert result.plaintext_sha256 == hashlib.sha256(data).hexdigest()
    assert len(mapped_at_once) > 10 and max(mapped_at_once) == 2
    covered = 0
    for offset, length in reserved:
        assert offset <= covered  # no gap: every byte written was reserved first
        covered = max(covered, offset + length)
    assert covered >= len(data)
    assert threading.active_count() == threads
    assert leftovers(tmp_path) == ["in.enc", "out"]


def test_a_full_disk_while_decrypting_to_a_mapped_file_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The disk fills up at the third window: reserving it fails with ENOSPC, also for just
    # the window, which is raised as it is (never a SIGBUS on a page fault), and nothing
    # is left behind.
    monkeypatch.setattr(envelope, "_WINDOW", 2 * TCS)
    monkeypatch.setattr(envelope, "_RESERVE", 2 * TCS)
    blob, _ = seal(os.urandom(10 * TCS), chunk_size=TCS)
    (tmp_path / "in.enc").write_bytes(blob)
    (tmp_path / "out").write_bytes(b"previous contents")
    real_fallocate = os.posix_fallocate
    calls = 0

    def filling_fallocate(fd: int, offset: int, length: int) -> None:
        nonlocal calls
        calls += 1
        if calls >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fallocate(fd, offset, length)

    monkeypatch.setattr(envelope.os, "posix_fallocate", filling_fallocate)
    assert_full_disk_leaves_only_the_earlier_output(tmp_path)
    assert calls == 4  # the reservation ahead, then just the third window


def test_a_nearly_full_disk_reserves_only_what_the_next_window_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Room for the file and one window more, not for a whole reservation ahead: the
    # decryption still succeeds and the file is cut to its size.
    monkeypatch.setattr(envelope, "_WINDOW", 2 * TCS)
    monkeypatch.setattr(envelope, "_RESERVE", 64 * TCS)
    data = os.urandom(10 * TCS + 5)
    blob, _ = seal(data, chunk_size=TCS)
    (tmp_path / "in.enc").write_bytes(blob)
    capacity = len(data) + 2 * TCS
    real_fallocate = os.posix_fallocate
    refused = 0

    def small_disk(fd: int, offset: int, length: int) -> None:
        nonlocal refused
        if offset + length > capacity:
            refused += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fallocate(fd, offset, length)

    monkeypatch.setattr(envelope.os, "posix_fallocate", small_disk)
    decrypt_file(tmp_path / "in.enc", tmp_path / "out", data_key=KEY)
    assert refused > 0
    assert (tmp_path / "out").read_bytes() == data


def test_a_full_disk_before_the_first_window_is_raised_not_written_around(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob, _ = seal(os.urandom(10 * TCS), chunk_size=TCS)
    (tmp_path / "in.enc").write_bytes(blob)

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(envelope.os, "posix_fallocate", full)
    with pytest.raises(OSError, match="No space"):
        decrypt_file(tmp_path / "in.enc", tmp_path / "out", data_key=KEY)
    assert leftovers(tmp_path) == ["in.enc"]


def test_a_hash_failure_when_decrypting_to_a_mapped_file_is_raised_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The failing hash thread's traceback must not pin a view of the mapping: the error
    # raised is the hash's own, not a BufferError from unmapping, and nothing is left.
    blob, _ = seal(os.urandom(12 * TCS), chunk_size=TCS)
    (tmp_path / "in.enc").write_bytes(blob)
    real_sha256 = hashlib.sha256

    class FailingHash:
        def __init__(self, data: bytes = b"") -> None:
            self._sha, self._calls = real_sha256(data), 0

        def update(self, data: memoryview) -> None:
            self._calls += 1
            if self._calls == 5:
                raise MemoryError("hash failed")
            self._sha.update(data)

        def __getattr__(self, name: str) -> object:  # digest, copy, sizes (HMAC uses them)
            return getattr(self._sha, name)

    monkeypatch.setattr(envelope.hashlib, "sha256", FailingHash)
    threads = threading.active_count()
    with pytest.raises(MemoryError, match="hash failed"):
        decrypt_file(tmp_path / "in.enc", tmp_path / "out", data_key=KEY)
    assert threading.active_count() == threads
    assert leftovers(tmp_path) == ["in.enc"]


def test_tampering_when_decrypting_to_a_mapped_file_leaves_nothing(tmp_path: Path) -> None:
    blob, _ = seal(os.urandom(12 * TCS), chunk_size=TCS)
    _, records = layout(blob)
    tampered = bytearray(blob)
    tampered[records[7][0] + 100] ^= 1
    (tmp_path / "in.enc").write_bytes(bytes(tampered))
    with pytest.raises(ChunkAuthenticationError):
        decrypt_file(tmp_path / "in.enc", tmp_path / "out", data_key=KEY)
    assert leftovers(tmp_path) == ["in.enc"]


def test_tampering_in_the_threaded_pipeline_releases_only_authenticated_chunks() -> None:
    data = os.urandom(12 * TCS)
    blob, _ = seal(data, chunk_size=TCS)
    _, records = layout(blob)
    tampered = flip(blob, records[7][0] + 100)
    out = io.BytesIO()
    threads = threading.active_count()
    with pytest.raises(ChunkAuthenticationError) as caught:
        decrypt_stream(io.BytesIO(tampered), out, data_key=KEY)
    assert caught.value.index == 7
    # Whatever the write stage got to before the failure: whole chunks, in order, all
    # authenticated (chunk 7's plaintext never reaches it).
    written = out.getvalue()
    assert len(written) % TCS == 0 and len(written) <= 7 * TCS
    assert written == data[: len(written)]
    with pytest.raises(ChunkAuthenticationError):
        verify_stream(io.BytesIO(tampered), data_key=KEY)
    assert threading.active_count() == threads


def test_a_failing_stage_reports_in_the_callers_thread_and_runs_nothing_more() -> None:
    ran: list[int] = []

    def job(view: memoryview) -> None:
        if view[0] == 2:
            raise ValueError("stage failed on job 2")
        ran.append(view[0])

    worker = envelope._Worker(job, "securedr-test")
    try:
        for n in range(5):
            worker.submit(memoryview(bytes([n])))
        worker.wait_for(2)  # jobs 0 and 1 are fine
        with pytest.raises(ValueError, match="stage failed on job 2"):
            worker.wait_all()
    finally:
        worker.close()
    assert ran == [0, 1]
    assert not any(t.name == "securedr-test" for t in threading.enumerate())


def test_closing_a_stage_early_skips_queued_jobs_and_joins_the_thread() -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[int] = []

    def job(view: memoryview) -> None:
        started.set()
        release.wait(5)
        ran.append(view[0])

    worker = envelope._Worker(job, "securedr-test")
    for n in range(4):
        worker.submit(memoryview(bytes([n])))
    started.wait(5)
    # Close (as the caller does when another stage failed) while job 0 is still running.
    closer = threading.Thread(target=worker.close)
    closer.start()
    while not worker._cancelled:
        time.sleep(0.001)
    release.set()
    closer.join(5)
    assert ran == [0]
    assert not any(t.name == "securedr-test" for t in threading.enumerate())


def test_decrypt_memory_stays_flat_in_the_file_size(tmp_path: Path) -> None:
    blob, _ = seal(bytes(24 << 20), chunk_size=1 << 20)
    tracemalloc.start()
    try:
        verify_stream(io.BytesIO(blob), data_key=KEY)
        decrypt_stream(io.BytesIO(blob), FailingSink(1 << 40), data_key=KEY)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Five 1 MiB buffers (one for ciphertext, four for plaintext), whatever the length.
    assert peak < 6 << 20


def test_the_same_plaintext_encrypts_differently_every_time() -> None:
    first, a = seal(b"same")
    second, b = seal(b"same")
    assert first != second and a.file_id != b.file_id
    assert a.plaintext_sha256 == b.plaintext_sha256


class ReadOnly:
    """A source without readinto that returns short reads, like some HTTP bodies."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._data.read(min(n, 7) if n >= 0 else 7)


class Trickle(io.RawIOBase):
    """A raw stream whose reads and writes move at most a few bytes per call."""

    def __init__(self, data: bytes = b"") -> None:
        self._src = io.BytesIO(data)
        self.written = bytearray()

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def, override]
        chunk = self._src.read(min(len(b), 5))
        b[: len(chunk)] = chunk
        return len(chunk)

    def write(self, b) -> int:  # type: ignore[no-untyped-def, override]
        taken = bytes(b[:3])
        self.written += taken
        return len(taken)


def test_short_reads_and_partial_writes_are_handled() -> None:
    data = data_of(5 * CS + 3)
    sink = Trickle()
    result = encrypt_stream(
        ReadOnly(data),  # type: ignore[arg-type]
        sink,
        data_key=KEY,
        kms_key_arn=ARN,
        kms_wrapped_key=BLOB,
        recovery_public_key=PUBLIC,
        chunk_size=CS,
    )
    assert result.ciphertext_size == len(sink.written)
    out = Trickle()
    decrypt_stream(Trickle(bytes(sink.written)), out, data_key=KEY)
    assert bytes(out.written) == data
    verify_stream(ReadOnly(bytes(sink.written)), data_key=KEY)  # type: ignore[arg-type]


def test_memory_stays_flat_in_the_file_size() -> None:
    class Zeros(io.RawIOBase):
        def __init__(self, size: int) -> None:
            self.left = size

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:  # type: ignore[no-untyped-def, override]
            n = min(len(b), self.left)
            self.left -= n
            return n  # the buffer's old content is fine as test data

    class Null(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b) -> int:  # type: ignore[no-untyped-def, override]
            return len(b)

    tracemalloc.start()
    try:
        encrypt_stream(
            Zeros(48 << 20),
            Null(),
            data_key=KEY,
            kms_key_arn=ARN,
            kms_wrapped_key=BLOB,
            recovery_public_key=PUBLIC,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Seven 1 MiB buffers; nothing proportional to the 48 MiB stream.
    assert peak < 8 << 20


def test_decrypt_file_round_trip(tmp_path: Path) -> None:
    data = data_of(10 * CS + 5)
    blob, result = seal(data)
    (tmp_path / "x.enc").write_bytes(blob)
    got = decrypt_file(
        tmp_path / "x.enc",
        tmp_path / "x",
        recovery_private_key=identity_file_contents(PRIVATE),
        expected_sha256=result.plaintext_sha256.upper(),
        expected_file_id=result.file_id,
    )
    assert (tmp_path / "x").read_bytes() == data
    assert got.plaintext_sha256 == result.plaintext_sha256
    assert (tmp_path / "x").stat().st_mode & 0o777 == 0o600
    assert leftovers(tmp_path) == ["x", "x.enc"]


def test_read_header_gives_what_kms_needs() -> None:
    blob, result = seal(b"hello")
    header = read_header(io.BytesIO(blob))
    assert header.kms_key_arn == ARN
    assert header.kms_wrapped_key == BLOB
    assert header.file_id_hex == result.file_id
    assert header.chunk_size == CS
    assert header.version == envelope.VERSION
    assert header.recovery_key_id_hex == recovery_key_id(PUBLIC)
    assert "raw" not in repr(header)


# --- Wrong keys ----------------------------------------------------------------------------


def test_wrong_data_key() -> None:
    blob, _ = seal(data_of(50))
    with pytest.raises(WrongDataKeyError, match="wrong data key"):
        unseal(blob, data_key=OTHER_KEY)


def test_wrong_recovery_key_names_both_key_ids() -> None:
    blob, _ = seal(data_of(50))
    with pytest.raises(WrongRecoveryKeyError) as caught:
        unseal(blob, recovery_private_key=OTHER_PRIVATE)
    assert recovery_key_id(PUBLIC) in str(caught.value)
    assert recovery_key_id(OTHER_PUBLIC) in str(caught.value)
    assert isinstance(caught.value, WrongKeyError)


def test_recovery_with_only_the_offline_identity_file(tmp_path: Path) -> None:
    data = data_of(100)
    blob, result = seal(data, data_key=os.urandom(32))  # the data key is then forgotten
    identity = tmp_path / "identity.txt"
    identity.write_bytes(identity_file_contents(PRIVATE))
    out = io.BytesIO()
    decrypt_stream(
        io.BytesIO(blob),
        out,
        recovery_private_key=identity.read_bytes(),
        expected_sha256=result.plaintext_sha256,
    )
    assert out.getvalue() == data


# --- Tampering: header -----------------------------------------------------------------------


def header_fields(blob: bytes) -> dict[str, range]:
    header = read_header(io.BytesIO(blob))
    a, b = len(header.kms_key_arn.encode()), len(header.kms_wrapped_key)
    spans = [
        ("MAGIC", 8),
        ("VERSION", 1),
        ("CHUNK_SIZE", 4),
        ("FILE_ID", 32),
        ("KEY_COMMITMENT", 32),
        ("KMS_KEY_ARN_LEN", 2),
        ("KMS_KEY_ARN", a),
        ("KMS_WRAPPED_KEY_LEN", 2),
        ("KMS_WRAPPED_KEY", b),
        ("RECOVERY_KEY_ID", 8),
        ("RECOVERY_EPHEMERAL", 32),
        ("RECOVERY_WRAPPED_KEY", 48),
        ("HEADER_MAC", 32),
    ]
    fields, pos = {}, 0
    for name, size in spans:
        fields[name] = range(pos, pos + size)
        pos += size
    assert pos == header.size == 201 + a + b
    return fields


LENGTH_FLIP = (MalformedHeaderError, HeaderAuthenticationError, TruncatedError)
EXPECTED_WITH_DATA_KEY: dict[str, tuple[type[EnvelopeError], ...]] = {
    "MAGIC": (NotAnEnvelopeError,),
    "VERSION": (UnsupportedVersionError,),
    "CHUNK_SIZE": (MalformedHeaderError, HeaderAuthenticationError),
    "FILE_ID": (HeaderAuthenticationError,),
    "KEY_COMMITMENT": (WrongDataKeyError,),
    "KMS_KEY_ARN_LEN": LENGTH_FLIP,
    "KMS_KEY_ARN": (MalformedHeaderError, HeaderAuthenticationError),
    "KMS_WRAPPED_KEY_LEN": LENGTH_FLIP,
    "KMS_WRAPPED_KEY": (HeaderAuthenticationError,),
    "RECOVERY_KEY_ID": (HeaderAuthenticationError,),
    "RECOVERY_EPHEMERAL": (HeaderAuthenticationError,),
    "RECOVERY_WRAPPED_KEY": (HeaderAuthenticationError,),
    "HEADER_MAC": (HeaderAuthenticationError,),
}
EXPECTED_WITH_RECOVERY_KEY = {
    **EXPECTED_WITH_DATA_KEY,
    "KEY_COMMITMENT": (HeaderAuthenticationError,),
    "RECOVERY_KEY_ID": (WrongRecoveryKeyError,),
    # A longer or shorter length shifts where the recovery key id is read from.
    "KMS_KEY_ARN_LEN": (*LENGTH_FLIP, WrongRecoveryKeyError),
    "KMS_WRAPPED_KEY_LEN": (*LENGTH_FLIP, WrongRecoveryKeyError),
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [("data key", EXPECTED_WITH_DATA_KEY), ("recovery key", EXPECTED_WITH_RECOVERY_KEY)],
)
def test_every_bit_of_the_header_is_protected(
    path: str, expected: dict[str, tuple[type[EnvelopeError], ...]]
) -> None:
    blob, _ = seal(data_of(3 * CS))
    keys = {"data_key": KEY} if path == "data key" else {"recovery_private_key": PRIVATE}
    # Every bit with the data key; with the (slower, X25519) recovery key, two bits a byte.
    bits = range(8) if path == "data key" else (0, 5)
    for name, span in header_fields(blob).items():
        for byte in span:
            for bit in bits:
                with pytest.raises(expected[name]):
                    verify_stream(io.BytesIO(flip(blob, byte, bit)), **keys)  # type: ignore[arg-type]


def test_header_flip_in_decrypt_file_leaves_nothing(tmp_path: Path) -> None:
    blob, _ = seal(data_of(3 * CS))
    for name, span in header_fields(blob).items():
        (tmp_path / "in.enc").write_bytes(flip(blob, span[len(span) // 2], 3))
        with pytest.raises(EnvelopeError):
            decrypt_file(tmp_path / "in.enc", tmp_path / "out", data_key=KEY, fsync=False)
        assert leftovers(tmp_path) == ["in.enc"], name


def test_unknown_version_and_not_an_envelope() -> None:
    blob, _ = seal(b"x")
    with pytest.raises(UnsupportedVersionError, match="version 2 is not supported"):
        unseal(blob[:8] + b"\x02" + blob[9:])
    with pytest.raises(NotAnEnvelopeError, match="not a SecureDR envelope"):
        unseal(b"just some plaintext, not an envelope")
    with pytest.raises(NotAnEnvelopeError, match="empty"):
        unseal(b"")


def test_header_spliced_from_another_file_is_rejected() -> None:
    a_blob, _ = seal(data_of(40, seed=1))
    b_blob, _ = seal(data_of(40, seed=2))  # same data key and recovery key
    a_fields = header_fields(a_blob)
    stanza = slice(a_fields["RECOVERY_KEY_ID"].start, a_fields["RECOVERY_WRAPPED_KEY"].stop)
    spliced = a_blob[: stanza.start] + b_blob[stanza] + a_blob[stanza.stop :]
    with pytest.raises(HeaderAuthenticationError):
        unseal(spliced)
    with pytest.raises(HeaderAuthenticationError):
        unseal(spliced, recovery_private_key=PRIVATE)
    file_id = a_fields["FILE_ID"]
    swapped_id = (
        a_blob[: file_id.start] + b_blob[file_id.start : file_id.stop] + a_blob[file_id.stop :]
    )
    with pytest.raises(HeaderAuthenticationError):
        unseal(swapped_id)


def test_whole_header_from_another_file() -> None:
    a_data, b_data = data_of(5 * CS, seed=1), data_of(5 * CS, seed=2)
    a_blob, a = seal(a_data)
    b_same_key, _ = seal(b_data)
    b_other_key, _ = seal(b_data, data_key=OTHER_KEY)
    a_header, _ = layout(a_blob)

    # Another file's header under another data key: A's key does not open it.
    hb = layout(b_other_key)[0]
    with pytest.raises(WrongDataKeyError):
        unseal(b_other_key[:hb] + a_blob[a_header:])
    # ...and the key that opens the header does not open A's chunks.
    with pytest.raises(ChunkAuthenticationError) as caught:
        unseal(b_other_key[:hb] + a_blob[a_header:], data_key=OTHER_KEY)
    assert caught.value.index == 0

    # Same data key: the header is authentic, so chunk 0 is where it fails...
    hb = layout(b_same_key)[0]
    with pytest.raises(ChunkAuthenticationError) as caught:
        unseal(b_same_key[:hb] + a_blob[a_header:])
    assert caught.value.index == 0
    # ...unless the caller passes the file id from the manifest, which names the problem.
    with pytest.raises(HeaderFromAnotherFileError, match=a.file_id):
        verify_stream(
            io.BytesIO(b_same_key[:hb] + a_blob[a_header:]),
            data_key=KEY,
            expected_file_id=a.file_id,
        )


def test_whole_envelope_swapped_for_another_valid_one() -> None:
    _, a = seal(data_of(30, seed=1))
    b_blob, _ = seal(data_of(30, seed=2))
    with pytest.raises(ChecksumMismatchError, match="checksum mismatch"):
        unseal(b_blob, data_key=KEY, expected_sha256=a.plaintext_sha256)
    with pytest.raises(HeaderFromAnotherFileError):
        unseal(b_blob, data_key=KEY, expected_file_id=a.file_id)


# --- Tampering: payload ------------------------------------------------------------------------


def test_every_bit_of_every_record_is_protected() -> None:
    blob, _ = seal(data_of(4 * CS + 5))
    _, records = layout(blob)
    last = len(records) - 1
    for index, (offset, size) in enumerate(records):
        for pos in range(offset, offset + size):
            for bit in range(8):
                changed = flip(blob, pos, bit)
                in_length = offset + 1 <= pos < offset + 5
                if index == last and in_length:
                    # A final record that claims more bytes than the file has is truncated.
                    with pytest.raises((ChunkAuthenticationError, TruncatedError)):
                        unseal(changed)
                    continue
                with pytest.raises(ChunkAuthenticationError) as caught:
                    unseal(changed)
                assert caught.value.index == index, (index, pos - offset, bit)


def test_chunk_failure_in_decrypt_file_leaves_nothing_and_keeps_existing_output(
    tmp_path: Path,
) -> None:
    blob, _ = seal(data_of(6 * CS))
    _, records = layout(blob)
    (tmp_path / "out").write_bytes(b"previous contents")
    for offset, size in records:
        (tmp_path / "in.enc").write_bytes(flip(blob, offset + size - 1))  # in the tag
        with pytest.raises(ChunkAuthenticationError):
            decrypt_file(tmp_path / "in.enc", tmp_path / "out", data_key=KEY, fsync=False)
        assert leftovers(tmp_path) == ["in.enc", "out"]
        assert (tmp_path / "out").read_bytes() == b"previous contents"


def test_unauthenticated_plaintext_is_never_written() -> None:
    data = data_of(6 * CS)
    blob, _ = seal(data)
    _, records = layout(blob)
    offset, _ = records[3]
    out = io.BytesIO()
    with pytest.raises(ChunkAuthenticationError, match="chunk 3 failed authentication"):
        decrypt_stream(io.BytesIO(flip(blob, offset + 10)), out, data_key=KEY)
    assert out.getvalue() == data[: 3 * CS]  # exactly the chunks that authenticated


def test_dropping_the_final_chunk_is_truncation(tmp_path: Path) -> None:
    blob, _ = seal(data_of(5 * CS + 1))
    _, records = layout(blob)
    offset, _ = records[-1]
    with pytest.raises(TruncatedError, match="without the final chunk"):
        unseal(blob[:offset])
    (tmp_path / "in.enc").write_bytes(blob[:offset])
    with pytest.raises(TruncatedError):
        decrypt_file(tmp_path / "in.enc", tmp_path / "out", data_key=KEY)
    assert leftovers(tmp_path) == ["in.enc"]


def test_dropping_a_full_final_chunk_is_truncation() -> None:
    blob, _ = seal(data_of(5 * CS))  # the final record is full length
    _, records = layout(blob)
    with pytest.raises(TruncatedError):
        unseal(blob[: records[-1][0]])


def test_every_strict_prefix_is_truncated(tmp_path: Path) -> None:
    blob, _ = seal(data_of(3 * CS + 7))
    for cut in range(1, len(blob)):
        with pytest.raises(TruncatedError):
            unseal(blob[:cut])
    header_size, records = layout(blob)
    for cut in (header_size // 2, header_size, records[1][0] + 9, len(blob) - 1):
        (tmp_path / "in.enc").write_bytes(blob[:cut])
        with pytest.raises(TruncatedError):
            decrypt_file(tmp_path / "in.enc", tmp_path / "out", data_key=KEY)
        assert leftovers(tmp_path) == ["in.enc"]


def test_cut_mid_chunk_says_which_chunk() -> None:
    blob, _ = seal(data_of(5 * CS))
    _, records = layout(blob)
    offset, size = records[2]
    with pytest.raises(TruncatedError, match="inside chunk 2"):
        unseal(blob[: offset + size // 2])


def test_reordered_chunks_fail() -> None:
    blob, _ = seal(data_of(5 * CS))
    header_size, records = layout(blob)
    parts = [blob[o : o + s] for o, s in records]
    swapped = blob[:header_size] + parts[1] + parts[0] + b"".join(parts[2:])
    with pytest.raises(ChunkAuthenticationError) as caught:
        unseal(swapped)
    assert caught.value.index == 0
    duplicated = blob[:header_size] + parts[0] + parts[0] + b"".join(parts[2:])
    with pytest.raises(ChunkAuthenticationError) as caught:
        unseal(duplicated)
    assert caught.value.index == 1
    final_moved_up = blob[:header_size] + parts[0] + parts[-1]
    with pytest.raises(ChunkAuthenticationError) as caught:
        unseal(final_moved_up)
    assert caught.value.index == 1


def test_chunk_swapped_in_from_another_file_under_the_same_data_key(tmp_path: Path) -> None:
    a_blob, _ = seal(data_of(5 * CS, seed=1))
    b_blob, _ = seal(data_of(5 * CS, seed=2))
    _, a_records = layout(a_blob)
    _, b_records = layout(b_blob)
    for index in range(5):
        (ao, asize), (bo, bsize) = a_records[index], b_records[index]
        mixed = a_blob[:ao] + b_blob[bo : bo + bsize] + a_blob[ao + asize :]
        with pytest.raises(ChunkAuthenticationError) as caught:
            unseal(mixed)
        assert caught.value.index == index
        (tmp_path / "in.enc").write_bytes(mixed)
        with pytest.raises(ChunkAuthenticationError):
            decrypt_file(tmp_path / "in.enc", tmp_path / "out", data_key=KEY)
        assert leftovers(tmp_path) == ["in.enc"]


@pytest.mark.parametrize("garbage", [b"\x00", b"garbage" * 3, None])
def test_trailing_data_after_the_final_chunk(tmp_path: Path, garbage: bytes | None) -> None:
    blob, _ = seal(data_of(2 * CS + 3))
    _, records = layout(blob)
    if garbage is None:  # the final record, twice
        offset, size = records[-1]
        garbage = blob[offset : offset + size]
    with pytest.raises(TrailingDataError, match="trailing data"):
        unseal(blob + garbage)
    (tmp_path / "in.enc").write_bytes(blob + garbage)
    with pytest.raises(TrailingDataError):
        decrypt_file(tmp_path / "in.enc", tmp_path / "out", data_key=KEY)
    assert leftovers(tmp_path) == ["in.enc"]


def test_checksum_mismatch_in_decrypt_file_leaves_nothing(tmp_path: Path) -> None:
    blob, _ = seal(data_of(3 * CS))
    (tmp_path / "in.enc").write_bytes(blob)
    with pytest.raises(ChecksumMismatchError):
        decrypt_file(tmp_path / "in.enc", tmp_path / "out", data_key=KEY, expected_sha256="0" * 64)
    assert leftovers(tmp_path) == ["in.enc"]


def test_wrong_key_in_decrypt_file_leaves_nothing(tmp_path: Path) -> None:
    blob, _ = seal(data_of(3 * CS))
    (tmp_path / "in.enc").write_bytes(blob)
    with pytest.raises(WrongDataKeyError):
        decrypt_file(tmp_path / "in.enc", tmp_path / "out", data_key=OTHER_KEY)
    with pytest.raises(WrongRecoveryKeyError):
        decrypt_file(tmp_path / "in.enc", tmp_path / "out", recovery_private_key=OTHER_PRIVATE)
    assert leftovers(tmp_path) == ["in.enc"]


def test_empty_final_record_after_data_is_rejected() -> None:
    """Only an empty file may have an empty final chunk (one encoding per plaintext)."""
    blob, _ = seal(data_of(2 * CS))
    header = read_header(io.BytesIO(blob))
    keys = envelope._derive_file_keys(KEY, header.file_id)
    _, records = layout(blob)
    first = blob[records[0][0] : records[0][0] + records[0][1]]
    empty_final = struct.pack(">BI", envelope.FLAG_FINAL, 0)
    nonce = (1).to_bytes(11, "big") + b"\x01"
    forged = header.raw + first + empty_final + keys.payload.encrypt(nonce, b"", empty_final)
    with pytest.raises(ChunkAuthenticationError) as caught:
        unseal(forged)
    assert caught.value.index == 1


def test_errors_never_contain_key_material() -> None:
    blob, _ = seal(data_of(3 * CS))
    secrets = [KEY.hex(), OTHER_KEY.hex(), PRIVATE.decode(), OTHER_PRIVATE.decode()]
    secrets += [PRIVATE.decode()[22:], OTHER_PRIVATE.decode()[22:]]
    errors: list[BaseException] = []
    for keys in ({"data_key": OTHER_KEY}, {"recovery_private_key": OTHER_PRIVATE}):
        with pytest.raises(EnvelopeError) as caught:
            unseal(blob, **keys)
        errors.append(caught.value)
    for bad_key in (PRIVATE, PRIVATE.decode() + "x", PRIVATE.decode()[:-1] + "A"):
        with pytest.raises((KeyFormatError, ValueError)) as caught2:
            encrypt_stream(
                io.BytesIO(b""),
                io.BytesIO(),
                data_key=KEY,
                kms_key_arn=ARN,
                kms_wrapped_key=BLOB,
                recovery_public_key=bad_key,
            )
        errors.append(caught2.value)
    for error in errors:
        text = f"{error} {error!r}"
        assert not any(secret in text for secret in secrets), text


# --- Argument validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"data_key": b"short"}, ValueError),
        ({"data_key": "not bytes"}, TypeError),
        ({"chunk_size": 0}, ValueError),
        ({"chunk_size": envelope.MAX_CHUNK_SIZE + 1}, ValueError),
        ({"kms_key_arn": ""}, ValueError),
        ({"kms_wrapped_key": b""}, ValueError),
        ({"recovery_public_key": "securedr-recovery-pub-nope"}, KeyFormatError),
    ],
)
def test_encrypt_validates_before_writing(changes: dict[str, object], error: type) -> None:
    kwargs: dict[str, object] = {
        "data_key": KEY,
        "kms_key_arn": ARN,
        "kms_wrapped_key": BLOB,
        "recovery_public_key": PUBLIC,
        "chunk_size": CS,
        **changes,
    }
    out = io.BytesIO()
    with pytest.raises(error):
        encrypt_stream(io.BytesIO(b"data"), out, **kwargs)  # type: ignore[arg-type]
    assert out.getvalue() == b""


def test_decrypt_needs_exactly_one_key_and_valid_expectations() -> None:
    blob, _ = seal(b"abc")
    with pytest.raises(ValueError, match="exactly one"):
        unseal(blob, data_key=KEY, recovery_private_key=PRIVATE)
    with pytest.raises(ValueError, match="exactly one"):
        verify_stream(io.BytesIO(blob))
    with pytest.raises(ValueError, match="64 hex"):
        unseal(blob, data_key=KEY, expected_sha256="abc")
    with pytest.raises(ValueError, match="64 hex"):
        unseal(blob, data_key=KEY, expected_file_id="xyz")


def test_malformed_chunk_size_in_header() -> None:
    blob, _ = seal(b"abc")
    for bad in (0, envelope.MAX_CHUNK_SIZE + 1):
        with pytest.raises(MalformedHeaderError, match="chunk size"):
            unseal(blob[:9] + struct.pack(">I", bad) + blob[13:])


# --- Recovery keys -----------------------------------------------------------------------------


def test_key_text_forms() -> None:
    assert PUBLIC.startswith(b"securedr-recovery-pub-") and len(PUBLIC) == 86
    assert PRIVATE.startswith(b"SECUREDR-RECOVERY-KEY-") and len(PRIVATE) == 86
    assert PUBLIC[22:] == PUBLIC[22:].lower() and PRIVATE[22:] == PRIVATE[22:].upper()
    assert recovery_public_key(PRIVATE) == PUBLIC
    assert recovery_public_key(identity_file_contents(PRIVATE)) == PUBLIC
    assert recovery_public_key(PRIVATE.decode().lower().replace("secured", "SECURED")) == PUBLIC
    assert len(recovery_key_id(PUBLIC)) == 16
    assert recovery_key_id(PUBLIC.decode().upper()) == recovery_key_id(PUBLIC)


def test_identity_file_format() -> None:
    text = identity_file_contents(PRIVATE).decode()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [PRIVATE.decode()]
    assert f"# public key: {PUBLIC.decode()}" in text
    assert f"# key id: {recovery_key_id(PUBLIC)}" in text
    with pytest.raises(KeyFormatError, match="exactly one"):
        recovery_public_key(text + OTHER_PRIVATE.decode() + "\n")
    with pytest.raises(KeyFormatError, match="exactly one"):
        recovery_public_key("# only comments\n")


@pytest.mark.parametrize("position", [22, 40, 85])
def test_a_mistyped_key_is_caught_by_the_checksum(position: int) -> None:
    for key, use in ((PUBLIC, recovery_key_id), (PRIVATE, recovery_public_key)):
        text = bytearray(key)
        text[position] = ord("a" if chr(text[position]).lower() != "a" else "b")
        if key is PRIVATE:
            text[position:] = bytes(text[position:]).upper()
        with pytest.raises(KeyFormatError, match=r"checksum|base32"):
            use(bytes(text))


def test_keys_in_the_wrong_place_are_named() -> None:
    with pytest.raises(KeyFormatError, match="looks like a SECUREDR-RECOVERY-KEY-"):
        seal(b"x", public=PRIVATE)
    with pytest.raises(KeyFormatError, match="looks like a securedr-recovery-pub-"):
        unseal(seal(b"x")[0], recovery_private_key=PUBLIC)


def test_low_order_recovery_public_key_is_rejected() -> None:
    raw = bytes(32)  # the identity point: every shared secret would be zero
    checksum = hashlib.sha256(b"securedr-recovery-pub-" + raw).digest()[:8]
    text = "securedr-recovery-pub-" + base64.b32encode(raw + checksum).decode().lower()
    with pytest.raises(KeyFormatError, match="not a valid X25519 key"):
        seal(b"x", public=text)


# --- Conformance with docs/envelope-format.md, by an independent reading of the spec -----------


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _key_from_text(text: bytes) -> bytes:
    return base64.b32decode(text[22:].upper())[:32]


def test_layout_and_key_schedule_follow_the_spec() -> None:
    data = data_of(2 * CS + 5)
    blob, result = seal(data)
    assert blob[0:8] == b"SECUREDR" and blob[8] == 1
    assert struct.unpack(">I", blob[9:13])[0] == CS
    file_id = blob[13:45]
    assert file_id.hex() == result.file_id
    assert blob[45:77] == _hkdf(KEY, b"", b"securedr/v1 key commitment")
    (a,) = struct.unpack(">H", blob[77:79])
    assert blob[79 : 79 + a].decode() == ARN
    (b,) = struct.unpack(">H", blob[79 + a : 81 + a])
    assert blob[81 + a : 81 + a + b] == BLOB
    p = 81 + a + b
    recipient = _key_from_text(PUBLIC)
    assert (
        blob[p : p + 8] == hashlib.sha256(b"securedr/v1 recovery key id" + recipient).digest()[:8]
    )
    ephemeral, wrapped = blob[p + 8 : p + 40], blob[p + 40 : p + 88]
    mac_key = _hkdf(KEY, file_id, b"securedr/v1 header mac key")
    assert blob[p + 88 : p + 120] == hmac.new(mac_key, blob[: p + 88], hashlib.sha256).digest()
    header_end = p + 120

    # The recovery wrap opens with the private scalar alone, as section 3.4 says.
    scalar = X25519PrivateKey.from_private_bytes(_key_from_text(PRIVATE))
    shared = scalar.exchange(X25519PublicKey.from_public_bytes(ephemeral))
    wrap_key = _hkdf(shared, ephemeral + recipient, b"securedr/v1 recovery wrap key")
    assert AESGCM(wrap_key).decrypt(bytes(12), wrapped, file_id) == KEY

    # Records: FLAG || LENGTH || AES-GCM(payload_key, u88(i) || FLAG, chunk, aad=FLAG||LENGTH).
    payload = AESGCM(_hkdf(KEY, file_id, b"securedr/v1 payload key"))
    pos, chunks = header_end, []
    for i in range(3):
        flag, length = struct.unpack(">BI", blob[pos : pos + 5])
        assert flag == (1 if i == 2 else 0) and length == (5 if i == 2 else CS)
        nonce = i.to_bytes(11, "big") + bytes([flag])
        body = blob[pos + 5 : pos + 5 + length + 16]
        chunks.append(payload.decrypt(nonce, body, blob[pos : pos + 5]))
        pos += 5 + length + 16
    assert pos == len(blob)
    assert b"".join(chunks) == data


def test_key_text_checksum_follows_the_spec() -> None:
    raw = _key_from_text(PUBLIC)
    body = base64.b32encode(raw + hashlib.sha256(b"securedr-recovery-pub-" + raw).digest()[:8])
    assert b"securedr-recovery-pub-" + body.lower() == PUBLIC


def test_error_hierarchy() -> None:
    for cls in (MalformedHeaderError, HeaderAuthenticationError, HeaderFromAnotherFileError):
        assert issubclass(cls, HeaderError)
    for cls in (WrongDataKeyError, WrongRecoveryKeyError):
        assert issubclass(cls, WrongKeyError)
    for name in envelope.__all__:
        obj = getattr(envelope, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, EnvelopeError)


def test_module_is_pure() -> None:
    source = Path(envelope.__file__).read_text()
    for forbidden in ("boto3", "botocore", "airflow"):
        assert f"import {forbidden}" not in source and f"from {forbidden}" not in source


# --- Properties -----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=1500), chunk_size=st.integers(min_value=1, max_value=300))
def test_property_round_trip(data: bytes, chunk_size: int) -> None:
    blob, result = seal(data, chunk_size=chunk_size)
    assert result.plaintext_sha256 == hashlib.sha256(data).hexdigest()
    assert unseal(blob) == data


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=600),
    chunk_size=st.integers(min_value=1, max_value=200),
    where=st.floats(min_value=0, max_value=1, exclude_max=True),
    bit=st.integers(min_value=0, max_value=7),
    use_recovery=st.booleans(),
)
def test_property_any_single_bit_flip_fails(
    data: bytes, chunk_size: int, where: float, bit: int, use_recovery: bool
) -> None:
    blob, _ = seal(data, chunk_size=chunk_size)
    changed = flip(blob, int(where * len(blob)), bit)
    keys = {"recovery_private_key": PRIVATE} if use_recovery else {"data_key": KEY}
    with pytest.raises(EnvelopeError):
        verify_stream(io.BytesIO(changed), **keys)  # type: ignore[arg-type]
