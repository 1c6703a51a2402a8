"""Offline recovery commands: ``keygen``, ``recover-file`` and ``verify-file``.

These work with the offline recovery key alone: no AWS credentials, no KMS, no Airflow.
That is the point of them: they restore a backup file when the KMS key or the whole
account is gone.

Guarantees:

* ``keygen`` writes the private key file with mode 0600 and never prints it; it refuses
  to overwrite an existing file unless ``--force``.
* ``recover-file`` writes the output all or nothing (see
  :func:`securedr.core.envelope.decrypt_file`) and refuses to replace an existing file
  unless ``--force``.
* Every failure exits with status 2 and one line on stderr that says what was wrong and
  what to do; no traceback, and never key material.
* Ctrl-C (SIGINT) during ``recover-file`` exits with status 130 and one line on stderr; the
  temporary plaintext is deleted and ``--out`` is left as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from securedr.core import envelope

EXIT_FAILURE = 2
# An identity file is a few hundred bytes; refuse to slurp a backup passed by mistake.
_MAX_IDENTITY_SIZE = 64 << 10


def register(subparsers: Any) -> None:
    """Add the recovery sub-commands to the ``securedr`` parser."""
    keygen = subparsers.add_parser(
        "keygen",
        help="create an offline recovery key pair",
        description=(
            "Create an offline recovery key pair. Writes the private key (identity file, "
            "mode 0600) to --out and prints the public key to configure in SecureDR. Run it "
            "on an offline machine and keep the identity file offline."
        ),
    )
    keygen.add_argument("--out", required=True, metavar="PRIVATE_KEY_FILE", type=Path)
    keygen.add_argument("--force", action="store_true", help="overwrite an existing file")
    keygen.set_defaults(func=_keygen)

    recover = subparsers.add_parser(
        "recover-file",
        help="decrypt a backup file with the offline recovery key (no AWS needed)",
        description=(
            "Decrypt one SecureDR envelope with the offline recovery key. The output appears "
            "only if every chunk authenticated (and the SHA-256 matched, with --sha256)."
        ),
    )
    _add_common(recover)
    recover.add_argument("--out", required=True, metavar="PLAIN", type=Path)
    recover.add_argument("--force", action="store_true", help="replace an existing --out")
    recover.set_defaults(
        func=_recover_file,
        interrupted_message="interrupted; nothing was written (the partial output was removed)",
    )

    verify = subparsers.add_parser(
        "verify-file",
        help="check a backup file with the offline recovery key, writing nothing",
        description=(
            "Authenticate every byte of one SecureDR envelope with the offline recovery key "
            "and print its plaintext SHA-256; writes no plaintext."
        ),
    )
    _add_common(verify)
    verify.set_defaults(func=_verify_file)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--identity",
        required=True,
        metavar="PRIVATE_KEY_FILE",
        type=Path,
        help="the offline identity file written by keygen",
    )
    parser.add_argument("--in", dest="src", required=True, metavar="ENC", type=Path)
    parser.add_argument(
        "--sha256", metavar="HEX", help="expected plaintext SHA-256 (from the signed manifest)"
    )
    parser.add_argument(
        "--file-id", metavar="HEX", help="expected file id (from the signed manifest)"
    )


def _fail(command: str, message: str) -> int:
    print(f"securedr {command}: error: {message}", file=sys.stderr)
    return EXIT_FAILURE


def _option_error(error: ValueError) -> str:
    # The core names its keyword arguments; say which command-line option that was.
    message = str(error)
    for keyword, option in (("expected_sha256", "--sha256"), ("expected_file_id", "--file-id")):
        message = message.replace(keyword, option)
    return message


def _os_error(error: OSError) -> str:
    where = f": {error.filename}" if error.filename else ""
    return f"{error.strerror or error}{where}"


def _read_identity(path: Path) -> bytes:
    with open(path, "rb") as f:
        data = f.read(_MAX_IDENTITY_SIZE + 1)
    if len(data) > _MAX_IDENTITY_SIZE:
        # Raised as a key error so the message names the identity file, not the input.
        raise envelope.KeyFormatError("too large to be an identity file; check --identity")
    return data


def _keygen(args: argparse.Namespace) -> int:
    out: Path = args.out
    private, public = envelope.generate_recovery_keypair()
    contents = envelope.identity_file_contents(private)
    try:
        if args.force:
            with contextlib.suppress(FileNotFoundError):
                out.unlink()
        # O_EXCL: never follow a planted symlink or clobber a key that already exists.
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _fail("keygen", f"{out} already exists; pass --force to replace it")
    except OSError as error:
        return _fail("keygen", f"cannot create the identity file: {_os_error(error)}")
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "wb") as f:
            f.write(contents)
            f.flush()
            os.fsync(f.fileno())
    except OSError as error:
        with contextlib.suppress(OSError):
            out.unlink()
        return _fail("keygen", f"cannot write the identity file: {_os_error(error)}")
    print(f"Public key: {public.decode('ascii')}")
    print(f"Key id: {envelope.recovery_key_id(public)}")
    print(
        f"Wrote the private key to {out} (mode 0600). Move it offline now; configure only "
        "the public key in SecureDR.",
        file=sys.stderr,
    )
    return 0


def _recover_file(args: argparse.Namespace) -> int:
    out: Path = args.out
    try:
        identity = _read_identity(args.identity)
        if out.is_dir():
            return _fail("recover-file", f"{out} is a directory; give a file path")
        if out.exists() and not args.force:
            return _fail("recover-file", f"{out} already exists; pass --force to replace it")
        if not out.parent.is_dir():
            return _fail("recover-file", f"the output directory {out.parent} does not exist")
        result = envelope.decrypt_file(
            args.src,
            out,
            recovery_private_key=identity,
            expected_sha256=args.sha256,
            expected_file_id=args.file_id,
        )
    except envelope.KeyFormatError as error:
        return _fail("recover-file", f"{args.identity}: {error}")
    except envelope.EnvelopeError as error:
        return _fail("recover-file", f"{args.src}: {error}")
    except ValueError as error:  # e.g. a malformed --sha256
        return _fail("recover-file", _option_error(error))
    except OSError as error:
        return _fail("recover-file", _os_error(error))
    print(
        f"Recovered {out} ({result.plaintext_size} bytes, sha256 {result.plaintext_sha256}, "
        f"file id {result.file_id})"
    )
    return 0


def _verify_file(args: argparse.Namespace) -> int:
    try:
        identity = _read_identity(args.identity)
        with open(args.src, "rb") as src:
            result = envelope.verify_stream(
                src,
                recovery_private_key=identity,
                expected_sha256=args.sha256,
                expected_file_id=args.file_id,
            )
    except envelope.KeyFormatError as error:
        return _fail("verify-file", f"{args.identity}: {error}")
    except envelope.EnvelopeError as error:
        return _fail("verify-file", f"{args.src}: {error}")
    except ValueError as error:
        return _fail("verify-file", _option_error(error))
    except OSError as error:
        return _fail("verify-file", _os_error(error))
    print(
        f"OK {args.src}: every chunk authenticated; {result.plaintext_size} bytes, sha256 "
        f"{result.plaintext_sha256}, file id {result.file_id}"
    )
    return 0
