"""The "DR posture" page in a real browser, on the CeleryExecutor stack with FAB.

alice (a DR role) opens DR posture from inside the Airflow UI after last night's backup: every
protected resource is listed with its newest verified DR copy, within the RPO. A browser that
never logged in gets 401 and no data. Screenshots go to .securedr/screenshots/ (the newest is
copied to docs/posture.png).
"""

from __future__ import annotations

import shutil

import pytest

from tests.ui.conftest import REPO, SCREENSHOTS
from tests.ui.test_restore_ui import TIMEOUT_MS, login

pytestmark = [pytest.mark.ui, pytest.mark.e2e]

PREFIX = "/securedr-posture"


def test_a_dr_user_sees_the_posture_inside_the_airflow_ui(ui_stack, browser):
    page = login(browser, ui_stack, "alice")
    page.goto(ui_stack["api_url"] + "/plugin/dr-posture")
    frame = page.frame_locator("iframe")
    frame.get_by_role("heading", name="DR posture \u2014 plan demo-estate").wait_for()
    rows = frame.locator("table#posture tbody tr")
    rows.first.wait_for()
    estate = ui_stack["estate"]
    expected = [v for ids in estate["protected_volumes"].values() for v in ids]
    expected += [d for ids in estate["protected_databases"].values() for d in ids]
    assert rows.count() == len(expected)
    table = frame.locator("table#posture").inner_text()
    for resource in expected:
        assert resource in table
    assert table.count("within RPO") == len(expected)  # last night's copies, verified
    assert "snap-" in table
    assert frame.get_by_test_id("incident-count").inner_text() == "0"
    assert frame.get_by_test_id("drill-verdict").inner_text() == "none"
    inside = SCREENSHOTS / "posture-in-airflow-ui.png"
    page.screenshot(path=str(inside), full_page=True)
    # The page itself, full size (what the iframe shows).
    page.goto(ui_stack["api_url"] + PREFIX + "/")
    page.locator("table#posture").wait_for()
    alone = SCREENSHOTS / "posture.png"
    page.screenshot(path=str(alone), full_page=True)
    if alone.stat().st_size < 400_000:
        shutil.copyfile(alone, REPO / "docs" / "posture.png")
    print(f"\nDR posture screenshots: {inside} and {alone}")
    page.context.close()


def test_an_unauthenticated_browser_gets_nothing(ui_stack, browser):
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    for path in ("/", "/api/posture", "/reports/nightly"):
        response = context.request.get(ui_stack["api_url"] + PREFIX + path)
        assert response.status in (401, 403), path
        assert "snap-" not in response.text() and "vol-" not in response.text()
    context.close()


def test_a_user_without_a_dr_role_is_refused(ui_stack, browser):
    page = login(browser, ui_stack, "mallory")
    response = page.context.request.get(ui_stack["api_url"] + PREFIX + "/api/posture")
    assert response.status == 403
    assert "snap-" not in response.text()
    page.context.close()
