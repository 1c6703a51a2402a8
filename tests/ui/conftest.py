"""The celery stack and a real browser (Debian's chromium, driven by Playwright) for UI tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / ".securedr" / "screenshots"


@pytest.fixture(scope="session")
def ui_stack() -> Iterator[dict]:
    """The docker-compose topology natively (celery profile), with one nightly backup done.

    Lives in .securedr/ui-stack (PostgreSQL runs as its own user and must reach its data);
    stopped at the end of the session, also on failure.
    """
    from sandbox import services
    from sandbox.stack import Stack, run_nightly

    home = REPO / ".securedr" / "ui-stack"
    stack = Stack(home, profile="celery")
    stack.down(quiet=True)
    services.remove_database_dir(home)
    shutil.rmtree(home, ignore_errors=True)
    try:
        state = stack.up(quiet=True)
        nightly = run_nightly(stack, state)
        assert nightly["state"] == "success", "the nightly backup a restore needs failed"
        yield {"stack": stack, **state, "passwords": stack.passwords()}
    finally:
        stack.down(quiet=True)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is missing: `make test-ui` installs it"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        # --no-sandbox: chromium refuses its sandbox as root (CI runs as root).
        instance = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield instance
        instance.close()
