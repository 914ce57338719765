// perpdex dashboard: listens to /api/stream (server-sent events, one snapshot per new block)
// and re-renders every table from the snapshot. Text goes in with textContent only.
"use strict";

const usd = (v) => v === null || v === undefined ? "-" : v.toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
const num = (v, d = 4) => v === null || v === undefined ? "-" : v.toLocaleString("en-US", {maximumFractionDigits: d});
const pct = (v, d = 4) => v === null || v === undefined ? "-" : (v * 100).toFixed(d) + "%";
const signed = (v, d = 4) => v === null || v === undefined ? "-" : (v > 0 ? "+" : "") + num(v, d);
const short = (a) => a ? a.slice(0, 8) + "…" + a.slice(-4) : "-";

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function fill(tableId, rows, makeRow, empty) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren();
  for (const row of rows) body.appendChild(makeRow(row));
  if (!rows.length && empty) {
    const tr = document.createElement("tr");
    const td = cell(empty, "text muted");
    td.colSpan = document.querySelectorAll(`#${tableId} thead th`).length;
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

function tr(cells, cls, data) {
  const row = document.createElement("tr");
  if (cls) row.className = cls;
  for (const [k, v] of Object.entries(data || {})) row.dataset[k] = v;
  row.append(...cells);
  return row;
}

function requestSize(r) {
  if (r.kind === "close") return "all";
  const value = r.kind === "trade" ? r.size_delta / 1e18 : r.amount;
  if (!value) return "-";  // a finished request whose body slot was reused
  return r.kind === "trade" ? signed(value, 6) : value.toLocaleString("en-US");
}

function requestCells(r) {
  return [cell(String(r.id)), cell(r.owner, "text mono"), cell(String(r.sub)), cell(r.kind, "text"),
    cell(r.market || "-", "text"), cell(requestSize(r)), cell(String(r.settle_after)), cell(String(r.deadline))];
}

function positionsText(positions) {
  return positions.map((p) => `${p.market} ${signed(p.size)} (liq. ${p.liquidation_price_usd === null ? "-" : usd(p.liquidation_price_usd)}, ${pct(p.distance_to_liquidation, 2)})`).join("; ");
}

function drawHistory(points) {
  const svg = document.getElementById("history");
  svg.replaceChildren();
  document.getElementById("history-range").textContent = points.length
    ? `blocks ${points[0].block} to ${points[points.length - 1].block}` : "no block yet";
  if (points.length < 2) return;
  const first = points[0].block, span = Math.max(points[points.length - 1].block - first, 1);
  for (const [key, cls] of [["pool_value_usd", "pool"], ["insurance_fund_usd", "insurance"]]) {
    const values = points.map((p) => p[key]);
    const lo = Math.min(...values), hi = Math.max(...values), range = hi - lo || 1;  // each line on its own scale
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("class", cls);
    line.setAttribute("points", points.map((p) =>
      `${((p.block - first) / span * 800).toFixed(1)},${(190 - (p[key] - lo) / range * 180).toFixed(1)}`).join(" "));
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = `${key}: ${usd(lo)} to ${usd(hi)}`;
    line.appendChild(title);
    svg.appendChild(line);
  }
}

function render(s) {
  const error = document.getElementById("error");
  error.hidden = !s.error;
  error.textContent = s.error ? `reading the chain failed (figures below are from the last block read): ${s.error}` : "";
  if (!s.block) return;
  document.body.dataset.block = s.block.number;
  document.getElementById("block").textContent =
    `block ${s.block.number} at ${new Date(s.block.timestamp * 1000).toISOString().replace(".000Z", "Z")}`;

  fill("markets", s.markets, (m) => tr([
    cell(m.market, "text"), cell(usd(m.price_usd)), cell(signed(m.skew)), cell(num(m.oi_long)), cell(num(m.oi_short)),
    cell(pct(m.funding.rate_per_day, 6)), ...["1h", "8h", "24h"].map((h) => cell(pct(m.funding.predicted_rate_per_day[h], 6))),
  ], "", {market: m.market}));

  fill("pool", [s.pool], (p) => tr([cell(usd(p.pool_value_usd)), cell(usd(p.pool_cash_usd)), cell(num(p.lp_shares, 2)),
    cell(usd(p.insurance_fund_usd))]));
  drawHistory(s.history || []);

  fill("accounts", s.accounts, (a) => tr([
    cell(a.owner, "text mono"), cell(String(a.sub)), cell(usd(a.equity_usd)), cell(usd(a.maintenance_margin_usd)),
    cell(a.margin_ratio === null ? "-" : a.margin_ratio.toFixed(3) + (a.liquidatable ? " LIQUIDATABLE" : "")),
    cell(positionsText(a.positions), "text"),
  ], a.liquidatable ? "liquidatable" : "", {owner: a.owner.toLowerCase(), sub: a.sub}), "no account has a position");

  document.getElementById("pending-count").textContent = s.requests.pending.length;
  fill("pending", s.requests.pending, (r) => tr(requestCells(r), "pending", {id: r.id}), "no pending request");
  fill("recent-requests", s.requests.recent, (r) => tr([...requestCells(r), cell(r.status, "text")],
    r.status === "pending" ? "pending" : "", {id: r.id}), "no request yet");

  fill("liquidations", s.liquidations, (l) => tr([
    cell(String(l.block)), cell(l.owner, "text mono"), cell(String(l.sub)), cell(short(l.keeper), "text mono"),
    cell(pct(l.share_closed, 2)), cell(usd(l.notional_closed_usd)), cell(usd(l.equity_before_usd)),
    cell(usd(l.to_keeper_usd)), cell(usd(l.to_insurance_usd)), cell(usd(l.bad_debt_usd)),
  ], "", {owner: l.owner.toLowerCase(), sub: l.sub, block: l.block}), "no liquidation yet");

  document.getElementById("adl-note").textContent = s.adl.note;
  document.getElementById("adl").replaceChildren(...s.adl.events.map((e) => {
    const li = document.createElement("li");
    li.textContent = e.text;
    return li;
  }));

  fill("keepers", s.keepers, (k) => tr([
    cell(k.keeper, "text"), cell(String(k.actions)), cell(k.last_block === null ? "never" : String(k.last_block)),
    cell(k.blocks_ago === null ? "-" : String(k.blocks_ago)), cell(k.last_sender ? short(k.last_sender) : "-", "text mono"),
    cell(k.waiting, "text"),
  ]));
}

function connect() {
  const status = document.getElementById("connection");
  const source = new EventSource("/api/stream");
  source.onopen = () => { status.textContent = "live"; };
  source.onmessage = (event) => { render(JSON.parse(event.data)); };
  // EventSource reconnects by itself after an error; say so meanwhile
  source.onerror = () => { status.textContent = "disconnected: retrying"; };
}

connect();
