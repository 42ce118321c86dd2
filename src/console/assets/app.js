// tsrelay console: plain JS, no build step. Talks only to the listener that
// served it. Views: Status (GET /api/v1/status every second), Graphs
// (graphs, backends, compile, render), Catalog (GET /api/v1/catalog, label
// values from /prom/<backend>/api/v1/label/<name>/values).
"use strict";

(function () {
  const KEY_STORAGE = "tsrelay.readKey";
  const $ = (sel) => document.querySelector(sel);
  const el = (tag, attrs, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== undefined && c !== null) e.append(c);
    return e;
  };

  // ---- API access (a read key, when the listener asks for one) ----------
  class AuthNeeded extends Error {}

  async function api(path, options) {
    // X-Requested-With: the 401 then carries no Basic challenge (no browser password prompt).
    const headers = Object.assign({ "X-Requested-With": "XMLHttpRequest" }, (options && options.headers) || {});
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) headers["Authorization"] = "Bearer " + key;
    const response = await fetch(path, Object.assign({}, options, { headers }));
    if (response.status === 401 || response.status === 403) {
      const body = await response.text();
      showKeyForm(response.status === 403 ? "The key was refused (it needs the read scope): " + body : null);
      throw new AuthNeeded(body);
    }
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON */ }
    return { status: response.status, body };
  }

  function showKeyForm(reason) {
    const form = $("#key-form");
    if (reason) $("#key-reason").textContent = reason;
    if (form.hidden) {
      form.hidden = false;
      $("#key-input").focus();
    }
  }

  $("#key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = $("#key-input").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORAGE, key);
    $("#key-input").value = "";
    $("#key-form").hidden = true;
    $("#key-button").hidden = false;
    loaded.graphs = false;
    loaded.catalog = false;
    show(current);
  });
  $("#key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    $("#key-button").hidden = true;
  });
  $("#key-button").addEventListener("click", () => showKeyForm(null));
  if (sessionStorage.getItem(KEY_STORAGE)) $("#key-button").hidden = false;

  function banner(text) {
    const b = $("#banner");
    b.textContent = text || "";
    b.hidden = !text;
  }

  // ---- formatting --------------------------------------------------------
  function num(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    const d = digits === undefined ? (a >= 100 ? 0 : a >= 10 ? 1 : 2) : digits;
    if (a >= 1e9) return (v / 1e9).toFixed(2) + " G";
    if (a >= 1e6) return (v / 1e6).toFixed(2) + " M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + " k";
    return v.toFixed(Number.isInteger(v) && digits === undefined ? 0 : d);
  }
  function bytes(v) {
    if (!v) return "0 B";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return v.toFixed(i ? 1 : 0) + " " + units[i];
  }
  const pct = (r) => (r * 100).toFixed(r < 0.1 ? 1 : 0) + "%";
  const rate = (flow) => (flow && flow.per_second !== null && flow.per_second !== undefined ? num(flow.per_second) : "–");
  const sum = (xs, f) => xs.reduce((a, x) => a + (f(x) || 0), 0);

  function fillTable(table, rows, empty) {
    const body = table.querySelector("tbody");
    body.replaceChildren();
    if (!rows.length) {
      const cols = table.querySelectorAll("thead th").length;
      body.append(el("tr", {}, el("td", { colspan: cols, class: "empty", text: empty })));
      return;
    }
    for (const cells of rows) {
      body.append(el("tr", {}, ...cells.map((c) => (c instanceof Node ? c : el("td", { text: String(c) })))));
    }
  }
  const ncell = (text, id) => el("td", { class: "n", text, "data-testid": id });

  // ---- Status ------------------------------------------------------------
  let statusTimer = null;

  async function refreshStatus() {
    let answer;
    try {
      answer = await api("/api/v1/status");
    } catch (e) {
      if (!(e instanceof AuthNeeded)) banner("Status unavailable: " + e.message);
      return;
    }
    if (answer.status !== 200 || !answer.body) {
      banner("Status unavailable: HTTP " + answer.status);
      return;
    }
    banner("");
    const s = answer.body.data;
    $("#st-ready").textContent = s.ready ? "ready" : "not ready";
    $("#st-ready").className = "v " + (s.ready ? "ok" : "bad");
    $("#st-in").textContent = num(sum(s.receivers, (r) => r.received_samples.per_second));
    $("#st-out").textContent = num(sum(s.sinks, (k) => k.sent_samples.per_second));
    $("#st-drops").textContent = num(sum(s.drops, (d) => d.samples.per_second));
    const m = s.memory;
    $("#st-mem").textContent = m.limit_bytes ? bytes(m.rss_bytes) + " / " + bytes(m.limit_bytes) : bytes(m.rss_bytes);
    $("#st-mem-meter").value = Math.min(1, m.used_ratio || 0);
    $("#st-mem").className = "v " + (m.pressure ? "bad" : "");
    $("#st-window").textContent = s.window_seconds
      ? "Rates over the last " + s.window_seconds.toFixed(1) + " s; updated " + new Date(s.time_ms).toLocaleTimeString() +
        (m.pressure ? " — memory pressure: receivers refuse data" : "")
      : "Rates appear after the first second.";

    fillTable($("#st-receivers"), s.receivers.map((r) => [
      r.name, el("td", { class: r.state === "listening" ? "ok" : "warn", text: r.state }),
      ncell(rate(r.received_samples), "rx-rate-" + r.name), ncell(num(r.received_samples.total), "rx-total-" + r.name),
      ncell(rate(r.dropped_samples)), ncell(num(r.rejected_requests.total)),
    ]), "No receivers.");

    fillTable($("#st-sinks"), s.sinks.map((k) => [
      k.name,
      el("td", { class: k.state === "healthy" ? "ok" : k.state === "retrying" ? "warn" : "bad", text: k.state }),
      ncell(rate(k.sent_samples), "sink-rate-" + k.name), ncell(num(k.sent_samples.total), "sink-total-" + k.name),
      ncell(rate(k.dropped_samples)),
      el("td", {}, el("meter", { min: 0, max: 1, low: 0.5, high: 0.8, optimum: 0, value: k.queue_fill_ratio,
        "aria-label": "queue fill of " + k.name }), " " + num(k.queue_samples) + " / " + num(k.queue_capacity_samples)),
      ncell(k.fanout_blocked_seconds.per_second === null ? num(k.fanout_blocked_seconds.total) + " s"
        : pct(k.fanout_blocked_seconds.per_second) + " of time"),
      ncell(rate(k.retries)), ncell(num(k.in_flight_requests) + " / " + num(k.concurrency_limit)),
      el("td", { class: "err", text: k.last_error ? k.last_error + (k.failing_for_seconds ? " (failing for " +
        k.failing_for_seconds.toFixed(0) + " s)" : "") : "" }),
    ]), "No sinks.");

    fillTable($("#st-pipelines"), s.pipelines.map((p) => [
      p.name, ncell(num(p.cardinality_series)), ncell(num(p.cardinality_limit_series)),
      ncell(num(p.cardinality_metrics_over_warn)), ncell(rate(p.dropped_samples)),
    ]), "No pipelines with a cardinality stage or drops.");

    fillTable($("#st-drops-table"), s.drops.map((d) => [
      d.scope + " " + d.name, d.stage, el("td", { class: "warn", text: d.reason }),
      ncell(rate(d.samples)), ncell(num(d.samples.total)),
    ]), "Nothing dropped.");
  }

  // ---- Graphs ------------------------------------------------------------
  const charts = [];
  let graphs = [];
  let backends = [];

  function capsSummary(b) {
    if (!b.readable) return b.name + ": not readable — " + (b.reason || "");
    const c = b.capabilities || {};
    const parts = [c.driver, "functions: " + (c.functions || []).join(", ")];
    if (c.regex_filters === false) parts.push("no regex filters");
    if (c.negative_filters === false) parts.push("no != filters");
    if (c.raw_counter_values === false) parts.push("raw counters refused");
    const step = stepSupport(c);
    if (step.multiple) parts.push("steps: multiples of " + step.multiple / 1000 + " s");
    for (const n of c.notes || []) parts.push(n);
    return parts.join(" · ");
  }

  function stepSupport(c) {
    const s = (c && c.steps) || {};
    const inner = s.multiple_of || s.MultipleOf || s;
    const any = s.any || s.Any || s;
    return { multiple: inner.multiple_of_ms || null, min: any.min_ms || 1000 };
  }

  function chooseStep(rangeSeconds, backend) {
    const s = stepSupport(backend && backend.capabilities);
    let step = Math.max(Math.ceil(rangeSeconds / 300) * 1000, s.min);
    if (s.multiple) step = Math.ceil(step / s.multiple) * s.multiple;
    return step / 1000 + "s";
  }

  function request(graphId) {
    const range = Number($("#gr-range").value);
    const backend = backends.find((b) => b.name === $("#gr-backend").value);
    return { graph: graphId, backend: $("#gr-backend").value, start: "-" + range + "s", step: chooseStep(range, backend) };
  }

  async function loadGraphs() {
    const [g, b] = await Promise.all([api("/api/v1/graphs"), api("/api/v1/backends")]);
    graphs = (g.body && g.body.data) || [];
    backends = (b.body && b.body.data) || [];
    const select = $("#gr-backend");
    const was = select.value;
    select.replaceChildren(...backends.map((x) => el("option", {
      value: x.name, disabled: !x.readable,
      text: x.name + (x.readable ? " (" + x.capabilities.driver + ")" : " (not readable)"),
    })));
    const first = backends.find((x) => x.readable);
    if (backends.some((x) => x.name === was && x.readable)) select.value = was;
    else if (first) select.value = first.name;
    await drawGraphs();
  }

  // Bumped by every redraw: a render still in flight for an older choice draws nothing.
  let generation = 0;

  // #gr-charts carries data-state="loading" until every chart of the latest choice is drawn ("done").
  async function drawGraphs() {
    const mine = ++generation;
    const area = $("#gr-charts");
    area.dataset.state = "loading";
    try {
      await drawGraphsOf(mine, area);
    } finally {
      if (mine === generation) area.dataset.state = "done";
    }
  }

  async function drawGraphsOf(mine, area) {
    while (charts.length) charts.pop().destroy();
    const list = $("#gr-list");
    list.replaceChildren();
    area.replaceChildren();
    const backend = backends.find((x) => x.name === $("#gr-backend").value);
    $("#gr-caps").textContent = backend ? capsSummary(backend) : "No readable backend: configure a sink with a query_url.";
    if (!backend) return;
    if (!graphs.length) {
      area.append(el("p", { class: "note", text: "No graphs loaded (see [query] graphs_dir)." }));
      return;
    }
    // Learn, without backend I/O, which graphs this backend serves.
    const verdicts = await Promise.all(graphs.map((g) => api("/api/v1/graph/compile", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request(g.id)),
    }).catch((e) => ({ status: 0, body: { error: e.message } }))));
    if (mine !== generation) return;
    graphs.forEach((g, i) => {
      const v = verdicts[i];
      const ok = v.status === 200;
      const reason = ok ? null : (v.body && v.body.error) || "HTTP " + v.status;
      const item = el("li", { class: ok ? "" : "disabled", "data-graph": g.id },
        el("a", { href: "#graph-" + g.id, "aria-disabled": ok ? null : "true", text: g.title || g.id }),
        ok ? null : el("span", { class: "reason", text: reason }));
      list.append(item);
      const box = el("figure", { id: "graph-" + g.id, class: "chart" + (ok ? "" : " disabled"), "data-graph": g.id, tabindex: "-1" },
        el("figcaption", {}, el("strong", { text: g.title || g.id }), g.unit ? el("span", { class: "unit", text: " (" + g.unit + ")" }) : null));
      area.append(box);
      if (!ok) box.append(el("p", { class: "reason", role: "note", text: "Not available on " + backend.name + ": " + reason }));
    });
    for (const g of graphs) {
      const box = document.getElementById("graph-" + g.id);
      if (mine !== generation) return;
      if (!box.classList.contains("disabled")) await renderGraph(g, box, mine);
    }
  }

  const PALETTE = ["#2b6cb0", "#c05621", "#2f855a", "#b83280", "#6b46c1", "#c53030", "#00838f", "#975a16"];

  async function renderGraph(g, box, mine) {
    let answer;
    try {
      answer = await api("/api/v1/graph/render", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request(g.id)),
      });
    } catch (e) {
      box.append(el("p", { class: "reason", text: e.message }));
      return;
    }
    if (mine !== generation) return;
    if (answer.status !== 200) {
      box.append(el("p", { class: "reason", role: "note", text: (answer.body && answer.body.error) || "HTTP " + answer.status }));
      return;
    }
    const r = answer.body.data;
    if (!r.series.length) {
      box.append(el("p", { class: "note", text: "No data in this range." }));
      return;
    }
    const xs = r.series[0].points.map((p) => p[0] / 1000);
    const data = [xs, ...r.series.map((s) => s.points.map((p) => p[1]))];
    const unit = g.unit || r.series[0].unit || "";
    const opts = {
      width: chartWidth(box), height: CHART_HEIGHT,
      series: [{}, ...r.series.map((s, i) => ({
        label: s.legend, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: false,
        value: (u, v) => (v === null || v === undefined ? "–" : num(v) + (unit ? " " + unit : "")),
      }))],
      axes: [{}, { label: unit, size: 70, values: (u, ticks) => ticks.map((t) => num(t)) }],
      legend: { live: true },
    };
    for (const w of r.warnings || []) box.append(el("p", { class: "note", text: w }));
    charts.push(new uPlot(opts, data, box));
  }

  const CHART_HEIGHT = 220;
  const chartWidth = (box) => Math.max(240, Math.min(box.clientWidth || 800, 1100) - 16);
  // Charts follow the window (a phone turned, a window resized) and their view being shown again.
  function resizeCharts() {
    for (const c of charts) if (c.root.parentElement) c.setSize({ width: chartWidth(c.root.parentElement), height: CHART_HEIGHT });
  }
  let resizeQueued = false;
  window.addEventListener("resize", () => {
    if (resizeQueued) return;
    resizeQueued = true;
    requestAnimationFrame(() => { resizeQueued = false; if (current === "graphs") resizeCharts(); });
  });

  $("#gr-backend").addEventListener("change", () => drawGraphs().catch(report));
  $("#gr-range").addEventListener("change", () => drawGraphs().catch(report));
  $("#gr-refresh").addEventListener("click", () => loadGraphs().catch(report));

  // ---- Catalog -----------------------------------------------------------
  // GET /api/v1/catalog gives each metric's type, unit, help and, per backend
  // holding it, its label names. The values of a label come from label
  // discovery (/prom/<backend>/api/v1/label/<name>/values) when first asked for.
  let catalog = [];
  let catalogBackends = [];
  const valuesAsked = new Map(); // label → the Promise of its values being filled in
  const MAX_SUGGESTIONS = 30;
  const MAX_VALUE_REQUESTS = 60; // (metric, backend) pairs asked per label
  const VALUE_LIMIT = 1000; // values asked of one backend for one metric

  function normalizeCatalog(data) {
    catalogBackends = (data && data.backends) || [];
    return ((data && data.metrics) || []).map((m) => {
      const labels = {}; // label → values known so far
      const holders = {}; // label → backends whose series of the metric have it
      for (const l of m.labels || []) labels[l] = [];
      for (const h of m.backends || []) {
        for (const l of h.label_names || []) {
          if (l === "__name__") continue;
          labels[l] = labels[l] || [];
          (holders[l] = holders[l] || []).push(h.backend);
        }
      }
      return {
        name: m.name, key: m.key, type: m.type || "", unit: m.unit || "", help: m.help || "",
        graphs: m.graphs || [], backends: (m.backends || []).map((h) => h.backend), labels, holders, known: {},
      };
    });
  }

  async function loadCatalog() {
    const answer = await api("/api/v1/catalog");
    if (answer.status !== 200 || !answer.body) {
      throw new Error("Catalog unavailable: GET /api/v1/catalog answered HTTP " + answer.status +
        (answer.body && answer.body.error ? ": " + answer.body.error : ""));
    }
    catalog = normalizeCatalog(answer.body.data);
    valuesAsked.clear();
    const trouble = catalogBackends.filter((b) => b.error).map((b) => b.name + ": " + b.error);
    $("#ca-source").textContent = catalog.length + " metrics from the registry (GET /api/v1/catalog); backends asked: " +
      (catalogBackends.filter((b) => b.readable).map((b) => b.name).join(", ") || "none") +
      (trouble.length ? ". Failed: " + trouble.join("; ") : ".");
    drawCatalog();
    updateSuggestions();
  }

  // Fills in m.labels[label] for every metric whose series have `label`, asking each backend that holds it.
  function loadValues(label) {
    if (!valuesAsked.has(label)) {
      const asked = fetchValues(label).catch((e) => { valuesAsked.delete(label); throw e; });
      valuesAsked.set(label, asked);
    }
    return valuesAsked.get(label);
  }

  async function fetchValues(label) {
    const jobs = [];
    for (const m of catalog) for (const b of m.holders[label] || []) jobs.push([m, b]);
    const todo = jobs.slice(0, MAX_VALUE_REQUESTS);
    const failed = [];
    const worker = async () => {
      while (todo.length) {
        const [m, backend] = todo.shift();
        const selector = '{__name__="' + m.name.replace(/["\\]/g, "\\$&") + '"}';
        const answer = await api("/prom/" + encodeURIComponent(backend) + "/api/v1/label/" + encodeURIComponent(label) +
          "/values?match[]=" + encodeURIComponent(selector) + "&limit=" + VALUE_LIMIT);
        const values = answer.status === 200 && answer.body && Array.isArray(answer.body.data) ? answer.body.data : null;
        if (!values) { failed.push(backend + " (HTTP " + answer.status + ")"); continue; }
        const have = new Set(m.labels[label] || []);
        for (const v of values) have.add(String(v));
        m.labels[label] = [...have].sort();
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    for (const m of catalog) if (m.labels[label]) m.known[label] = true;
    return { asked: Math.min(jobs.length, MAX_VALUE_REQUESTS), skipped: Math.max(0, jobs.length - MAX_VALUE_REQUESTS), failed };
  }

  function drawCatalog() {
    const q = $("#ca-filter").value.trim().toLowerCase();
    const eq = q.indexOf("=");
    const [ql, qv] = eq >= 0 ? [q.slice(0, eq), q.slice(eq + 1)] : [null, null];
    const match = (m) => {
      if (!q) return true;
      if (ql !== null) {
        return Object.entries(m.labels).some(([l, vs]) => l.toLowerCase() === ql &&
          (!qv || !m.known[l] || vs.some((v) => v.toLowerCase().includes(qv))));
      }
      return [m.name, m.help, m.type, m.unit, ...Object.keys(m.labels)].some((s) => String(s || "").toLowerCase().includes(q));
    };
    fillTable($("#ca-table"), catalog.filter(match).map((m) => [
      el("td", { class: "mono", text: m.name }), m.type, m.unit, m.help,
      el("td", {}, ...Object.entries(m.labels).map(([l, vs]) => el("button", {
        type: "button", class: "chip", "data-label": l,
        title: m.known[l] ? vs.slice(0, 20).join(", ") + (vs.length > 20 ? ", …" : "") : "show the values of " + l,
        text: l + (m.known[l] ? " (" + vs.length + ")" : ""),
        onclick: () => { $("#ca-filter").value = l + "="; $("#ca-filter").focus(); drawCatalog(); updateSuggestions(); },
      }))),
      m.graphs.join(", "), m.backends.join(", "),
    ]), "No metric matches.");
  }

  // Bumped by every change of the filter: an answer for an older text shows nothing.
  let suggestGeneration = 0;

  async function updateSuggestions() {
    const mine = ++suggestGeneration;
    const text = $("#ca-filter").value.trim();
    const eq = text.indexOf("=");
    const note = $("#ca-suggest-note");
    let items = [];
    if (!text) {
      note.textContent = "";
    } else if (eq > 0) {
      const label = text.slice(0, eq);
      const prefix = text.slice(eq + 1).toLowerCase();
      if (!catalog.some((m) => m.labels[label])) {
        note.textContent = "No metric has a label " + label + ".";
      } else {
        note.textContent = "Asking the backends for the values of " + label + "…";
        renderSuggestions([]);
        const done = await loadValues(label);
        if (mine !== suggestGeneration) return;
        const byValue = new Map();
        for (const m of catalog) for (const v of m.labels[label] || []) byValue.set(v, (byValue.get(v) || []).concat(m.name));
        const values = [...byValue.keys()].filter((v) => v.toLowerCase().includes(prefix))
          .sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
        items = values.map((v) => ({ value: label + "=" + v, hint: byValue.get(v).join(", ") }));
        note.textContent = byValue.size + " values of " + label + " (label discovery, " + done.asked + " requests" +
          (done.skipped ? ", " + done.skipped + " metric/backend pairs not asked" : "") +
          (done.failed.length ? "; failed: " + done.failed.join(", ") : "") + ")" +
          (items.length > MAX_SUGGESTIONS ? "; first " + MAX_SUGGESTIONS + " of " + items.length + " shown" : "") + ".";
        drawCatalog();
      }
    } else {
      const q = text.toLowerCase();
      const labels = new Map();
      for (const m of catalog) {
        if (m.name.toLowerCase().includes(q)) items.push({ value: m.name, hint: [m.type, m.unit].filter(Boolean).join(", ") });
        for (const l of Object.keys(m.labels)) if (l.toLowerCase().includes(q)) labels.set(l, (labels.get(l) || 0) + 1);
      }
      for (const [l, n] of labels) items.push({ value: l + "=", hint: "label of " + n + (n === 1 ? " metric" : " metrics") });
      note.textContent = "";
    }
    if (mine === suggestGeneration) renderSuggestions(items.slice(0, MAX_SUGGESTIONS));
  }

  function renderSuggestions(items) {
    $("#ca-suggest").replaceChildren(...items.map((s) => el("li", {}, el("button", {
      type: "button", class: "suggestion", "data-value": s.value,
      onclick: () => pickSuggestion(s.value),
    }, el("code", { text: s.value }), s.hint ? el("span", { class: "hint", text: " " + s.hint }) : null))));
  }

  function pickSuggestion(value) {
    const input = $("#ca-filter");
    input.value = value;
    input.focus();
    drawCatalog();
    if (value.endsWith("=")) updateSuggestions().catch(report);
    else { ++suggestGeneration; renderSuggestions([]); $("#ca-suggest-note").textContent = ""; }
  }

  $("#ca-filter").addEventListener("input", () => { drawCatalog(); updateSuggestions().catch(report); });
  $("#ca-filter").addEventListener("keydown", (ev) => {
    const first = $("#ca-suggest button");
    if (ev.key === "ArrowDown" && first) { ev.preventDefault(); first.focus(); }
  });
  $("#ca-suggest").addEventListener("keydown", (ev) => {
    const buttons = [...document.querySelectorAll("#ca-suggest button")];
    const i = buttons.indexOf(document.activeElement);
    if (i < 0) return;
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      const j = i + (ev.key === "ArrowDown" ? 1 : -1);
      if (j < 0) $("#ca-filter").focus();
      else if (j < buttons.length) buttons[j].focus();
    } else if (ev.key === "Escape") {
      ev.preventDefault();
      $("#ca-filter").focus();
    }
  });

  // ---- views and keyboard -------------------------------------------------
  const loaded = { graphs: false, catalog: false };
  let current = "status";

  function report(e) {
    if (!(e instanceof AuthNeeded)) banner(e.message);
  }

  function show(view) {
    current = view;
    for (const tab of document.querySelectorAll("[role=tab]")) {
      const on = tab.dataset.view === view;
      tab.setAttribute("aria-selected", on);
      tab.tabIndex = on ? 0 : -1;
      document.getElementById(tab.getAttribute("aria-controls")).hidden = !on;
    }
    clearInterval(statusTimer);
    statusTimer = null;
    if (location.hash.slice(1) !== view && !location.hash.startsWith("#graph-")) history.replaceState(null, "", "#" + view);
    if (view === "status") {
      refreshStatus();
      statusTimer = setInterval(refreshStatus, 1000);
    } else if (view === "graphs" && loaded.graphs) {
      resizeCharts();
    } else if (view === "graphs") {
      loaded.graphs = true;
      loadGraphs().catch((e) => { loaded.graphs = false; report(e); });
    } else if (view === "catalog" && !loaded.catalog) {
      loaded.catalog = true;
      loadCatalog().catch((e) => { loaded.catalog = false; report(e); });
    }
  }

  const tabs = [...document.querySelectorAll("[role=tab]")];
  for (const tab of tabs) {
    tab.addEventListener("click", () => show(tab.dataset.view));
    tab.addEventListener("keydown", (ev) => {
      const i = tabs.indexOf(tab);
      const next = ev.key === "ArrowRight" ? tabs[(i + 1) % tabs.length] : ev.key === "ArrowLeft" ? tabs[(i + tabs.length - 1) % tabs.length] : null;
      if (next) { ev.preventDefault(); next.focus(); show(next.dataset.view); }
    });
  }
  document.addEventListener("keydown", (ev) => {
    if (ev.target.matches("input, select, textarea") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const view = { "1": "status", "2": "graphs", "3": "catalog" }[ev.key];
    if (view) { show(view); document.getElementById("tab-" + view).focus(); }
  });

  const initial = location.hash.slice(1);
  show(["status", "graphs", "catalog"].includes(initial) ? initial : "status");
})();
