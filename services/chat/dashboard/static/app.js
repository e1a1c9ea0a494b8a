// gridsight dashboard: fleet overview, device page (load, forecast band, anomalies), chat panel.
// Plain DOM, no build step; data is only ever written with textContent (never innerHTML), and the one
// external library is the vendored ECharts. The API key lives in sessionStorage for this tab only.
"use strict";

(function () {
  const KEY_STORE = "gridsight.apiKey";
  const SEVERITY_COLOURS = { critical: "rgba(122, 0, 22, 0.28)", high: "rgba(176, 0, 32, 0.18)", medium: "rgba(166, 100, 0, 0.18)", low: "rgba(53, 96, 125, 0.15)" };
  const view = document.getElementById("view");
  const statusBox = document.getElementById("status");
  const alertBox = document.getElementById("alert");
  const signin = document.getElementById("signin");
  let chart = null;
  let conversationId = null;

  // --- small helpers ----------------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") el.className = value;
      else if (name === "text") el.textContent = value;
      else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function fmtHour(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  function fmtNum(value, digits) {
    if (value === null || value === undefined) return "—";
    return Number(value).toLocaleString("en-GB", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function fmtChange(pct) {
    if (pct === null || pct === undefined) return "no data last week";
    const sign = pct > 0 ? "+" : pct < 0 ? "−" : "±";
    return sign + fmtNum(Math.abs(pct), 1) + " % vs same day last week";
  }

  function severityBadge(severity) {
    const s = severity || "unknown";
    return h("span", { class: "badge sev-" + s, text: s });
  }

  function setStatus(text) { statusBox.textContent = text; }

  function showAlert(text) {
    alertBox.textContent = text;
    alertBox.hidden = !text;
  }

  // --- API access -------------------------------------------------------------------------------
  function apiKey() { return sessionStorage.getItem(KEY_STORE); }

  class AuthError extends Error {}

  async function api(path, options) {
    const key = apiKey();
    if (!key) throw new AuthError("Sign in with an API key to see the data.");
    const init = Object.assign({ headers: {} }, options || {});
    // X-API-Key, not Authorization: behind Cloud Run IAM (or its proxy) Authorization is the ID token
    init.headers = Object.assign({ "X-API-Key": key, Accept: "application/json" }, init.headers);
    const response = await fetch(path, init);
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (response.status === 401) throw new AuthError((body && (body.error || body.message)) || "API key rejected.");
    if (!response.ok) {
      const message = (body && (body.error || body.message)) || response.statusText;
      const err = new Error(message + " (HTTP " + response.status + ")");
      err.status = response.status;
      throw err;
    }
    return body;
  }

  function requireSignIn(message) {
    sessionStorage.removeItem(KEY_STORE);
    document.getElementById("signout").hidden = true;
    view.replaceChildren();
    signin.hidden = false;
    showAlert(message);
    document.getElementById("api-key").focus();
  }

  // --- fleet overview ---------------------------------------------------------------------------
  function statCard(label, value, detail) {
    return h("div", { class: "stat" },
      h("p", { class: "stat-label", text: label }),
      h("p", { class: "stat-value", text: value }),
      detail ? h("p", { class: "stat-detail", text: detail }) : null);
  }

  function incidentItem(incident, withDevice) {
    const range = fmtHour(incident.start_hour) + " – " + fmtHour(incident.end_hour);
    return h("li", { class: "incident", "data-incident": incident.incident_id },
      h("div", { class: "incident-head" },
        severityBadge(incident.severity),
        h("strong", { text: (incident.anomaly_type || "anomaly").replaceAll("_", " ") }),
        withDevice ? h("a", { href: "#/devices/" + encodeURIComponent(incident.device_id), text: incident.device_id }) : null,
        h("span", { class: "muted", text: range })),
      h("p", { class: "explanation", text: incident.explanation || "No explanation recorded." }),
      (incident.expected !== null || incident.actual !== null)
        ? h("p", { class: "muted", text: "Expected " + fmtNum(incident.expected, 2) + ", actual " + fmtNum(incident.actual, 2) + (incident.score !== null ? " (score " + fmtNum(incident.score, 2) + ")" : "") })
        : null);
  }

  function deviceFilter() {
    const count = h("span", { id: "device-filter-count", class: "muted", "aria-live": "polite" });
    const input = h("input", { id: "device-filter", type: "search", autocomplete: "off", "aria-describedby": "device-filter-count" });
    input.addEventListener("input", () => {
      const needle = input.value.trim().toLowerCase();
      let shown = 0;
      const rows = document.querySelectorAll("#devices-table tbody tr[data-device]");
      for (const row of rows) {
        const match = !needle || row.textContent.toLowerCase().includes(needle);
        row.hidden = !match;
        if (match) shown += 1;
      }
      count.textContent = needle ? shown + " of " + rows.length + " devices" : "";
    });
    return h("div", { class: "filter" }, h("label", { for: "device-filter", text: "Filter devices by name, id, site or meter" }), input, count);
  }

  function renderFleet(data) {
    const t = data.totals;
    const asOf = data.as_of ? "Data up to " + fmtHour(data.as_of) + "; “today” is the UTC day since " + fmtHour(data.today_start) + "." : "The warehouse has no readings yet: run a sync (gridsight demo).";
    const rows = data.devices.map((d) => h("tr", { "data-device": d.device_id },
      h("th", { scope: "row" }, h("a", { href: "#/devices/" + encodeURIComponent(d.device_id) }, d.name || d.device_id),
        h("span", { class: "sub", text: d.device_id })),
      h("td", { class: "opt", text: d.site_name || d.site_id || "—" }),
      h("td", { class: "opt", text: d.meter_type || "—" }),
      h("td", { text: fmtHour(d.last_reading_hour) }),
      h("td", { class: "num", text: fmtNum(d.energy_today_kwh, 2) }),
      h("td", { class: "num opt", text: fmtNum(d.energy_same_day_last_week_kwh, 2) }),
      h("td", { class: "num " + (d.change_pct > 0 ? "up" : d.change_pct < 0 ? "down" : ""), text: d.change_pct === null ? "—" : (d.change_pct > 0 ? "+" : "") + fmtNum(d.change_pct, 1) + " %" }),
      h("td", { class: "num" }, d.open_incidents ? h("span", { class: "badge sev-high", text: String(d.open_incidents) }) : "0")));

    const table = h("div", { class: "table-scroll", role: "region", "aria-labelledby": "devices-title", tabindex: "0" },
      h("table", { id: "devices-table" },
        h("caption", { class: "visually-hidden", text: "Devices with last reading, energy today and open incidents" }),
        h("thead", {}, h("tr", {},
          [["Device"], ["Site", "opt"], ["Meter", "opt"], ["Last reading"], ["Today kWh", "num"], ["Week ago kWh", "num opt", "Same hours of the same weekday, seven days earlier"], ["Change", "num"], ["Incidents", "num", "Open incidents: in the last 24 hours of data"]]
            .map(([c, cls, title]) => h("th", { scope: "col", class: cls, title: title, text: c })))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: "8", text: "No devices in the warehouse yet." })))));

    const incidents = data.open_incidents.length
      ? h("ol", { class: "incidents", id: "open-incidents" }, data.open_incidents.map((i) => incidentItem(i, true)))
      : h("p", { id: "open-incidents", text: "No open incidents." });

    const sites = h("ul", { class: "sites" }, data.sites.map((s) =>
      h("li", {}, h("strong", { text: s.name || s.site_id }), " ", h("span", { class: "muted", text: (s.site_type || "site") + " · " + s.device_count + " device" + (s.device_count === 1 ? "" : "s") + " · " + (s.timezone || "") }))));

    view.replaceChildren(
      h("h1", { id: "view-title", tabindex: "-1", text: "Fleet overview" }),
      h("p", { class: "muted", id: "as-of", text: asOf }),
      h("div", { class: "stats" },
        statCard("Sites", String(t.site_count)),
        statCard("Devices", String(t.device_count)),
        statCard("Energy today", fmtNum(t.energy_today_kwh, 1) + " kWh", fmtChange(t.change_pct)),
        statCard("Open incidents", String(t.open_incidents), "in the last 24 h of data")),
      h("section", { "aria-labelledby": "devices-title" }, h("h2", { id: "devices-title", text: "Devices" }),
        rows.length ? deviceFilter() : null, table),
      h("div", { class: "two-col" },
        h("section", { "aria-labelledby": "incidents-title" }, h("h2", { id: "incidents-title", text: "Open incidents" }), incidents),
        h("section", { "aria-labelledby": "sites-title" }, h("h2", { id: "sites-title", text: "Sites" }), sites)));
  }

  // --- device page ------------------------------------------------------------------------------
  function chartOption(data, width) {
    const narrow = width < 560;
    const load = data.load.map((p) => [p.hour, p.energy_kwh]);
    const p10 = data.forecast.map((p) => [p.target_hour, p.p10]);
    const band = data.forecast.map((p) => [p.target_hour, p.p90 !== null && p.p10 !== null ? p.p90 - p.p10 : null]);
    const p50 = data.forecast.map((p) => [p.target_hour, p.p50]);
    const areas = data.anomalies.map((a) => [
      { name: (a.anomaly_type || "anomaly") + " (" + (a.severity || "?") + ")", xAxis: a.start_hour, itemStyle: { color: SEVERITY_COLOURS[a.severity] || SEVERITY_COLOURS.low } },
      { xAxis: a.end_hour },
    ]);
    const byTime = new Map();
    for (const p of data.forecast) byTime.set(new Date(p.target_hour).getTime(), p);
    return {
      animation: false,
      aria: { enabled: true, label: { description: chartSummary(data) } },
      textStyle: { fontFamily: "system-ui, sans-serif", color: "#1f2933" },
      grid: { left: narrow ? 44 : 56, right: narrow ? 12 : 20, top: narrow ? 76 : 56, bottom: 64 },
      legend: { top: 0, data: ["Actual", "Forecast p50", "Forecast p10–p90"], textStyle: { color: "#1f2933" } },
      tooltip: {
        trigger: "axis",
        formatter: (params) => {
          const when = params.length ? fmtHour(params[0].axisValue) : "";
          const lines = [when];
          for (const item of params) {
            if (item.seriesName === "Actual") lines.push("Actual: " + fmtNum(item.value[1], 3) + " kWh");
            if (item.seriesName === "Forecast p50") {
              const f = byTime.get(new Date(item.value[0]).getTime());
              lines.push("Forecast: " + fmtNum(item.value[1], 3) + " kWh (p10 " + fmtNum(f && f.p10, 3) + ", p90 " + fmtNum(f && f.p90, 3) + ")");
            }
          }
          return lines.map((l) => l.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c])).join("<br>");
        },
      },
      xAxis: { type: "time", axisLabel: { color: "#3e4c59", hideOverlap: true } },
      yAxis: { type: "value", name: "kWh per hour", nameTextStyle: { color: "#3e4c59" }, axisLabel: { color: "#3e4c59" } },
      dataZoom: [{ type: "inside" }, { type: "slider", height: 22, bottom: 8 }],
      series: [
        { name: "Forecast p10", type: "line", data: p10, stack: "band", symbol: "none", lineStyle: { opacity: 0 }, silent: true, tooltip: { show: false } },
        { name: "Forecast p10–p90", type: "line", data: band, stack: "band", symbol: "none", lineStyle: { opacity: 0 }, itemStyle: { color: "rgba(11, 92, 173, 0.45)" }, areaStyle: { color: "rgba(11, 92, 173, 0.22)" }, silent: true },
        { name: "Forecast p50", type: "line", data: p50, symbol: "none", lineStyle: { type: "dashed", width: 2, color: "#0b5cad" }, itemStyle: { color: "#0b5cad" } },
        {
          name: "Actual", type: "line", data: load, symbol: "none", lineStyle: { width: 2, color: "#1f2933" }, itemStyle: { color: "#1f2933" },
          markArea: { silent: false, label: { show: false }, data: areas },
        },
      ],
    };
  }

  function chartSummary(data) {
    const total = data.load.reduce((s, p) => s + (p.energy_kwh || 0), 0);
    return "Hourly energy of " + (data.device.name || data.device.device_id) + " from " + fmtHour(data.window_start) + " to " + fmtHour(data.window_end) +
      ": " + data.load.length + " hours, " + fmtNum(total, 1) + " kWh in total; " + data.forecast.length + " forecast hours with a p10–p90 band; " +
      data.anomalies.length + " anomal" + (data.anomalies.length === 1 ? "y" : "ies") + " shaded.";
  }

  const WINDOWS = [["24", "Last 24 hours"], ["72", "Last 3 days"], ["168", "Last 7 days"], ["720", "Last 30 days"]];

  function windowForm(deviceId, hours) {
    const select = h("select", { id: "window-hours", name: "hours" },
      WINDOWS.map(([value, label]) => h("option", { value, selected: value === hours }, label)));
    return h("form", { class: "window-form", onsubmit: (e) => {
      e.preventDefault();
      location.hash = "#/devices/" + encodeURIComponent(deviceId) + "?hours=" + select.value;
    } },
      h("label", { for: "window-hours", text: "Time window" }), select,
      h("button", { type: "submit", class: "secondary", text: "Show" }));
  }

  function renderDevice(data, hours) {
    const d = data.device;
    const chartBox = h("div", { id: "load-chart", class: "chart", role: "img", "aria-label": chartSummary(data) });
    const anomalies = data.anomalies.length
      ? h("ol", { class: "incidents", id: "device-anomalies" }, data.anomalies.map((i) => incidentItem(i, false)))
      : h("p", { id: "device-anomalies", text: "No anomalies in this window." });
    const tableRows = data.load.slice(-48).reverse().map((p) => h("tr", {},
      h("th", { scope: "row", text: fmtHour(p.hour) }),
      h("td", { class: "num", text: fmtNum(p.energy_kwh, 3) }),
      h("td", { class: "num", text: fmtNum(p.avg_power_w, 0) }),
      h("td", { class: "num", text: p.coverage === null ? "—" : fmtNum(p.coverage * 100, 0) + " %" })));

    view.replaceChildren(
      h("p", { class: "crumbs" }, h("a", { href: "#/", text: "← Fleet overview" })),
      h("h1", { id: "view-title", tabindex: "-1", text: d.name || d.device_id }),
      h("p", { class: "muted", text: [d.device_id, d.site_name || d.site_id, d.meter_type, d.site_type, d.timezone].filter(Boolean).join(" · ") }),
      h("section", { "aria-labelledby": "chart-title" },
        h("h2", { id: "chart-title", text: "Load, forecast and anomalies" }),
        windowForm(d.device_id, hours),
        h("p", { class: "help", text: "Solid line: measured kWh per hour. Dashed line: forecast median (p50); blue band: p10–p90. Shaded spans: anomalies (dark red critical, red high, amber medium, blue low). Times are UTC." }),
        chartBox,
        h("p", { class: "visually-hidden", text: chartSummary(data) })),
      h("section", { "aria-labelledby": "anomalies-title" },
        h("h2", { id: "anomalies-title", text: "Anomalies (" + data.anomalies.length + ")" }), anomalies),
      h("details", {},
        h("summary", { text: "Last 48 hours as a table" }),
        h("div", { class: "table-scroll", role: "region", "aria-label": "Hourly readings", tabindex: "0" },
          h("table", {},
            h("thead", {}, h("tr", {}, ["Hour", "kWh", "Average W", "Coverage"].map((c) => h("th", { scope: "col", text: c })))),
            h("tbody", {}, tableRows)))));

    if (window.echarts) {
      chart = window.echarts.init(chartBox, null, { renderer: "canvas" });
      chart.setOption(chartOption(data, chartBox.clientWidth));
    } else {
      chartBox.textContent = "The chart library did not load; the table below has the numbers.";
    }
  }

  // --- routing ----------------------------------------------------------------------------------
  async function route(moveFocus) {
    if (chart) { chart.dispose(); chart = null; }
    showAlert("");
    const match = location.hash.match(/^#\/devices\/([^?]+)(?:\?hours=(\d+))?$/);
    if (!apiKey()) { requireSignIn(""); return; }
    signin.hidden = true;
    document.getElementById("signout").hidden = false;
    setStatus("Loading…");
    try {
      if (match) {
        const id = decodeURIComponent(match[1]);
        const hours = match[2] || "168";
        const data = await api("/api/dashboard/devices/" + encodeURIComponent(id) + "?hours=" + hours);
        renderDevice(data, hours);
        document.title = (data.device.name || id) + " · gridsight";
      } else {
        renderFleet(await api("/api/dashboard/fleet"));
        document.title = "Fleet overview · gridsight";
      }
      setStatus("");
      document.body.dataset.view = match ? "device" : "fleet";
      const title = document.getElementById("view-title");
      // after a navigation (not on first load) focus the new view's heading, unless the user is typing in the chat
      const inChat = document.activeElement && document.activeElement.closest && document.activeElement.closest("#chat");
      if (moveFocus && title && !inChat) title.focus();
    } catch (err) {
      setStatus("");
      if (err instanceof AuthError) requireSignIn(err.message);
      else {
        view.replaceChildren(h("h1", { id: "view-title", text: err.status === 404 ? "Not found" : "Could not load the data" }), h("p", { text: err.message }), h("p", {}, h("a", { href: "#/", text: "Back to the fleet overview" })));
        showAlert(err.message);
      }
    }
  }

  // --- chat panel -------------------------------------------------------------------------------
  function rowsTable(rows) {
    if (!rows || !rows.length) return h("p", { class: "muted", text: "No rows." });
    const shown = rows.slice(0, 20);
    const columns = Object.keys(shown[0]);
    return h("div", { class: "table-scroll", role: "region", "aria-label": "Rows", tabindex: "0" },
      h("table", { class: "rows" },
        h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", text: c })))),
        h("tbody", {}, shown.map((r) => h("tr", {}, columns.map((c) => h("td", { text: r[c] === null ? "—" : typeof r[c] === "object" ? JSON.stringify(r[c]) : String(r[c]) })))))),
      rows.length > shown.length ? h("p", { class: "muted", text: "First " + shown.length + " of " + rows.length + " rows." }) : null);
  }

  function citationItem(c, n) {
    if (c.kind === "sql") {
      return h("li", { class: "citation citation-sql" },
        h("details", {},
          h("summary", { text: "Source " + n + ": SQL query, " + (c.rows ? c.rows.length : 0) + " row" + (c.rows && c.rows.length === 1 ? "" : "s") }),
          h("p", { class: "cite-label", text: "Rows" }),
          rowsTable(c.rows),
          h("p", { class: "cite-label", text: "Query" }),
          h("pre", { tabindex: "0", "aria-label": "SQL of source " + n }, h("code", { text: c.sql || "" })),
          c.params && Object.keys(c.params).length
            ? h("p", { class: "cite-params" }, h("span", { class: "cite-label", text: "Parameters: " }),
              Object.entries(c.params).map(([k, v]) => "@" + k + " = " + JSON.stringify(v)).join(", "))
            : null));
    }
    return h("li", { class: "citation citation-doc" },
      h("span", { text: "Source " + n + ": document " }), h("strong", { text: c.title || c.id || "untitled" }),
      c.id ? h("span", { class: "muted", text: " (" + c.id + ")" }) : null);
  }

  function addTurn(question) {
    const answerBox = h("div", { class: "answer", "aria-busy": "true", text: "Thinking…" });
    const item = h("li", { class: "turn" }, h("p", { class: "question" }, h("span", { class: "visually-hidden", text: "You asked: " }), question), answerBox);
    document.getElementById("chat-log").append(item);
    item.scrollIntoView({ block: "nearest" });
    return answerBox;
  }

  function renderAnswer(box, body) {
    box.removeAttribute("aria-busy");
    const citations = body.citations || [];
    box.replaceChildren(
      h("p", { class: body.refused ? "answer-text refused" : "answer-text" }, h("span", { class: "visually-hidden", text: "gridsight answered: " }), body.answer || ""),
      citations.length
        ? h("ol", { class: "citations", "aria-label": "Sources for this answer" }, citations.map((c, i) => citationItem(c, i + 1)))
        : h("p", { class: "muted", text: "No sources cited." }));
  }

  async function ask(event) {
    event.preventDefault();
    const input = document.getElementById("chat-question");
    const button = document.getElementById("chat-send");
    const question = input.value.trim();
    if (!question) return;
    const box = addTurn(question);
    input.value = "";
    button.disabled = true;
    try {
      const payload = { question };
      if (conversationId) payload.conversation_id = conversationId;
      const body = await api("/v1/chat", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
      conversationId = body.conversation_id || conversationId;
      renderAnswer(box, body);
    } catch (err) {
      box.removeAttribute("aria-busy");
      box.replaceChildren(h("p", { class: "answer-error", text: err.message }));
      if (err instanceof AuthError) requireSignIn(err.message);
    } finally {
      button.disabled = false;
      input.focus();
    }
  }

  // --- start ------------------------------------------------------------------------------------
  function start() {
    // `gridsight up` prints a link with #key=...: fragments never reach a server or its logs.
    const fromLink = location.hash.match(/^#key=(.+)$/);
    if (fromLink) {
      sessionStorage.setItem(KEY_STORE, decodeURIComponent(fromLink[1]));
      history.replaceState(null, "", location.pathname + "#/");
    }
    document.getElementById("signin-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const value = document.getElementById("api-key").value.trim();
      if (!value) return;
      sessionStorage.setItem(KEY_STORE, value);
      document.getElementById("api-key").value = "";
      route(true);
    });
    document.getElementById("signout").addEventListener("click", () => requireSignIn("API key forgotten for this tab."));
    document.getElementById("chat-form").addEventListener("submit", ask);
    document.getElementById("chat-question").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); document.getElementById("chat-form").requestSubmit(); }
    });
    document.getElementById("chat-new").addEventListener("click", () => {
      conversationId = null;
      document.getElementById("chat-log").replaceChildren();
      document.getElementById("chat-question").focus();
    });
    // in-page anchors (skip link, "Ask") move focus without touching the address, so the view stays put
    document.querySelector(".skip-link").addEventListener("click", (e) => { e.preventDefault(); document.getElementById("main").focus(); });
    document.getElementById("nav-chat").addEventListener("click", (e) => { e.preventDefault(); document.getElementById("chat-question").focus(); });
    window.addEventListener("hashchange", () => { if (location.hash === "" || location.hash.startsWith("#/")) route(true); });
    window.addEventListener("resize", () => { if (chart) chart.resize(); });
    route(false);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
