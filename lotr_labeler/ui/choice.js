// A pick-one widget (lotr_labeler/ui/choice.py): the browser's own <select>, or radio buttons in a row.
// The browser shows a pick at once; it reaches Python as one trigger {index, value}. The DOM is rebuilt
// only when the data changes, so a rerun keeps the focus (and an open list) where the user left it.

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

let next = 0;
const KEY_PAUSE_MS = 400;

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  const root = parentElement.querySelector(".ch");
  const shape = JSON.stringify([data.label, data.labels, data.values, data.help, data.hidden, data.horizontal, data.tabs]);
  if (root.dataset.shape !== shape) {
    const id = root.dataset.id || `ch-${next++}`;
    root.dataset.id = id;
    const help = data.help ? ` <span class="ch-help" title="${esc(data.help)}" aria-label="${esc(data.help)}">?</span>` : "";
    const head = data.hidden ? "" : data.horizontal
      ? `<div class="ch-label" id="${id}-l">${esc(data.label)}${help}</div>`
      : `<label class="ch-label" for="${id}">${esc(data.label)}${help}</label>`;
    const body = data.horizontal
      ? `<div class="ch-radios${data.tabs ? " ch-tabs" : ""}" role="radiogroup" ${data.hidden ? `aria-label="${esc(data.label)}"` : `aria-labelledby="${id}-l"`}>` +
        data.labels.map((text, i) =>
          `<label class="ch-radio"><input type="radio" name="${id}" value="${esc(data.values[i])}" data-i="${i}"><span>${esc(text)}</span></label>`).join("") +
        "</div>"
      : `<div class="ch-box"><select id="${id}"${data.hidden ? ` aria-label="${esc(data.label)}"` : ""}>` +
        data.labels.map((text, i) => `<option value="${esc(data.values[i])}" data-i="${i}">${esc(text)}</option>`).join("") +
        "</select></div>";
    root.innerHTML = head + body;
    root.dataset.shape = shape;
  }
  const inputs = [...root.querySelectorAll("select, input")];
  for (const el of inputs) el.disabled = !!data.disabled;
  if (root._timer) {
    // a pick waits for the keys to pause: the list keeps showing it, and it is sent as shown
  } else if (data.horizontal) {
    inputs.forEach((el, i) => { el.checked = i === data.index; });
  } else if (inputs[0] && inputs[0].selectedIndex !== data.index) {
    inputs[0].selectedIndex = data.index;
  }
  // A pick with the mouse is sent at once. Arrow keys on a closed list (or a radio row) change the value
  // at each press: the pick is sent once the keys pause, one rerun for a run of presses, not one each.
  const send = () => {
    clearTimeout(root._timer);
    root._timer = null;
    const t = root._pending;
    root._pending = null;
    if (!t) return;
    const i = t.tagName === "SELECT" ? t.selectedIndex : Number(t.dataset.i);
    if (i >= 0 && i < data.values.length) setTriggerValue("pick", { index: i, value: data.values[i] });
  };
  // Browsing keys: the arrows, Home/End/PageUp/PageDown and the letters of type-ahead. Enter or Space
  // (choosing in an open list) sends at once, as a click does.
  root.onkeydown = (e) => {
    root._keyAt = e.key === "Enter" || e.key === " " ? -1e9 : performance.now();
  };
  root.onchange = (e) => {
    root._pending = e.target;
    clearTimeout(root._timer);
    if (performance.now() - (root._keyAt ?? -1e9) < KEY_PAUSE_MS) root._timer = setTimeout(send, KEY_PAUSE_MS);
    else send();
  };
  // Leaving the list (not moving between the radios of a row, which the arrows do) sends what it shows.
  root.onfocusout = (e) => { if (root._timer && !root.contains(e.relatedTarget)) send(); };
}
