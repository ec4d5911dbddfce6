// acdc view: the attribution-graph page. Plain JS, no build step, no network beyond this server.
// Reads circuit-tracer's graph JSON (GET /api/graph?file=...): tokens along x, layers along y
// (embeddings at the bottom, logits at the top), node size by influence, edge width by |weight|.
// Pins, hidden nodes and supernodes live in the page's qParams (circuit-tracer's pinnedIds and
// supernodes, plus hiddenIds); "save" writes them into the file, "export" downloads the JSON.
// Safety as in app.js: HTML only through setHTML(elem, html`...`), which escapes every value.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token");
const FILE = new URLSearchParams(location.search).get("file") || "";
const TRANSCODERS = new URLSearchParams(location.search).get("transcoders");  // else the graph's own
const withTc = (o) => (TRANSCODERS ? { ...o, transcoders: TRANSCODERS } : o);
const SECRET = (document.querySelector('meta[name="acdc-token"]') || {}).content || TOKEN || "";
const $ = (id) => document.getElementById(id);
const SVGNS = "http://www.w3.org/2000/svg";
const FEATURE_TYPES = ["cross layer transcoder", "transcoder", "sae", "feature"];
let GRAPH = null;       // the graph JSON as read
let NODES = new Map();  // node_id -> node
let Q = { pinnedIds: [], hiddenIds: [], supernodes: [] };  // what the page keeps
let SELECTED = [];      // node ids, in the order they were clicked
let POS = new Map();    // node_id -> {x, y, r}

// ----- safe HTML and talking to the server ---------------------------------------------------
// SafeHTML, esc, html and setHTML come from safe.js (loaded first)
function url(path, params) {
  const q = new URLSearchParams(params || {});
  if (TOKEN) q.set("token", TOKEN);
  return path + "?" + q.toString();
}
let busy = 0;
async function call(path, params, body) {
  busy += 1; $("busy").hidden = false;
  try {
    const headers = { "X-ACDC-Token": SECRET };
    const opts = body === undefined ? { headers } : { method: "POST",
      headers: { ...headers, "Content-Type": "application/json" }, body: JSON.stringify(body) };
    const r = await fetch(url(path, params), opts);
    let data;
    try { data = await r.json(); } catch (e) { data = { ok: false, message: `${r.status} ${r.statusText}` }; }
    if (!r.ok || data.ok === false) { showError(data.message || `${r.status}`); return { failed: true, status: r.status, message: data.message }; }
    $("error").hidden = true;
    return data;
  } catch (e) {
    showError("the server cannot be reached: " + e.message);
    return { failed: true, status: 0, message: e.message };
  } finally { busy -= 1; $("busy").hidden = busy <= 0; }
}
function showError(msg) { const e = $("error"); e.textContent = msg; e.hidden = false; }
const fmt = (v) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : String(v));

// ----- layout --------------------------------------------------------------------------------
const isFeature = (n) => FEATURE_TYPES.includes(n.feature_type);
function kind(n) {
  if (n.feature_type === "embedding" || String(n.layer) === "E") return "embedding";
  if (n.feature_type === "logit") return "logit";
  if (isFeature(n)) return "feature";
  return "error";
}
function nLayers(nodes) {
  let hi = -1, logit = null;
  for (const n of nodes) {
    const k = kind(n);
    if (k === "logit") logit = Math.max(logit || 0, Number(n.layer));
    else if (k !== "embedding") hi = Math.max(hi, Number(n.layer));
  }
  return logit !== null ? Math.max(logit - 1, hi + 1) : hi + 1;
}
function rowOf(n, L) {  // 0: embeddings, l + 1: layer l, L + 1: logits
  const k = kind(n);
  return k === "embedding" ? 0 : k === "logit" ? L + 1 : Number(n.layer) + 1;
}
function importance(n) {  // circuit-tracer's influence is a cumulative share: small = important
  if (kind(n) === "logit") return Math.max(0, Math.min(1, n.token_prob || 0));
  if (typeof n.influence === "number" && n.influence >= 0 && n.influence <= 1) return 1 - n.influence;
  return 0.5;
}
function layout(nodes, tokens) {
  const L = nLayers(nodes), rows = L + 2, T = Math.max(tokens.length, 1);
  const left = 64, bottom = 70, top = 16;
  const colW = Math.max(70, Math.min(160, 1100 / T)), rowH = Math.max(44, Math.min(90, 560 / rows));
  const cells = new Map();
  for (const n of nodes) {
    const key = `${rowOf(n, L)}:${n.ctx_idx}`;
    if (!cells.has(key)) cells.set(key, []);
    cells.get(key).push(n);
  }
  POS = new Map();
  for (const [key, list] of cells) {  // a crowded cell wraps into lines, none overlapping
    const [row, ctx] = key.split(":").map(Number);
    list.sort((a, b) => importance(b) - importance(a) || String(a.node_id).localeCompare(String(b.node_id)));
    const perLine = Math.max(1, Math.min(list.length, Math.floor((colW * 0.9) / 9)));
    const lines = Math.ceil(list.length / perLine);
    const step = Math.min(22, (colW * 0.9) / perLine), lineH = Math.min(22, (rowH * 0.8) / lines);
    list.forEach((n, i) => {
      const line = Math.floor(i / perLine), j = i % perLine;
      const inLine = Math.min(perLine, list.length - line * perLine);
      const x = left + (ctx + 0.5) * colW + (j - (inLine - 1) / 2) * step;
      const y = top + (rows - 1 - row + 0.5) * rowH + (line - (lines - 1) / 2) * lineH;
      const rmax = Math.min(step, lineH) / 2 - 0.5;
      POS.set(n.node_id, { x, y, r: Math.max(1.5, Math.min(rmax, 3 + 8 * Math.sqrt(importance(n)))) });
    });
  }
  return { L, rows, T, left, top, colW, rowH, width: left + T * colW + 10, height: top + rows * rowH + bottom };
}

// ----- drawing -------------------------------------------------------------------------------
function el(name, attrs, parent) {
  const e = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}
function text(parent, x, y, s, attrs) { const t = el("text", { x, y, ...(attrs || {}) }, parent); t.textContent = s; return t; }
function visibleNodes() { const hidden = new Set(Q.hiddenIds); return GRAPH.nodes.filter((n) => !hidden.has(n.node_id)); }

function draw() {
  const svg = $("g-map");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const tokens = GRAPH.metadata.prompt_tokens;
  const nodes = visibleNodes();
  const g = layout(nodes, tokens);
  svg.setAttribute("viewBox", `0 0 ${g.width} ${g.height}`);
  svg.style.maxWidth = `${g.width * 1.3}px`;
  for (let row = 0; row < g.rows; row++) {
    const y = g.top + (g.rows - 1 - row + 0.5) * g.rowH;
    el("line", { class: "grow", x1: g.left, x2: g.width - 10, y1: y, y2: y }, svg);
    const label = row === 0 ? "emb" : row === g.rows - 1 ? "logits" : `L${row - 1}`;
    text(svg, g.left - 8, y + 3, label, { "text-anchor": "end", class: "grow-label" });
  }
  tokens.forEach((t, i) => {
    const x = g.left + (i + 0.5) * g.colW, y = g.top + g.rows * g.rowH + 8;
    text(svg, x, y, t, { transform: `rotate(35 ${x} ${y})`, class: "gtoken", "data-ctx": i });
  });
  // supernodes: a box around their visible members
  Q.supernodes.forEach(([name, ...ids]) => {
    const ps = ids.map((id) => POS.get(id)).filter(Boolean);
    if (!ps.length) return;
    const x0 = Math.min(...ps.map((p) => p.x - p.r)) - 4, x1 = Math.max(...ps.map((p) => p.x + p.r)) + 4;
    const y0 = Math.min(...ps.map((p) => p.y - p.r)) - 4, y1 = Math.max(...ps.map((p) => p.y + p.r)) + 4;
    el("rect", { class: "gsuper", x: x0, y: y0, width: x1 - x0, height: y1 - y0, rx: 5, "data-name": name }, svg);
    text(svg, x0, y0 - 3, name, { class: "gsuper-name" });
  });
  const links = GRAPH.links.filter((l) => POS.has(l.source) && POS.has(l.target));
  const wmax = Math.max(1e-30, ...links.map((l) => Math.abs(l.weight)));
  for (const l of links) {
    const a = POS.get(l.source), b = POS.get(l.target), w = Math.abs(l.weight) / wmax;
    el("line", { class: `glink ${l.weight >= 0 ? "pos" : "neg"}`, x1: a.x, y1: a.y, x2: b.x, y2: b.y,
                 "stroke-width": (0.3 + 4 * w).toFixed(2), "stroke-opacity": (0.15 + 0.7 * w).toFixed(2),
                 "data-source": l.source, "data-target": l.target }, svg);
  }
  const pinned = new Set(Q.pinnedIds), selected = new Set(SELECTED);
  for (const n of nodes) {
    const p = POS.get(n.node_id), k = kind(n);
    const cls = `gnode ${k}${pinned.has(n.node_id) ? " pinned" : ""}${selected.has(n.node_id) ? " selected" : ""}`;
    const common = { class: cls, "data-node": n.node_id, "data-ctx": n.ctx_idx, "data-layer": n.layer };
    let e;
    if (k === "feature") e = el("circle", { ...common, cx: p.x, cy: p.y, r: p.r }, svg);
    else if (k === "error") e = el("rect", { ...common, x: p.x - p.r, y: p.y - p.r, width: 2 * p.r, height: 2 * p.r }, svg);
    else if (k === "embedding") e = el("polygon", { ...common, points: `${p.x},${p.y - p.r} ${p.x + p.r},${p.y + p.r} ${p.x - p.r},${p.y + p.r}` }, svg);
    else e = el("polygon", { ...common, points: `${p.x},${p.y - p.r} ${p.x + p.r},${p.y} ${p.x},${p.y + p.r} ${p.x - p.r},${p.y}` }, svg);
    if (k === "logit") text(svg, p.x, p.y - p.r - 4, logitToken(n), { "text-anchor": "middle", class: "glabel" });
    e.addEventListener("mouseenter", () => hover(n));
    e.addEventListener("mouseleave", () => unhover());
    e.addEventListener("click", (ev) => clickNode(n, ev.shiftKey || ev.ctrlKey || ev.metaKey));
  }
  $("g-counts").textContent = `${nodes.length} nodes, ${links.length} edges shown` +
    (Q.hiddenIds.length ? ` (${Q.hiddenIds.length} hidden)` : "");
  $("g-nhidden").textContent = Q.hiddenIds.length;
  drawLists();
}

function logitToken(n) {  // circuit-tracer's clerp: Output "tok" (p=0.123)
  const m = /^Output "(.*)" \(p=/.exec(n.clerp || "");
  return m ? m[1] : String(n.feature);
}
function describe(n) {
  const tok = GRAPH.metadata.prompt_tokens[n.ctx_idx];
  const parts = [n.node_id, n.feature_type, `layer ${n.layer}`, `token ${JSON.stringify(tok)} (${n.ctx_idx})`];
  if (n.activation !== undefined && n.activation !== null) parts.push(`activation ${fmt(n.activation)}`);
  if (n.influence !== undefined && n.influence !== null) parts.push(`influence ${fmt(n.influence)}`);
  if (kind(n) === "logit") parts.push(`p ${fmt(n.token_prob)}`);
  if (n.clerp) parts.push(n.clerp);
  return parts.join(" · ");
}
function hover(n) {
  $("g-hover").textContent = describe(n);
  for (const l of document.querySelectorAll("#g-map .glink")) {
    if (l.dataset.source === n.node_id || l.dataset.target === n.node_id) l.classList.add("hl");
  }
}
function unhover() { for (const l of document.querySelectorAll("#g-map .glink.hl")) l.classList.remove("hl"); }

function drawLists() {
  setHTML($("g-pinned"), html`${Q.pinnedIds.map((id) => html`<li data-node="${id}">${describe(NODES.get(id))}</li>`)}`);
  for (const li of $("g-pinned").querySelectorAll("li")) li.addEventListener("click", () => clickNode(NODES.get(li.dataset.node), false));
  setHTML($("g-supernodes"), html`${Q.supernodes.map(([name, ...ids], i) =>
    html`<li data-name="${name}"><b>${name}</b> <span class="dim">${ids.join(", ")}</span><button data-i="${i}">ungroup</button></li>`)}`);
  for (const b of $("g-supernodes").querySelectorAll("button")) {
    b.addEventListener("click", () => { Q.supernodes.splice(Number(b.dataset.i), 1); draw(); });
  }
}

// ----- a node's card -------------------------------------------------------------------------
async function clickNode(n, add) {
  if (add) SELECTED = SELECTED.includes(n.node_id) ? SELECTED.filter((id) => id !== n.node_id) : [...SELECTED, n.node_id];
  else SELECTED = [n.node_id];
  Q.clickedId = n.node_id;
  draw();
  $("g-card-title").textContent = n.node_id;
  setHTML($("g-card-body"), html`<table>${fieldRows(n)}</table><div class="dim">loading the card…</div>`);
  const out = await call("api/graph/feature", withTc({ file: FILE, node: n.node_id }));
  if (Q.clickedId !== n.node_id) return;
  if (out.failed) { setHTML($("g-card-body"), html`<table>${fieldRows(n)}</table><div class="dim">${out.message || ""}</div>`); return; }
  setHTML($("g-card-body"), html`<table>${fieldRows(out.node)}</table>${cardHTML(out.card)}<div class="dim">${out.card_message || ""}</div>`);
}
function fieldRows(n) {
  const keys = ["feature_type", "layer", "ctx_idx", "feature", "activation", "influence", "token_prob", "is_target_logit", "clerp"];
  const tok = GRAPH.metadata.prompt_tokens[n.ctx_idx];
  const idx = isFeature(n) ? [html`<tr><td>feature index</td><td>${String(n.node_id).split("_")[1]}</td></tr>`] : [];
  return [html`<tr><td>token</td><td>${JSON.stringify(tok)}</td></tr>`, ...idx,
    ...keys.filter((k) => n[k] !== undefined && n[k] !== null && n[k] !== "")
      .map((k) => html`<tr><td>${k}</td><td>${fmt(n[k])}</td></tr>`)];
}
function tokenList(items) {
  return html`${(items || []).map((t) => html`<span class="tok" data-token="${t[0]}">${t[0]} <span class="dim">${fmt(t[1])}</span></span>`)}`;
}
function cardHTML(card) {
  if (!card) return html``;
  const parts = [html`<div class="card-kind"><b>feature card</b> <span class="dim">${card.kind || ""}</span></div>`];
  if (card.density !== undefined) {
    const of = html`<span class="dim">of ${card.n_tokens || "?"} tokens; max ${fmt(card.max_activation || 0)}</span>`;
    parts.push(html`<div>density <b class="density" data-value="${card.density}">${fmt(card.density)}</b> ${of}</div>`);
  }
  const promotes = card.promoted || card.promotes, suppresses = card.suppressed || card.suppresses;
  if (promotes) parts.push(html`<div class="promotes">promotes ${tokenList(promotes)}</div>`);
  if (suppresses) parts.push(html`<div class="suppresses">suppresses ${tokenList(suppresses)}</div>`);
  const contexts = card.contexts || [];
  if (contexts.length) parts.push(html`<div><b>top contexts</b></div>`);
  for (const c of contexts.slice(0, 10)) {
    if (Array.isArray(c.tokens)) {
      parts.push(html`<div class="ctx" data-activation="${c.activation}">${c.tokens.map((t, i) => i === c.marked ? html`<mark>${t}</mark>` : t)} <span class="dim">${fmt(c.activation)}</span></div>`);
    } else parts.push(html`<div class="ctx">${typeof c === "string" ? c : JSON.stringify(c)}</div>`);
  }
  return html`${parts}`;
}

// ----- pins, hidden nodes, supernodes, export ------------------------------------------------
function pin() {
  const pinned = new Set(Q.pinnedIds);
  const allPinned = SELECTED.every((id) => pinned.has(id));
  for (const id of SELECTED) { if (allPinned) pinned.delete(id); else pinned.add(id); }
  Q.pinnedIds = GRAPH.nodes.map((n) => n.node_id).filter((id) => pinned.has(id));
  draw();
}
function hide() {
  Q.hiddenIds = [...new Set([...Q.hiddenIds, ...SELECTED])];
  SELECTED = [];
  draw();
}
function group() {
  const name = $("g-sn-name").value.trim();
  if (!name) { showError("name the supernode first"); return; }
  if (!SELECTED.length) { showError("select the nodes to group (shift-click)"); return; }
  Q.supernodes = [...Q.supernodes.filter((s) => s[0] !== name), [name, ...SELECTED]];
  $("g-sn-name").value = "";
  $("error").hidden = true;
  draw();
}
function qParams() { return { ...(GRAPH.qParams || {}), ...Q, linkType: (GRAPH.qParams || {}).linkType || "both", clickedId: Q.clickedId || "", sg_pos: (GRAPH.qParams || {}).sg_pos || "" }; }
function exportJSON() {
  const data = { ...GRAPH, qParams: qParams() };
  const blob = new Blob([JSON.stringify(data, null, 1)], { type: "application/json" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `${GRAPH.metadata.slug || "graph"}.json`;
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}
async function save() {
  const out = await call("api/graph/save", null, { file: FILE, qParams: qParams() });
  if (!out.failed) { GRAPH.qParams = out.qParams; $("g-hover").textContent = out.message; }
}

// ----- interventions -------------------------------------------------------------------------
function predTable(before, after) {
  const rows = [];
  for (let i = 0; i < Math.max(before.length, after.length); i++) {
    const b = before[i] || {}, a = after[i] || {};
    rows.push(html`<tr><td>${b.token === undefined ? "" : JSON.stringify(b.token)}</td><td>${b.prob === undefined ? "" : fmt(b.prob)}</td><td>${a.token === undefined ? "" : JSON.stringify(a.token)}</td><td>${a.prob === undefined ? "" : fmt(a.prob)}</td></tr>`);
  }
  return html`<table><tr><th colspan="2">before</th><th colspan="2">after</th></tr>${rows}</table>`;
}
async function intervene() {
  const ids = SELECTED.filter((id) => isFeature(NODES.get(id)));
  if (!ids.length) { showError("select one or more feature nodes (circles) first"); return; }
  const mode = $("g-mode").value, value = Number($("g-value").value || 0);
  const out = await call("api/graph/intervene", null, withTc({ file: FILE, nodes: ids, mode, value }));
  const box = $("g-predictions");
  if (out.failed) { box.textContent = out.message || "the intervention failed"; box.dataset.status = out.status; return; }
  box.dataset.status = 200;
  const moved = (out.logit_changes || []).map((c) => html`<span class="tok" data-token="${c.token}">${JSON.stringify(c.token)} <span class="dim">${c.delta >= 0 ? "+" : ""}${fmt(c.delta)}</span></span>`);
  setHTML(box, html`<div>${mode} ${ids.join(", ")}${mode === "clamp" ? ` to ${value}` : ""}${out.changed ? " · the top prediction changed" : ""}</div>${predTable(out.before || [], out.after || [])}<div class="moved">largest logit changes ${moved}</div>`);
}

// ----- start ---------------------------------------------------------------------------------
async function load() {
  const out = await call("api/graph", { file: FILE });
  if (out.failed) { $("g-title").textContent = "no graph"; return; }
  GRAPH = out.graph;
  NODES = new Map(GRAPH.nodes.map((n) => [n.node_id, n]));
  const q = GRAPH.qParams || {};
  const known = (ids) => (Array.isArray(ids) ? ids.filter((id) => NODES.has(id)) : []);
  Q = { pinnedIds: known(q.pinnedIds), hiddenIds: known(q.hiddenIds),
        supernodes: (q.supernodes || []).filter((s) => Array.isArray(s) && s.length > 1).map(([name, ...ids]) => [name, ...known(ids)]),
        clickedId: q.clickedId || "" };
  $("g-title").textContent = GRAPH.metadata.prompt || out.name;
  document.title = `acdc view: ${GRAPH.metadata.slug || out.name}`;
  draw();
  $("g-map").dataset.ready = "1";
}
$("g-pin").addEventListener("click", pin);
$("g-hide").addEventListener("click", hide);
$("g-unhide").addEventListener("click", () => { Q.hiddenIds = []; draw(); });
$("g-group").addEventListener("click", group);
$("g-export").addEventListener("click", exportJSON);
$("g-save").addEventListener("click", save);
$("g-intervene").addEventListener("click", intervene);
load();
