// Live view of triarb, fed by server-sent events: feed tiles, one table row per episode (a cycle's
// dislocation, updated in place until it closes), a chart of every opportunity's net ROI; and, polled from
// /api/status, each feed's lag, each book's freshness and each venue's symbol sets.
// EventSource reconnects by itself and sends Last-Event-ID, the stream id of the last opportunity seen, so
// the server replays exactly what was missed; on every (re)connect it also sends the current state of the
// newest episodes. Every episode event carries the whole episode, so a row keeps the highest seq it saw.
"use strict";

const MAX_ROWS = 200;
const MAX_POINTS = 500;
const MAX_JOINED = 5000;

const episodes = new Map();      // episode id -> {episode, row, simId, trace}
const points = new Map();        // opportunity id -> {ts, roi, cycle} for the chart (insertion = arrival order)
const simByOpportunity = new Map();  // opportunity id -> sim_id of its paper fill
const traceBySim = new Map();        // sim_id -> the paper broker's trace

// --- formatting ---------------------------------------------------------------------------------------

function bps(x) { return (x * 1e4).toFixed(1) + " bps"; }
// Ten significant digits keep every venue increment and drop binary float noise: the sum 0.41130096000000005
// shows as 0.41130096. Prices and sizes of books.
function exact(x) { return Number.isFinite(x) ? String(Number(x.toPrecision(10))) : "–"; }
// Notionals and profits, as read at a glance.
function money(x) { return Number.isFinite(x) ? String(Number(x.toPrecision(6))) : "–"; }
function signed(text) { return text.startsWith("-") ? text : "+" + text; }
function clock(ms) { return new Date(ms).toISOString().slice(11, 23); }
function dateTime(ms) { return new Date(ms).toISOString().replace("T", " ").slice(0, 19); }
function span(ms) {
  const s = Math.max(0, ms) / 1000;
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  if (s < 172800) return `${Math.floor(s / 3600)} h ${String(Math.floor(s % 3600 / 60)).padStart(2, "0")} min`;
  return `${Math.floor(s / 86400)} days`;
}
function cycleText(exchange, cycleId) {  // "kraken:BTC-USD:buy|ETH-BTC:buy|ETH-USD:sell" -> legs with arrows
  const legs = cycleId.startsWith(exchange + ":") ? cycleId.slice(exchange.length + 1).split("|") : [cycleId];
  return `${exchange}  ` + legs.map(leg => leg.replace(":", " ")).join(" → ");
}
const CLOSE_REASONS = { below_min_roi: "ROI below min", stale: "legs stale" };

// Stream data is shown as text, never parsed as HTML: a forged entry must not run script in this page.
function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function tileFor(containerId, id, className) {
  let tile = document.getElementById(id);
  if (!tile) {
    tile = element("div", undefined, className);
    tile.id = id;
    document.getElementById(containerId).appendChild(tile);
  }
  return tile;
}

// --- feeds: status from health events, lag from /api/status ---------------------------------------------

const feedHealth = new Map();    // tile id -> latest health record
const feedLag = new Map();       // tile id -> lag_ms as of the last status poll

function renderFeed(health) {
  const id = `feed-${health.exchange}-${health.channel}`;
  feedHealth.set(id, health);
  const tile = tileFor("feeds", id, "tile");
  tile.className = `tile ${health.status}`;
  tile.dataset.status = health.status;
  const lag = feedLag.get(id);
  const lagText = element("small", lag === undefined ? "last message: –" :
    lag === null ? "no message received yet" : `last message ${span(lag)} ago`, "lag");
  if (lag !== undefined && lag !== null) lagText.dataset.lagMs = lag;
  tile.replaceChildren(
    element("strong", `${health.exchange} / ${health.channel}`), " ", element("span", health.status, "status"),
    lagText,
    element("small", `${health.symbol_count} symbols` + (health.symbols_digest ? ` · ${health.symbols_digest}` : "")),
    element("small", `reconnects ${health.reconnects} · gaps ${health.gaps} · checksum fails ${health.checksum_failures}`),
    element("small", health.detail || ""));
}

// --- episodes ---------------------------------------------------------------------------------------------

const EPISODE_CELLS = ["cycle", "status", "opened", "duration", "roi", "peak", "size", "profit", "count", "paper"];

function applyEpisode(episode) {
  let entry = episodes.get(episode.id);
  if (entry && entry.episode.seq > episode.seq) return;  // older than what the row shows
  if (!entry) {
    const row = document.createElement("tr");
    row.dataset.id = episode.id;
    for (const name of EPISODE_CELLS) row.appendChild(element("td", undefined, name));
    entry = { episode, row, simId: null, trace: null };
    episodes.set(episode.id, entry);
    insertByOpenTime(row, episode.opened_ms);
  }
  entry.episode = episode;
  if (episode.paper) {
    entry.simId = episode.paper.sim_id || entry.simId;
    entry.trace = episode.paper.result || entry.trace;
  }
  entry.simId = entry.simId || simByOpportunity.get(episode.first_opportunity_id) || null;
  if (!entry.trace && entry.simId) entry.trace = traceBySim.get(entry.simId) || null;
  renderEpisode(entry);
}

function insertByOpenTime(row, openedMs) {  // newest opened on top, whatever order states arrive in
  row.dataset.opened = openedMs;
  const body = document.querySelector("#episodes tbody");
  const after = [...body.children].find(other => Number(other.dataset.opened) < openedMs);
  body.insertBefore(row, after || null);
  while (body.children.length > MAX_ROWS) {
    episodes.delete(body.lastChild.dataset.id);
    body.removeChild(body.lastChild);
  }
}

function renderEpisode(entry) {
  const e = entry.episode, row = entry.row;
  const cell = name => row.querySelector(`td.${name}`);
  const open = e.event !== "close";
  row.dataset.seq = e.seq;
  row.dataset.status = open ? "open" : "closed";
  row.className = open ? "open" : "closed";
  cell("cycle").textContent = cycleText(e.exchange, e.cycle_id);
  cell("status").textContent = open ? "open" : `closed (${CLOSE_REASONS[e.close_reason] || e.close_reason})`;
  cell("opened").textContent = clock(e.opened_ms);
  renderDuration(entry, Date.now());
  cell("roi").textContent = bps(e.roi_net);
  cell("roi").classList.toggle("neg", e.roi_net < 0);
  cell("peak").textContent = bps(e.peak_roi_net);
  cell("size").textContent = `${money(e.best_notional)} ${e.start_asset}`;
  cell("profit").textContent = `${signed(money(e.best_profit))} ${e.start_asset}`;
  cell("count").textContent = e.opportunities;
  renderPaper(entry);
}

function renderDuration(entry, now) {
  const e = entry.episode;
  const cell = entry.row.querySelector("td.duration");
  cell.textContent = span(e.event === "close" ? e.duration_ms : Math.max(e.duration_ms, now - e.opened_ms));
}

function renderPaper(entry) {
  const cell = entry.row.querySelector("td.paper");
  const asset = entry.episode.start_asset, trace = entry.trace;
  if (trace) {
    cell.textContent = `${trace.status} ${signed(money(trace.realized_pnl))} ${asset}`;
    cell.title = `simulated by the paper broker (sim ${trace.sim_id}); expected ${money(trace.expected_pnl)} ${asset}` +
      (trace.detail ? `; ${trace.detail}` : "");
    cell.classList.toggle("neg", trace.realized_pnl < 0);
  } else {
    cell.textContent = entry.simId ? "pending" : "–";
    cell.title = entry.simId ? "the paper broker has not filled it yet" : "first opportunity not in recent history";
  }
}

function tickDurations() {
  const now = Date.now();
  for (const entry of episodes.values()) if (entry.episode.event !== "close") renderDuration(entry, now);
}

// --- opportunities (chart, and the sim_id of each for the paper join) and paper fills -----------------

function remember(map, key, value) {
  map.set(key, value);
  if (map.size > MAX_JOINED) map.delete(map.keys().next().value);
}

function addOpportunity(op) {
  if (points.has(op.id)) return;
  if (op.sim_id) remember(simByOpportunity, op.id, op.sim_id);
  if (op.fill) remember(traceBySim, op.fill.sim_id, op.fill);
  points.set(op.id, { ts: op.ts_detect, roi: op.roi_net, cycle: cycleText(op.exchange, op.cycle_id) });
  if (points.size > MAX_POINTS) points.delete(points.keys().next().value);
  for (const entry of episodes.values()) {
    if (!entry.simId && entry.episode.first_opportunity_id === op.id && op.sim_id) {
      entry.simId = op.sim_id;
      entry.trace = entry.trace || traceBySim.get(op.sim_id) || null;
      renderPaper(entry);
    }
  }
  scheduleChart();
}

function addFill(fill) {
  remember(traceBySim, fill.trace.sim_id, fill.trace);
  for (const entry of episodes.values()) {
    if (entry.simId === fill.trace.sim_id) {
      entry.trace = fill.trace;
      renderPaper(entry);
    }
  }
}

// --- chart: SVG, time axis (UTC) and ROI axis (bps) ---------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
const TIME_STEPS_MS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400]
  .map(s => s * 1000);

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceStep(range, ticks) {
  const raw = range / ticks, power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map(m => m * power).find(step => step >= raw);
}

let chartPending = false;
function scheduleChart() {
  if (!chartPending) { chartPending = true; requestAnimationFrame(() => { chartPending = false; drawChart(); }); }
}

function drawChart() {
  const chart = document.getElementById("chart");
  const [W, H, left, right, top, bottom] = [900, 220, 64, 12, 22, 34];
  const values = [...points.entries()];
  chart.replaceChildren();
  chart.appendChild(svg("text", { x: 4, y: 14, class: "unit y-unit" }, "net ROI (bps)"));
  chart.appendChild(svg("text", { x: W - right, y: H - 4, "text-anchor": "end", class: "unit x-unit" },
    "detected at (UTC)"));
  if (!values.length) {
    chart.appendChild(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, "no opportunity yet"));
    return;
  }
  let x0 = Math.min(...values.map(([, p]) => p.ts)), x1 = Math.max(...values.map(([, p]) => p.ts));
  if (x1 - x0 < 10000) { const mid = (x0 + x1) / 2; x0 = mid - 5000; x1 = mid + 5000; }
  const pad = (x1 - x0) * 0.03;  // keeps the first and last points off the axes
  x0 -= pad; x1 += pad;
  const rois = values.map(([, p]) => p.roi * 1e4);
  let y0 = Math.min(0, ...rois), y1 = Math.max(1, ...rois);
  const yStep = niceStep(y1 - y0, 4);
  y0 = Math.floor(y0 / yStep) * yStep; y1 = Math.ceil(y1 / yStep) * yStep;
  const sx = x => left + (W - left - right) * (x - x0) / (x1 - x0);
  const sy = y => H - bottom - (H - top - bottom) * (y - y0) / (y1 - y0);
  const axes = svg("g", { class: "axes" });
  for (let i = 0; y0 + i * yStep <= y1 + yStep / 2; i++) {
    const y = Number((y0 + i * yStep).toPrecision(12));  // no 0.30000000000000004 on an axis
    axes.appendChild(svg("line", { x1: left, x2: W - right, y1: sy(y), y2: sy(y), class: y === 0 ? "zero" : "grid" }));
    axes.appendChild(svg("text", { x: left - 6, y: sy(y) + 4, "text-anchor": "end", class: "y-tick" },
      String(y)));
  }
  const xStep = TIME_STEPS_MS.find(step => (x1 - x0) / step <= 6) || 86400000 * Math.ceil((x1 - x0) / 6 / 86400000);
  for (let x = Math.ceil(x0 / xStep) * xStep; x <= x1; x += xStep) {
    axes.appendChild(svg("line", { x1: sx(x), x2: sx(x), y1: H - bottom, y2: H - bottom + 4, class: "tick" }));
    const anchor = sx(x) > W - right - 30 ? "end" : sx(x) < left + 30 ? "start" : "middle";  // stay inside
    axes.appendChild(svg("text", { x: sx(x), y: H - bottom + 16, "text-anchor": anchor, class: "x-tick" },
      new Date(x).toISOString().slice(11, xStep < 60000 ? 19 : 16)));
  }
  axes.appendChild(svg("line", { x1: left, x2: W - right, y1: H - bottom, y2: H - bottom, class: "axis" }));
  axes.appendChild(svg("line", { x1: left, x2: left, y1: top, y2: H - bottom, class: "axis" }));
  chart.appendChild(axes);
  const dots = svg("g", { class: "points" });
  for (const [id, p] of values) {
    const dot = svg("circle", { cx: sx(p.ts), cy: sy(p.roi * 1e4), r: 2.5, "data-id": id });
    dot.appendChild(svg("title", {}, `${p.cycle}\n${bps(p.roi)} at ${clock(p.ts)} UTC`));
    dots.appendChild(dot);
  }
  chart.appendChild(dots);
}

// --- /api/status: feed lag, book freshness, symbol sets ------------------------------------------------

function renderBook(book) {
  const tile = tileFor("books", `book-${book.exchange}-${book.symbol}`, "tile book");
  const head = [element("strong", `${book.exchange} ${book.symbol}`), " "];
  if (book.detail) {
    tile.className = "tile book missing";
    tile.dataset.state = "missing";
    tile.replaceChildren(...head, element("small", book.detail));
    return;
  }
  tile.className = `tile book ${book.stale ? "stale" : "up"}${book.replayed ? " replayed" : ""}`;
  tile.dataset.state = book.stale ? "stale" : "fresh";
  tile.dataset.replayed = book.replayed;
  const latency = book.replayed
    ? element("small", `replayed data: venue time ${span(book.venue_to_ingest_ms)} behind receipt, no latency`, "latency")
    : element("small", `venue → ingest ${book.venue_to_ingest_ms} ms`, "latency");
  const side = (name, best, levels, cumulative) => best
    ? `${name} ${exact(best[0])} × ${exact(best[1])} (Σ${levels} ${exact(cumulative)})` : `${name} –`;
  tile.replaceChildren(...head, element("span", book.source, "status"),
    element("small", `last depth change ${book.replayed ? dateTime(book.ts_event) : clock(book.ts_event)} (venue, UTC)`,
      "depth-ts"),
    element("small", `received ${span(book.age_ms)} ago${book.stale ? " · stale" : ""}`, "age"),
    latency,
    element("small", `${side("bid", book.best_bid, book.bid_levels, book.bid_cumulative)} · ` +
      side("ask", book.best_ask, book.ask_levels, book.ask_cumulative), "depth"));
}

function symbolList(symbols) { return symbols.length ? symbols.join(", ") : "(none)"; }

// One tile per venue: what its producer holds (the user's set ∪ the detector's), and both sets.
function renderVenue(venue, sets) {
  const tile = tileFor("symbols", `venue-${venue}`, "tile venue");
  tile.dataset.holds = sets.holds.length;
  const user = element("small", `user${sets.user_is_default ? " (configured default)" : ""} ${sets.user.length}: ` +
    symbolList(sets.user), "user");
  user.dataset.count = sets.user.length;
  const detector = element("small", `detector ${sets.detector.length}: ${symbolList(sets.detector)}`, "detector");
  detector.dataset.count = sets.detector.length;
  tile.replaceChildren(element("strong", venue), " ", element("span", `holds ${sets.holds.length}`, "holds"),
    element("small", symbolList(sets.holds), "held"), user, detector);
}

async function refreshStatus() {
  let status;
  try {
    const response = await fetch("/api/status");
    if (!response.ok) return;  // Redis away (503): the next poll tries again
    status = await response.json();
  } catch (error) { return; /* offline: the badge says so */ }
  for (const feed of status.feeds) feedLag.set(`feed-${feed.exchange}-${feed.channel}`, feed.lag_ms);
  for (const health of feedHealth.values()) renderFeed(health);
  const held = new Set(status.books.map(book => `book-${book.exchange}-${book.symbol}`));
  for (const tile of [...document.getElementById("books").children]) if (!held.has(tile.id)) tile.remove();
  for (const book of status.books) renderBook(book);
  const replayed = status.books.filter(book => book.replayed);
  const badge = document.getElementById("replayed");
  badge.hidden = !replayed.length;
  badge.textContent = replayed.length ? `replayed data: ${replayed.length} of ${status.books.length} books carry ` +
    `venue times ${span(Math.min(...replayed.map(book => book.venue_to_ingest_ms)))} or more in the past` : "";
  for (const [venue, sets] of Object.entries(status.symbols)) renderVenue(venue, sets);
}

// --- connection ---------------------------------------------------------------------------------------------

async function connect() {
  // load recent opportunities (chart, paper join), then follow from exactly the newest loaded entry
  let since = "";
  try {
    const recent = await (await fetch("/api/opportunities?limit=100")).json();
    for (const op of recent.reverse()) addOpportunity(op);
    if (recent.length) since = "?since=" + encodeURIComponent(recent[recent.length - 1].stream_id);
  } catch (error) { /* the event stream below will report offline */ }
  const source = new EventSource("/events" + since);
  const badge = document.getElementById("connection");
  source.onopen = () => { badge.textContent = "live"; badge.className = "badge online"; };
  source.onerror = () => { badge.textContent = "offline, reconnecting"; badge.className = "badge offline"; };
  source.addEventListener("opportunity", e => addOpportunity(JSON.parse(e.data)));
  source.addEventListener("episode", e => applyEpisode(JSON.parse(e.data)));
  source.addEventListener("health", e => renderFeed(JSON.parse(e.data)));
  source.addEventListener("fill", e => addFill(JSON.parse(e.data)));
}

drawChart();
connect();
refreshStatus();
setInterval(refreshStatus, 2000);
setInterval(tickDurations, 1000);
