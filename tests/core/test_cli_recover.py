"""Tests for the offline recovery commands: securedr keygen / recover-file / verify-file."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from securedr.cli import build_parser, main
from securedr.core import envelope

REPO = Path(__file__).resolve().parents[2]
DATA = hashlib.shake_256(b"recover me").digest(300_000)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def keygen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    identity = tmp_path / "recovery.key"
    code, out, _ = run(capsys, "keygen", "--out", str(identity))
    assert code == 0
    public = re.search(r"securedr-recovery-pub-[a-z2-7]{64}", out)
    assert public
    return identity, public.group(0)


def encrypt(tmp_path: Path, public: str, data: bytes = DATA) -> tuple[Path, envelope.EncryptResult]:
    enc = tmp_path / "backup.enc"
    with open(enc, "wb") as dst:
        result = envelope.encrypt_stream(
            io.BytesIO(data),
            dst,
            data_key=os.urandom(32),  # as from KMS, then forgotten: recovery must not need it
            kms_key_arn="arn:aws:kms:eu-west-1:111122223333:key/gone",
            kms_wrapped_key=b"blob-of-a-deleted-kms-key",
            recovery_public_key=public,
            chunk_size=4096,
        )
    return enc, result


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("securedr ") and ": error: " in lines[0]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_commands_are_registered() -> None:
    help_text = build_parser().format_help()
    for command in ("keygen", "recover-file", "verify-file"):
        assert command in help_text


def test_keygen_writes_a_private_file_and_prints_only_the_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    identity = tmp_path / "recovery.key"
    code, out, err = run(capsys, "keygen", "--out", str(identity))
    assert code == 0
    assert identity.stat().st_mode & 0o777 == 0o600
    private = next(line for line in identity.read_text().splitlines() if not line.startswith("#"))
    assert private.startswith("SECUREDR-RECOVERY-KEY-")
    assert private not in out + err and private[22:] not in out + err
    public = envelope.recovery_public_key(private).decode()
    assert f"Public key: {public}" in out
    assert envelope.recovery_key_id(public) in out


def test_keygen_refuses_to_overwrite_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    identity, _ = keygen(tmp_path, capsys)
    before = identity.read_bytes()
    code, _, err = run(capsys, "keygen", "--out", str(identity))
    assert code == 2
    assert_one_line_error(err, "already exists", "--force")
    assert identity.read_bytes() == before
    code, _, _ = run(capsys, "keygen", "--out", str(identity), "--force")
    assert code == 0 and identity.read_bytes() != before
    assert identity.stat().st_mode & 0o777 == 0o600


def test_keygen_into_a_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "keygen", "--out", str(tmp_path / "no" / "such" / "key"))
    assert code == 2
    assert_one_line_error(err, "cannot create the identity file")


def test_recover_file_with_only_the_offline_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    identity, public = keygen(tmp_path, capsys)
    enc, result = encrypt(tmp_path, public)
    out_path = tmp_path / "restored.bin"
    code, out, err = run(
        capsys,
        "recover-file",
        "--identity",
        str(identity),
        "--in",
        str(enc),
        "--out",
        str(out_path),
        "--sha256",
        result.plaintext_sha256,
        "--file-id",
        result.file_id,
    )
    assert code == 0, err
    assert out_path.read_bytes() == DATA
    assert result.plaintext_sha256 in out


def test_verify_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    identity, public = keygen(tmp_path, capsys)
    enc, result = encrypt(tmp_path, public)
    code, out, _ = run(capsys, "verify-file", "--identity", str(identity), "--in", str(enc))
    assert code == 0
    assert out.startswith("OK ") and result.plaintext_sha256 in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.enc", "recovery.key"]


def test_tampered_file_fails_cleanly_and_leaves_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    identity, public = keygen(tmp_path, capsys)
    enc, _ = encrypt(tmp_path, public)
    blob = bytearray(enc.read_bytes())
    blob[-100] ^= 0x10  # inside the last chunk
    enc.write_bytes(blob)
    out_path = tmp_path / "restored.bin"
    code, out, err = run(
        capsys,
        "recover-file",
        "--identity",
        str(identity),
        "--in",
        str(enc),
        "--out",
        str(out_path),
    )
    assert code == 2 and out == ""
    assert_one_line_error(err, "chunk 73 failed authentication")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.enc", "recovery.key"]
    code, _, err = run(capsys, "verify-file", "--identity", str(identity), "--in", str(enc))
    assert code == 2
    assert_one_line_error(err, "chunk 73 failed authentication")


def test_checksum_mismatch_leaves_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    identity, public = keygen(tmp_path, capsys)
    enc, _ = encrypt(tmp_path, public)
    code, _, err = run(
        capsys,
        "recover-file",
        "--identity",
        str(identity),
        "--in",
        str(enc),
        "--out",
        str(tmp_path / "restored.bin"),
        "--sha256",
        "ab" * 32,
    )
    assert code == 2
    assert_one_line_error(err, "checksum mismatch")
    assert not (tmp_path / "restored.bin").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.enc", "recovery.key"]


def test_wrong_identity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, public = keygen(tmp_path, capsys)
    enc, _ = encrypt(tmp_path, public)
    other = tmp_path / "other.key"
    assert run(capsys, "keygen", "--out", str(other))[0] == 0
    code, _, err = run(
        capsys,
        "recover-file",
        "--identity",
        str(other),
        "--in",
        str(enc),
        "--out",
        str(tmp_path / "x"),
    )
    assert code == 2
    assert_one_line_error(err, "wrong recovery key", envelope.recovery_key_id(public))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("setup", "fragments"),
    [
        ("missing input", ["No such file or directory"]),
        ("plaintext input", ["not a SecureDR envelope"]),
        ("bad identity", ["recovery private key"]),
        ("public key as identity", ["looks like a securedr-recovery-pub-"]),
        ("bad sha256", ["--sha256 must be 64 hex digits"]),
        ("output exists", ["already exists", "--force"]),
        ("output dir missing", ["does not exist"]),
    ],
)
def test_errors_are_one_line_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, fragments: list[str]
) -> None:
    identity, public = keygen(tmp_path, capsys)
    enc, _ = encrypt(tmp_path, public)
    out_path = tmp_path / "restored.bin"
    extra: list[str] = []
    if setup == "missing input":
        enc = tmp_path / "nope.enc"
    elif setup == "plaintext input":
        enc = tmp_path / "plain.txt"
        enc.write_bytes(b"hello")
    elif setup == "bad identity":
        identity.write_text("# nothing here\nnot a key\n")
    elif setup == "public key as identity":
        identity.write_text(public + "\n")
    elif setup == "bad sha256":
        extra = ["--sha256", "xyz"]
    elif setup == "output exists":
        out_path.write_bytes(b"keep me")
    elif setup == "output dir missing":
        out_path = tmp_path / "missing" / "restored.bin"
    code, out, err = run(
        capsys,
        "recover-file",
        "--identity",
        str(identity),
        "--in",
        str(enc),
        "--out",
        str(out_path),
        *extra,
    )
    assert code == 2 and out == ""
    assert_one_line_error(err, *fragments)
    if setup == "output exists":
        assert out_path.read_bytes() == b"keep me"
    else:
        assert not out_path.exists()


def test_force_replaces_an_existing_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    identity, public = keygen(tmp_path, capsys)
    enc, _ = encrypt(tmp_path, public)
    out_path = tmp_path / "restored.bin"
    out_path.write_bytes(b"old")
    argv = ["recover-file", "--identity", str(identity), "--in", str(enc), "--out", str(out_path)]
    assert run(capsys, *argv, "--force")[0] == 0
    assert out_path.read_bytes() == DATA


def _cli_command() -> list[str]:
    if importlib.util.find_spec("securedr.cli.__main__") is not None:
        return [sys.executable, "-m", "securedr.cli"]
    return [sys.executable, "-c", "import sys; from securedr.cli import main; sys.exit(main())"]


def test_as_a_process_without_aws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real process, with no AWS credentials or endpoint: exit codes, stderr, no traceback."""
    identity, public = keygen(tmp_path, capsys)
    enc, _ = encrypt(tmp_path, public)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(REPO / "plugins")
    base = [*_cli_command(), "recover-file", "--identity", str(identity), "--in", str(enc)]
    ok = subprocess.run(
        [*base, "--out", str(tmp_path / "a")], env=env, capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "a").read_bytes() == DATA
    enc.write_bytes(enc.read_bytes()[:-1])
    bad = subprocess.run(
        [*base, "--out", str(tmp_path / "b")], env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2
    assert_one_line_error(bad.stderr, "truncated")
    assert not (tmp_path / "b").exists()


def test_recovery_modules_import_neither_aws_nor_airflow() -> None:
    code = (
        "import sys, securedr.core.envelope, securedr.cli.recover; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'airflow')]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _assert_interrupted_cleanly(code: int, err: str, out_dir: Path, out_path: Path) -> None:
    assert code == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0] == (
        "securedr recover-file: interrupted; nothing was written (the partial output was removed)"
    )
    assert not out_path.exists()
    assert not [p.name for p in out_dir.iterdir() if p.name.endswith(".partial")]


def test_ctrl_c_while_streaming_exits_130_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    identity, public = keygen(tmp_path, capsys)
    enc, _ = encrypt(tmp_path, public)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    original = envelope._decrypt_records

    def interrupted(src, out, **kwargs):
        out.write(b"half of the plaintext")  # some plaintext reached the temporary file
        out.flush()
        assert [p.name for p in out_dir.iterdir() if p.name.endswith(".partial")]
        raise KeyboardInterrupt

    monkeypatch.setattr(envelope, "_decrypt_records", interrupted)
    out_path = out_dir / "restored.bin"
    argv = ["recover-file", "--identity", str(identity), "--in", str(enc), "--out", str(out_path)]
    code, out, err = run(capsys, *argv)
    assert out == ""
    _assert_interrupted_cleanly(code, err, out_dir, out_path)
    monkeypatch.setattr(envelope, "_decrypt_records", original)
    assert run(capsys, *argv)[0] == 0  # and a second try just works


def test_sigint_to_the_process_exits_130_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real SIGINT (Ctrl-C in a terminal) while recover-file waits for more input."""
    import signal
    import time

    identity, public = keygen(tmp_path, capsys)
    enc, _ = encrypt(tmp_path, public)
    fifo = tmp_path / "backup.fifo"  # a backup still arriving: the decryption blocks mid-stream
    os.mkfifo(fifo)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out_path = out_dir / "restored.bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(REPO / "plugins")
    argv = ["recover-file", "--identity", str(identity), "--in", str(fifo), "--out", str(out_path)]
    # A run started in the background by a shell without job control (nohup ... &) ignores
    # SIGINT, and a child inherits an ignored signal across exec; a handler of our own
    # becomes the default there, so the CLI gets Ctrl-C as in a terminal.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [*_cli_command(), *argv],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        signal.signal(signal.SIGINT, inherited)
    try:
        with open(fifo, "wb") as writer:
            writer.write(enc.read_bytes()[: len(DATA) // 2])
            writer.flush()
            deadline = time.monotonic() + 30
            while not [p for p in out_dir.iterdir() if p.name.endswith(".partial")]:
                assert time.monotonic() < deadline, "recover-file never started writing"
                time.sleep(0.05)
            time.sleep(0.2)  # let it drain what was written and block on the pipe
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    _assert_interrupted_cleanly(proc.returncode, err, out_dir, out_path)
