"""The dashboard's HTTP edge: auth, empty warehouse, unknown device, bad parameters, static assets."""

from __future__ import annotations

import hashlib
import re

import pytest

from services.chat.dashboard.routes import STATIC_DIR


@pytest.mark.parametrize("path", ["/api/dashboard/fleet", "/api/dashboard/devices/dev-001"])
def test_data_endpoints_need_the_api_key(dashboard_client, path):
    missing = dashboard_client.get(path)
    wrong = dashboard_client.get(path, headers={"Authorization": "Bearer not-the-key"})
    assert missing.status_code == 401
    assert "missing API key" in missing.get_json()["error"]
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert wrong.status_code == 401
    assert wrong.get_json()["error"] == "invalid API key"


def test_x_api_key_header_is_accepted(dashboard_client, settings):
    response = dashboard_client.get("/api/dashboard/fleet", headers={"X-API-Key": "local-dev-chat-key"})
    assert response.status_code == 200


def test_fleet_on_an_empty_warehouse_is_an_empty_overview(dashboard_client, auth_headers):
    response = dashboard_client.get("/api/dashboard/fleet", headers=auth_headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["as_of"] is None
    assert body["devices"] == []
    assert body["totals"]["device_count"] == 0
    assert response.headers["Cache-Control"] == "no-store"


def test_fleet_lists_the_devices(dashboard_client, auth_headers, demo_fleet):
    body = dashboard_client.get("/api/dashboard/fleet", headers=auth_headers).get_json()
    assert [d["device_id"] for d in body["devices"]] == ["dev-001", "dev-002", "dev-003"]
    assert body["open_incidents"][0]["incident_id"] == "inc-open-spike"


def test_unknown_device_is_404_with_a_message(dashboard_client, auth_headers, demo_fleet):
    response = dashboard_client.get("/api/dashboard/devices/no-such-meter", headers=auth_headers)
    assert response.status_code == 404
    assert response.get_json() == {"error": "unknown device 'no-such-meter'", "status": 404}


def test_unknown_device_on_an_empty_warehouse_is_404(dashboard_client, auth_headers):
    response = dashboard_client.get("/api/dashboard/devices/dev-001", headers=auth_headers)
    assert response.status_code == 404
    assert "unknown device" in response.get_json()["error"]


def test_device_endpoint_returns_the_band_and_anomalies(dashboard_client, auth_headers, demo_fleet):
    response = dashboard_client.get("/api/dashboard/devices/dev-001?hours=48", headers=auth_headers)
    body = response.get_json()
    assert response.status_code == 200
    assert len(body["load"]) == 48
    assert {"p10", "p50", "p90"} <= set(body["forecast"][0])
    assert body["anomalies"][0]["explanation"].startswith("Energy 3.4 kWh/h")


@pytest.mark.parametrize(
    ("query", "message"), [("hours=abc", "must be an integer"), ("hours=0", "between 1")]
)
def test_bad_hours_is_400_with_a_message(dashboard_client, auth_headers, demo_fleet, query, message):
    response = dashboard_client.get(f"/api/dashboard/devices/dev-001?{query}", headers=auth_headers)
    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_unknown_api_path_is_404_and_writes_are_405(dashboard_client, auth_headers):
    assert dashboard_client.get("/api/dashboard/nope", headers=auth_headers).status_code == 404
    assert dashboard_client.post("/api/dashboard/fleet", headers=auth_headers).status_code == 405


def test_other_paths_are_left_to_the_chat_service(dashboard_client):
    assert dashboard_client.get("/v1/chat").status_code == 418
    assert dashboard_client.get("/dashboardx").status_code == 418


def test_page_loads_without_a_key_and_references_only_local_scripts(dashboard_client):
    response = dashboard_client.get("/dashboard")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    sources = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert sources
    assert all(s.startswith("/dashboard/static/") for s in sources), sources
    for source in sources:
        assert dashboard_client.get(source).status_code == 200, source


def test_static_assets_have_types_and_etags(dashboard_client):
    js = dashboard_client.get("/dashboard/static/app.js")
    assert js.mimetype == "text/javascript"
    again = dashboard_client.get("/dashboard/static/app.js", headers={"If-None-Match": js.headers["ETag"]})
    assert again.status_code == 304


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/static/../routes.py",
        "/dashboard/static/%2e%2e/data.py",
        "/dashboard/static/vendor/echarts/LICENSE",
        "/dashboard/static/missing.js",
        "/dashboard/static/vendor",
    ],
)
def test_static_serves_nothing_outside_its_web_files(dashboard_client, path):
    response = dashboard_client.get(path)
    assert response.status_code == 404
    assert "error" in response.get_json()


def test_vendored_echarts_matches_its_recorded_hash():
    readme = (STATIC_DIR / "vendor" / "README.md").read_text()
    recorded = re.search(r"`echarts/echarts.min.js`.*?`([0-9a-f]{64})`", readme)
    assert recorded, "vendor/README.md must record the sha256 of echarts.min.js"
    actual = hashlib.sha256((STATIC_DIR / "vendor" / "echarts" / "echarts.min.js").read_bytes()).hexdigest()
    assert actual == recorded.group(1)


def test_a_busy_warehouse_is_503_with_a_message_not_a_trace(
    dashboard_client, auth_headers, settings, monkeypatch
):
    from filelock import FileLock

    monkeypatch.setattr(settings, "warehouse_lock_timeout_s", 0.05)
    settings.lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(settings.lock_path)):  # another process's unit of work, e.g. a refresh
        response = dashboard_client.get("/api/dashboard/fleet", headers=auth_headers)
    assert response.status_code == 503
    assert "warehouse lock" in response.get_json()["error"]
    assert "Traceback" not in response.get_data(as_text=True)


def test_the_chat_service_serves_the_dashboard_behind_the_same_key(chat_app, auth_headers, demo_fleet):
    client = chat_app.test_client()
    assert client.get("/dashboard").status_code == 200
    assert client.get("/api/dashboard/fleet").status_code == 401
    fleet = client.get("/api/dashboard/fleet", headers=auth_headers)
    assert fleet.status_code == 200
    assert len(fleet.get_json()["devices"]) == 3
    assert client.get("/api/dashboard/devices/nope", headers=auth_headers).status_code == 404
