// The dashboard's script: reads the node API's live stream (/v1/stream, server-sent events
// read through fetch so that the token goes in a header) and draws what it says. No
// framework and nothing fetched from elsewhere: the node serves this file itself.
"use strict";

// The control token, from the address's fragment (never sent to a server). It is kept
// for this tab only (a reload finds it) and taken out of the address bar, so that the
// address shown, bookmarked or shared does not carry it.
const token = (() => {
  const given = new URLSearchParams(location.hash.slice(1)).get("token");
  if (given) {
    sessionStorage.setItem("strata-token", given);
    history.replaceState(null, "", location.pathname);
  }
  return given || sessionStorage.getItem("strata-token");
})();
const KEPT = 120; // points per chart: two minutes at one snapshot a second
const TIMELINE_MS = 10 * 60 * 1000;

const view = {
  bounds: [], // the latency histogram's bucket bounds, in seconds
  last: null, // the previous snapshot
  series: new Map(), // service -> [{rate, p50, p99, inflight}]
  backlogs: new Map(), // "queue/group" -> [backlog]
  events: [], // oldest first
  seen: new Set(), // events already shown
  selected: null, // {service, instance} whose log is followed
  follow: null, // the AbortController of the followed log
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function api(path, init) {
  const headers = { Authorization: "Bearer " + token };
  return fetch(path, Object.assign({ headers, cache: "no-store" }, init || {}));
}

function problem(text) {
  const p = $("problem");
  p.hidden = !text;
  p.textContent = text || "";
}

// ---- the stream -------------------------------------------------------------------

async function connect() {
  if (!token) {
    problem("No token: open the address `strata up` prints (it ends with #token=...), " +
      "or add #token= and the app's .strata/control.token to this page's address.");
    return;
  }
  for (;;) {
    try {
      const reply = await api("/v1/stream");
      if (!reply.ok) {
        const body = await reply.json().catch(() => ({}));
        problem("The node refused the stream (" + reply.status + "): " + (body.error || reply.statusText));
        if (reply.status === 401 || reply.status === 403) return;
      } else {
        problem(null);
        await read(reply.body.getReader());
      }
    } catch (e) {
      // The node is down or restarting: try again below.
    }
    setLink("lost", "reconnecting");
    await new Promise((r) => setTimeout(r, 2000));
  }
}

async function read(reader) {
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      let name = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data) on(name, JSON.parse(data));
    }
  }
}

function setLink(state, text) {
  const link = $("link");
  link.dataset.state = state;
  link.textContent = text;
}

function on(name, data) {
  if (name === "hello") {
    view.bounds = data.bounds;
    view.last = null;
    data.events.forEach(addEvent);
    drawEvents();
    setLink("live", "live");
  } else if (name === "event") {
    addEvent(data);
    drawEvents();
  } else if (name === "snapshot") {
    snapshot(data);
  }
}

// ---- figures ------------------------------------------------------------------------

function total(relayed) {
  return relayed.classes.reduce((a, b) => a + b, 0) + relayed.unanswered;
}

// The q-quantile in ms of the requests between two cumulative histograms, interpolated
// within its bucket as Prometheus does (the same as `strata top`).
function quantile(before, after, q) {
  const n = after.map((c, i) => c - (before ? before[i] : 0));
  const count = n[n.length - 1];
  if (!(count > 0)) return null;
  const rank = q * count;
  let lower = 0;
  let below = 0;
  for (let i = 0; i < n.length; i++) {
    const le = i < view.bounds.length ? view.bounds[i] : Infinity;
    if (n[i] >= rank) {
      if (le === Infinity) return lower * 1000;
      const inside = n[i] - below;
      const frac = inside > 0 ? (rank - below) / inside : 1;
      return (lower + (le - lower) * frac) * 1000;
    }
    lower = le;
    below = n[i];
  }
  return lower * 1000;
}

function push(map, key, point) {
  if (!map.has(key)) map.set(key, []);
  const list = map.get(key);
  list.push(point);
  if (list.length > KEPT) list.shift();
}

function snapshot(s) {
  const last = view.last;
  const seconds = last ? Math.max((s.at - last.at) / 1000, 0.001) : 1;
  for (const svc of s.ps.services) {
    const now = s.relay[svc.name];
    const before = last && last.relay[svc.name];
    const inflight = svc.instances.reduce((a, i) => a + i.inflight, 0);
    if (now && before) {
      push(view.series, svc.name, {
        rate: (total(now) - total(before)) / seconds,
        p50: quantile(before.cumulative, now.cumulative, 0.5),
        p99: quantile(before.cumulative, now.cumulative, 0.99),
        inflight,
      });
    }
  }
  for (const q of s.queues.queues || []) {
    for (const g of q.groups) push(view.backlogs, q.name + "/" + g.name, { backlog: g.backlog });
  }
  view.last = s;
  $("app").textContent = s.ps.app;
  $("where").textContent = "gateway http://" + s.ps.gateway + "   node API " + s.ps.api +
    (s.ps.cache ? "   cache " + s.ps.cache : "") + "   pid " + s.ps.pid;
  document.title = s.ps.app + " · strata";
  drawServices(s.ps);
  drawCharts(s);
  drawQueues(s.queues);
  drawCache(s.cache);
  drawCluster(s.cluster);
  drawTimeline();
  problem(s.ps.failures.length ? s.ps.failures.join("\n") : null);
}

// ---- tables -------------------------------------------------------------------------

// Puts `rows` in `body`, keeping the rows already there (their cells replaced only where
// they changed), so that a row under the pointer is not swapped while it is clicked.
function patch(body, rows) {
  rows.forEach((row, i) => {
    const old = body.rows[i];
    if (!old || old.dataset.key !== row.dataset.key) {
      if (old) old.replaceWith(row);
      else body.append(row);
      return;
    }
    for (const a of [...old.attributes]) if (!row.hasAttribute(a.name)) old.removeAttribute(a.name);
    for (const a of [...row.attributes]) if (old.getAttribute(a.name) !== a.value) old.setAttribute(a.name, a.value);
    // The new row's cells move into the old one: count and list them first.
    const cells = [...row.cells];
    cells.forEach((cell, j) => {
      const was = old.cells[j];
      if (!was) old.append(cell);
      else if (was.outerHTML !== cell.outerHTML) was.replaceWith(cell);
    });
    while (old.cells.length > cells.length) old.lastElementChild.remove();
  });
  while (body.rows.length > rows.length) body.lastElementChild.remove();
}

// ---- services and instances ---------------------------------------------------------

function drawServices(ps) {
  const rows = [];
  const domains = new Map();
  for (const svc of ps.services) {
    const a = svc.autoscale;
    const scaler = a ? "target " + a.target + " (" + a.signal + "): " + a.reason : "";
    rows.push(el("tr", { class: "service", "data-key": "s:" + svc.name, "data-service": svc.name,
      "data-state": svc.state },
      el("td", {}, svc.name + (svc.function ? " (function, " + svc.function + ")" : "")),
      el("td", {}, el("span", { class: "state " + svc.state.split(":")[0] }, svc.state)),
      el("td", {}, svc.ready + " / " + svc.desired + "  (" + svc.min + "–" + svc.max + ")"),
      el("td"), el("td"),
      el("td", {}, svc.instances.reduce((n, i) => n + i.inflight, 0)),
      el("td", {}, svc.served),
      el("td", { class: "detail" }, scaler)));
    for (const i of svc.instances) {
      const selected = view.selected && view.selected.instance === i.id;
      const row = el("tr", {
        class: "instance" + (selected ? " selected" : ""), "data-key": "i:" + i.id, "data-instance": i.id,
        "data-service": svc.name, "data-state": i.state, "data-pid": i.pid,
      },
        el("td", {}, i.id),
        el("td", {}, el("span", { class: "state " + i.state }, i.state)),
        el("td"),
        el("td", {}, i.pid || ""),
        el("td", {}, i.restarts),
        el("td", {}, i.inflight),
        el("td", {}, i.served),
        el("td", { class: "detail" }, [i.detail, i.last_exit].filter(Boolean).join("; ")));
      rows.push(row);
      if (i.domain) {
        if (!domains.has(i.domain)) domains.set(i.domain, []);
        domains.get(i.domain).push(i.id);
      }
    }
  }
  patch($("services").tBodies[0], rows);
  // In a cluster, instances carry the label value of the node they run on.
  const placement = $("placement");
  placement.hidden = domains.size === 0;
  placement.querySelector("ul").replaceChildren(...[...domains].map(([d, ids]) =>
    el("li", {}, el("b", {}, d), ": " + ids.join(", "))));
}

// ---- the cluster ----------------------------------------------------------------------

// In a cluster: the nodes as this node hears them, and per service the instances each
// node runs. A single node (`strata up`) sends no cluster and the section stays hidden.
function drawCluster(cluster) {
  const box = $("cluster-box");
  const mode = $("mode");
  box.hidden = !cluster;
  if (!cluster) {
    mode.dataset.mode = "single";
    mode.textContent = "single node";
    return;
  }
  const nodes = cluster.nodes;
  const live = nodes.filter((n) => n.state !== "dead").length;
  mode.dataset.mode = "cluster";
  mode.textContent = "cluster: node " + cluster.node + ", " + live + " of " + nodes.length + " nodes heard";
  $("cluster-me").textContent = cluster.node;
  // The node holding the scheduler's lease (none for up to 3 s after a holder dies).
  const scheduler = $("scheduler");
  scheduler.textContent = cluster.scheduler || "none (a live node takes the lease within seconds)";
  scheduler.dataset.node = cluster.scheduler || "";

  const mb = (used, offered) => used + " / " + offered + " MB";
  patch($("nodes").tBodies[0], nodes.map((n) => el("tr", {
    class: "node " + n.state, "data-key": "n:" + n.name, "data-node": n.name, "data-state": n.state,
    "data-scheduler": n.name === cluster.scheduler ? "yes" : "no",
  },
    el("td", {}, n.name + (n.name === cluster.node ? " (this node)" : ""),
      n.name === cluster.scheduler ? el("span", { class: "scheduler", title: "holds the scheduler's lease" }, "scheduler") : ""),
    el("td", {}, el("span", { class: "state " + n.state }, n.state)),
    el("td", {}, (n.heard_ms / 1000).toFixed(1) + " s ago"),
    el("td", {}, n.addr),
    el("td", {}, Object.entries(n.labels).map(([k, v]) => k + "=" + v).join(", ")),
    el("td", {}, mb(n.used_memory_mb, n.memory_mb)),
    el("td", {}, n.used_accelerators + " / " + n.accelerators),
    el("td", {}, n.ready + " / " + n.placed),
    el("td", {}, n.inflight))));

  // Services: the placement's and any a node lists (a heartbeat may be ahead of it).
  const services = new Set(Object.keys(cluster.placement));
  for (const n of nodes) for (const i of n.instances) services.add(i.service);
  const head = el("tr", {}, el("th", {}, "service"), ...nodes.map((n) =>
    el("th", { class: n.state, "data-node": n.name }, n.name + (n.state === "live" ? "" : " (" + n.state + ")"))));
  $("where-run").tHead.replaceChildren(head);
  const rows = [...services].sort().map((svc) => el("tr", { "data-key": "w:" + svc, "data-service": svc },
    el("td", {}, svc),
    ...nodes.map((n) => {
      const placed = (cluster.placement[svc] || {})[n.name] || 0;
      const here = n.instances.filter((i) => i.service === svc);
      return el("td", { class: n.state, "data-node": n.name, "data-placed": placed },
        ...here.map((i) => el("span", {
          class: "inst", "data-node": n.name, "data-service": svc, "data-instance": i.id,
          "data-state": i.state, title: "in flight " + i.inflight + ", served " + i.served,
        }, i.id + " ", el("span", { class: "state " + i.state }, i.state))),
        placed || here.length ? el("span", { class: "placed" }, "placed " + placed) : "–");
    })));
  patch($("where-run").tBodies[0], rows);
  const unplaced = Object.entries(cluster.unplaced);
  $("unplaced").hidden = unplaced.length === 0;
  $("unplaced").textContent = unplaced.map(([svc, u]) =>
    svc + ": " + u.count + " instance(s) fit on no node: " + u.reason).join("; ");
}

// ---- charts -------------------------------------------------------------------------

const COLORS = { rate: "#2d6cdf", inflight: "#c98a00", p50: "#1f9d55", p99: "#d43c3c", backlog: "#7b4dd6" };

function figure(box, key, captionText) {
  let fig = box.querySelector('figure[data-key="' + CSS.escape(key) + '"]');
  if (!fig) {
    fig = el("figure", { "data-key": key },
      el("figcaption", {}, el("b", {}, captionText), el("span")));
    box.append(fig);
  }
  return fig;
}

function canvas(fig, index) {
  const all = fig.querySelectorAll("canvas");
  if (all[index]) return all[index];
  const c = el("canvas", { width: 500, height: 90 });
  fig.append(c);
  return c;
}

// A canvas drawn at the size it is shown at, so that lines and text stay sharp.
function fit(c) {
  if (c.clientWidth > 0 && c.width !== c.clientWidth) c.width = c.clientWidth;
}

// Lines of `points[k]` for each k of `keys`, on one scale from 0 to the largest value.
function plot(c, points, keys) {
  fit(c);
  const g = c.getContext("2d");
  const w = c.width;
  const h = c.height;
  g.clearRect(0, 0, w, h);
  g.fillStyle = "#fafbfc";
  g.fillRect(0, 0, w, h);
  let max = 0;
  for (const p of points) for (const k of keys) if (p[k] !== null) max = Math.max(max, p[k]);
  max = max > 0 ? max * 1.15 : 1;
  g.strokeStyle = "#dde1e8";
  g.beginPath();
  for (const f of [0.25, 0.5, 0.75]) { g.moveTo(0, h * f); g.lineTo(w, h * f); }
  g.stroke();
  const dx = w / (KEPT - 1);
  const x0 = w - (points.length - 1) * dx;
  for (const k of keys) {
    g.strokeStyle = COLORS[k];
    g.lineWidth = 2;
    g.beginPath();
    let pen = false;
    points.forEach((p, i) => {
      if (p[k] === null) { pen = false; return; }
      const x = x0 + i * dx;
      const y = h - 2 - (p[k] / max) * (h - 4);
      if (pen) g.lineTo(x, y); else g.moveTo(x, y);
      pen = true;
    });
    g.stroke();
  }
  g.fillStyle = "#6b7385";
  g.font = "11px system-ui, sans-serif";
  g.fillText("max " + fmt(max / 1.15) + "  " + keys.join(" · "), 4, 12);
}

function fmt(n) {
  if (n === null || n === undefined) return "–";
  if (n >= 100) return n.toFixed(0);
  if (n >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

function drawCharts(s) {
  const box = $("charts");
  for (const svc of s.ps.services) {
    const points = view.series.get(svc.name) || [];
    const fig = figure(box, svc.name, svc.name);
    const now = points[points.length - 1] || { rate: 0, p50: null, p99: null, inflight: 0 };
    fig.dataset.service = svc.name;
    fig.dataset.requests = s.relay[svc.name] ? total(s.relay[svc.name]) : 0;
    fig.dataset.rate = now.rate.toFixed(2);
    fig.querySelector("span").textContent = fmt(now.rate) + " req/s  p50 " + fmt(now.p50) +
      " ms  p99 " + fmt(now.p99) + " ms  in flight " + now.inflight;
    plot(canvas(fig, 0), points, ["rate", "inflight"]);
    plot(canvas(fig, 1), points, ["p50", "p99"]);
  }
}

function drawQueues(queues) {
  const rows = [];
  const box = $("backlog-charts");
  for (const q of queues.queues || []) {
    rows.push(el("tr", { class: "queue", "data-key": "q:" + q.name, "data-queue": q.name },
      el("td", {}, q.name), el("td", {}, q.messages), el("td", {}, q.bytes),
      el("td"), el("td"), el("td"), el("td")));
    for (const g of q.groups) {
      rows.push(el("tr", { class: "group", "data-key": "g:" + q.name + "/" + g.name, "data-group": g.name },
        el("td", {}, g.name), el("td"), el("td"), el("td", {}, g.unread), el("td", {}, g.leased),
        el("td", {}, g.backlog), el("td", {}, g.dead_lettered)));
      const key = q.name + "/" + g.name;
      const fig = figure(box, key, "backlog " + key);
      fig.dataset.backlog = g.backlog;
      fig.querySelector("span").textContent = g.backlog + " messages";
      plot(canvas(fig, 0), view.backlogs.get(key) || [], ["backlog"]);
    }
  }
  for (const f of queues.failed || []) {
    rows.push(el("tr", { class: "queue", "data-key": "f:" + f.name }, el("td", {}, f.name),
      el("td", { class: "detail", colspan: 6 }, "out of service: " + f.reason)));
  }
  patch($("queues").tBodies[0], rows);
}

function drawCache(cache) {
  const row = (name, s) => el("tr", { "data-key": "c:" + name, "data-shard": name }, el("td", {}, name), el("td", {}, s.keys),
    el("td", {}, s.bytes + (s.max_bytes ? " of " + s.max_bytes : "")), el("td", {}, s.hits),
    el("td", {}, s.misses), el("td", {}, s.evictions), el("td", {}, s.expired));
  const rows = (cache.shards || []).map((s, i) => row(String(i), s));
  if (cache.total) rows.push(row("all", cache.total));
  if (cache.read_through_total) rows.push(row("read-through", cache.read_through_total));
  patch($("cache").tBodies[0], rows);
}

// ---- events -------------------------------------------------------------------------

function addEvent(e) {
  const key = [e.at, e.service, e.instance, e.kind, e.message].join("|");
  if (view.seen.has(key)) return;
  view.seen.add(key);
  e.__key = key;
  view.events.push(e);
  if (view.events.length > 500) view.seen.delete(view.events.shift().__key);
}

function tone(kind) {
  if (/fail|crash|oom|unhealthy|exited|shed|unschedulable/.test(kind)) return "#d43c3c";
  if (/autoscaled|scaled|cold/.test(kind)) return "#2d6cdf";
  if (/ready/.test(kind)) return "#1f9d55";
  return "#8a93a6";
}

function drawEvents() {
  const list = view.events.slice(-200).reverse().map((e) =>
    el("li", { "data-kind": e.kind, "data-service": e.service },
      el("time", {}, new Date(e.at).toLocaleTimeString()),
      el("span", { class: "kind" }, e.kind),
      e.service + (e.instance ? " " + e.instance : "") + ": " + e.message));
  $("events").replaceChildren(...list);
  drawTimeline();
}

// The timeline: one row per service, the last ten minutes, a tick per event. Drawn at
// each event and each snapshot, so that it moves on while nothing happens.
function drawTimeline() {
  const c = $("timeline");
  const g = c.getContext("2d");
  const now = Date.now();
  const recent = view.events.filter((e) => e.at > now - TIMELINE_MS);
  const services = [...new Set(recent.map((e) => e.service))].sort();
  fit(c);
  c.height = Math.max(40, 16 * services.length + 18);
  g.clearRect(0, 0, c.width, c.height);
  g.font = "11px system-ui, sans-serif";
  const left = 110;
  const span = c.width - left - 6;
  services.forEach((s, row) => {
    g.fillStyle = "#6b7385";
    g.fillText(s, 4, 14 + row * 16);
  });
  for (const e of recent) {
    const x = left + span * (1 - (now - e.at) / TIMELINE_MS);
    const y = 4 + services.indexOf(e.service) * 16;
    g.fillStyle = tone(e.kind);
    g.fillRect(x - 1, y, 3, 12);
  }
  g.fillStyle = "#6b7385";
  g.fillText("−10 min", left, c.height - 3);
  g.fillText("now", c.width - 28, c.height - 3);
}

// ---- an instance's log, followed ------------------------------------------------------

async function followLog(service, instance) {
  if (view.follow) view.follow.abort();
  view.selected = { service, instance };
  view.follow = new AbortController();
  const signal = view.follow.signal;
  for (const r of document.querySelectorAll("tr.instance")) {
    r.classList.toggle("selected", r.dataset.instance === instance);
  }
  $("log-of").textContent = instance + " (followed)";
  const pre = $("log");
  pre.textContent = "";
  try {
    const q = "?follow=true&instance=" + encodeURIComponent(instance);
    const reply = await api("/v1/services/" + encodeURIComponent(service) + "/logs" + q, { signal });
    if (!reply.ok) {
      pre.textContent = "the node refused the log (" + reply.status + ")";
      return;
    }
    const reader = reply.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(decoder.decode(value, { stream: true }));
      if (pre.textContent.length > 200000) pre.textContent = pre.textContent.slice(-100000);
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
  } catch (e) {
    if (e.name !== "AbortError") pre.append("\n(the log stream ended: " + e.message + ")");
  }
}

$("services").tBodies[0].addEventListener("click", (ev) => {
  const row = ev.target.closest("tr.instance");
  if (row) followLog(row.dataset.service, row.dataset.instance);
});
connect();
