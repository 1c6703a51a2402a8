"""The DR posture page, served by Airflow's own api-server app with the plugin mounted."""

from __future__ import annotations

import pytest

from tests.operators.helpers import sign_manifest

PREFIX = "/securedr-posture"


class FakeSource:
    """Stands in for the AWS reader; counts reads so a refused request is seen to read nothing."""

    def __init__(self, reading: dict) -> None:
        self.reading = reading
        self.reads = 0

    def posture(self) -> dict:
        self.reads += 1
        return self.reading

    def drill_html(self):
        self.reads += 1
        return b"<!DOCTYPE html><title>drill</title>"

    def nightly_report(self):
        self.reads += 1
        return None


HOSTILE = '<img src=x onerror="alert(1)">'


def reading(**extra) -> dict:
    row = {
        "kind": "ebs",
        "region": "us-east-1",
        "resource_id": "vol-0aaa",
        "label": "ebs us-east-1/vol-0aaa",
        "name": HOSTILE,
        "status": "over",
        "age_seconds": 40 * 3600.0,
        "rpo_target_seconds": 26 * 3600.0,
        "copy": {
            "dr_snapshot_id": "snap-0dr",
            "dr_region": "us-west-2",
            "created_at": "2026-03-03T02:00:00Z",
        },
        "manifest_key": "m",
        "discovered": True,
        "vault": {"account_id": "222222222222", "snapshot_id": "snap-0vault", "verified": True},
        "lock": {"mode": "compliance", "cool_off_hours": 24, "expires_on": "2026-04-01T00:00:00Z"},
    }
    return {
        "plan": "demo-estate",
        "checked_at": "2026-03-04T18:00:00Z",
        "rpo_target_seconds": 26 * 3600.0,
        "resources": [row],
        "alerts": [f"ebs us-east-1/vol-0aaa {HOSTILE} is over"],
        "rejected": [],
        "drill": {
            "passed": True,
            "rto_seconds": 1800.0,
            "rto_target_seconds": 3600.0,
            "started_at": "2026-01-01T03:00:00Z",
        },
        "incidents": [
            {
                "seq": 4,
                "time": "2026-03-04T10:00:00Z",
                "action": "incident.public_share",
                "resource": "snap-0dr",
                "outcome": "contained",
                "summary": "unshared",
            }
        ],
        "nightly_report_key": None,
        "problems": [],
        **extra,
    }


@pytest.fixture(scope="module")
def api(airflow_db):
    """Airflow's api-server app (SimpleAuthManager: alice op, mallory viewer), our plugin in it."""
    import os

    os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "alice:op,mallory:viewer"
    os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", "test-secret-for-the-posture-page")
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    app = create_app()
    (mount,) = [r for r in app.routes if getattr(r, "path", None) == PREFIX]
    tokens = {
        name: get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=name, role=role))
        for name, role in (("alice", "op"), ("mallory", "viewer"))
    }
    return TestClient(app), mount.app, tokens


def test_the_plugin_registers_the_app_and_an_external_view(api):
    from airflow import plugins_manager

    apps, _ = plugins_manager.get_fastapi_plugins()
    assert any(a["url_prefix"] == PREFIX for a in apps)
    (info,) = [p for p in plugins_manager.get_plugin_info() if p["name"] == "securedr_posture"]
    (view,) = info["external_views"]
    assert view["name"] == "DR posture" and view["href"] == PREFIX + "/"


@pytest.mark.parametrize("path", ["/", "/api/posture", "/reports/drill", "/reports/nightly"])
def test_an_unauthenticated_request_gets_nothing(api, path):
    client, sub, _ = api
    sub.state.source = source = FakeSource(reading())
    response = client.get(PREFIX + path)
    assert response.status_code in (401, 403)
    assert "vol-0aaa" not in response.text and "snap-0dr" not in response.text
    forged = client.get(PREFIX + path, headers={"Authorization": "Bearer not-a-jwt"})
    assert forged.status_code in (401, 403) and "vol-0aaa" not in forged.text
    assert source.reads == 0


def test_a_user_without_a_dr_role_is_refused(api):
    client, sub, tokens = api
    sub.state.source = source = FakeSource(reading())
    response = client.get(PREFIX + "/", cookies={"_token": tokens["mallory"]})
    assert response.status_code == 403
    assert "vol-0aaa" not in response.text and source.reads == 0


def test_a_dr_user_sees_every_resource_with_its_age_lock_vault_drill_and_incidents(api):
    client, sub, tokens = api
    sub.state.source = FakeSource(reading())
    response = client.get(PREFIX + "/", cookies={"_token": tokens["alice"]})
    assert response.status_code == 200, response.text
    page = response.text
    assert 'class="st-over"' in page and "OVER RPO" in page
    assert "40 h / 26 h" in page
    assert "snap-0dr" in page and "compliance" in page and "snap-0vault" in page
    assert "incident.public_share" in page and 'data-testid="incident-count">1<' in page
    assert 'data-testid="drill-verdict">PASS<' in page and "30m 00s" in page
    assert 'href="reports/drill"' in page and 'href="reports/nightly"' in page
    # A name taken from AWS tags is data, never markup.
    assert HOSTILE not in page
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page
    bearer = client.get(
        PREFIX + "/api/posture", headers={"Authorization": f"Bearer {tokens['alice']}"}
    )
    assert bearer.status_code == 200 and bearer.json()["resources"][0]["resource_id"] == "vol-0aaa"


def test_the_page_reads_the_signed_manifests_of_the_sandbox(api, estate, plan, aws):
    from securedr.posture_app import PostureSource

    client, sub, tokens = api
    volume = next(v for ids in estate.protected_volumes.values() for v in ids)
    sign_manifest(
        "scheduled__2026-11-25T02:00:00+00:00",
        [
            {
                "kind": "ebs",
                "source_id": volume,
                "snapshot_id": "snap-src",
                "dr_snapshot_id": "snap-0copy",
            }
        ],
        days_ago=0.5,
    )
    sub.state.source = PostureSource(ttl=60)
    page = client.get(PREFIX + "/", cookies={"_token": tokens["alice"]}).text
    assert volume in page and "snap-0copy" in page and "within RPO" in page
    # Resources the selection tag finds but no manifest lists are shown as unprotected.
    database = next(d for ids in estate.protected_databases.values() for d in ids)
    assert database in page and "NO COPY" in page
    nightly = client.get(PREFIX + "/reports/nightly", cookies={"_token": tokens["alice"]})
    assert nightly.status_code == 404  # no nightly run report stored in this sandbox


def test_readings_are_cached_briefly(monkeypatch):
    from securedr import posture_app

    class Counting(posture_app.PostureSource):
        calls = 0

        def read(self):
            Counting.calls += 1
            return {"n": Counting.calls}

    clock = [100.0]
    monkeypatch.setattr(posture_app.time, "monotonic", lambda: clock[0])
    source = Counting(ttl=60)
    assert source.posture() == {"n": 1}
    clock[0] += 59
    assert source.posture() == {"n": 1}  # within the TTL: no AWS read
    clock[0] += 2
    assert source.posture() == {"n": 2}
    monkeypatch.setenv(posture_app.CACHE_ENV, "5")
    assert Counting().ttl == 5.0
