"""Fivetran connector for a smart-meter vendor API: sites, devices, meter readings.

Syncs four tables: `site`, `device`, `reading` (one row per device and reading timestamp) and
`invalid_reading` (records that failed validation, with the reason, so nothing is dropped
silently). Readings come from the vendor's change feed with a cursor on the time the vendor
*received* them: by default (`change_feed` true) one fleet-wide feed, a few pages per sync for the
whole fleet; for vendors without one (`change_feed` false), one feed per device, re-reading
`lookback_hours` each sync so late-published records land. Either way the state keeps each device's
newest received_at, so switching mode or adding a device resumes without a gap.
A decommissioned device becomes a delete of its device row, upserted first with its `status` and
`decommissioned_at` so the warehouse keeps its history; its readings stay.

Run locally: `fivetran debug` in this folder (configuration.json beside it).
"""

# hashlib/json: a stable id for a quarantined record (hash of its canonical JSON).
import hashlib
import json

# math: NaN/inf checks on measures.
import math

# OrderedDict: the fleet feed's bounded window of recent readings (conflicting duplicates).
from collections import OrderedDict

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
# A meter's clock may run slightly ahead of the vendor's, and the vendor's ahead of ours; beyond this
# a timestamp (or received_at) is "in the future": after received_at, or after the sync's own clock.
__CLOCK_SKEW = timedelta(minutes=5)
# No smart-meter reading is older than this, whatever a device says about its installation.
__FLOOR = datetime(2000, 1, 1, tzinfo=UTC)
# Physical bounds per meter type: (max power W, max register Wh). A single-phase service is at most
# ~100 A x 250 V; a three-phase (commercial, CT-metered) one is capped at 50 MW, above the largest
# building in the real data (5.2 MW). Registers: 1e11 Wh is a 9-digit kWh register (x100);
# 1e14 Wh is 50 MW for 228 years. Anything else uses the three-phase bounds.
__BOUNDS = {"single_phase": (100_000.0, 1e11), "three_phase": (50_000_000.0, 1e14)}
__VOLTAGE_FACTOR = 2.0  # RMS voltage is within 0 .. 2 x the device's nominal voltage
__DEFAULT_NOMINAL_V = {"single_phase": 230.0, "three_phase": 400.0}
__MAX_VOLTAGE_V = 1000.0  # low-voltage metering, when the nominal voltage is unknown
__TEMP_RANGE_C = (-90.0, 100.0)  # coldest air on Earth .. a meter's rated maximum with margin
__REQUIRED_KEYS = ("base_url", "api_key", "page_size", "start_date", "lookback_hours")
__CHANGES_PATH = "/v1/readings/changes"
# Readings the fleet feed remembers to detect a conflicting duplicate (same device and timestamp,
# other values): a constant, so memory stays flat in the fleet size (~10 MB at the runner).
__CONFLICT_WINDOW = 20_000
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
    # Optional: the vendor's fleet-wide change feed (true) or one feed per device (false, default:
    # a vendor API without /v1/readings/changes).
    text = str(configuration.get("change_feed") or "false").strip().lower()
    if text not in ("true", "false"):
        errors.append(f"change_feed must be true or false (got {text!r})")
    parsed["change_feed"] = text == "true"
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
            # Data quality: two different records for one (device_id, timestamp). The later-received
            # one is the `reading` row (last write wins); both sets of values are kept here.
            "table": "reading_conflict",
            "primary_key": ["conflict_id"],
            "columns": {
                "conflict_id": "STRING",
                "device_id": "STRING",
                "timestamp": "UTC_DATETIME",
                "replaced_values": "STRING",
                "kept_values": "STRING",
                "replaced_received_at": "UTC_DATETIME",
                "kept_received_at": "UTC_DATETIME",
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
    """One sync: sites, then devices (deletes for decommissioned ones), then the readings: from the
    fleet change feed, or each device's feed (`change_feed` false)."""
    config = validate_configuration(configuration)
    previous = state or {}
    state = {
        "cursors": dict(previous.get("cursors") or {}),
        # devices already upserted with status decommissioned and deleted; a new key (was
        # "deleted"), so devices an older version deleted without their status are sent once more
        "decommissioned": list(previous.get("decommissioned") or []),
    }
    # The sync's own clock: no reading or cursor may be later than this (plus __CLOCK_SKEW).
    config["clock"] = datetime.now(UTC)
    state["cursors"] = drop_future_cursors(state["cursors"], config["clock"])
    # The fleet cursor only while the fleet feed is used: per-device syncs move the device cursors
    # alone, so an older fleet cursor would make a later switch back re-read from it.
    if config["change_feed"]:
        state["feed"] = drop_future_feed(previous.get("feed"), config["clock"])
    # Fingerprints of the site and device pages upserted last time (`_unchanged_page`); this sync
    # records its own under "pages", so pages the vendor no longer serves are forgotten.
    old_pages = previous.get("pages")
    state["previous_pages"] = old_pages if isinstance(old_pages, dict) else {}
    client = VendorClient(config["base_url"], config["api_key"])
    try:
        sync_sites(client, config, state)
        device_ids = sync_devices(client, config, state)
        state.pop("previous_pages")
        if config["change_feed"]:
            sync_fleet_readings(client, config, state, device_ids)
        else:
            sync_readings(client, config, state, device_ids)
    except VendorApiError as exc:
        # State already checkpointed stays valid: each cursor only ever covers rows emitted before it.
        raise RuntimeError(f"sync stopped: {exc}") from exc
    finally:
        client.close()
    op.checkpoint(state)
    log.info(f"sync done: {len(device_ids)} devices, {client.requests_made} API requests")


def drop_future_cursors(cursors: dict, clock: datetime) -> dict:
    """Forget a cursor that is past the clock (left by a version that let a 2099 record move it):
    that device is read again from start_date (upserts, so harmless), instead of staying blind."""
    kept = {}
    for device_id, cursor in cursors.items():
        moment = _parse_time(cursor)
        if moment is not None and moment <= clock + __CLOCK_SKEW:
            kept[device_id] = cursor
        else:
            log.warning(f"cursor {cursor!r} of {device_id} is past the sync's clock; re-reading that device")
    return kept


def drop_future_feed(feed, clock: datetime) -> dict:
    """The fleet cursor from the state, or {} (read from the devices' cursors) when it is not one
    this version wrote or lies past the clock."""
    if not isinstance(feed, dict):
        return {}
    received = _parse_time(feed.get("received_since"))
    published = feed.get("published_since")
    moment = _parse_time(published) if published is not None else None
    if received is None or received > clock + __CLOCK_SKEW or (published is not None and moment is None):
        log.warning(f"fleet cursor {feed!r} is not usable; reading from the devices' cursors")
        return {}
    return {"received_since": feed["received_since"], "published_since": published}


def _unchanged_page(state: dict, table: str, page: list, key: str) -> bool:
    """True when this page of the vendor's list is the one already upserted (same first key, same
    bodies): the vendor has no `updated_since`, and re-upserting 100k unchanged device rows every
    15 minutes was more rows than the readings, and made the warehouse see every device as changed.
    The fingerprint is recorded for the page in any case (written with the rows, at the checkpoint)."""
    pages = state.setdefault("pages", {})
    seen = pages.setdefault(table, {})
    if not page or not isinstance(page[0], dict):
        return False
    first = str(page[0].get(key))
    digest = hashlib.sha256(_raw_json(page).encode()).hexdigest()[:16]
    before = state.get("previous_pages")
    before = before.get(table) if isinstance(before, dict) else None
    unchanged = isinstance(before, dict) and before.get(first) == digest
    seen[first] = digest
    return unchanged


def sync_sites(client: VendorClient, config: dict, state: dict | None = None) -> None:
    count = 0
    state = {} if state is None else state
    for page in client.pages("/v1/sites", {"page_size": min(config["page_size"], 1000)}):
        count += len(page)
        if _unchanged_page(state, "site", page, "site_id"):
            continue
        for site in page:
            op.upsert(
                "site",
                {
                    k: site.get(k)
                    for k in ("site_id", "name", "site_type", "timezone", "latitude", "longitude")
                },
            )
    log.info(f"sites synced: {count}")


def sync_devices(client: VendorClient, config: dict, state: dict) -> dict:
    """Upsert every device; a decommissioned one is upserted once more and then deleted (soft delete).
    Returns device_id -> its validation profile (`_profile`), in the vendor's order."""
    device_ids = {}
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
        unchanged = _unchanged_page(state, "device", page, "device_id")
        for device in page:
            device_id = device["device_id"]
            device_ids[device_id] = _profile(device)
            if unchanged:
                continue
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


def sync_readings(client: VendorClient, config: dict, state: dict, device_ids: dict) -> None:
    """Each device's change feed from its cursor minus the look-back; checkpoint every N rows.

    A cursor never passes the sync's clock, so a record dated 2099 cannot hide the device's real
    readings from later syncs. Two different records for one (device, timestamp) within a sync
    (the look-back included) also land in `reading_conflict`; the later one stays the reading.
    """
    clock = config.get("clock") or datetime.now(UTC)
    cursors = state["cursors"]
    since_checkpoint = 0
    totals = {"reading": 0, "invalid_reading": 0, "reading_conflict": 0}
    for device_id in device_ids:
        since = _since(cursors.get(device_id), config)
        params = {"received_since": since, "page_size": config["page_size"]}
        seen: dict = {}  # timestamp -> reading row emitted in this sync, for conflicting duplicates
        for page in client.pages(client.readings_path(device_id), params):
            for record in page:
                _land(record, device_id, device_ids, clock, totals, seen, key=_timestamp_key)
            newest = _newest_received(page, clock)
            if newest and newest > cursors.get(device_id, ""):
                cursors[device_id] = newest
            since_checkpoint += len(page)
            if since_checkpoint >= config["checkpoint_rows"]:
                op.checkpoint(state)
                since_checkpoint = 0
    log.info(
        f"readings synced: {totals['reading']} valid, {totals['invalid_reading']} quarantined,"
        f" {totals['reading_conflict']} conflicting duplicates"
    )


def sync_fleet_readings(client: VendorClient, config: dict, state: dict, device_ids: dict) -> None:
    """Every device's readings from the fleet change feed: one cursor for the fleet, checkpointed
    with the rows it covers every `checkpoint_rows` rows, and each device's own cursor kept too.

    The feed is ordered by (received_at, device_id, timestamp). The fleet cursor is the newest
    received_at emitted (never past the sync's clock) plus `published_since`: the vendor's `as_of`
    when this sync began, so the next sync also gets records received earlier but published since,
    without re-reading `lookback_hours` of the whole fleet. A vendor without `as_of` gets the
    look-back instead. Memory holds one page and a fixed window of recent readings, whatever the
    fleet size (the device cursors are the state, one entry per device as in per-device mode).
    """
    clock = config.get("clock") or datetime.now(UTC)
    cursors = state["cursors"]
    since, published = _feed_start(state, device_ids, config)
    params = {"received_since": since, "page_size": config["page_size"]}
    if published:
        params["published_since"] = published
    position, snapshot = since, None
    recent: OrderedDict = OrderedDict()  # (device_id, timestamp) -> the reading row emitted
    since_checkpoint = pages = 0
    totals = {"reading": 0, "invalid_reading": 0, "reading_conflict": 0}
    for body in client.bodies(__CHANGES_PATH, params):
        page = body.get("data") or []
        pages += 1
        if snapshot is None:
            snapshot = _vendor_clock(body.get("as_of"), clock)
        for record in page:
            device_id = record.get("device_id") if isinstance(record, dict) else None
            feed_device = device_id if isinstance(device_id, str) else ""
            table, row = _land(record, feed_device, device_ids, clock, totals, recent, key=_reading_key)
            if table == "reading":
                if len(recent) > __CONFLICT_WINDOW:
                    recent.popitem(last=False)
                received = row["received_at"]
            elif device_id in device_ids:
                received = _parse_time(record.get("received_at"))
            else:
                continue
            if received is not None and received <= clock:
                text = _iso(received)
                if text > cursors.get(device_id, ""):
                    cursors[device_id] = text
        newest = _newest_received(page, clock)
        if newest > position:
            position = newest
        state["feed"] = {"received_since": position, "published_since": snapshot}
        since_checkpoint += len(page)
        if since_checkpoint >= config["checkpoint_rows"]:
            op.checkpoint(state)
            since_checkpoint = 0
    log.info(
        f"readings synced from the fleet feed ({pages} pages): {totals['reading']} valid,"
        f" {totals['invalid_reading']} quarantined, {totals['reading_conflict']} conflicting duplicates"
    )


def _feed_start(state: dict, device_ids: dict, config: dict) -> tuple:
    """(received_since, published_since) for the fleet feed. Without a fleet cursor (the first sync,
    or after per-device syncs): the oldest device cursor minus the look-back when every listed
    device has one, else start_date (a device without a cursor may have anything since then)."""
    feed = state.get("feed") or {}
    received = _parse_time(feed.get("received_since"))
    if received is not None:
        published = feed.get("published_since")
        if not published:
            received -= config["lookback"]
        return _iso(max(received, config["start_date"])), published or None
    cursors = state["cursors"]
    if device_ids and all(d in cursors for d in device_ids):
        oldest = min(_parse_time(cursors[d]) or config["start_date"] for d in device_ids)
        return _iso(max(oldest - config["lookback"], config["start_date"])), None
    return _iso(config["start_date"]), None


def _vendor_clock(text, clock: datetime) -> str | None:
    """The vendor's `as_of` as the next sync's `published_since`; None (look-back instead) when it
    is missing, unreadable or past our clock (a vendor clock that far ahead is not trusted)."""
    moment = _parse_time(text)
    if moment is None or moment > clock + __CLOCK_SKEW:
        return None
    return _iso(moment)


__VALUE_COLUMNS = ("power_w", "energy_wh", "voltage", "temp_c", "occupancy")


def _land(record, feed_device: str, known: dict, clock: datetime, totals: dict, seen: dict, *, key) -> tuple:
    """Classify one vendor record and upsert it where it belongs; a reading that differs from the one
    already emitted this sync under the same `key(row)` (`seen`) also lands in reading_conflict."""
    table, row = _classify(record, feed_device, known, clock)
    op.upsert(table, row)
    totals[table] += 1
    if table == "reading":
        k = key(row)
        earlier = seen.pop(k, None)
        if earlier is not None and _values(earlier) != _values(row):
            op.upsert("reading_conflict", _conflict(earlier, row))
            totals["reading_conflict"] += 1
        seen[k] = row
    return table, row


def _timestamp_key(row: dict) -> str:
    return row["timestamp"]


def _reading_key(row: dict) -> tuple:
    return (row["device_id"], row["timestamp"])


def _values(row: dict) -> tuple:
    return tuple(row[c] for c in __VALUE_COLUMNS)


def _conflict(earlier: dict, later: dict) -> dict:
    replaced = json.dumps({c: earlier[c] for c in __VALUE_COLUMNS}, sort_keys=True)
    kept = json.dumps({c: later[c] for c in __VALUE_COLUMNS}, sort_keys=True)
    key = f"{later['device_id']}|{_iso(later['timestamp'])}|{replaced}|{kept}"
    return {
        "conflict_id": hashlib.sha256(key.encode()).hexdigest()[:32],
        "device_id": later["device_id"],
        "timestamp": later["timestamp"],
        "replaced_values": replaced,
        "kept_values": kept,
        "replaced_received_at": earlier["received_at"],
        "kept_received_at": later["received_at"],
    }


def _profile(device: dict) -> tuple:
    """(max power W, max voltage V, max register Wh, earliest reading time) for one device body:
    its meter type's bounds, 2 x its nominal voltage, no reading before its installation. Robust to
    any body a vendor sends: what cannot be read falls back to the generic bounds."""
    meter_type = device.get("meter_type")
    power_max, register_max = __BOUNDS.get(meter_type, __BOUNDS["three_phase"])
    voltage_max = __MAX_VOLTAGE_V
    nominal = device.get("nominal_voltage", __DEFAULT_NOMINAL_V.get(meter_type))
    try:
        if not isinstance(nominal, bool) and isinstance(nominal, (int, float)) and 0 < nominal <= 1e6:
            voltage_max = __VOLTAGE_FACTOR * float(nominal)
    except (OverflowError, ValueError, TypeError):
        pass
    installed = _parse_time(device.get("installed_at"))
    earliest = __FLOOR if installed is None else max(__FLOOR, installed - __CLOCK_SKEW)
    return power_max, voltage_max, register_max, earliest


def _since(cursor, config: dict) -> str:
    if not cursor:
        return _iso(config["start_date"])
    moment = datetime.fromisoformat(cursor.replace("Z", "+00:00")) - config["lookback"]
    return _iso(max(moment, config["start_date"]))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _newest_received(page: list, clock: datetime) -> str:
    """Feed order is by received_at, so the last parseable one not after the sync's clock is the
    page's newest (a later one is a vendor error; the next sync re-reads it, and quarantines it)."""
    for record in reversed(page):
        text = record.get("received_at") if isinstance(record, dict) else None
        moment = _parse_time(text)
        if moment is not None and moment <= clock:
            return _iso(moment)
    return ""


def _parse_time(text) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            return None
        moment.astimezone(UTC)  # year 1 with a positive offset cannot be expressed in UTC
    except (ValueError, OverflowError):
        return None
    return moment


def _classify(record, feed_device: str, known: dict, clock: datetime | None = None) -> tuple:
    """A valid record becomes a `reading` row; anything else an `invalid_reading` row with the reason.

    `known` maps device_id -> `_profile`; `clock` is the sync's clock. Validation never raises: an
    arithmetic error on a hostile value (OverflowError on a 400-digit integer, ...) quarantines the
    record with that error as the reason, so one record can never fail the sync.

    Times go to the SDK as the aware datetimes validation already parsed: handed text, the SDK
    parses each one again with strptime, which was the largest single per-row cost (profiled).
    """
    timestamp = received = None
    try:
        if isinstance(record, dict):
            reason, timestamp, received = _check(record, feed_device, known, clock or datetime.now(UTC))
        else:
            reason = "record is not a JSON object"
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
    except Exception as exc:  # any failure of validation quarantines the record, never fails the sync
        reason = f"validation failed: {type(exc).__name__}: {str(exc)[:200]}"
    raw = _raw_json(record)
    if isinstance(record, dict) and received is None:
        received = _parse_time(record.get("received_at"))
    if received is not None and received > (clock or datetime.now(UTC)) + __CLOCK_SKEW:
        received = None  # a 2099 received_at is kept in raw_record, not as a time column
    return "invalid_reading", {
        "record_id": hashlib.sha256(raw.encode()).hexdigest()[:32],
        "device_id": _text(record.get("device_id")) if isinstance(record, dict) else None,
        "timestamp": _text(record.get("timestamp")) if isinstance(record, dict) else None,
        "reason": reason,
        "raw_record": raw,
        "received_at": _iso(received) if received else None,
    }


def _raw_json(record) -> str:
    """The record as canonical JSON (sorted keys), so a re-read quarantined record is the same row;
    what JSON cannot hold (an integer of more than 4,300 digits) is named instead of failing."""
    for sort_keys in (True, False):  # keys of mixed types cannot be sorted
        try:
            return json.dumps(record, sort_keys=sort_keys, separators=(",", ":"), default=str)
        except (TypeError, ValueError):
            continue
    return json.dumps({"unserialisable_record": type(record).__name__})


def _short(value) -> str:
    """A value for a reason or a text column: its repr, cut at 80 characters, never an exception."""
    try:
        text = repr(value)
    except ValueError:  # int too large to print
        return f"<{type(value).__name__} too large to print>"
    return text if len(text) <= 80 else text[:77] + "..."


def _text(value) -> str | None:
    """A text column of a quarantined record: at most 200 characters, always valid UTF-8 (JSON may
    carry a lone surrogate, which the SDK cannot encode; the whole value stays in raw_record)."""
    if value is None:
        return None
    if isinstance(value, str) and len(value) <= 200:
        try:
            value.encode()
            return value
        except UnicodeEncodeError:
            pass
    return _short(value)


def _check(record: dict, feed_device: str, known: dict, clock: datetime) -> tuple:
    """The first thing wrong with a record, in words an operator can act on (None when valid), with
    its parsed timestamp and received_at so the row reuses them."""
    device_id = record.get("device_id")
    if not isinstance(device_id, str) or device_id not in known:
        return f"unknown device_id {_short(device_id)}", None, None
    if device_id != feed_device:
        return f"device_id {device_id!r} appeared in the feed of {feed_device!r}", None, None
    timestamp = _parse_time(record.get("timestamp"))
    if timestamp is None:
        return f"timestamp is not an ISO 8601 UTC time: {_short(record.get('timestamp'))}", None, None
    received = _parse_time(record.get("received_at"))
    if received is None:
        return f"received_at is not an ISO 8601 UTC time: {_short(record.get('received_at'))}", None, None
    latest = clock + __CLOCK_SKEW
    if received > latest:
        reason = f"received_at {_iso(received)} is in the future (the sync's clock is {_iso(clock)})"
        return reason, timestamp, received
    if timestamp > received + __CLOCK_SKEW:
        reason = f"timestamp {_iso(timestamp)} is in the future (received at {_iso(received)})"
        return reason, timestamp, received
    power_max, voltage_max, register_max, earliest = known[device_id]
    if timestamp < earliest:
        reason = f"timestamp {_iso(timestamp)} is before the device could read ({_iso(earliest)})"
        return reason, timestamp, received
    for name in __MEASURES:
        value = record.get(name)
        if value is None and name in __NULLABLE_MEASURES:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{name} is not a finite number: {_short(value)}", timestamp, received
    if record["energy_wh"] < 0:
        return f"energy_wh (cumulative register) is negative: {record['energy_wh']}", timestamp, received
    if record["energy_wh"] > register_max:
        reason = f"energy_wh {record['energy_wh']} is above the register maximum {register_max:g} Wh"
        return reason, timestamp, received
    if record["power_w"] < 0:
        return f"power_w is negative: {record['power_w']}", timestamp, received
    if record["power_w"] > power_max:
        reason = f"power_w {record['power_w']} is above the meter type's maximum {power_max:g} W"
        return reason, timestamp, received
    voltage = record.get("voltage")
    if voltage is not None and not 0 <= voltage <= voltage_max:
        reason = f"voltage {voltage} V is outside 0..{voltage_max:g} V (2 x nominal)"
        return reason, timestamp, received
    temp_c = record.get("temp_c")
    if temp_c is not None and not __TEMP_RANGE_C[0] <= temp_c <= __TEMP_RANGE_C[1]:
        reason = f"temp_c {temp_c} is outside {__TEMP_RANGE_C[0]:g}..{__TEMP_RANGE_C[1]:g} C"
        return reason, timestamp, received
    occupancy = record.get("occupancy")
    if occupancy is not None and not isinstance(occupancy, bool):
        return f"occupancy is not a boolean: {occupancy!r}", timestamp, received
    return None, timestamp, received


connector = Connector(update=update, schema=schema)

if __name__ == "__main__":
    # Local debugging: `python connector.py` runs one sync against configuration.json.
    with open("configuration.json", encoding="utf-8") as file:
        connector.debug(configuration=json.load(file))
