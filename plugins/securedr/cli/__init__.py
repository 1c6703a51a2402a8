"""The ``securedr`` command line: operator tools that work without Airflow.

Each sub-command lives in its own module and registers itself through ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Modules that contribute sub-commands, in the order they appear in ``--help``.
COMMAND_MODULES: tuple[str, ...] = (
    "securedr.cli.recover",
    "securedr.cli.audit",
    "securedr.cli.mfa",
)

#: The shell's status for a command ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="securedr", description="SecureDR operator tools (no Airflow needed)."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; Ctrl-C ends it with one line on stderr and status 130, no traceback.

    Commands clean up after themselves on the way out (e.g. ``recover-file`` deletes its
    temporary plaintext, see :func:`securedr.core.envelope.decrypt_to_path`).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        said = getattr(args, "interrupted_message", "interrupted")
        print(f"securedr {args.command}: {said}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
