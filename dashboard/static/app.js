// Live view of triarb: feed tiles, opportunity table and an ROI chart, fed by server-sent events, and each
// venue's symbol sets (user ∪ detector), polled from /api/status.
// EventSource reconnects by itself and sends Last-Event-ID, the stream id of the last opportunity seen,
// so the server replays exactly what was missed; rows are keyed by opportunity id, never shown twice.
"use strict";

const seen = new Map();          // opportunity id -> row
const points = [];               // [ts_detect, roi_net] for the chart
const MAX_ROWS = 200;

function bps(x) { return (x * 1e4).toFixed(1) + " bps"; }

// Stream data is shown as text, never parsed as HTML: a forged entry must not run script in this page.
function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function renderFeed(health) {
  const id = `feed-${health.exchange}-${health.channel}`;
  let tile = document.getElementById(id);
  if (!tile) {
    tile = document.createElement("div");
    tile.id = id;
    document.getElementById("feeds").appendChild(tile);
  }
  tile.className = `tile ${health.status}`;
  tile.dataset.status = health.status;
  tile.replaceChildren(
    element("strong", `${health.exchange} / ${health.channel}`), " ", element("span", health.status, "status"),
    element("small", `${health.symbol_count} symbols` + (health.symbols_digest ? ` · ${health.symbols_digest}` : "")),
    element("small", `reconnects ${health.reconnects} · gaps ${health.gaps} · checksum fails ${health.checksum_failures}`),
    element("small", health.detail || ""));
}

function addOpportunity(op, streamId) {
  if (seen.has(op.id)) return;
  const row = document.createElement("tr");
  row.dataset.id = op.id;
  row.dataset.streamId = streamId || "";
  row.dataset.sim = op.sim_id || "";
  const fillCell = element("td", "-");
  fillCell.dataset.asset = op.start_asset;
  const age = element("td", undefined, "age");
  age.dataset.ts = op.ts_detect;
  row.append(element("td", new Date(op.ts_detect).toISOString().slice(11, 23)), element("td", op.cycle_id),
    element("td", bps(op.roi_net), op.roi_net >= 0 ? "pos" : "neg"), element("td", bps(op.roi_gross)),
    element("td", `${op.max_notional_at_min_roi.toPrecision(6)} ${op.start_asset}`), age, fillCell);
  if (op.sim_id) fillCells.set(op.sim_id, fillCell);
  const trace = op.fill || (op.sim_id && pendingFills.get(op.sim_id));
  if (trace) showFill(fillCell, trace);
  const body = document.querySelector("#opportunities tbody");
  body.insertBefore(row, body.firstChild);
  seen.set(op.id, row);
  while (body.children.length > MAX_ROWS) {
    fillCells.delete(body.lastChild.dataset.sim);
    body.removeChild(body.lastChild);
  }
  points.push([op.ts_detect, op.roi_net]);
  if (points.length > 500) points.shift();
  drawChart();
}

// Paper fills arrive on their own (strategy.fill), joined to their opportunity's row by sim_id; one that
// arrives before its row waits in pendingFills.
const fillCells = new Map();      // sim_id -> the row's fill cell
const pendingFills = new Map();   // sim_id -> trace not yet matched to a row

function showFill(cell, trace) {
  cell.textContent = `${trace.status} ${trace.realized_pnl.toFixed(4)} ${cell.dataset.asset}`;
  cell.title = trace.detail || "";
}

function addFill(fill) {
  const cell = fillCells.get(fill.trace.sim_id);
  if (cell) showFill(cell, fill.trace);
  else {
    pendingFills.set(fill.trace.sim_id, fill.trace);
    if (pendingFills.size > 1000) pendingFills.delete(pendingFills.keys().next().value);
  }
}

function drawChart() {
  const canvas = document.getElementById("chart");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (points.length < 1) return;
  const xs = points.map(p => p[0]), ys = points.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs) || x0 + 1;
  const y0 = Math.min(0, ...ys), y1 = Math.max(...ys, 1e-4);
  const sx = x => 10 + (canvas.width - 20) * (x - x0) / Math.max(1, x1 - x0);
  const sy = y => canvas.height - 10 - (canvas.height - 20) * (y - y0) / (y1 - y0);
  ctx.strokeStyle = "#cbd5e0"; ctx.beginPath(); ctx.moveTo(10, sy(0)); ctx.lineTo(canvas.width - 10, sy(0)); ctx.stroke();
  ctx.fillStyle = "#2b6cb0";
  for (const [x, y] of points) { ctx.beginPath(); ctx.arc(sx(x), sy(y), 2.5, 0, 6.3); ctx.fill(); }
}

function tickAges() {
  const now = Date.now();
  for (const cell of document.querySelectorAll("td.age")) {
    cell.textContent = ((now - Number(cell.dataset.ts)) / 1000).toFixed(0) + " s";
  }
}

function symbolList(symbols) { return symbols.length ? symbols.join(", ") : "(none)"; }

// One tile per venue: what its producer holds (the user's set ∪ the detector's), and both sets.
function renderVenue(venue, sets) {
  const id = `venue-${venue}`;
  let tile = document.getElementById(id);
  if (!tile) {
    tile = element("div", undefined, "tile venue");
    tile.id = id;
    document.getElementById("symbols").appendChild(tile);
  }
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
  try {
    const status = await (await fetch("/api/status")).json();
    for (const [venue, sets] of Object.entries(status.symbols)) renderVenue(venue, sets);
  } catch (error) { /* offline: the badge says so */ }
}

async function connect() {
  // load what is already there, then follow from exactly the newest loaded entry
  let since = "";
  try {
    const recent = await (await fetch("/api/opportunities?limit=100")).json();
    for (const op of recent.reverse()) addOpportunity(op, op.stream_id);
    if (recent.length) since = "?since=" + encodeURIComponent(recent[recent.length - 1].stream_id);
  } catch (error) { /* the event stream below will report offline */ }
  const source = new EventSource("/events" + since);
  const badge = document.getElementById("connection");
  source.onopen = () => { badge.textContent = "live"; badge.className = "badge online"; };
  source.onerror = () => { badge.textContent = "offline, reconnecting"; badge.className = "badge offline"; };
  source.addEventListener("opportunity", e => addOpportunity(JSON.parse(e.data), e.lastEventId));
  source.addEventListener("health", e => renderFeed(JSON.parse(e.data)));
  source.addEventListener("fill", e => addFill(JSON.parse(e.data)));
}

connect();
refreshStatus();
setInterval(refreshStatus, 5000);
setInterval(tickAges, 1000);
