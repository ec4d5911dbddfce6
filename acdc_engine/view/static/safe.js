// HTML escaped by construction, shared by the workbench (app.js) and the attribution-graph
// page (graph.js): loaded before either. Every page writes markup only through setHTML, and
// setHTML takes only html`...` fragments, whose ${...} values are escaped.
class SafeHTML { constructor(s) { this.s = s; } toString() { return this.s; } }
const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
function esc(v) {
  if (v instanceof SafeHTML) return v.s;
  if (Array.isArray(v)) return v.map(esc).join("");
  return String(v === null || v === undefined ? "" : v).replace(/[&<>"']/g, (c) => ESC[c]);
}
// html`<b>${x}</b>`: every ${...} is escaped (arrays are joined, html`` fragments kept as they are)
function html(strings, ...values) {
  let out = strings[0];
  values.forEach((v, i) => { out += esc(v) + strings[i + 1]; });
  return new SafeHTML(out);
}
function setHTML(elem, fragment) {
  if (!(fragment instanceof SafeHTML)) throw new Error("setHTML takes html`...` only");
  elem.innerHTML = fragment.s;
}
