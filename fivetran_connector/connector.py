"""Fivetran connector for a smart-meter vendor API: sites, devices, meter readings.

Syncs four tables: `site`, `device`, `reading` (one row per device and reading timestamp) and
`invalid_reading` (records that failed validation, with the reason, so nothing is dropped
silently). Readings are pulled per device from the vendor's change feed with a cursor on the time
the vendor *received* them, re-reading `lookback_hours` each sync so late-published records land.
A decommissioned device becomes a delete of its device row, upserted first with its `status` and
`decommissioned_at` so the warehouse keeps its history; its readings stay.

Run locally: `fivetran debug` in this folder (configuration.json beside it).
"""

# hashlib/json: a stable id for a quarantined record (hash of its canonical JSON).
import hashlib
import json

# math: NaN/inf checks on measures.
import math

# datetime: cursors, start_date and timestamp validation, all in UTC.
from datetime import UTC, date, datetime, timedelta

# The vendor API client (timeouts, retries, paging) lives beside this file.
from client import VendorApiError, VendorClient

# Connector, Operations (upsert/delete/checkpoint) and Logging from the Fivetran Connector SDK.
from fivetran_connector_sdk import Connector
from fivetran_connector_sdk import Logging as log  # noqa: N813 (the SDK's own convention)
from fivetran_connector_sdk import Operations as op  # noqa: N813

# Rows between checkpoints: bounds the runner's buffer (memory) and the work redone after a crash.
# Measured with bench/bench_connector.py (see README): 5,000 sits on the plateau of throughput.
__CHECKPOINT_EVERY_ROWS = 5000
__MAX_PAGE_SIZE = 5000  # the vendor API's documented maximum
__MAX_LOOKBACK_HOURS = 24 * 14
# A meter's clock may run slightly ahead of the vendor's; beyond this a timestamp is "in the future".
__CLOCK_SKEW = timedelta(minutes=5)
__REQUIRED_KEYS = ("base_url", "api_key", "page_size", "start_date", "lookback_hours")
__MEASURES = ("power_w", "energy_wh", "voltage", "temp_c")
__NULLABLE_MEASURES = ("voltage", "temp_c")


def validate_configuration(configuration: dict) -> dict:
    """Check every key up front and name each bad one; returns the parsed (typed) configuration."""
    if not isinstance(configuration, dict):
        raise ValueError("configuration must be a JSON object of strings")
    errors = []
    missing = [key for key in __REQUIRED_KEYS if not str(configuration.get(key) or "").strip()]
    errors += [f"{key} is required" for key in missing]
    parsed: dict = {}
    base_url = str(configuration.get("base_url") or "").strip()
    if "base_url" not in missing:
        if not base_url.startswith(("http://", "https://")):
            errors.append(f"base_url must start with http:// or https:// (got {base_url!r})")
        parsed["base_url"] = base_url.rstrip("/")
    parsed["api_key"] = str(configuration.get("api_key") or "").strip()
    if "page_size" not in missing:
        text = str(configuration["page_size"]).strip()
        if not text.isdigit() or not 1 <= int(text) <= __MAX_PAGE_SIZE:
            errors.append(f"page_size must be an integer from 1 to {__MAX_PAGE_SIZE} (got {text!r})")
        else:
            parsed["page_size"] = int(text)
    if "start_date" not in missing:
        text = str(configuration["start_date"]).strip()
        try:
            parsed["start_date"] = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        except ValueError:
            errors.append(f"start_date must be an ISO date like 2026-01-01 (got {text!r})")
    if "lookback_hours" not in missing:
        text = str(configuration["lookback_hours"]).strip()
        try:
            hours = float(text)
        except ValueError:
            hours = -1.0
        if not 0 <= hours <= __MAX_LOOKBACK_HOURS:
            errors.append(f"lookback_hours must be a number from 0 to {__MAX_LOOKBACK_HOURS} (got {text!r})")
        else:
            parsed["lookback"] = timedelta(hours=hours)
    # Optional: rows between checkpoints (tests and the benchmark vary it).
    text = str(configuration.get("checkpoint_rows") or __CHECKPOINT_EVERY_ROWS).strip()
    if not text.isdigit() or int(text) < 1:
        errors.append(f"checkpoint_rows must be a positive integer (got {text!r})")
    else:
        parsed["checkpoint_rows"] = int(text)
    if errors:
        raise ValueError("invalid configuration: " + "; ".join(errors))
    return parsed


def schema(configuration: dict):
    """Keys and the types that must not be guessed: measures DOUBLE, times UTC_DATETIME."""
    return [
        {
            "table": "site",
            "primary_key": ["site_id"],
            "columns": {
                "site_id": "STRING",
                "name": "STRING",
                "site_type": "STRING",
                "timezone": "STRING",
                "latitude": "DOUBLE",
                "longitude": "DOUBLE",
            },
        },
        {
            "table": "device",
            "primary_key": ["device_id"],
            "columns": {
                "device_id": "STRING",
                "site_id": "STRING",
                "name": "STRING",
                "meter_type": "STRING",
                "nominal_voltage": "DOUBLE",
                "interval_minutes": "INT",
                "installed_at": "UTC_DATETIME",
                # kept on the soft-deleted row, so the warehouse can tell a decommissioned device
                # (history stays) from one the vendor removed
                "status": "STRING",
                "decommissioned_at": "UTC_DATETIME",
            },
        },
        {
            "table": "reading",
            "primary_key": ["device_id", "timestamp"],
            "columns": {
                "device_id": "STRING",
                "timestamp": "UTC_DATETIME",
                "power_w": "DOUBLE",
                "energy_wh": "DOUBLE",
                "voltage": "DOUBLE",
                "temp_c": "DOUBLE",
                "occupancy": "BOOLEAN",
                "received_at": "UTC_DATETIME",
            },
        },
        {
            "table": "invalid_reading",
            "primary_key": ["record_id"],
            "columns": {
                "record_id": "STRING",
                "device_id": "STRING",
                "timestamp": "STRING",
                "reason": "STRING",
                "raw_record": "STRING",
                "received_at": "UTC_DATETIME",
            },
        },
    ]


def update(configuration: dict, state: dict):
    """One sync: sites, then devices (deletes for decommissioned ones), then each device's readings."""
    config = validate_configuration(configuration)
    state = {
        "cursors": dict((state or {}).get("cursors") or {}),
        # devices already upserted with status decommissioned and deleted; a new key (was
        # "deleted"), so devices an older version deleted without their status are sent once more
        "decommissioned": list((state or {}).get("decommissioned") or []),
    }
    client = VendorClient(config["base_url"], config["api_key"])
    try:
        sync_sites(client, config)
        device_ids = sync_devices(client, config, state)
        sync_readings(client, config, state, device_ids)
    except VendorApiError as exc:
        # State already checkpointed stays valid: each cursor only ever covers rows emitted before it.
        raise RuntimeError(f"sync stopped: {exc}") from exc
    finally:
        client.close()
    op.checkpoint(state)
    log.info(f"sync done: {len(device_ids)} devices, {client.requests_made} API requests")


def sync_sites(client: VendorClient, config: dict) -> None:
    count = 0
    for page in client.pages("/v1/sites", {"page_size": min(config["page_size"], 1000)}):
        for site in page:
            op.upsert(
                "site",
                {
                    k: site.get(k)
                    for k in ("site_id", "name", "site_type", "timezone", "latitude", "longitude")
                },
            )
        count += len(page)
    log.info(f"sites synced: {count}")


def sync_devices(client: VendorClient, config: dict, state: dict) -> list:
    """Upsert every device; a decommissioned one is upserted once more and then deleted (soft delete)."""
    device_ids = []
    deleted = set(state["decommissioned"])
    columns = (
        "device_id",
        "site_id",
        "name",
        "meter_type",
        "nominal_voltage",
        "interval_minutes",
        "installed_at",
        "status",
        "decommissioned_at",
    )
    for page in client.pages("/v1/devices", {"page_size": min(config["page_size"], 1000)}):
        for device in page:
            device_id = device["device_id"]
            device_ids.append(device_id)
            decommissioned = device.get("status") == "decommissioned"
            if decommissioned and device_id in deleted:
                continue
            op.upsert("device", {k: device.get(k) for k in columns})
            if decommissioned:
                op.delete("device", {"device_id": device_id})
                state["decommissioned"].append(device_id)
                deleted.add(device_id)
    log.info(f"devices synced: {len(device_ids)} ({len(deleted)} decommissioned)")
    return device_ids


def sync_readings(client: VendorClient, config: dict, state: dict, device_ids: list) -> None:
    """Each device's change feed from its cursor minus the look-back; checkpoint every N rows."""
    known = set(device_ids)
    cursors = state["cursors"]
    since_checkpoint = 0
    totals = {"reading": 0, "invalid_reading": 0}
    for device_id in device_ids:
        since = _since(cursors.get(device_id), config)
        params = {"received_since": since, "page_size": config["page_size"]}
        for page in client.pages(client.readings_path(device_id), params):
            for record in page:
                table, row = _classify(record, device_id, known)
                op.upsert(table, row)
                totals[table] += 1
            newest = _newest_received(page)
            if newest and newest > cursors.get(device_id, ""):
                cursors[device_id] = newest
            since_checkpoint += len(page)
            if since_checkpoint >= config["checkpoint_rows"]:
                op.checkpoint(state)
                since_checkpoint = 0
    log.info(f"readings synced: {totals['reading']} valid, {totals['invalid_reading']} quarantined")


def _since(cursor, config: dict) -> str:
    if not cursor:
        return _iso(config["start_date"])
    moment = datetime.fromisoformat(cursor.replace("Z", "+00:00")) - config["lookback"]
    return _iso(max(moment, config["start_date"]))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _newest_received(page: list) -> str:
    """Feed order is by received_at, so the last parseable one is the page's newest."""
    for record in reversed(page):
        text = record.get("received_at") if isinstance(record, dict) else None
        if isinstance(text, str) and _parse_time(text) is not None:
            return _iso(_parse_time(text))
    return ""


def _parse_time(text) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _classify(record, feed_device: str, known: set) -> tuple:
    """A valid record becomes a `reading` row; anything else an `invalid_reading` row with the reason.

    Times go to the SDK as the aware datetimes validation already parsed: handed text, the SDK
    parses each one again with strptime, which was the largest single per-row cost (profiled).
    """
    if isinstance(record, dict):
        reason, timestamp, received = _check(record, feed_device, known)
    else:
        reason, timestamp, received = "record is not a JSON object", None, None
    if reason is None:
        voltage = record.get("voltage")
        temp_c = record.get("temp_c")
        return "reading", {
            "device_id": record["device_id"],
            "timestamp": timestamp,
            "power_w": float(record["power_w"]),
            "energy_wh": float(record["energy_wh"]),
            "voltage": None if voltage is None else float(voltage),
            "temp_c": None if temp_c is None else float(temp_c),
            "occupancy": record.get("occupancy"),
            "received_at": received,
        }
    raw = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    if isinstance(record, dict) and received is None:
        received = _parse_time(record.get("received_at"))
    return "invalid_reading", {
        "record_id": hashlib.sha256(raw.encode()).hexdigest()[:32],
        "device_id": str(record.get("device_id")) if isinstance(record, dict) else None,
        "timestamp": str(record.get("timestamp")) if isinstance(record, dict) else None,
        "reason": reason,
        "raw_record": raw,
        "received_at": _iso(received) if received else None,
    }


def _check(record: dict, feed_device: str, known: set) -> tuple:
    """The first thing wrong with a record, in words an operator can act on (None when valid), with
    its parsed timestamp and received_at so the row reuses them."""
    device_id = record.get("device_id")
    if not isinstance(device_id, str) or device_id not in known:
        return f"unknown device_id {device_id!r}", None, None
    if device_id != feed_device:
        return f"device_id {device_id!r} appeared in the feed of {feed_device!r}", None, None
    timestamp = _parse_time(record.get("timestamp"))
    if timestamp is None:
        return f"timestamp is not an ISO 8601 UTC time: {record.get('timestamp')!r}", None, None
    received = _parse_time(record.get("received_at"))
    if received is None:
        return f"received_at is not an ISO 8601 UTC time: {record.get('received_at')!r}", None, None
    if timestamp > received + __CLOCK_SKEW:
        reason = f"timestamp {record['timestamp']} is in the future (received at {record['received_at']})"
        return reason, timestamp, received
    for name in __MEASURES:
        value = record.get(name)
        if value is None and name in __NULLABLE_MEASURES:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{name} is not a finite number: {value!r}", timestamp, received
    if record["energy_wh"] < 0:
        return f"energy_wh (cumulative register) is negative: {record['energy_wh']}", timestamp, received
    if record["power_w"] < 0:
        return f"power_w is negative: {record['power_w']}", timestamp, received
    occupancy = record.get("occupancy")
    if occupancy is not None and not isinstance(occupancy, bool):
        return f"occupancy is not a boolean: {occupancy!r}", timestamp, received
    return None, timestamp, received


connector = Connector(update=update, schema=schema)

if __name__ == "__main__":
    # Local debugging: `python connector.py` runs one sync against configuration.json.
    with open("configuration.json", encoding="utf-8") as file:
        connector.debug(configuration=json.load(file))
