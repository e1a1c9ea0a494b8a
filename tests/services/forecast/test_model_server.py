"""The model server's Vertex AI custom-container contract, through Flask's test client."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.forecast.artefact import save_version
from services.forecast.calendars import calendar_for
from services.forecast.dataset import Panel
from services.forecast.features import HISTORY_HOURS
from services.forecast.model_server import ModelStore, ServerConfig, create_app
from tests.services.forecast.conftest import history_of

ORIGIN = pd.Timestamp("2019-11-18")


def _client(root: Path):
    return create_app(ModelStore(root), ServerConfig()).test_client()


def _instance(panel: Panel, meter: str, hours: int = HISTORY_HOURS) -> dict:
    return {
        "device_id": meter,
        "origin": "2019-11-18T00:00:00Z",
        "kwh": history_of(panel, meter, ORIGIN, hours),
    }


def test_health_is_503_until_a_model_exists_then_names_the_version(tmp_path: Path, trained) -> None:
    root = tmp_path / "models"
    client = _client(root)
    assert client.get("/health").status_code == 503
    save_version(*trained, root)
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json()["model_version"] == trained[1].version


def test_predict_returns_24_monotone_quantiles_per_instance_in_order(
    model_root: Path, panel_slice: Panel
) -> None:
    meters = panel_slice.device_ids[:2]
    response = _client(model_root).post(
        "/predict", json={"instances": [_instance(panel_slice, m) for m in meters]}
    )
    assert response.status_code == 200
    predictions = response.get_json()["predictions"]
    assert [p["device_id"] for p in predictions] == meters
    for p in predictions:
        assert len(p["target_hours"]) == len(p["p10"]) == len(p["p50"]) == len(p["p90"]) == 24
        assert p["target_hours"][0].startswith("2019-11-18T00:00")
        assert np.all(np.array(p["p10"]) <= np.array(p["p50"]))
        assert np.all(np.array(p["p50"]) <= np.array(p["p90"]))


def test_prediction_matches_the_model_on_the_same_window(
    model_root: Path, panel_slice: Panel, trained
) -> None:
    """The server and the backtest share one feature implementation, so they agree exactly."""
    meter = panel_slice.device_ids[0]
    served = _client(model_root).post("/predict", json={"instances": [_instance(panel_slice, meter)]})
    window = np.array(
        [np.nan if v is None else v for v in history_of(panel_slice, meter, ORIGIN, HISTORY_HOURS)]
    )
    temp = None
    direct = trained[0].predict_windows(window[None, :], temp, pd.DatetimeIndex([ORIGIN]))
    assert np.allclose(served.get_json()["predictions"][0]["p50"], direct[0, :, 1], atol=1e-5)


def test_a_two_week_instance_reads_as_four_weeks_with_the_older_hours_missing(
    model_root: Path, panel_slice: Panel
) -> None:
    """Clients built for the 336-hour history keep working: older hours are simply missing."""
    meter = panel_slice.device_ids[0]
    short = history_of(panel_slice, meter, ORIGIN)
    assert len(short) == 336 < HISTORY_HOURS
    long = [None] * (HISTORY_HOURS - 336) + short
    client = _client(model_root)
    a = client.post("/predict", json={"instances": [_instance(panel_slice, meter, 336)]}).get_json()
    b = client.post(
        "/predict", json={"instances": [{**_instance(panel_slice, meter), "kwh": long}]}
    ).get_json()
    assert a["predictions"][0]["p50"] == b["predictions"][0]["p50"]


def test_each_instance_is_scored_in_its_own_site_calendar(
    model_root: Path, panel_slice: Panel, trained
) -> None:
    """One request, two sites: each forecast equals the model run directly with that site's calendar."""
    meter = panel_slice.device_ids[0]
    window = np.array(
        [np.nan if v is None else v for v in history_of(panel_slice, meter, ORIGIN, HISTORY_HOURS)]
    )
    instances = [
        {**_instance(panel_slice, meter), "device_id": "london"},
        {**_instance(panel_slice, meter), "device_id": "tokyo", "timezone": "Asia/Tokyo"},
    ]
    served = _client(model_root).post("/predict", json={"instances": instances}).get_json()["predictions"]
    for p, calendar in zip(served, [calendar_for(None), calendar_for("Asia/Tokyo")], strict=True):
        direct = trained[0].predict_windows(window[None, :], None, pd.DatetimeIndex([ORIGIN]), calendar)
        assert np.allclose(p["p50"], direct[0, :, 1], atol=1e-5)
    assert calendar_for("Asia/Tokyo").country == "JP"
    # Tokyo's hours of day are 9 h ahead of London's in November: the shapes differ.
    assert not np.allclose(served[0]["p50"], served[1]["p50"])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"instances": []}, "instances"),
        (
            {"instances": [{"device_id": "m", "origin": "2019-11-18T00:00:00Z", "kwh": [1.0] * 10}]},
            "336 to 672",
        ),
        (
            {"instances": [{"device_id": "m", "origin": "2019-11-18T00:00:00Z", "kwh": [-1.0] * 336}]},
            "negative",
        ),
        (
            {"instances": [{"device_id": "m", "origin": "2019-11-18T00:00:00Z", "kwh": [None] * 336}]},
            "no values",
        ),
        (
            {"instances": [{"device_id": "m", "origin": "2019-11-18T00:30:00Z", "kwh": [1.0] * 336}]},
            "on the hour",
        ),
        ({"instances": [{"origin": "2019-11-18T00:00:00Z", "kwh": [1.0] * 336}]}, "device_id"),
        ({"instances": [{"device_id": "m", "origin": "x", "kwh": [1.0] * 336, "extra": 1}]}, "extra"),
        ({"rows": []}, "instances"),
        (
            {
                "instances": [
                    {
                        "device_id": "m",
                        "origin": "2019-11-18T00:00:00Z",
                        "kwh": [1.0] * 336,
                        "timezone": "Mars/Base",
                    }
                ]
            },
            "unknown time zone 'Mars/Base'",
        ),
        (
            {"instances": [{"device_id": "m", "origin": "2019-11-18T00:00:00Z", "kwh": [1.0] * 673}]},
            "got 673",
        ),
    ],
)
def test_bad_instances_are_400_with_a_message(model_root: Path, body: dict, reason: str) -> None:
    response = _client(model_root).post("/predict", json=body)
    assert response.status_code == 400
    assert reason in response.get_data(as_text=True)


def test_non_json_body_is_400(model_root: Path) -> None:
    response = _client(model_root).post("/predict", data="not json", content_type="text/plain")
    assert response.status_code == 400
    assert "instances" in response.get_json()["error"]


def test_a_newer_model_is_served_without_restart(model_root: Path, trained) -> None:
    client = _client(model_root)
    assert client.get("/health").get_json()["model_version"] == trained[1].version
    newer = trained[1].model_copy(update={"version": "99990101T000000Z-newer"})
    save_version(trained[0], newer, model_root)
    assert client.get("/health").get_json()["model_version"] == "99990101T000000Z-newer"


def test_a_broken_newer_version_is_reported_and_the_loaded_model_keeps_serving(
    model_root: Path, trained
) -> None:
    client = _client(model_root)
    assert client.get("/health").status_code == 200
    broken = model_root / "99990101T000000Z-broken"
    broken.mkdir()
    (broken / "forecaster.json").write_text('{"interval_scale": 1.0, "features": ["something_else"]}')
    (broken / "model_card.json").write_text(
        trained[1].model_copy(update={"version": broken.name}).model_dump_json()
    )
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json()["model_version"] == trained[1].version


def test_health_is_503_with_the_reason_when_the_only_model_is_unloadable(tmp_path: Path, trained) -> None:
    root = tmp_path / "models"
    broken = root / "20200101T000000Z-old"
    broken.mkdir(parents=True)
    (broken / "forecaster.json").write_text('{"interval_scale": 1.0, "features": ["something_else"]}')
    (broken / "model_card.json").write_text(
        trained[1].model_copy(update={"version": broken.name}).model_dump_json()
    )
    response = _client(root).get("/health")
    assert response.status_code == 503
    assert "retrain" in response.get_json()["broken"][broken.name]
