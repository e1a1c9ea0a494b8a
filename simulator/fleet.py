"""A deterministic, lazily generated fleet of smart meters: sites, devices, readings.

Nothing is generated up front: one device-day of readings is computed on demand from
`(seed, device, day)`, so 10,000 devices x 1 year never sits in memory. The only state kept is a
bounded cache of each device's daily energy totals, which the cumulative register needs.

Times are epoch seconds (UTC) inside the simulator; the HTTP layer formats them.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from threading import Lock

import numpy as np
from pydantic import BaseModel, Field

from simulator.anomalies import (
    MAX_EVENT_WEEKS,
    WEEK_S,
    AnomalyEvent,
    apply_events,
    events_in_week,
    surviving,
)

DAY_S = 86400
MALFORMED_KINDS = ("nan_power", "negative_energy", "future_timestamp", "unknown_device")
# Late-backlog devices upload every this many seconds; the feed may also publish a record up to
# FEED_LAG_MAX_S after the vendor received it (eventual consistency), which the connector's
# look-back window has to cover.
BACKLOG_UPLOAD_S = 6 * 3600
FEED_LAG_MAX_S = 90 * 60
_TIMEZONES = (("Europe/London", 0), ("Europe/Amsterdam", 1), ("Europe/Berlin", 1), ("Europe/Helsinki", 2))
# The register cache keeps, per device, its total at every 16th day and at its newest day: ~250 B
# a device for a year (25 MB at 100k devices), so a fleet-wide feed never evicts and regenerates
# a device's history (an LRU of 4,096 devices did, for every device, on every pass over 100k).
_REGISTER_STRIDE_DAYS = 16


class FleetSpec(BaseModel):
    """What to simulate; every field has a CLI option of the same name."""

    devices: int = Field(default=20, ge=1, le=100_000)
    days: float = Field(default=3, gt=0, le=3660, description="History available at start-up.")
    interval_minutes: int = Field(default=15, ge=1, le=1440)
    seed: int = 42
    start: datetime = Field(
        default=datetime(2026, 1, 5, tzinfo=UTC), description="First reading (00:00 UTC)."
    )
    late_share: float = Field(default=0.1, ge=0, le=1, description="Devices uploading 6-hourly backlogs.")
    decommission_share: float = Field(default=0.05, ge=0, le=1)
    malformed_rate: float = Field(default=0.002, ge=0, le=1, description="Share of malformed records.")
    anomaly_rate_per_day: float = Field(default=0.05, ge=0, description="Injected anomalies per device-day.")
    feed_lag_share: float = Field(default=0.03, ge=0, le=1, description="Records published late.")


@dataclass(frozen=True)
class Site:
    site_id: str
    name: str
    site_type: str
    timezone: str
    utc_offset_h: int
    latitude: float
    longitude: float
    temp_mean_c: float
    phases: tuple[float, float, float]


@dataclass(frozen=True)
class Device:
    index: int
    device_id: str
    site: Site
    name: str
    meter_type: str
    nominal_voltage: float
    interval_minutes: int
    installed_at: int
    decommissioned_at: int | None
    late: bool
    baseload_w: float
    load_w: float
    heat_w_per_c: float
    cool_w_per_c: float
    register0_wh: float
    upload_offset_s: int


@dataclass
class _Register:
    """Register totals of one device: at `first_day + k * _REGISTER_STRIDE_DAYS` and at `last_day`."""

    checkpoints: array = field(default_factory=lambda: array("d"))
    last_day: int = 0
    last_total: float = 0.0


@dataclass(frozen=True)
class RawRecord:
    """One record as the vendor holds it: feed keys (`received`, `ts`), when it becomes visible,
    the JSON body served, and (for tests and truth only) which malformation it carries."""

    received: int
    ts: int
    visible: int
    body: dict
    malformed: str | None


def iso(ts: int | float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_array(ts: np.ndarray) -> list[str]:
    return [t + "Z" for t in np.datetime_as_string(ts.astype("datetime64[s]"), unit="s").tolist()]


def parse_iso(text: str) -> int:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


def outdoor_temp_c(site: Site, ts: np.ndarray) -> np.ndarray:
    """Site weather: seasonal and daily cycles plus slow weather fronts, a pure function of time."""
    days = ts / DAY_S
    seasonal = -8.0 * np.cos(2 * np.pi * ((days % 365.25) - 15) / 365.25)
    diurnal = 4.0 * np.sin(2 * np.pi * ((ts % DAY_S) / 3600.0 - 9) / 24)
    p0, p1, p2 = site.phases
    fronts = (
        3.0 * np.sin(2 * np.pi * days / 3.1 + p0)
        + 2.0 * np.sin(2 * np.pi * days / 7.3 + p1)
        + 0.8 * np.sin(2 * np.pi * days / 0.71 + p2)
    )
    return site.temp_mean_c + seasonal + diurnal + fronts


class Fleet:
    """The simulated vendor's data. Thread-safe: the HTTP server calls it from many threads."""

    def __init__(self, spec: FleetSpec) -> None:
        self.spec = spec
        self.interval_s = spec.interval_minutes * 60
        self.start = int(spec.start.timestamp()) // DAY_S * DAY_S
        self.initial_now = self.start + int(spec.days * DAY_S)
        self.max_delay_s = BACKLOG_UPLOAD_S + self.interval_s + 600
        self.feed_lag_s = FEED_LAG_MAX_S  # the longest a record is published after it is received
        self.n_sites = max(1, (spec.devices + 2) // 3)
        self._register_cache: dict[str, _Register] = {}
        self._lock = Lock()  # guards the register cache
        # Entities are small and asked for on every page: keep them (readings are never kept).
        self._site_cache = lru_cache(maxsize=None)(self._make_site)
        self._device_cache = lru_cache(maxsize=None)(self._make_device)
        # One entry per device and week (~300 B): 2^17 holds a pass over 100k devices.
        self._weeks_events = lru_cache(maxsize=1 << 17)(self._events_of_weeks)

    # --- entities ------------------------------------------------------------------------------
    def site(self, j: int) -> Site:
        return self._site_cache(j)

    def device(self, i: int) -> Device:
        return self._device_cache(i)

    def _make_site(self, j: int) -> Site:
        rng = np.random.default_rng([self.spec.seed, 1, j])
        tz, offset = _TIMEZONES[int(rng.integers(0, len(_TIMEZONES)))]
        site_type = "commercial" if rng.random() < 0.3 else "residential"
        return Site(
            site_id=f"site-{j:05d}",
            name=f"{'Office' if site_type == 'commercial' else 'Home'} {j}",
            site_type=site_type,
            timezone=tz,
            utc_offset_h=offset,
            latitude=round(float(rng.uniform(48.0, 60.0)), 5),
            longitude=round(float(rng.uniform(-3.0, 25.0)), 5),
            temp_mean_c=float(rng.uniform(7, 12)),
            phases=(float(rng.uniform(0, 6.3)), float(rng.uniform(0, 6.3)), float(rng.uniform(0, 6.3))),
        )

    def sites(self) -> list[Site]:
        return [self.site(j) for j in range(self.n_sites)]

    def _make_device(self, i: int) -> Device:
        rng = np.random.default_rng([self.spec.seed, 2, i])
        site = self.site(i % self.n_sites)
        commercial = site.site_type == "commercial"
        installed = self.start - int(rng.uniform(30, 900)) * DAY_S
        if rng.random() < 0.05:  # a few meters are installed while the simulation runs
            installed = self.start + int(rng.uniform(0, self.spec.days)) * DAY_S
        decommissioned = None
        if rng.random() < self.spec.decommission_share:
            span = self.spec.days / 2 + 3
            decommissioned = self.start + int((self.spec.days / 2 + rng.uniform(0, span)) * DAY_S)
            decommissioned = max(decommissioned, installed + DAY_S)
        three_phase = commercial or rng.random() < 0.15
        return Device(
            index=i,
            device_id=f"dev-{i:05d}",
            site=site,
            name=f"Meter {i}",
            meter_type="three_phase" if three_phase else "single_phase",
            nominal_voltage=400.0 if three_phase else 230.0,
            interval_minutes=self.spec.interval_minutes,
            installed_at=installed,
            decommissioned_at=decommissioned,
            late=bool(rng.random() < self.spec.late_share),
            baseload_w=float(rng.uniform(2000, 8000) if commercial else rng.uniform(120, 400)),
            load_w=float(rng.uniform(5000, 20000) if commercial else rng.uniform(600, 1800)),
            heat_w_per_c=float(rng.uniform(200, 900) if commercial else rng.uniform(0, 150)),
            cool_w_per_c=float(rng.uniform(300, 1200) if commercial else rng.uniform(0, 80)),
            register0_wh=float(rng.uniform(1e5, 5e7)),
            upload_offset_s=int(rng.integers(0, BACKLOG_UPLOAD_S // 60)) * 60,
        )

    def devices(self) -> list[Device]:
        return [self.device(i) for i in range(self.spec.devices)]

    def device_by_id(self, device_id: str) -> Device | None:
        if not device_id.startswith("dev-") or not device_id[4:].isdigit():
            return None
        i = int(device_id[4:])
        return self.device(i) if 0 <= i < self.spec.devices else None

    def first_reading(self, dev: Device) -> int:
        begin = max(self.start, dev.installed_at)
        return -(-begin // self.interval_s) * self.interval_s

    # --- anomalies -----------------------------------------------------------------------------
    def events(self, dev: Device, t0: int, t1: int) -> list[AnomalyEvent]:
        """Events overlapping [t0, t1) within the device's life."""
        weeks = self._weeks_events(dev.index, t0 // WEEK_S - MAX_EVENT_WEEKS, t1 // WEEK_S + 1)
        return [ev for ev in weeks if ev.end > t0 and ev.start < t1]

    def _events_of_weeks(self, index: int, first: int, stop: int) -> tuple[AnomalyEvent, ...]:
        """Every event starting in weeks [first, stop) of one device. Cached (`_weeks_events`): the
        days of a week ask for the same weeks, and drawing them was half the cost of a receipt."""
        dev = self.device(index)
        return tuple(
            ev
            for week in range(first, stop)
            for ev in events_in_week(
                self.spec.seed, index, dev.device_id, week, self.spec.anomaly_rate_per_day, self.interval_s
            )
        )

    def truth(self, now: int, progress: Callable[[], object] | None = None) -> list[AnomalyEvent]:
        """Ground truth up to `now`: every event within a device's served life."""
        out = []
        for dev in self.devices():
            begin = self.first_reading(dev)
            end = min(now, dev.decommissioned_at or now)
            if end > begin:
                out.extend(self.events(dev, begin, end))
            if progress:
                progress()
        return out

    # --- the `simulator.feed.Source` protocol ---------------------------------------------------
    def site_bodies(self) -> list[dict]:
        return [site_body(s) for s in self.sites()]

    def device_bodies(self, now: int) -> list[dict]:
        return [device_body(d, now) for d in self.devices() if d.installed_at <= now]

    def fleet_ids(self) -> list[str]:
        return [f"dev-{i:05d}" for i in range(self.spec.devices)]  # sorted: ids are zero-padded

    def first_day(self, device_id: str) -> int | None:
        dev = self.device_by_id(device_id)
        return None if dev is None else self.first_reading(dev) // DAY_S

    def records(self, device_id: str, day: int) -> list[RawRecord]:
        dev = self.device_by_id(device_id)
        return [] if dev is None else self.day_records(dev, day)

    # --- readings ------------------------------------------------------------------------------
    def _day_series(self, dev: Device, day: int) -> dict[str, np.ndarray]:
        """The meter's true series for one UTC day, before anomalies and malformations."""
        draws = self._draws(dev, day)
        ts = draws["ts"]
        temp = outdoor_temp_c(dev.site, ts)
        local_h = ((ts % DAY_S) / 3600.0 + dev.site.utc_offset_h) % 24
        weekday = ((ts + dev.site.utc_offset_h * 3600) // DAY_S + 3) % 7  # 0 = Monday
        workday = weekday < 5
        if dev.site.site_type == "commercial":
            occupied = workday & (local_h >= 7) & (local_h < 19)
            shape = np.where(occupied, 0.6 + 0.4 * np.sin(np.pi * (local_h - 7) / 12), 0.0)
            hvac = dev.heat_w_per_c * np.clip(15.5 - temp, 0, None) + occupied * dev.cool_w_per_c * np.clip(
                temp - 21, 0, None
            )
        else:
            away = workday & (local_h >= 8.5) & (local_h < 17.5) & (dev.index % 3 != 0)
            if draws["day_out"]:
                away |= (local_h >= 10) & (local_h < 20)
            occupied = ~away
            shape = (
                occupied
                * (
                    0.15
                    + 0.6 * np.exp(-(((local_h - 7.5) / 1.0) ** 2))
                    + 1.0 * np.exp(-(((local_h - 19.0) / 1.8) ** 2))
                )
                * np.where((local_h >= 0.5) & (local_h < 6), 0.1, 1.0)
            )
            hvac = dev.heat_w_per_c * np.clip(16 - temp, 0, None) + dev.cool_w_per_c * np.clip(
                temp - 24, 0, None
            )
        power = (dev.baseload_w + dev.load_w * shape + hvac) * draws["power_noise"]
        power = np.clip(power, 0.0, None)
        voltage = dev.nominal_voltage * (
            1 + 0.01 * np.sin(2 * np.pi * (local_h - 18) / 24) + draws["voltage_noise"]
        )
        return {**draws, "power": power, "voltage": voltage, "temp": temp, "occupancy": occupied.astype(bool)}

    def _draws(self, dev: Device, day: int) -> dict:
        """Every random draw of one device-day, in the generator's order (the order is the data):
        kept apart from the physics so the fleet-wide feed can time receipts without it."""
        rng = np.random.default_rng([self.spec.seed, 3, dev.index, day])
        ts = np.arange(day * DAY_S, (day + 1) * DAY_S, self.interval_s, dtype=np.int64)
        day_out = dev.site.site_type != "commercial" and bool(rng.random() < 0.1)
        return {
            "ts": ts,
            "day_out": day_out,
            "power_noise": rng.normal(1.0, 0.05, ts.size),
            "voltage_noise": rng.normal(0, 0.004, ts.size),
            "u_mal": rng.random(ts.size),
            "mal_kind": rng.integers(0, len(MALFORMED_KINDS), ts.size),
            "u_lag": rng.random(ts.size),
            "lag": rng.integers(60, FEED_LAG_MAX_S, ts.size),
            "jitter": rng.integers(5, 120, ts.size),
        }

    def _alive(self, dev: Device, ts: np.ndarray, day: int) -> np.ndarray:
        end = dev.decommissioned_at if dev.decommissioned_at is not None else (day + 1) * DAY_S + 1
        return (ts >= self.first_reading(dev)) & (ts < end)

    def _served_series(self, dev: Device, day: int) -> dict[str, np.ndarray]:
        """The day's series within the device's life, anomalies applied; energy per interval in Wh."""
        s = self._day_series(dev, day)
        t0, t1 = day * DAY_S, (day + 1) * DAY_S
        alive = self._alive(dev, s["ts"], day)
        keep = apply_events(
            self.events(dev, t0, t1), s["ts"], s["power"], s["voltage"], s["occupancy"], dev.baseload_w
        )
        s["delta_wh"] = np.where(alive, s["power"] * self.interval_s / 3600.0, 0.0)
        s["keep"] = keep & alive
        return s

    def _register(self, dev: Device, first_day: int) -> _Register:
        """The device's register totals (caller holds the lock); created at its first day."""
        reg = self._register_cache.get(dev.device_id)
        if reg is None:
            reg = _Register(array("d", [dev.register0_wh]), first_day, dev.register0_wh)
            self._register_cache[dev.device_id] = reg
        return reg

    def _advance(self, reg: _Register, first_day: int, day: int, total: float) -> None:
        """`total` is the register at 00:00 of `day`: keep it if it is a new checkpoint or the newest."""
        k, rest = divmod(day - first_day, _REGISTER_STRIDE_DAYS)
        if rest == 0 and k == len(reg.checkpoints):
            reg.checkpoints.append(total)
        if day > reg.last_day:
            reg.last_day, reg.last_total = day, total

    def _register_at_day(self, dev: Device, day: int) -> float:
        """Register value (Wh) at 00:00 of `day`: every earlier day's energy, from the nearest total
        kept (the newest day, or a checkpoint at most 15 days back)."""
        first_day = self.first_reading(dev) // DAY_S
        if day <= first_day:
            return dev.register0_wh
        with self._lock:
            reg = self._register(dev, first_day)
            if reg.last_day <= day:
                d, total = reg.last_day, reg.last_total
            else:
                k = (day - first_day) // _REGISTER_STRIDE_DAYS
                d, total = first_day + k * _REGISTER_STRIDE_DAYS, reg.checkpoints[k]
            while d < day:
                total += float(self._served_series(dev, d)["delta_wh"].sum())
                d += 1
                self._advance(reg, first_day, d, total)
            return total

    def _note_day_total(self, dev: Device, day: int, delta_wh: np.ndarray) -> None:
        """Record `day`'s energy if it is the next total the register needs, so reading the
        following day does not regenerate this one (sequential feeds generated each day twice)."""
        first_day = self.first_reading(dev) // DAY_S
        with self._lock:
            reg = self._register(dev, first_day)
            if reg.last_day == day:
                self._advance(reg, first_day, day + 1, reg.last_total + float(delta_wh.sum()))

    def _received_at(self, dev: Device, ts: np.ndarray, jitter: np.ndarray) -> np.ndarray:
        done = ts + self.interval_s
        if not dev.late:
            return done + jitter
        off = dev.upload_offset_s
        return -(-(done - off) // BACKLOG_UPLOAD_S) * BACKLOG_UPLOAD_S + off + jitter // 4

    def receipts(self, device_id: str, day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(timestamp, received, visible) of the device-day's records, in timestamp order, without
        generating the readings: the draws and the dropouts only (about a fifth of `day_records`),
        which is what the fleet-wide change feed needs to order 100k devices."""
        dev = self.device_by_id(device_id)
        if dev is None:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, empty
        d = self._draws(dev, day)
        ts = d["ts"]
        keep = self._alive(dev, ts, day) & surviving(self.events(dev, day * DAY_S, (day + 1) * DAY_S), ts)
        received = self._received_at(dev, ts, d["jitter"])
        visible = received + np.where(d["u_lag"] < self.spec.feed_lag_share, d["lag"], 0)
        return ts[keep], received[keep], visible[keep]

    def records_at(self, device_id: str, day: int, timestamps: set[int]) -> list[RawRecord]:
        """The device-day's records at the given timestamps only (the fleet feed's page)."""
        dev = self.device_by_id(device_id)
        return [] if dev is None else self.day_records(dev, day, timestamps)

    def day_records(self, dev: Device, day: int, only: set[int] | None = None) -> list[RawRecord]:
        """Every record of one device-day as the vendor holds it (visible or not yet); with `only`,
        just those at these timestamps (bodies are the costly part, so only theirs are built)."""
        s = self._served_series(dev, day)
        if not s["keep"].any():
            return []
        cumulative = self._register_at_day(dev, day) + np.concatenate(([0.0], np.cumsum(s["delta_wh"])[:-1]))
        self._note_day_total(dev, day, s["delta_wh"])
        received = self._received_at(dev, s["ts"], s["jitter"])
        visible = received + np.where(s["u_lag"] < self.spec.feed_lag_share, s["lag"], 0)
        idx = np.flatnonzero(s["keep"])
        if only is not None:
            idx = idx[np.isin(s["ts"][idx], np.fromiter(only, dtype=np.int64, count=len(only)))]
        ts_text = _iso_array(s["ts"][idx])
        received_text = _iso_array(received[idx])
        columns = zip(
            s["ts"][idx].tolist(),
            received[idx].tolist(),
            visible[idx].tolist(),
            ts_text,
            np.round(s["power"][idx], 3).tolist(),
            np.round(cumulative[idx], 3).tolist(),
            np.round(s["voltage"][idx], 2).tolist(),
            np.round(s["temp"][idx], 2).tolist(),
            s["occupancy"][idx].tolist(),
            received_text,
            (s["u_mal"][idx] < self.spec.malformed_rate).tolist(),
            s["mal_kind"][idx].tolist(),
            strict=True,
        )
        out = []
        for ts, rec, vis, ts_iso, power, energy, volt, temp, occ, rec_iso, is_bad, bad_kind in columns:
            body = {
                "device_id": dev.device_id,
                "timestamp": ts_iso,
                "power_w": power,
                "energy_wh": energy,
                "voltage": volt,
                "temp_c": temp,
                "occupancy": occ,
                "received_at": rec_iso,
            }
            malformed = None
            if is_bad:
                malformed = MALFORMED_KINDS[bad_kind]
                _malform(body, malformed, ts)
            out.append(RawRecord(rec, ts, vis, body, malformed))
        return out


# --- what the HTTP layer serves (the `simulator.feed.Source` protocol) ---------------------------
def site_body(site: Site) -> dict:
    return {
        "site_id": site.site_id,
        "name": site.name,
        "site_type": site.site_type,
        "timezone": site.timezone,
        "latitude": site.latitude,
        "longitude": site.longitude,
    }


def device_body(dev: Device, now: int) -> dict:
    gone = dev.decommissioned_at is not None and dev.decommissioned_at <= now
    return {
        "device_id": dev.device_id,
        "site_id": dev.site.site_id,
        "name": dev.name,
        "meter_type": dev.meter_type,
        "nominal_voltage": dev.nominal_voltage,
        "interval_minutes": dev.interval_minutes,
        "installed_at": iso(dev.installed_at),
        "status": "decommissioned" if gone else "active",
        "decommissioned_at": iso(dev.decommissioned_at) if gone and dev.decommissioned_at else None,
    }


def _malform(body: dict, kind: str, ts: int) -> None:
    """What broken meters and vendor bugs send; the connector must quarantine each with a reason."""
    if kind == "nan_power":
        body["power_w"] = "NaN"
    elif kind == "negative_energy":
        body["energy_wh"] = -abs(body["energy_wh"]) - 1.0
    elif kind == "future_timestamp":
        body["timestamp"] = iso(ts + 400 * DAY_S)
    elif kind == "unknown_device":
        body["device_id"] = f"unknown-{ts % 99991:05d}"
