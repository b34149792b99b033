// shadowmesh admin page: polls the admin API's JSON and draws the route table and the
// Comparisons. Every value is put in the page as text (never as HTML): the comparison's examples
// are upstream response data.
"use strict";

(() => {
  const POLL_MS = 2000;
  const HISTORY = 60; // rate samples kept for the sparklines
  const TOKEN_KEY = "shadowmesh.admin.token";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const SIDES = ["primary", "candidate", "baseline"];
  const QUANTILES = ["p50", "p90", "p99"];

  const state = {
    prev: null, // the last /stats totals, with the time they were read
    rates: null,
    history: [],
    open: new Map(), // drill-down key -> open; what the user chose wins over the default
    rendered: new Map(), // comparison key -> the report JSON last drawn
    timer: 0,
  };

  // --- DOM --------------------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    return build(document.createElement(tag), attrs, children);
  }

  function svg(tag, attrs, ...children) {
    return build(document.createElementNS(SVG_NS, tag), attrs, children);
  }

  function build(el, attrs, children) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "dataset") Object.assign(el.dataset, value);
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  const $ = (id) => document.getElementById(id);

  // --- formatting -------------------------------------------------------------------------------

  function fmtRate(x) {
    if (x === null || x === undefined) return "–";
    return x < 10 ? x.toFixed(1) : Math.round(x).toLocaleString("en");
  }

  function fmtMs(x) {
    if (x === null || x === undefined) return "–";
    if (x < 10) return x.toFixed(2);
    if (x < 100) return x.toFixed(1);
    return Math.round(x).toLocaleString("en");
  }

  function fmtPct(x) {
    if (x === null || x === undefined) return "–";
    const p = x * 100;
    return (p === 0 || p === 100 ? p.toFixed(0) : p < 0.1 ? p.toFixed(2) : p.toFixed(1)) + "%";
  }

  function fmtP(x) {
    if (x === null || x === undefined) return "–";
    return x < 0.001 ? x.toExponential(1) : x.toFixed(3);
  }

  function fmtCount(n) {
    return (n || 0).toLocaleString("en");
  }

  function fmtTime(seconds) {
    if (!seconds) return "never";
    return new Date(seconds * 1000).toLocaleTimeString();
  }

  function shortHost(host) {
    return (host || "").split(".")[0];
  }

  function targetLabel(t) {
    return t.subset ? `${shortHost(t.host)} · ${t.subset}` : shortHost(t.host);
  }

  // --- the token --------------------------------------------------------------------------------

  class AuthError extends Error {}

  function takeTokenFromFragment() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (!m) return;
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    // Out of the address bar and the history, now that the tab holds it.
    history.replaceState(null, "", location.pathname + location.search);
  }

  function showTokenForm(message) {
    const form = $("token-form");
    form.hidden = false;
    const error = $("token-error");
    error.hidden = !message;
    error.textContent = message || "";
    $("token-input").focus();
  }

  function wireToken() {
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token-input").value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      $("token-input").value = "";
      $("token-form").hidden = true;
      poll();
    });
    $("forget-token").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      location.reload();
    });
  }

  // --- the API ----------------------------------------------------------------------------------

  async function api(path) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const answer = await fetch(path, { headers, cache: "no-store", credentials: "omit" });
    let body = null;
    try {
      body = await answer.json();
    } catch (_) {
      body = null;
    }
    if (answer.status === 401) {
      throw new AuthError(token ? "The server refused this token." : "");
    }
    if (!answer.ok) {
      const error = new Error(`${path}: ${answer.status} ${(body && body.error) || answer.statusText}`);
      error.status = answer.status;
      throw error;
    }
    return body;
  }

  // A missing piece is drawn as such; only the token and the network stop the whole page.
  function orNull(status) {
    return (error) => {
      if (error.status === status) return null;
      throw error;
    };
  }

  async function poll() {
    clearTimeout(state.timer);
    try {
      const [dump, stats, list] = await Promise.all([
        api("/config_dump").catch(orNull(503)),
        api("/stats"),
        api("/comparisons").catch(orNull(404)),
      ]);
      const items = list ? list.items : [];
      const reports = await Promise.all(items.map(fetchReport));
      updateRates(stats);
      renderRates(stats);
      renderRoutes(dump);
      renderComparisons(list, reports);
      $("forget-token").hidden = !sessionStorage.getItem(TOKEN_KEY);
      setStatus("live", `live · updated ${new Date().toLocaleTimeString()}`);
    } catch (error) {
      if (error instanceof AuthError) {
        setStatus("auth", "token needed");
        showTokenForm(error.message);
        return; // until a token is given
      }
      setStatus("error", `unreachable: ${error.message}`);
    }
    state.timer = setTimeout(poll, POLL_MS);
  }

  function fetchReport(item) {
    const path = `/comparisons/${encodeURIComponent(item.namespace)}/${encodeURIComponent(item.name)}`;
    return api(path).catch((error) => {
      if (error instanceof AuthError) throw error;
      return { namespace: item.namespace, name: item.name, error: error.message };
    });
  }

  function setStatus(kind, text) {
    document.body.dataset.state = kind;
    const el = $("status");
    el.className = `status ${kind}`;
    el.querySelector(".text").textContent = text;
  }

  // --- rates, from successive /stats ------------------------------------------------------------

  function sum(values) {
    return Object.values(values || {}).reduce((a, b) => a + b, 0);
  }

  function totals(stats) {
    const clusters = new Map();
    for (const row of stats.requests_by || []) {
      clusters.set(row.cluster, (clusters.get(row.cluster) || 0) + row.count);
    }
    const shadows = stats.shadows || {};
    return {
      requests: (stats.requests || {}).total || 0,
      sent: shadows.sent || 0,
      completed: shadows.completed || 0,
      failed: sum(stats.shadow_failed),
      dropped: sum(stats.shadow_dropped),
      compared: (stats.comparison || {}).analysed || 0,
      clusters,
    };
  }

  function perSecond(now, before, seconds) {
    // A restarted server counts from zero again: no rate for that interval.
    return now >= before ? (now - before) / seconds : null;
  }

  function updateRates(stats) {
    const now = { at: performance.now(), ...totals(stats) };
    const before = state.prev;
    state.prev = now;
    if (!before) return;
    const seconds = (now.at - before.at) / 1000;
    if (seconds <= 0) return;
    const rates = { clusters: new Map() };
    for (const key of ["requests", "sent", "completed", "failed", "dropped", "compared"]) {
      rates[key] = perSecond(now[key], before[key], seconds);
    }
    for (const [cluster, count] of now.clusters) {
      rates.clusters.set(cluster, perSecond(count, before.clusters.get(cluster) || 0, seconds));
    }
    state.rates = rates;
    state.history.push({ requests: rates.requests || 0, shadows: rates.sent || 0 });
    if (state.history.length > HISTORY) state.history.shift();
  }

  function renderRates(stats) {
    const r = state.rates || {};
    const t = state.prev;
    const analyzer = stats.comparison || {};
    $("rates").replaceChildren(
      tile("Requests", `${fmtRate(r.requests)}/s`, `${fmtCount(t.requests)} total`, "requests"),
      tile("Shadows sent", `${fmtRate(r.sent)}/s`, `${fmtCount(t.sent)} total`, "shadows"),
      tile(
        "Shadows completed",
        `${fmtRate(r.completed)}/s`,
        `failed ${fmtCount(t.failed)} · dropped ${fmtCount(t.dropped)}`,
        null,
        t.failed + t.dropped > 0 ? "warn" : null,
      ),
      tile(
        "Compared",
        `${fmtRate(r.compared)}/s`,
        `queue ${fmtCount(analyzer.queued)}/${fmtCount(analyzer.capacity)} · dropped ${fmtCount(analyzer.dropped)}`,
      ),
    );
  }

  function tile(label, value, sub, series, tone) {
    return h(
      "div",
      { class: `tile ${tone || ""}`, dataset: { tile: label } },
      h("div", { class: "tile-label" }, label),
      h("div", { class: "tile-value" }, value, series ? sparkline(series) : null),
      h("div", { class: "tile-sub" }, sub),
    );
  }

  function sparkline(series) {
    const width = 72;
    const height = 20;
    const values = state.history.map((p) => p[series]);
    const box = svg("svg", { class: "spark", viewBox: `0 0 ${width} ${height}`, "aria-hidden": "true" });
    if (values.length < 2) return box;
    const top = Math.max(...values, 1);
    const step = width / (HISTORY - 1);
    const offset = width - step * (values.length - 1);
    const points = values.map((v, i) => `${(offset + i * step).toFixed(1)},${(height - 1 - (v / top) * (height - 2)).toFixed(1)}`);
    box.append(svg("polyline", { points: points.join(" ") }));
    return box;
  }

  // --- the route table --------------------------------------------------------------------------

  function renderRoutes(dump) {
    const root = $("routes");
    if (!dump) {
      root.replaceChildren(h("p", { class: "empty" }, "The route table is not compiled yet."));
      return;
    }
    const vhosts = dump.virtualHosts || [];
    if (!vhosts.length) {
      root.replaceChildren(h("p", { class: "empty" }, "No routes: apply a Service or a VirtualService."));
      return;
    }
    root.replaceChildren(...vhosts.map(vhostCard));
  }

  function vhostCard(vhost) {
    return h(
      "article",
      { class: "card vhost", dataset: { vhost: vhost.name } },
      h(
        "header",
        { class: "card-head" },
        h("h3", {}, vhost.name),
        h("span", { class: "muted" }, vhost.source),
        h("div", { class: "chips" }, (vhost.domains || []).map((d) => h("span", { class: "chip" }, d))),
      ),
      h(
        "table",
        { class: "grid routes" },
        h("thead", {}, h("tr", {}, ["Route", "Match", "Destinations", "Mirrors", "Timeout"].map((c) => h("th", {}, c)))),
        h("tbody", {}, vhost.routes.map(routeRow)),
      ),
    );
  }

  function routeRow(route, index) {
    return h(
      "tr",
      { class: "route" },
      h("td", { class: "route-name" }, route.name || `#${index + 1}`),
      h("td", { class: "match" }, matchText(route.match)),
      h("td", {}, destinations(route.route)),
      h("td", {}, mirrors(route.mirrors)),
      h("td", { class: "num" }, route.timeout === null || route.timeout === undefined ? "–" : `${route.timeout} s`),
    );
  }

  function matchText(blocks) {
    if (!blocks || !blocks.length) return h("span", { class: "muted" }, "any request");
    return blocks.map((block, i) =>
      h("div", { class: "match-block" }, i ? h("span", { class: "or" }, "or ") : null, matchBlock(block)),
    );
  }

  function matchBlock(block) {
    const parts = [];
    for (const [key, value] of Object.entries(block)) {
      if (key === "name") continue;
      if (key === "headers" || key === "withoutHeaders" || key === "queryParams") {
        for (const [name, m] of Object.entries(value)) parts.push(`${key}[${name}] ${stringMatch(m)}`);
      } else if (typeof value === "object") {
        parts.push(`${key} ${stringMatch(value)}`);
      } else {
        parts.push(`${key} ${value}`);
      }
    }
    return h("code", {}, parts.join(", ") || "any");
  }

  function stringMatch(m) {
    const entries = Object.entries(m || {});
    return entries.length ? entries.map(([kind, v]) => `${kind} ${v}`).join(" ") : "present";
  }

  function clusterRate(target) {
    const rates = state.rates;
    if (!rates) return null;
    if (target.cluster) return rates.clusters.get(target.cluster) ?? 0;
    // No port in the destination: it is the port the request came on, so add up every port's.
    let total = 0;
    for (const [name, rate] of rates.clusters) {
      const [, , subset, host] = name.split("|");
      if (host === target.host && subset === (target.subset || "")) total += rate || 0;
    }
    return total;
  }

  function destinations(list) {
    const bar = h("div", { class: "weightbar", "aria-hidden": "true" });
    list.forEach((t, i) => {
      const segment = h("span", { class: `seg c${i % 6}`, title: `${targetLabel(t)} ${t.percent}%` });
      segment.style.width = `${t.percent}%`;
      bar.append(segment);
    });
    const rows = list.map((t, i) =>
      h(
        "div",
        { class: "dest", dataset: { destination: t.subset || t.host }, title: t.cluster || t.host },
        h("span", { class: `swatch c${i % 6}` }),
        h("span", { class: "dest-name" }, targetLabel(t)),
        h("span", { class: "pct" }, `${+t.percent.toFixed(2)}%`),
        h("span", { class: "rate" }, `${fmtRate(clusterRate(t))} req/s`),
        t.known ? null : h("span", { class: "badge warn", title: "no endpoints: answered 503 NC" }, "no endpoints"),
      ),
    );
    return [bar, rows];
  }

  function mirrors(list) {
    if (!list || !list.length) return h("span", { class: "muted" }, "none");
    return list.map((m) =>
      h(
        "div",
        { class: "mirror", dataset: { mirror: m.subset || m.host }, title: m.cluster || m.host },
        h("span", { class: "arrow", "aria-hidden": "true" }, "⇉"),
        h("span", { class: "dest-name" }, targetLabel(m)),
        h("span", { class: "pill" }, `${+m.percentage.toFixed(4)}%`),
        m.known ? null : h("span", { class: "badge warn", title: "no endpoints: no copy is sent" }, "not sent"),
      ),
    );
  }

  // --- comparisons ------------------------------------------------------------------------------

  function renderComparisons(list, reports) {
    const root = $("comparisons");
    if (!list) {
      root.replaceChildren(h("p", { class: "empty" }, "Comparisons are not enabled on this server."));
      state.rendered.clear();
      return;
    }
    if (!reports.length) {
      root.replaceChildren(
        h("p", { class: "empty" }, "No Comparison yet: apply one (kind: Comparison, apiVersion: shadowmesh.io/v1alpha1)."),
      );
      state.rendered.clear();
      return;
    }
    const keep = new Map();
    const cards = reports.map((report) => {
      const key = `${report.namespace}/${report.name}`;
      const { generated_at: _, ...content } = report;
      const text = JSON.stringify(content);
      const old = root.querySelector(`[data-comparison="${CSS.escape(key)}"]`);
      keep.set(key, text);
      // Redrawn only when it changed: a redraw loses the reader's text selection.
      return old && state.rendered.get(key) === text ? old : comparisonCard(key, report);
    });
    state.rendered = keep;
    root.replaceChildren(...cards);
  }

  // "insufficient data" has a space: one class name per verdict.
  function vclass(verdict) {
    return String(verdict).replace(/ /g, "-");
  }

  function verdictBadge(verdict) {
    return h("span", { class: `badge v-${vclass(verdict)}` }, verdict);
  }

  function comparisonCard(key, report) {
    if (report.error) {
      return h(
        "article",
        { class: "card comparison", dataset: { comparison: key } },
        h("header", { class: "card-head" }, h("h3", {}, report.name), h("span", { class: "error" }, report.error)),
      );
    }
    return h(
      "article",
      { class: `card comparison verdict-${vclass(report.verdict)}`, dataset: { comparison: key, verdict: report.verdict } },
      comparisonHead(report),
      comparisonFigures(report),
      topRegressions(report.top),
      report.configured ? null : h("p", { class: "note" }, "This Comparison was deleted; its data is kept until it ages out."),
      skippedNote(report.skipped),
      report.endpoints.length
        ? [endpointTable(key, report), latencyOverview(report)]
        : h("p", { class: "empty" }, "Nothing compared yet: send traffic to the host."),
    );
  }

  function comparisonHead(report) {
    const spec = report.spec || {};
    const side = (name, value) =>
      value ? h("span", { class: `side side-${name}` }, h("span", { class: "swatch" }), `${name} `, h("b", {}, value)) : null;
    return h(
      "header",
      { class: "card-head" },
      h("h3", {}, report.name),
      h("span", { class: "chip" }, report.namespace),
      verdictBadge(report.verdict),
      h(
        "div",
        { class: "sides" },
        h("span", { class: "muted" }, `host ${spec.host || "?"}`),
        side("primary", spec.primary),
        side("candidate", spec.candidate),
        side("baseline", spec.baseline),
        spec.samplePercentage !== undefined ? h("span", { class: "muted" }, `sample ${spec.samplePercentage}%`) : null,
      ),
    );
  }

  function comparisonFigures(report) {
    const figure = (label, value, tone) =>
      h("div", { class: `figure ${tone || ""}`, dataset: { figure: label } }, h("div", { class: "figure-value" }, value), h("div", { class: "figure-label" }, label));
    return h(
      "div",
      { class: "figures" },
      figure("requests compared", fmtCount(report.compared)),
      figure("differing", `${fmtCount(report.differing)} (${fmtPct(report.compared ? report.differing / report.compared : 0)})`),
      figure("fields flagged", fmtCount(report.regressions), report.regressions ? "bad" : "good"),
      figure("endpoints slower", fmtCount(report.latency_flags), report.latency_flags ? "bad" : "good"),
      figure("unexplained differences", fmtCount(report.differences), report.differences ? "warn" : ""),
      figure("pairs dropped", fmtCount(report.dropped), report.dropped ? "warn" : ""),
      figure("last compared", fmtTime(report.last_seen)),
    );
  }

  // The worst regressions (the report ranks them), first in the card: the verdict on one screen.
  function topRegressions(top) {
    if (!top || !top.length) return null;
    return h(
      "div",
      { class: "top-regressions" },
      h("h4", {}, "Top regressions"),
      h(
        "ol",
        {},
        top.map((t) =>
          h(
            "li",
            { dataset: { endpoint: t.endpoint, field: t.field } },
            h("code", {}, t.endpoint),
            " ",
            h("code", { class: "field-name" }, t.field),
            " ",
            h("span", { class: `risk r-${t.risk}` }, t.risk),
            " ",
            h("span", { class: "detail" }, t.detail),
          ),
        ),
      ),
    );
  }

  function skippedNote(skipped) {
    const entries = Object.entries(skipped || {});
    if (!entries.length) return null;
    return h("p", { class: "note" }, "Not compared: ", entries.map(([why, n]) => `${why} ${fmtCount(n)}`).join(", "));
  }

  // Open or closed: what the reader chose, else open for what needs a look.
  function isOpen(key, byDefault) {
    return state.open.has(key) ? state.open.get(key) : byDefault;
  }

  function toggler(key, byDefault, rows) {
    return () => {
      const open = !isOpen(key, byDefault);
      state.open.set(key, open);
      for (const row of rows()) row.hidden = !open;
      return open;
    };
  }

  function endpointTable(key, report) {
    const body = h("tbody", {});
    for (const endpoint of report.endpoints) body.append(...endpointRows(key, report, endpoint));
    return h(
      "table",
      { class: "grid endpoints" },
      h(
        "thead",
        {},
        h("tr", {}, ["", "Endpoint", "Verdict", "Requests", "Differing", "Noise", "Status", "Latency p50 / p90 (ms)"].map((c) => h("th", {}, c))),
      ),
      body,
    );
  }

  function endpointRows(key, report, endpoint) {
    const openKey = `${key}|${endpoint.endpoint}`;
    const byDefault = endpoint.verdict === "regression" || endpoint.verdict === "difference";
    const detail = h(
      "tr",
      { class: "detail", dataset: { detailFor: endpoint.endpoint } },
      h("td", { colspan: 8 }, drillDown(openKey, report, endpoint)),
    );
    detail.hidden = !isOpen(openKey, byDefault);
    const caret = h("span", { class: "caret" }, detail.hidden ? "▸" : "▾");
    const toggle = toggler(openKey, byDefault, () => [detail]);
    const row = h(
      "tr",
      {
        class: `endpoint verdict-${vclass(endpoint.verdict)}`,
        dataset: { endpoint: endpoint.endpoint, verdict: endpoint.verdict },
        tabindex: 0,
        onclick: () => {
          caret.textContent = toggle() ? "▾" : "▸";
        },
        onkeydown: (e) => {
          if (e.key === "Enter" || e.key === " ") {
            e.preventDefault();
            caret.textContent = toggle() ? "▾" : "▸";
          }
        },
      },
      h("td", { class: "caret-cell" }, caret),
      h("td", { class: "endpoint-name" }, h("code", {}, endpoint.endpoint)),
      h("td", {}, verdictBadge(endpoint.verdict), endpoint.latency.flagged ? h("span", { class: "badge v-regression slow" }, "slower") : null),
      h("td", { class: "num" }, fmtCount(endpoint.requests)),
      h("td", {}, meter(endpoint.difference_rate, "diff"), ` ${fmtPct(endpoint.difference_rate)}`),
      h("td", {}, meter(endpoint.noise_rate, "noise"), ` ${fmtPct(endpoint.noise_rate)}`),
      h("td", {}, transitions(endpoint.transitions)),
      h("td", {}, latencyCell(endpoint.latency)),
    );
    return [row, detail];
  }

  function meter(rate, kind) {
    const bar = h("span", { class: `meter ${kind}`, "aria-hidden": "true" }, h("span", {}));
    bar.firstChild.style.width = `${Math.min(100, Math.max(0, rate * 100))}%`;
    return bar;
  }

  function transitions(list) {
    if (!list || !list.length) return h("span", { class: "muted" }, "–");
    return h(
      "div",
      { class: "chips" },
      list.map((t) =>
        t.primary === t.candidate
          ? h("span", { class: "chip same", title: "same status on both" }, `${t.primary} ×${fmtCount(t.count)}`)
          : h("span", { class: "chip changed", title: "primary → candidate" }, `${t.primary} → ${t.candidate} ×${fmtCount(t.count)}`),
      ),
    );
  }

  // Candidate against baseline (never against the primary): the paired test's median ratio.
  function latencyCell(latency) {
    const b = latency.baseline;
    const c = latency.candidate;
    if (latency.verdict === "not judged") return h("span", { class: "muted", title: latency.reason || "" }, "not judged");
    if (!b || !c) return h("span", { class: "muted" }, "–");
    const ratio = latency.median_ratio;
    return h(
      "span",
      { class: latency.flagged ? "latency flagged" : "latency", title: latency.reason || "" },
      `${fmtMs(b.p50)} → ${fmtMs(c.p50)}`,
      ratio ? h("span", { class: "ratio" }, ` ×${ratio.toFixed(2)}`) : null,
      latency.verdict === "insufficient data" ? h("span", { class: "muted" }, " (too few)") : null,
    );
  }

  // --- drill-down: the fields, their examples, the latency chart --------------------------------

  function drillDown(key, report, endpoint) {
    return h(
      "div",
      { class: "drill" },
      h(
        "div",
        { class: "drill-fields" },
        endpoint.fields.length
          ? fieldTable(key, report, endpoint)
          : h("p", { class: "empty" }, "No field differs on this endpoint."),
      ),
      h(
        "div",
        { class: "drill-latency" },
        latencyChart(endpoint.latency, report.has_baseline),
        latencyVerdict(endpoint.latency, report),
        timelineChart(endpoint.timeline || []),
      ),
    );
  }

  // The ratios the latency verdict is made of, and why it was (or was not) flagged.
  function latencyVerdict(latency, report) {
    const ratio = (r, q) => (r && r[q] ? `×${r[q].toFixed(2)}` : "–");
    const limits = report.thresholds || {};
    const titles = { regression: "Candidate slower", ok: "Latency within bounds", "insufficient data": "Too few pairs to judge", "not judged": "Latency not judged: no baseline" };
    const rows = QUANTILES.map((q) => h("tr", {}, h("th", {}, q), h("td", { class: "num" }, ratio(latency.ratio, q))));
    return h(
      "div",
      { class: `latency-verdict${latency.flagged ? " flagged" : ""}`, dataset: { verdict: latency.verdict } },
      h("div", { class: "lv-title" }, titles[latency.verdict] || latency.verdict),
      report.has_baseline
        ? h("table", { class: "ratios" }, h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "candidate / baseline"))), h("tbody", {}, rows))
        : null,
      latency.reason ? h("p", { class: "reason" }, latency.reason) : null,
      report.has_baseline
        ? h(
            "p",
            { class: "muted small" },
            `Wilcoxon signed-rank test on each request's candidate/baseline ratio; slower when q < ${limits.alpha}, the median ratio is at least ×${(1 + (limits.latency_min_relative || 0)).toFixed(2)} and ${limits.latency_min_absolute_ms} ms, over ${limits.min_pairs} pairs or more.`,
          )
        : null,
    );
  }

  function fieldTable(key, report, endpoint) {
    const baseline = report.has_baseline;
    const heads = ["Field", "Verdict", "Risk · kind", baseline ? "Differs (cand. / base.)" : "Differs", baseline ? "McNemar p" : null, "Primary", "Candidate", baseline ? "Baseline" : null].filter(Boolean);
    const body = h("tbody", {});
    for (const field of endpoint.fields) body.append(...fieldRows(`${key}|${field.field}`, field, baseline, heads.length));
    return h("table", { class: "grid fields" }, h("thead", {}, h("tr", {}, heads.map((c) => h("th", {}, c)))), body);
  }

  function fieldRows(key, field, baseline, columns) {
    const first = field.examples[0] || null;
    const extra = h(
      "tr",
      { class: `examples verdict-${field.verdict}` },
      h("td", { colspan: columns }, examplesGrid(field.examples, baseline)),
    );
    const more = field.examples.length > 0;
    extra.hidden = !more || !isOpen(key, false);
    const toggle = toggler(key, false, () => [extra]);
    const row = h(
      "tr",
      {
        class: `field verdict-${field.verdict}${more ? " expandable" : ""}`,
        dataset: { field: field.field, verdict: field.verdict },
        title: more ? `click for the ${field.examples.length} kept example(s), in full` : null,
        onclick: more ? toggle : null,
      },
      h("td", { class: "field-name" }, h("code", {}, field.field), field.volatile ? h("span", { class: "chip same", title: "volatile values (ids, timestamps) compared by type" }, "volatile") : null),
      h("td", {}, verdictBadge(field.verdict)),
      h("td", { class: "risk-kind" }, riskKind(field)),
      h("td", { class: "num" }, baseline ? `${fmtCount(field.raw)} / ${fmtCount(field.noise)}` : fmtCount(field.raw)),
      baseline ? h("td", { class: "num", title: pTitle(field) }, fmtP(field.p_value)) : null,
      valueCell(first, "primary"),
      valueCell(first, "candidate"),
      baseline ? valueCell(first, "baseline") : null,
    );
    return [row, extra];
  }

  function riskKind(field) {
    const kinds = Object.keys(field.kinds).join(", ");
    if (field.risk === "none") return h("span", { class: "muted" }, kinds || "–");
    return [h("span", { class: `risk r-${field.risk}` }, field.risk), kinds ? h("span", { class: "muted" }, ` · ${kinds}`) : null];
  }

  function pTitle(field) {
    const parts = [`n10 ${field.n10} · n01 ${field.n01} · n11 ${field.n11}`];
    if (field.q_value !== null && field.q_value !== undefined) parts.push(`q ${fmtP(field.q_value)} (${field.test})`);
    if (field.relative !== null && field.relative !== undefined) parts.push(`Diffy relative ${field.relative.toFixed(1)}% · absolute ${field.absolute.toFixed(1)}%`);
    return parts.join("\n");
  }

  function valueText(value) {
    return value === null || value === undefined ? null : value;
  }

  function valueCell(example, side) {
    if (!example) return h("td", { class: "value muted" }, "–");
    const value = valueText(example[side]);
    const differs = side !== "primary" && value !== valueText(example.primary);
    return h(
      "td",
      { class: `value side-${side}${differs ? " differs" : ""}`, title: value === null ? "absent" : value },
      h("div", { class: "value-box" }, value === null ? h("span", { class: "absent" }, "absent") : h("code", {}, value)),
    );
  }

  function examplesGrid(examples, baseline) {
    const sides = baseline ? SIDES : SIDES.slice(0, 2);
    return h(
      "div",
      { class: `example-grid cols-${sides.length}` },
      examples.map((e) => [
        h(
          "div",
          { class: "example-head" },
          h("code", {}, `${e.method} ${e.target}`),
          h("span", { class: "muted" }, ` · ${e.kind} · ${fmtTime(e.started)} · request ${e.request_id}`),
        ),
        sides.map((side) => {
          const value = valueText(e[side]);
          const differs = side !== "primary" && value !== valueText(e.primary);
          return h(
            "div",
            { class: `example-value side-${side}${differs ? " differs" : ""}` },
            h("div", { class: "example-side" }, side),
            value === null ? h("span", { class: "absent" }, "absent") : h("pre", {}, value),
          );
        }),
        arrayDiff(e.array),
        reproduce(e),
      ]),
    );
  }

  // An example's array diff, primary against candidate: the indices that moved (primary's →
  // candidate's), changed in place, were removed or added; "+N more" past the kept entries.
  function arrayDiff(a) {
    if (!a) return null;
    const kinds = ["moved", "changed", "removed", "added"].filter((k) => (a[k] || []).length);
    const index = (x, k) => {
      if (!Array.isArray(x)) return String(x);
      return x[0] === x[1] && k !== "moved" ? String(x[0]) : `${x[0]} → ${x[1]}`;
    };
    return h(
      "div",
      { class: "example-array", dataset: { path: a.path } },
      h("code", {}, a.path),
      ` ${a.lengths[0]} → ${a.lengths[1]} elements, ${a.kept} in order`,
      kinds.length ? null : ": same elements",
      kinds.map((k) => {
        const more = ((a.counts || {})[k] || a[k].length) - a[k].length;
        return h(
          "span",
          { class: `array-kind array-${k}`, dataset: { kind: k } },
          h("b", {}, k),
          a[k].map((x) => h("span", { class: "index" }, index(x, k))),
          more > 0 ? h("span", { class: "muted" }, `+${more} more`) : null,
        );
      }),
    );
  }

  // The drill-down of one example: the whole (redacted, capped) responses and a curl line per
  // version, to reproduce it ($PRIMARY, $CANDIDATE, $BASELINE: each version's host:port).
  function reproduce(e) {
    if (!e.curl || !Object.keys(e.curl).length) return null;
    return h(
      "details",
      { class: "reproduce" },
      h("summary", {}, "reproduce: full responses and curl"),
      Object.entries(e.responses || {}).map(([side, text]) =>
        h("div", { class: `example-value side-${side}` }, h("div", { class: "example-side" }, side), h("pre", {}, text)),
      ),
      Object.entries(e.curl).map(([side, line]) => h("pre", { class: "curl", dataset: { side } }, line)),
    );
  }

  // Bars of p50 / p90 / p99 for each side, on one scale; the report keeps quantiles, not buckets.
  // With a baseline, candidate against baseline only: both are shadows of the same requests,
  // while the primary answers live, ahead of their queues (setting it against the candidate is
  // what made unchanged endpoints look slower). Without one, latency is not judged: the
  // primary and the candidate are drawn, and the caption says so.
  function latencyChart(latency, hasBaseline) {
    const shown = hasBaseline ? ["candidate", "baseline"] : ["primary", "candidate"];
    const sides = shown.filter((s) => latency[s]);
    const caption = hasBaseline ? "Latency (ms)" : "Latency (ms), not judged: no baseline";
    const wrap = h("figure", { class: "chart" }, h("figcaption", {}, caption, latency.flagged ? h("span", { class: "badge v-regression" }, "flagged") : null));
    if (!sides.length) {
      wrap.append(h("p", { class: "empty" }, "No latency yet."));
      return wrap;
    }
    const width = 340;
    const height = 180;
    const pad = { left: 38, right: 8, top: 14, bottom: 22 };
    const values = sides.flatMap((s) => QUANTILES.map((q) => latency[s][q] || 0));
    const top = niceCeiling(Math.max(...values, 0.001));
    const y = (v) => pad.top + (height - pad.top - pad.bottom) * (1 - v / top);
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "bars", role: "img", "aria-label": "latency quantiles by side" });
    for (let i = 0; i <= 4; i++) {
      const v = (top * i) / 4;
      chart.append(
        svg("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: "gridline" }),
        svg("text", { x: pad.left - 4, y: y(v) + 3, class: "axis", "text-anchor": "end" }, fmtMs(v)),
      );
    }
    const groupWidth = (width - pad.left - pad.right) / QUANTILES.length;
    const barWidth = Math.min(26, (groupWidth - 16) / sides.length);
    QUANTILES.forEach((q, gi) => {
      const x0 = pad.left + gi * groupWidth + (groupWidth - barWidth * sides.length) / 2;
      sides.forEach((side, si) => {
        const v = latency[side][q] || 0;
        const x = x0 + si * barWidth;
        chart.append(
          svg("rect", { x: x + 1, y: y(v), width: barWidth - 2, height: Math.max(0.5, y(0) - y(v)), class: `bar side-${side}`, rx: 2 }, svg("title", {}, `${side} ${q}: ${fmtMs(v)} ms`)),
          svg("text", { x: x + barWidth / 2, y: y(v) - 3, class: "value-label", "text-anchor": "middle" }, fmtMs(v)),
        );
      });
      chart.append(svg("text", { x: pad.left + gi * groupWidth + groupWidth / 2, y: height - 6, class: "axis q", "text-anchor": "middle" }, q));
    });
    wrap.append(chart, chartLegend(sides));
    return wrap;
  }

  // The differing rate over time: one bar per slice of the kept requests' time.
  function timelineChart(slices) {
    const wrap = h("figure", { class: "chart timeline" }, h("figcaption", {}, "Differing over time"));
    if (slices.length < 2) {
      wrap.append(h("p", { class: "empty" }, "Not enough time yet."));
      return wrap;
    }
    const width = 340;
    const height = 60;
    const bar = width / slices.length;
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "bars", role: "img", "aria-label": "differing rate over time" });
    slices.forEach(([start, requests, differing], i) => {
      const rate = requests ? differing / requests : 0;
      const barHeight = Math.max(1, rate * (height - 4));
      chart.append(
        svg("rect", { x: i * bar + 0.5, y: height - barHeight, width: Math.max(1, bar - 1), height: barHeight, class: "bar side-candidate" }, svg("title", {}, `${fmtTime(start)}: ${fmtPct(rate)} of ${fmtCount(requests)}`)),
      );
    });
    wrap.append(chart);
    return wrap;
  }

  function chartLegend(sides) {
    return h(
      "div",
      { class: "legend" },
      sides.map((side) => h("span", { class: `side side-${side}` }, h("span", { class: "swatch" }), side)),
    );
  }

  function niceCeiling(v) {
    const magnitude = 10 ** Math.floor(Math.log10(v));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (v <= step * magnitude) return step * magnitude;
    }
    return 10 * magnitude;
  }

  // Every endpoint's p90, baseline against candidate (both shadows, on the same path): where the
  // time went, at a glance. Without a baseline there is nothing fair to set the candidate against.
  function latencyOverview(report) {
    const rows = report.endpoints.filter((e) => e.latency.baseline && e.latency.candidate);
    if (!rows.length) return null;
    const top = niceCeiling(Math.max(...rows.flatMap((e) => [e.latency.baseline.p90 || 0, e.latency.candidate.p90 || 0]), 0.001));
    const line = (endpoint, side) => {
      const v = endpoint.latency[side].p90 || 0;
      const bar = h("span", { class: `hbar side-${side}` });
      bar.style.width = `${(v / top) * 100}%`;
      return h("div", { class: "hbar-row" }, h("span", { class: "hbar-track" }, bar), h("span", { class: "hbar-value" }, `${fmtMs(v)} ms`));
    };
    return h(
      "figure",
      { class: "overview" },
      h("figcaption", {}, "p90 latency by endpoint: ", h("span", { class: "side side-baseline" }, h("span", { class: "swatch" }), "baseline"), " ", h("span", { class: "side side-candidate" }, h("span", { class: "swatch" }), "candidate")),
      rows.map((e) =>
        h(
          "div",
          { class: `overview-row${e.latency.flagged ? " flagged" : ""}` },
          h("code", { class: "overview-name" }, e.endpoint),
          h("div", { class: "overview-bars" }, line(e, "baseline"), line(e, "candidate")),
        ),
      ),
    );
  }

  // --- start ------------------------------------------------------------------------------------

  takeTokenFromFragment();
  wireToken();
  poll();
})();
