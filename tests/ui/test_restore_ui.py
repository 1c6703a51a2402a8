"""The UI path of a DR restore in a real browser, on the CeleryExecutor stack with FAB.

alice (DR Initiator) fills dr_restore's trigger form, typing the code her authenticator shows;
she cannot approve her own run; bob (DR Approver) approves it under Required Actions, typing
his; the run succeeds. mallory, who has no DR role, cannot trigger it. Screenshots of every
step go to .securedr/screenshots/.
"""

from __future__ import annotations

import re
import urllib.parse

import pytest

from sandbox.stack import AirflowApi, StackError, hitl_path
from tests.ui.conftest import SCREENSHOTS

pytestmark = [pytest.mark.ui, pytest.mark.e2e]

REASON = "UI drill: restore last night's recovery points"
TICKET = "INC-4242"
TIMEOUT_MS = 60_000


def login(browser, stack: dict, user: str):
    """A fresh browser session, signed in through FAB's login page."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(stack["api_url"] + "/")
    page.fill("input#username", user)
    page.fill("input#password", stack["passwords"][user])
    page.click("input[type=submit], button[type=submit]")
    page.get_by_role("button", name="User").wait_for()  # the Airflow UI's user menu
    return page


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def fill_trigger_form(page, stack: dict, mfa_code: str) -> None:
    """Open dr_restore, press Trigger, fill the Params form (MFA code last, as a person would)."""
    page.goto(stack["api_url"] + "/dags/dr_restore")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("#element_reason").fill(REASON)
    dialog.locator("#element_ticket").fill(TICKET)
    dialog.locator("#element_mfa_code").fill(mfa_code)
    return dialog


def admin(stack: dict) -> AirflowApi:
    return AirflowApi(stack["api_url"]).login("admin", stack["passwords"]["admin"])


def restore_runs(stack: dict) -> list[dict]:
    return admin(stack).get("/api/v2/dags/dr_restore/dagRuns")["dag_runs"]


def test_a_user_without_a_dr_role_cannot_trigger_dr_restore(ui_stack, browser):
    page = login(browser, ui_stack, "mallory")
    before = restore_runs(ui_stack)
    dialog = fill_trigger_form(page, ui_stack, "123456")  # mallory has no authenticator
    shot(page, "01-mallory-trigger-form")
    dialog.get_by_role("button", name="Trigger", exact=True).click()
    page.get_by_text("You do not have permission").first.wait_for()
    shot(page, "02-mallory-refused")
    assert restore_runs(ui_stack) == before
    page.context.close()


@pytest.fixture(scope="module")
def alice_run(ui_stack, browser) -> dict:
    """alice triggers dr_restore from the form; the run waits for approval."""
    page = login(browser, ui_stack, "alice")
    dialog = fill_trigger_form(page, ui_stack, ui_stack["stack"].mfa_code("alice"))
    shot(page, "03-alice-trigger-form")
    dialog.get_by_role("button", name="Trigger", exact=True).click()
    page.wait_for_url(re.compile(r"/dags/dr_restore/runs/[^/]+$"))
    run_id = urllib.parse.unquote(page.url.rsplit("/runs/", 1)[1])
    shot(page, "04-alice-run-started")
    api = admin(ui_stack)
    run = api.get(f"/api/v2/dags/dr_restore/dagRuns/{urllib.parse.quote(run_id, safe='')}")
    assert run["triggering_user_name"] == "alice"
    assert run["conf"]["reason"] == REASON and run["conf"]["ticket"] == TICKET
    api.wait("dr_restore", run_id, timeout=600, until=("awaiting_input",))
    assert api.task_states("dr_restore", run_id)["approve_restore"] == "awaiting_input"
    ui_stack["stack"].wait_parked("dr_restore", run_id, "approve_restore")
    return {"run_id": run_id, "page": page}


def required_action_url(stack: dict, run_id: str) -> str:
    return (
        f"{stack['api_url']}/dags/dr_restore/runs/{urllib.parse.quote(run_id, safe='')}"
        "/tasks/approve_restore/required_actions"
    )


def test_the_initiator_cannot_approve_their_own_restore(ui_stack, alice_run):
    page = alice_run["page"]
    page.goto(required_action_url(ui_stack, alice_run["run_id"]))
    page.get_by_text("Restore request from alice").wait_for()
    page.get_by_role("button", name="Approve", exact=True).click()
    page.get_by_text("You do not have permission").first.wait_for()
    shot(page, "05-alice-cannot-approve")
    # alice holds the DR Approver role too: what refuses her is the run's assignment.
    alice = AirflowApi(ui_stack["api_url"]).login("alice", ui_stack["passwords"]["alice"])
    with pytest.raises(StackError, match=r"HTTP 403.*not a respondent for the task"):
        alice.patch(
            hitl_path("dr_restore", alice_run["run_id"], "approve_restore"),
            {"chosen_options": ["Approve"], "params_input": {}},
        )
    detail = admin(ui_stack).get(hitl_path("dr_restore", alice_run["run_id"], "approve_restore"))
    assert detail["response_received"] is False
    assert detail["responded_by_user"] is None
    page.context.close()


def test_the_approver_approves_under_required_actions_and_the_restore_succeeds(
    ui_stack, browser, alice_run
):
    run_id = alice_run["run_id"]
    page = login(browser, ui_stack, "bob")
    page.goto(ui_stack["api_url"] + "/required_actions")
    # The list links each row's subject to the task's Required Action (run id unencoded).
    link = page.locator(f'a[href*="/runs/{run_id}/tasks/approve_restore"]')
    link.first.wait_for()
    shot(page, "06-bob-required-actions")
    link.first.click()
    page.get_by_text("Restore request from alice").wait_for()
    page.get_by_text(f"Reason: {REASON}").wait_for()
    page.locator("#element_approver_mfa_code").fill(ui_stack["stack"].mfa_code("bob"))
    shot(page, "07-bob-sees-the-request")
    page.get_by_role("button", name="Approve", exact=True).click()
    page.get_by_text("response successful").first.wait_for()
    shot(page, "08-bob-approved")

    api = admin(ui_stack)
    assert api.wait("dr_restore", run_id, timeout=900) == "success"
    report = api.xcom("dr_restore", run_id, "confirm_restore")
    assert report["succeeded"] and not report["dry_run"]
    assert (report["initiator"], report["approver"]) == ("alice", "bob")
    assert (report["reason"], report["ticket"]) == (REASON, TICKET)
    assert report["resources"] and not report["failed"]
    # Both codes were checked, and only the verdicts were kept.
    decision = api.xcom("dr_restore", run_id, "approve_restore")
    assert decision["mfa"]["result"] == "ok" and decision["mfa"]["user"] == "bob"
    assert "approver_mfa_code" not in decision["params_input"]
    page.goto(f"{ui_stack['api_url']}/dags/dr_restore/runs/{urllib.parse.quote(run_id, safe='')}")
    page.get_by_text("confirm_restore").first.wait_for()
    shot(page, "09-restore-succeeded")
    expected = {f"0{i}" for i in range(1, 10)}
    assert expected <= {p.name[:2] for p in SCREENSHOTS.glob("*.png")}
    page.context.close()
