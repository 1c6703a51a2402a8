"""Run the sandbox AWS (moto server mode) on 127.0.0.1.

``python -m sandbox.server --port-file PATH`` picks a free port, writes it to PATH once the server
answers, and serves until killed. Tests start :func:`start` in-process instead, so they can reach
moto's backends to inject failures that the real service would produce.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path

from moto.server import ThreadedMotoServer

from sandbox import moto_ext, realism
from sandbox.realism import metrics


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):  # noqa: S310 - loopback
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no answer from {url} in {timeout:.0f}s") from None
            time.sleep(0.1)


def start(port: int | None = None, host: str = "127.0.0.1") -> tuple[ThreadedMotoServer, str]:
    """Start moto in this process (loopback unless told otherwise); return it and its URL."""
    moto_ext.install()
    realism.install()
    metrics.install_endpoint()  # GET /moto-api/securedr/metrics while section metrics is on
    realism.configure_from_env()  # $SECUREDR_SANDBOX_REALISM: a profile name, off, or JSON
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = port or free_port()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"  # noqa: S104
    wait_until_up(url)
    return server, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 only inside a container")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args()
    server, url = start(args.port or None, args.host)
    args.port_file.write_text(url.rsplit(":", 1)[1])
    print(f"sandbox AWS listening on {url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
