// acdc view: the page. Plain JS, no build step, no network beyond this server.
// State comes from GET /api/state and the server-sent events of /api/events (every tab and the
// notebook share one session); every action is a POST /api/command, the same verbs as the
// console.
//
// Safety: HTML is only ever written through setHTML(element, html`...`): the html tag escapes
// every interpolated value (model ids, tokens, names, numbers alike) unless it is itself the
// result of html`...`; plain text goes through textContent. Requests carry the session's
// secret (X-ACDC-Token, from the <meta> the server fills in), which every request that changes
// the session needs.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token");
const SECRET = (document.querySelector('meta[name="acdc-token"]') || {}).content || TOKEN || "";
const $ = (id) => document.getElementById(id);
const SVGNS = "http://www.w3.org/2000/svg";
let STATE = null;
let CIRCUIT = { info: null, edges: [] };
let circuitKey = null;
let headMode = "qk";
let busy = 0;
const history = [];
let historyAt = 0;

// ----- talking to the server ---------------------------------------------------------------
function url(path, params) {
  const q = new URLSearchParams(params || {});
  if (TOKEN) q.set("token", TOKEN);
  const s = q.toString();
  return path + (s ? "?" + s : "");
}

async function call(path, params, body) {
  setBusy(+1);
  try {
    const headers = { "X-ACDC-Token": SECRET };
    const opts = body === undefined ? { headers } : {
      method: "POST", headers: { ...headers, "Content-Type": "application/json" }, body: JSON.stringify(body) };
    const r = await fetch(url(path, params), opts);
    let data;
    try { data = await r.json(); } catch (e) { data = { ok: false, message: `${r.status} ${r.statusText}` }; }
    if (!r.ok || data.ok === false) { showError(data.message || `${r.status}`); return null; }
    hideError();
    return data;
  } catch (e) {
    showError("the server cannot be reached: " + e.message);
    return null;
  } finally { setBusy(-1); }
}

let remoteBusy = null;
function setBusy(d) {
  busy += d;
  $("busy").hidden = busy <= 0 && !remoteBusy;
  $("busy-text").textContent = remoteBusy ? `computing: ${remoteBusy}…` : "computing…";
}
function showError(msg) { const e = $("error"); e.textContent = msg; e.hidden = false; }
function hideError() { $("error").hidden = true; }

async function command(text, echo = true) {
  if (echo) log(text, "cmd");
  const out = await call("api/command", null, { text });
  if (out === null) { log($("error").textContent, "err"); return null; }
  if (out.ok === false) { log(out.message, "err"); showError(out.message); return out; }
  log(out.message);
  if (out.view) showView(out);
  if (out.prompt) { $("example").value = out.prompt.example; showPrompt(out.prompt); }
  if (out.state) render(out.state); else await refresh();
  return out;
}

function log(text, cls) {
  const div = document.createElement("div");
  div.textContent = (cls === "cmd" ? "> " : "") + text;
  if (cls) div.className = cls;
  $("console-log").appendChild(div);
  $("console-log").scrollTop = 1e9;
}

async function refresh() {
  const s = await call("api/state");
  if (s) render(s);
}

// ----- rendering the state -----------------------------------------------------------------
const fmt = (x, d = 4) => (x === null || x === undefined ? "–" : Number(x).toPrecision(d));

function render(s) {
  const first = STATE === null;
  STATE = s;
  $("title").textContent = `${s.model} · ${s.task} · ${s.n_examples} examples · ${s.metric}`;
  const m = s.summary;
  $("metric-name").textContent = s.metric;
  $("metric-value").textContent = fmt(m.metric);
  $("metric-delta").textContent = `(${m.delta >= 0 ? "+" : ""}${fmt(m.delta, 3)} last step)`;
  $("prob-value").textContent = fmt(m.prob, 3);
  $("logitdiff-value").textContent = fmt(m.logit_diff);
  $("accuracy-value").textContent = fmt(m.accuracy, 3);
  $("flipped").textContent = m.flipped.length ? `${m.flipped.length}: ${m.flipped.slice(0, 12).join(", ")}` : "none";
  $("flipped-step").textContent = m.flipped_step.length ? `(${m.flipped_step.length} at the last step)` : "";
  $("timing").textContent = `evaluated in ${fmt(m.ms, 3)} ms (server)`;
  drawExamples(m.per_example);
  const ol = $("interventions");
  ol.replaceChildren();
  s.steps.forEach((t) => { const li = document.createElement("li"); li.textContent = t; ol.appendChild(li); });
  if (!s.steps.length) setHTML(ol, html`<li class='dim'>none: click a head or an MLP</li>`);
  $("compare-card").hidden = !s.compare;
  if (s.compare) {
    const c = s.compare, cm = c.summary;
    $("compare-model").textContent = c.model;
    $("compare-metric").textContent = `${s.metric} ${fmt(cm.metric)} · answer probability ${fmt(cm.prob, 3)} · accuracy ${fmt(cm.accuracy, 3)}`;
    $("compare-circuit").textContent = c.circuit ? `circuit: ${c.circuit.n_edges} edges (${c.circuit.source})` : "";
  }
  const key = s.circuit ? JSON.stringify(s.circuit) : null;
  if (first || key !== circuitKey) { circuitKey = key; loadCircuit(); } else drawMap();
  if ($("mode-ov").classList.contains("active") && $("heads-view").dataset.node) showHead(true);
}

function drawExamples(values) {
  const w = 280, h = 40, top = Math.max(1e-9, ...values.map(Math.abs));
  const bw = w / values.length;
  const bars = values.map((v, i) => {
    const bh = Math.abs(v) / top * (h / 2 - 1);
    const y = v >= 0 ? h / 2 - bh : h / 2;
    return html`<rect x="${i * bw}" y="${y}" width="${Math.max(bw - 1, 1)}" height="${bh}" fill="${v >= 0 ? "#2f6fb3" : "#c0392b"}"><title>example ${i}: ${fmt(v)}</title></rect>`;
  });
  setHTML($("examples"), html`<svg width="${w}" height="${h}"><line x1="0" x2="${w}" y1="${h / 2}" y2="${h / 2}" stroke="#999"/>${bars}</svg>`);
}

async function loadCircuit() {
  const c = await call("api/circuit");
  if (c) CIRCUIT = c;
  const info = CIRCUIT.info;
  $("circuit-bar").hidden = !info;
  if (info) {
    const sl = $("edge-slider");
    sl.max = Math.min(info.n_edges_total, 2000);
    sl.disabled = !info.has_scores;
    if (document.activeElement !== sl) sl.value = info.n_edges;
    $("edge-count").textContent = `${info.n_edges} of ${info.n_edges_total} edges`;
    $("faithfulness").textContent = info.faithfulness ? fmt(info.faithfulness.normalized, 3) : "–";
    $("circuit-source").textContent = info.source + (info.note ? ` (${info.note})` : "");
  }
  drawMap();
}

// ----- the architecture map ------------------------------------------------------------------
function layout(g) {
  const H = g.n_heads, L = g.n_layers;
  const cell = Math.max(8, Math.min(22, 360 / H));
  const colW = Math.max(cell + 14, 34);
  const top = 20, headsH = H * (cell + 2);
  const spine = top + headsH + 26;
  const pos = {};
  pos["input"] = { x: 30, y: spine, w: 34, h: 18 };
  for (let l = 0; l < L; l++) {
    const x = 80 + l * colW + colW / 2;
    for (let h = 0; h < H; h++) pos[`a${l}.${h}`] = { x, y: spine - 22 - (h + 0.5) * (cell + 2), w: cell, h: cell };
    if (!g.attn_only) pos[`m${l}`] = { x: x + (g.parallel ? 0 : 4), y: spine + 30, w: cell * 1.3, h: cell };
  }
  const width = 80 + L * colW + 70;
  pos["logits"] = { x: width - 36, y: spine, w: 44, h: 18 };
  return { pos, width, height: spine + 30 + cell + 20, spine, colW };
}

function el(tag, attrs, parent) {
  const e = document.createElementNS(SVGNS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}

let mapKey = null;

function drawMap() {
  if (!STATE) return;
  const g = STATE.graph, svg = $("map");
  // redraw only when something drawn changed (a node being clicked is never replaced under it)
  const key = JSON.stringify([g, STATE.targets, CIRCUIT.info, (CIRCUIT.edges || []).length, $("heads-view").dataset.node]);
  if (key === mapKey) return;
  mapKey = key;
  const { pos, width, height, spine } = layout(g);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.style.maxHeight = Math.max(260, Math.min(height * 1.6, 640)) + "px";
  svg.replaceChildren();
  el("line", { x1: 10, x2: width - 10, y1: spine, y2: spine, class: "backbone" }, svg);
  for (let l = 0; l < g.n_layers; l++) {
    const p = pos[`a${l}.0`];
    const t = el("text", { x: p.x - 6, y: height - 4 }, svg); t.textContent = `L${l}`;
    el("line", { x1: p.x, x2: p.x, y1: pos[`a${l}.${g.n_heads - 1}`].y, y2: spine, class: "wire" }, svg);
    if (!g.attn_only) el("line", { x1: pos[`m${l}`].x, x2: pos[`m${l}`].x, y1: spine, y2: pos[`m${l}`].y, class: "wire" }, svg);
  }
  // circuit edges under the nodes
  const edges = CIRCUIT.edges || [];
  const maxS = Math.max(1e-12, ...edges.map((e) => Math.abs(e.score || 0)));
  const cut = STATE.targets || {};
  const eg = el("g", {}, svg);
  for (const e of edges) {
    const a = pos[e.src], b = pos[e.dst];
    if (!a || !b) continue;
    const s = e.score === null ? maxS / 3 : e.score;
    const w = 0.6 + 4 * Math.sqrt(Math.abs(s) / maxS);
    const mx = (a.x + b.x) / 2, dy = Math.min(60, Math.abs(b.x - a.x) / 3);
    const path = el("path", {
      d: `M${a.x},${a.y} C${mx},${a.y - dy} ${mx},${b.y - dy} ${b.x},${b.y}`,
      class: "edge" + (cut[e.name] ? " cut" : ""), stroke: s >= 0 ? "var(--pos)" : "var(--neg)",
      "stroke-width": w.toFixed(2), "stroke-opacity": 0.35 + 0.5 * Math.abs(s) / maxS, "data-edge": e.name }, eg);
    el("title", {}, path).textContent = `${e.name}  score ${e.score === null ? "n/a" : fmt(e.score)}`;
    path.addEventListener("click", () => clickTarget(e.name));
  }
  const inCircuit = new Set(edges.flatMap((e) => [e.src, e.dst]));
  const sel = $("heads-view").dataset.node;
  for (const name in pos) {
    const p = pos[name];
    const cls = ["node", cut[name] || "", inCircuit.has(name) ? "incircuit" : "", sel === name ? "selected" : ""];
    const r = el("rect", { x: p.x - p.w / 2, y: p.y - p.h / 2, width: p.w, height: p.h, rx: 2,
      class: cls.join(" ").trim(), "data-node": name }, svg);
    const src = cut[name] ? ` · ${cut[name]}` : "";
    el("title", {}, r).textContent = name + src;
    if (name === "input" || name === "logits" || name.startsWith("m")) {
      const t = el("text", { x: p.x - p.w / 2 + 2, y: p.y + 3 }, svg); t.textContent = name;
    }
    if (name !== "logits") r.addEventListener("click", (ev) => clickTarget(name, ev));
    r.addEventListener("contextmenu", (ev) => { ev.preventDefault(); inspect(name); });
  }
}

function clickTarget(name, ev) {
  const mode = $("click-mode").value;
  if (mode === "inspect" || (ev && (ev.altKey || ev.shiftKey))) return inspect(name);
  if (STATE.targets && STATE.targets[name]) return command(`restore ${name}`);  // a second click restores
  const [verb, source] = mode.split(" ");
  return command(source ? `${verb} ${name} ${source}` : `${verb} ${name}`);
}

function inspect(name) {
  if (!/^a\d+\.\d+$/.test(name) && !/^m\d+$/.test(name)) return;
  $("head-node").value = name;
  if (name.startsWith("m")) setHeadMode("ov");
  selectTab("heads");
  showHead();
}

// ----- heads: QK patterns and OV writes ------------------------------------------------------
function setHeadMode(mode) {
  headMode = mode;
  $("mode-qk").classList.toggle("active", mode === "qk");
  $("mode-ov").classList.toggle("active", mode === "ov");
}

async function showHead(quiet) {
  const node = $("head-node").value.trim();
  const example = $("example").value || 0;
  const params = { node, mode: headMode, example };
  if (headMode === "ov") params.all = "1";
  const v = quiet ? await fetch(url("api/heads", params), { headers: { "X-ACDC-Token": SECRET } }).then((r) => r.json()).catch(() => null)
                  : await call("api/heads", params);
  if (!v || v.ok === false) return;
  $("heads-view").dataset.node = node;
  if (quiet) { if (v.mode === "ov") setHTML($("heads-view"), ovTable(v)); return; }  // stay on the tab
  showView({ view: v });
  drawMap();
}

function showView(out) {
  const v = out.view;
  if (v.mode === "compare") { selectTab("heads"); setHTML($("heads-view"), compareView(v)); }
  else if (v.mode === "qk") { selectTab("heads"); setHeadMode("qk"); setHTML($("heads-view"), html`${v.heads.map((h) => heatmap(h, v.tokens))}`); }
  else if (v.mode === "ov") { selectTab("heads"); setHeadMode("ov"); setHTML($("heads-view"), ovTable(v)); }
  else if (v.layers) { selectTab("lens"); setHTML($("lens-view"), lensTable(v)); }
  else if (v.method) { selectTab("tokens"); $("tok-method").value = v.method; setHTML($("tokens-view"), tokenChips(v)); }
}

function heatmap(h, tokens) {
  const n = tokens.length, c = Math.max(8, Math.min(22, 300 / n)), pad = 70;
  const size = pad + n * c;
  const labels = tokens.map((t, i) => html`<text x="${pad - 4}" y="${pad + 16 + i * c + c * 0.7}" text-anchor="end">${t}</text><text transform="translate(${pad + i * c + c * 0.7},${pad + 12}) rotate(-60)">${t}</text>`);
  const cells = [];
  h.pattern.forEach((row, q) => row.forEach((w, k) => {
    if (k > q) return;
    const a = Math.sqrt(Math.min(1, Math.abs(w)));
    const rgb = h.signed && w > 0 ? "192,57,43" : "47,111,179";
    cells.push(html`<rect x="${pad + k * c}" y="${pad + 16 + q * c}" width="${c - 1}" height="${c - 1}" fill="rgba(${rgb},${a.toFixed(3)})"><title>${tokens[q]} → ${tokens[k]}: ${fmt(w, 3)}</title></rect>`);
  }));
  return html`<svg class="heat" width="${size}" height="${size + 16}" data-head="${h.name}"><text x="${pad}" y="12" font-weight="bold">${h.name}</text>${labels}${cells}</svg>`;
}

function compareView(v) {
  const [a, b] = v.models;
  return html`<div id="compare-view">${a} | ${b} | change (${b} − ${a}, red: more attention)</div>${v.heads.map((h) => html`<div>${[
    heatmap({ name: `${h.name} · ${a}`, pattern: h.a }, v.tokens),
    heatmap({ name: `${h.name} · ${b}`, pattern: h.b }, v.tokens),
    heatmap({ name: `${h.name} · change (max ${fmt(h.max_change, 2)})`, pattern: h.diff, signed: true }, v.tokens)]}</div>`)}`;
}

function ovTable(v) {
  const rows = (list, colour) => list.map(([t, x]) => html`<tr><td>${t}</td><td>${fmt(x, 3)}</td><td><span class="bar" style="width:${200 * Math.abs(x) / Math.max(1e-9, Math.abs(list[0][1]))}px;background:${colour}"></span></td></tr>`);
  return html`<div id="ov-view"><b>${v.node}</b> writes directly to the logits (mean over the examples, under the current interventions):
    <div>answer logit <b id="ov-answer">${fmt(v.answer_effect, 3)}</b> · wrong answer logit <b>${fmt(v.wrong_effect, 3)}</b> · difference <b>${fmt(v.diff_effect, 3)}</b></div>
    <table class="lens"><tr><th>promotes</th><th></th><th></th></tr>${rows(v.promotes, "var(--pos)")}
    <tr><th>suppresses</th><th></th><th></th></tr>${rows(v.suppresses, "var(--neg)")}</table></div>`;
}

function lensTable(v) {
  const top = Math.max(1e-9, ...v.logit_diff.map((x) => Math.abs(x || 0)));
  const prompt = v.tokens.map((t, i) => (i === v.position ? html`<b>[${t}]</b> ` : html`${t} `));
  const rows = v.layers.map((name, i) => {
    const x = v.logit_diff[i] || 0;
    const topTokens = v.top[i].map(([t, p], j) => html`${j ? ", " : ""}${t} <span class="dim">${fmt(p, 2)}</span>`);
    return html`<tr><td>${name}</td><td>${fmt(x, 3)}</td><td><span class="bar" style="width:${120 * Math.abs(x) / top}px;background:${x >= 0 ? "var(--pos)" : "var(--neg)"}"></span></td><td>${v.answer_rank[i]}</td><td>${topTokens}</td></tr>`;
  });
  return html`<div>prompt: ${prompt}· answer <b>${v.answer}</b> vs <b>${v.wrong}</b></div><table class="lens" id="lens-table"><tr><th>after</th><th>logit diff</th><th></th><th>answer rank</th><th>top tokens</th></tr>${rows}</table>`;
}

function tokenChips(v) {
  const top = Math.max(1e-9, ...v.values.map((x) => Math.abs(x || 0)));
  const chips = v.tokens.map((t, i) => {
    const x = v.values[i] || 0, a = (Math.abs(x) / top).toFixed(3);
    const bg = x >= 0 ? `rgba(47,111,179,${a})` : `rgba(192,57,43,${a})`;
    return html`<span class="tok" style="background:${bg}" title="${fmt(x, 3)}">${t}</span>`;
  });
  return html`<div id="token-chips">${chips}</div><div class="dim">${v.method}: blue raises the metric, red lowers it (baseline: the corrupted prompt)</div>`;
}

function selectTab(name) {
  document.querySelectorAll(".tabs button[data-tab]").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  ["heads", "lens", "tokens"].forEach((t) => { $("tab-" + t).hidden = t !== name; });
}

async function showPrompt(p) {
  p = p || await call("api/prompt", { example: $("example").value || 0 });
  if (p) $("prompt-text").textContent = `${p.clean} → ${p.answer}` + (p.wrong ? ` (not ${p.wrong})` : "");
}

// ----- wiring ----------------------------------------------------------------------------------
function wire() {
  $("undo").onclick = () => command("undo");
  $("reset").onclick = () => command("reset");
  $("discover").onclick = () => command("discover eap");
  $("load-run").onclick = () => command(`show circuit ${$("run-ref").value.trim()}`);
  $("save-circuit").onclick = () => { const p = prompt("save the circuit to", "circuit.json"); if (p) command(`save circuit ${p}`); };
  $("save-experiment").onclick = () => command("save experiment");
  $("mode-qk").onclick = () => { setHeadMode("qk"); showHead(); };
  $("mode-ov").onclick = () => { setHeadMode("ov"); showHead(); };
  $("show-head").onclick = () => showHead();
  $("compare-head").onclick = () => command(`compare ${$("head-node").value.trim()} ${$("example").value || 0}`);
  $("show-lens").onclick = async () => {
    const v = await call("api/lens", { example: $("example").value || 0, position: $("lens-pos").value || -1, text: $("lens-text").value });
    if (v) showView({ view: v });
  };
  $("show-tokens").onclick = async () => {
    const v = await call("api/tokens", { example: $("example").value || 0, method: $("tok-method").value });
    if (v) showView({ view: v });
  };
  $("example").onchange = () => showPrompt();
  document.querySelectorAll(".tabs button[data-tab]").forEach((b) => { b.onclick = () => selectTab(b.dataset.tab); });
  let slideTimer = null;
  $("edge-slider").oninput = () => {
    $("edge-count").textContent = `${$("edge-slider").value} edges…`;
    clearTimeout(slideTimer);
    slideTimer = setTimeout(() => call("api/circuit/size", null, { n_edges: +$("edge-slider").value }), 150);
  };
  const input = $("console-input");
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && input.value.trim()) {
      const text = input.value.trim();
      history.push(text); historyAt = history.length; input.value = "";
      command(text);
    } else if (ev.key === "ArrowUp" && historyAt > 0) { input.value = history[--historyAt]; ev.preventDefault(); }
    else if (ev.key === "ArrowDown") { historyAt = Math.min(history.length, historyAt + 1); input.value = history[historyAt] || ""; }
  });
}

function listen() {
  const es = new EventSource(url("api/events"));
  es.addEventListener("state", (ev) => { $("live").classList.add("on"); render(JSON.parse(ev.data)); });
  es.addEventListener("busy", (ev) => { remoteBusy = JSON.parse(ev.data).activity; setBusy(0); });
  es.onerror = () => { $("live").classList.remove("on"); };
}

wire();
refresh().then(() => { showPrompt(); listen(); });
