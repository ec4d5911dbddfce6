// The circuit page's script (acdc_engine/render/page.py inlines it, so the page opens offline).
// Reads the JSON in #circuit-data: {edges: [{id, name, src, dst, kind, score, effect}],
// nodes: [{id, name, kind, layer, head}], effects: {class: legend label}}; the ids are those of
// the SVG groups the figure wrote. Hover shows an edge's or a node's details; the slider (or
// #min=<|score|> in the address) hides the edges below a |score|.
(function () {
  const D = JSON.parse(document.getElementById('circuit-data').textContent);
  const fig = document.getElementById('fig');
  const tip = document.getElementById('tip');
  const abs = s => (s === null ? 0 : Math.abs(s));
  const fmt = s => (s === null ? 'none' : Number(s).toPrecision(4));
  const edgesOf = {};
  D.nodes.forEach(n => {
    const el = document.getElementById(n.id);
    if (!el) return;
    el.classList.add('node'); edgesOf[n.name] = []; n.el = el;
  });
  D.edges.forEach(e => {
    const el = document.getElementById(e.id);
    if (!el) return;
    el.classList.add('edge'); e.el = el;
    const path = el.querySelector('path');
    if (path) {  // a wide invisible copy makes thin edges easy to point at
      const hit = path.cloneNode(false);
      hit.setAttribute('style', 'fill:none;stroke:transparent;stroke-width:9');
      hit.classList.add('hit'); el.appendChild(hit);
    }
    (edgesOf[e.src] = edgesOf[e.src] || []).push(e);
    (edgesOf[e.dst] = edgesOf[e.dst] || []).push(e);
  });
  function show(ev, text) {
    tip.textContent = text; tip.hidden = false;
    const x = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
    tip.style.left = x + 'px'; tip.style.top = (ev.clientY + 14) + 'px';
  }
  function focus(list) {
    fig.classList.add('focus');
    list.forEach(e => e.el && e.el.classList.add('lit'));
  }
  function unfocus() {
    fig.classList.remove('focus'); tip.hidden = true;
    fig.querySelectorAll('.lit').forEach(el => el.classList.remove('lit'));
  }
  const kindName = {q: 'query', k: 'key', v: 'value', resid: 'residual'};
  const edgeText = e => e.name + '\n' + kindName[e.kind] + ' input of ' + e.dst +
                        '\nscore ' + fmt(e.score) +
                        (e.effect && D.effects[e.effect] ? '\n' + D.effects[e.effect] : '');
  D.edges.forEach(e => {
    if (!e.el) return;
    e.el.addEventListener('mousemove', ev => { show(ev, edgeText(e)); });
    e.el.addEventListener('mouseenter', () => focus([e]));
    e.el.addEventListener('mouseleave', unfocus);
  });
  D.nodes.forEach(n => {
    if (!n.el) return;
    const mine = edgesOf[n.name] || [];
    const ins = mine.filter(e => e.dst === n.name), outs = mine.filter(e => e.src === n.name);
    const total = mine.reduce((a, e) => a + abs(e.score), 0);
    const text = n.name + ' (' + n.kind + (n.layer >= 0 && n.kind !== 'logits' ?
      ', layer ' + n.layer : '') + ')\n' + ins.length + ' edges in, ' + outs.length +
      ' out\nsum |score| ' + fmt(total);
    n.el.addEventListener('mousemove', ev => show(ev, text));
    n.el.addEventListener('mouseenter', () => { focus(mine); n.el.classList.add('lit'); });
    n.el.addEventListener('mouseleave', unfocus);
  });
  // the threshold: the slider steps through the distinct |score| values
  const levels = [...new Set(D.edges.map(e => abs(e.score)))].sort((a, b) => a - b);
  const slider = document.getElementById('thr'), num = document.getElementById('thrnum');
  const count = document.getElementById('count');
  slider.max = Math.max(levels.length - 1, 0);
  slider.disabled = levels.length < 2;
  function apply(t) {
    let shown = 0;
    const live = new Set();
    D.edges.forEach(e => {
      const on = abs(e.score) >= t;
      if (on) { shown += 1; live.add(e.src); live.add(e.dst); }
      if (e.el) e.el.classList.toggle('hidden', !on);
      const row = document.getElementById('row-' + e.id);
      if (row) row.classList.toggle('hidden', !on);
    });
    D.nodes.forEach(n => n.el && n.el.classList.toggle('idle', D.edges.length > 0 &&
                                                       !live.has(n.name)));
    count.textContent = shown + ' of ' + D.edges.length + ' edges shown';
    count.dataset.shown = shown;
  }
  slider.addEventListener('input', () => {
    const t = levels[+slider.value] || 0;
    num.value = +slider.value === 0 ? 0 : Number(t.toPrecision(4));
    apply(+slider.value === 0 ? 0 : t);
  });
  num.addEventListener('input', () => {
    const t = parseFloat(num.value) || 0;
    let i = levels.findIndex(l => l >= t);
    slider.value = i < 0 ? levels.length - 1 : i;
    apply(t);
  });
  document.querySelectorAll('tbody tr').forEach(tr => {
    const e = D.edges.find(x => 'row-' + x.id === tr.id);
    if (!e) return;
    tr.addEventListener('mouseenter', () => focus([e]));
    tr.addEventListener('mouseleave', unfocus);
  });
  const m = /min=([0-9.eE+-]+)/.exec(location.hash);
  if (m) { num.value = m[1]; num.dispatchEvent(new Event('input')); } else { apply(0); }
  document.body.dataset.ready = '1';
})();
