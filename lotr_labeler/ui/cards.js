// The card grid (lotr_labeler/ui/cards.py): focus, selection, lightbox and keys live here, in one place,
// so the toolbar's count and buttons follow every click at once. Decisions go to Python as one trigger
// value {action, ids, label}; Python applies them and sends the next data (focus, message) back.
// The function runs again with new data on every rerun: state is kept per grid key on window, and the
// key listener of the previous run is removed before a new one is added (one grid listens at a time).

const KEYS = [
  ["← → ↑ ↓", "move the focused card (↑ ↓ by a row)"],
  ["Shift + arrows / Shift-click", "extend the selection"],
  ["click / Ctrl-click", "select or unselect a card"],
  ["Esc", "clear the selection (close the large view)"],
  ["Enter / Space", "open the large view (← → inside it)"],
  ["1 – 9", "relabel to the n-th class"],
  ["K", "keep: the label is right"],
  ["D", "delete (to the trash)"],
  ["R", "restore from the trash"],
  ["P", "accept the model's prediction"],
  ["[ / ]", "lower / raise the confidence threshold t (5% steps)"],
  ["S", "select the doubted cards with confidence ≥ t (then P)"],
  ["Shift + P", "accept every prediction ≥ t on this page (one undo step)"],
  ["Shift + K", "keep the rest of the page: every card not yet reviewed"],
  ["M", "more like this"],
  ["A / X", "accept / reject"],
  ["Z", "undo the last change"],
  ["?", "this help"],
];
const MIN_CARD_PX = 104;
const GAP_PX = 8;  // .cg-grid's gap in cards.css
const KEY_ACTION = { k: "keep", d: "delete", r: "restore", p: "predict", m: "more", a: "accept", x: "reject" };

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// Image URLs come from the web (search results): only http(s) and data:image URLs reach src/href,
// escaped, so a quote cannot end the attribute and javascript: never runs.
function safeUrl(u) {
  const v = String(u ?? "");
  return /^(https?:\/\/|data:image\/)/i.test(v) ? esc(v) : "";
}

function gridState(key) {
  window.__lotrCards = window.__lotrCards || {};
  if (!window.__lotrCards[key]) {
    window.__lotrCards[key] = { focus: null, sel: new Set(), anchor: null, lastSeq: -1, lb: null, help: false, busy: false, thr: 80 };
  }
  return window.__lotrCards[key];
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  // The browser-side state (focus, selection, threshold t, large view) is kept per grid key, not per
  // mount: a full-page rerun that remounts the grid (the page's ↩ Undo, Search's actions) keeps it.
  const key = data.grid || component.key;
  const root = parentElement.querySelector(".cg-root");
  const s = gridState(key);
  if (s.cleanup) s.cleanup();
  if (data.visit !== s.visit) {  // the page entered anew: a fresh view, only t is kept
    Object.assign(s, { visit: data.visit, focus: null, focusIndex: 0, sel: new Set(), anchor: null, lb: null, help: false });
    s.sentLb = null;
  }

  const cards = data.cards || [];
  const ids = cards.map((c) => c.id);
  const byId = new Map(cards.map((c) => [c.id, c]));
  const allowed = new Set(data.actions || []);
  const classes = data.classes || [];
  // grid_columns is the most per row: a narrow window shows fewer, so a card stays wide enough for its
  // caption and relabel dropdown (at 1400 px the default 8 are ~111 px each). ↑ ↓ move by the shown row.
  const wanted = Math.max(1, data.columns || 8);
  const fit = () => {
    const w = root.clientWidth || parentElement.clientWidth || window.innerWidth;
    return Math.max(1, Math.min(wanted, Math.floor((w + GAP_PX) / (MIN_CARD_PX + GAP_PX))));
  };
  let cols = fit();
  s.busy = false;
  s.trigger = setTriggerValue;  // the latest render's: a delayed trigger must not use a stale one
  // A listing sorted anew (scores computed, another sort or filter) starts at its top card; one that only
  // lost or gained cards (an action, the next page) keeps the focus where the user was.
  const shown = new Set(ids);
  const kept = (s.ids || []).filter((i) => shown.has(i));
  const keptSet = new Set(kept);
  if (kept.join() !== ids.filter((i) => keptSet.has(i)).join()) { s.focus = null; s.focusIndex = 0; }
  s.ids = ids;
  if (data.seq !== s.lastSeq) {
    s.lastSeq = data.seq;
    if (data.focus != null && byId.has(data.focus)) s.focus = data.focus;
  }
  if (!byId.has(s.focus)) s.focus = ids.length ? ids[Math.min(Math.max(s.focusIndex ?? 0, 0), ids.length - 1)] : null;
  for (const id of [...s.sel]) if (!byId.has(id)) s.sel.delete(id);
  // The large view's card left the view (accepted on Search's pending view, relabeled out of the Review
  // queue): the view moves on to the card the focus moved to, as the grid does, instead of closing.
  if (s.lb != null && !byId.has(s.lb)) {
    s.lb = s.focus;
    if (s.lb != null) setTimeout(() => tellOpen(s.lb), 0);
  }

  function send(action, targetIds, label) {
    if (!allowed.has(action)) return;
    if (action !== "undo" && !targetIds.length) return;
    s.busy = true;
    s.focusIndex = ids.indexOf(s.focus);
    setTriggerValue("action", { action, ids: targetIds, label: label ?? null, focus: s.focus, n: Date.now() });
    if (s.sel.size && targetIds.length > 1) s.sel.clear();
    renderToolbar();
  }
  function targets() {
    return s.sel.size ? ids.filter((i) => s.sel.has(i)) : s.focus != null ? [s.focus] : [];
  }
  function predict(targetIds) {
    // P takes each card to its own predicted class; cards the model agrees with are left alone.
    const t = targetIds.filter((i) => byId.get(i)?.predicted);
    if (t.length) send("predict", t);
  }
  // The confidence threshold t (kept per grid across reruns): S selects the doubted cards >= t for a look,
  // Shift+P accepts them all at once, Shift+K keeps what is left unreviewed on the page.
  function doubted() {
    return ids.filter((i) => { const c = byId.get(i); return c.predicted && !c.deleted && (c.confidence ?? 0) >= s.thr; });
  }
  function nudge(delta) {
    s.thr = Math.min(95, Math.max(5, s.thr + delta));  // whole percents, as the cards show them
    renderToolbar();
  }
  function selectDoubted() {
    s.sel = new Set(doubted());
    render();
  }
  function keepPage() {
    send("keep", ids.filter((i) => { const c = byId.get(i); return !c.deleted && !c.reviewed; }));
  }
  function act(action, targetIds) {
    if (action === "predict") return predict(targetIds);
    if (action === "more") return send("more", targetIds.slice(0, 1));
    send(action, targetIds);
  }
  // Python hears where the large view comes to rest (250 ms), not every step of ← →: a burst of
  // lightbox triggers, each a fragment rerun, could leave Streamlit 1.67's session waiting on a run
  // whose end never came (the page stuck on "running", later keys ignored).
  function tellOpen(id) {
    clearTimeout(s.openTimer);
    s.openTimer = setTimeout(() => {
      if (s.sentLb === id) return;
      s.sentLb = id;
      s.trigger("open", { id, n: Date.now() });
    }, 250);
  }
  function open(id) {
    s.lb = id;
    s.focus = id;
    tellOpen(id);
    render();
  }
  function closeLb() {
    s.lb = null;
    tellOpen(null);
    render();
  }
  function moveFocus(delta, extend) {
    if (!ids.length) return;
    const i = Math.max(0, ids.indexOf(s.focus));
    const j = Math.min(Math.max(i + delta, 0), ids.length - 1);
    if (extend) {
      if (s.anchor == null || !byId.has(s.anchor)) s.anchor = ids[i];
      selectRange(s.anchor, ids[j]);
    }
    s.focus = ids[j];
    if (s.lb != null) return open(ids[j]);
    render();
    const el = root.querySelector(`[data-card="${s.focus}"]`);
    if (el) el.scrollIntoView({ block: "nearest" });
  }
  function selectRange(a, b) {
    const [i, j] = [ids.indexOf(a), ids.indexOf(b)].sort((x, y) => x - y);
    s.sel = new Set(ids.slice(i, j + 1));
  }
  function toggle(id) {
    if (s.sel.has(id)) s.sel.delete(id);
    else s.sel.add(id);
    s.anchor = id;
  }

  // -- rendering ----------------------------------------------------------------------------------
  function button(action, text, title, extra = "") {
    return allowed.has(action) ? `<button class="cg-btn ${extra}" data-act="${action}" title="${esc(title)}">${text}</button>` : "";
  }
  function classOptions(current) {
    return classes.map((c) => `<option${c === current ? " selected" : ""}>${esc(c)}</option>`).join("");
  }
  function controlsHtml(c, inLightbox) {
    if (c.locked) return `<span class="cg-badge" title="No decision applies any more">${esc(c.locked)}</span>`;
    if (c.deleted) return button("restore", "↺ Restore", "Restore from the trash (R)", "cg-wide");
    let html = c.reviewed ? button("unkeep", "↺", "Reviewed already: back to the queue") : button("keep", "✓", "Keep: the label is right (K)");
    html += button("delete", "🗑", "Delete to the trash (D)");
    html += button("accept", "✓", "Accept (A)") + button("reject", "✗", "Reject (X)");
    if (inLightbox) html += button("more", "🔍 More like this", "The nearest images by embedding (M)");
    if (allowed.has("relabel")) html += `<select class="cg-relabel" title="Relabel (1-9)">${classOptions(c.label)}</select>`;
    if (inLightbox && c.predicted && allowed.has("predict"))
      html += button("predict", `→ ${esc(c.predicted)}`, `Relabel to ${c.predicted}, the model's choice (P)`, data.hint_only ? "" : "cg-primary");
    return html;
  }
  function verdictHtml(c) {
    // The model's word, on its own line when the grid can take predictions: the primary button, or a
    // quiet hint when the model is weak (P accepts either).
    if (!allowed.has("predict") || c.deleted || c.locked) return "";
    let inner;
    if (c.predicted && !data.hint_only)
      inner = button("predict", esc(c.hint), `Relabel to ${c.predicted}, the model's choice (P)`, "cg-primary cg-wide");
    else if (c.predicted)
      inner = `<span class="cg-hint" data-act="predict" title="A weak model's guess: check before accepting (P)">${esc(c.hint)}?</span>`;
    else inner = `<span class="cg-agree">${c.scored ? "✓ model agrees" : "not scored yet"}</span>`;
    return `<div class="cg-ctl cg-verdict">${inner}</div>`;
  }
  function cardHtml(c) {
    const cls = ["cg-card"];
    if (allowed.has("predict")) cls.push("cg-tall");
    if (c.id === s.focus) cls.push("cg-focus");
    if (s.sel.has(c.id)) cls.push("cg-sel");
    if (c.deleted) cls.push("cg-deleted");
    if (c.reviewed) cls.push("cg-reviewed");
    const src = safeUrl(c.src);
    const img = src ? `<img src="${src}" alt="#${c.id}" loading="lazy">` : `<span class="cg-missing">${c.src ? "no preview" : "file missing"}</span>`;
    const flags = c.flags && c.flags.length ? `<span class="cg-flag" title="${esc(c.flags.join(", "))}">⚠</span>` : "";
    return `<div class="${cls.join(" ")}" data-card="${c.id}">
      <div class="cg-thumb" data-pick="1">${img}<span class="cg-check">${s.sel.has(c.id) ? "✓" : ""}</span>
        <button class="cg-zoom" data-open="1" title="Large view (Enter)">⤢</button>${flags}</div>
      <div class="cg-cap" title="${esc(c.label + " " + c.caption)}"><b>${esc(c.label)}</b> ${esc(c.caption)}</div>
      <div class="cg-ctl">${controlsHtml(c, false)}</div>${verdictHtml(c)}
    </div>`;
  }
  function toolbarHtml() {
    const n = s.sel.size;
    const dis = n ? "" : " disabled";
    let bulk = "";
    if (allowed.has("relabel"))
      bulk += `<select class="cg-bulk-to" title="Class for the selected cards">${classOptions(s.bulkTo ?? classes[0])}</select><button class="cg-btn" data-bulk="relabel"${dis}>Relabel</button>`;
    for (const [a, t] of [["keep", "Keep"], ["predict", "→ predicted"], ["accept", "Accept"], ["reject", "Reject"], ["restore", "Restore"], ["delete", "🗑 Delete"]])
      if (allowed.has(a)) bulk += `<button class="cg-btn" data-bulk="${a}"${dis}>${t}</button>`;
    const msg = data.message;
    const status = s.busy ? `<span class="cg-msg cg-info">Working…</span>` : msg ? `<span class="cg-msg cg-${esc(msg[0])}">${esc(msg[1])}</span>` : `<span class="cg-msg"></span>`;
    let thr = "";
    if (allowed.has("predict")) {
      const hits = doubted().length;
      const pct = s.thr;
      thr = `<span class="cg-sep"></span><span class="cg-thr" title="Confidence threshold t: [ lowers, ] raises">t
        <button class="cg-btn" data-tool="thr-" title="Lower t ([)">−</button><b class="cg-thr-val">${pct}%</b><button class="cg-btn" data-tool="thr+" title="Raise t (])">+</button></span>
        <button class="cg-btn" data-tool="doubted" title="Select the cards the model doubts with confidence ≥ ${pct}% (S)">Select doubted ≥ t (${hits})</button>
        <button class="cg-btn" data-tool="predict-all"${hits ? "" : " disabled"} title="Accept the ${hits} predictions ≥ ${pct}% on this page: one undo step (Shift+P)">→ all ≥ t</button>`;
    }
    if (allowed.has("keep")) thr += `<button class="cg-btn" data-tool="keep-page" title="Keep every card of this page not reviewed yet (Shift+K)">Keep page</button>`;
    return `<span class="cg-count"><b>${n} selected</b></span>
      <button class="cg-btn" data-tool="all">Select page</button><button class="cg-btn" data-tool="clear"${dis}>Clear</button>
      <span class="cg-sep"></span>${bulk}${thr}<span class="cg-sep"></span>
      ${allowed.has("undo") ? `<button class="cg-btn" data-tool="undo" title="Undo the last change (Z)">↩ Undo</button>` : ""}
      <button class="cg-btn" data-tool="help" title="Keyboard shortcuts (?)">? Keys</button>${status}`;
  }
  function legendHtml() {
    if (!allowed.has("relabel")) return "";
    return classes.slice(0, 9).map((c, i) => `<span class="cg-key"><kbd>${i + 1}</kbd> ${esc(c)}</span>`).join("");
  }
  function lightboxHtml() {
    const c = byId.get(s.lb);
    if (!c) return "";
    const big = safeUrl(data.lightbox && data.lightbox.id === c.id && data.lightbox.src ? data.lightbox.src : c.src);
    const rows = (c.meta || []).map(([k, v]) => {
      const val = /^https?:\/\//i.test(v) ? `<a href="${esc(v)}" target="_blank" rel="noopener noreferrer">${esc(v)}</a>` : esc(v);
      return `<tr><th>${esc(k)}</th><td>${val}</td></tr>`;
    }).join("");
    const i = ids.indexOf(c.id);
    return `<div class="cg-overlay cg-lightbox" data-close="1"><div class="cg-lb" role="dialog" aria-label="Image #${c.id}">
      <div class="cg-lb-img">${big ? `<img src="${big}" alt="#${c.id}">` : `<span class="cg-missing">no preview</span>`}</div>
      <div class="cg-lb-side"><div class="cg-lb-head"><b>#${c.id} · ${esc(c.label)}</b><span>${i + 1} of ${ids.length}</span>
        <button class="cg-btn" data-close="1" title="Close (Esc)">✕</button></div>
        <table class="cg-meta">${rows}</table>
        <div class="cg-ctl cg-lb-ctl" data-card="${c.id}">${controlsHtml(c, true)}</div>
        <div class="cg-lb-nav"><button class="cg-btn" data-nav="-1">← Prev</button><button class="cg-btn" data-nav="1">Next →</button></div>
      </div></div></div>`;
  }
  function helpHtml() {
    const rows = KEYS.filter(([k]) => {
      if (k === "K") return allowed.has("keep") || allowed.has("relabel");
      if (k === "D") return allowed.has("delete");
      if (k === "R") return allowed.has("restore");
      if (k === "P" || k === "[ / ]" || k === "S" || k === "Shift + P") return allowed.has("predict");
      if (k === "Shift + K") return allowed.has("keep");
      if (k === "M") return allowed.has("more");
      if (k === "A / X") return allowed.has("accept");
      if (k === "1 – 9") return allowed.has("relabel");
      if (k === "Z") return allowed.has("undo");
      return true;
    }).map(([k, v]) => [k, k === "K" && !allowed.has("keep") ? "the label is right: next card" : v])
      .concat(data.keys || [])  // the page's own shortcuts, after the grid's
      .map(([k, v]) => `<tr><th><kbd>${esc(k)}</kbd></th><td>${esc(v)}</td></tr>`).join("");
    return `<div class="cg-overlay cg-help" data-close-help="1"><div class="cg-helpbox" role="dialog" aria-label="Keyboard shortcuts">
      <div class="cg-lb-head"><b>Keyboard shortcuts</b><button class="cg-btn" data-close-help="1">✕</button></div>
      <table class="cg-meta">${rows}</table>
      <p class="cg-note">Keys act on the selected cards when there are any, else on the focused (outlined) card.</p></div></div>`;
  }
  function renderToolbar() {
    const bar = root.querySelector(".cg-toolbar");
    if (bar) bar.innerHTML = toolbarHtml();
  }
  function render() {
    root.style.setProperty("--cg-cols", String(cols));
    root.innerHTML = `<div class="cg-toolbar">${toolbarHtml()}</div>
      <div class="cg-legend">${legendHtml()}</div>
      ${cards.length ? `<div class="cg-grid">${cards.map(cardHtml).join("")}</div>` : `<div class="cg-empty">${esc(data.empty || "Nothing here.")}</div>`}
      ${s.lb != null ? lightboxHtml() : ""}${s.help ? helpHtml() : ""}`;
  }

  // -- events -------------------------------------------------------------------------------------
  function onClick(e) {
    window.__lotrCardsActive = key;
    const t = e.target;
    // Keep the keyboard focus on the grid itself: otherwise Streamlit's main area (tabindex 0) takes it
    // and draws its focus ring as a thick frame around the whole page at the next key press.
    if (!t.closest("select, a")) root.focus({ preventScroll: true });
    if (t.closest("select")) return;
    // Close on the backdrop itself or on a ✕ button; the other buttons inside an overlay (the large
    // view's ← Prev / Next →, ✓, 🗑, → class…) sit inside the backdrop too and must act, not close.
    const btn = t.closest(".cg-btn");
    if (t.dataset.closeHelp || (btn && btn.dataset.closeHelp)) { s.help = false; return render(); }
    if (t.dataset.close || (btn && btn.dataset.close)) return closeLb();
    const nav = t.closest("[data-nav]");
    if (nav) return moveFocus(Number(nav.dataset.nav), false);
    const tool = t.closest("[data-tool]");
    if (tool) {
      const name = tool.dataset.tool;
      if (name === "all") s.sel = new Set(ids);
      else if (name === "clear") s.sel.clear();
      else if (name === "undo") return send("undo", []);
      else if (name === "thr-" || name === "thr+") return nudge(name === "thr+" ? 5 : -5);
      else if (name === "doubted") return selectDoubted();
      else if (name === "predict-all") return predict(doubted());
      else if (name === "keep-page") return keepPage();
      else if (name === "help") s.help = !s.help;
      return render();
    }
    const bulk = t.closest("[data-bulk]");
    if (bulk) {
      const chosen = ids.filter((i) => s.sel.has(i));
      if (bulk.dataset.bulk === "relabel") return send("relabel", chosen, root.querySelector(".cg-bulk-to").value);
      return act(bulk.dataset.bulk, chosen);
    }
    const cardEl = t.closest("[data-card]");
    if (!cardEl) return;
    const id = Number(cardEl.dataset.card);
    const a = t.closest("[data-act]");
    if (a) { s.focus = id; return act(a.dataset.act, [id]); }
    if (t.closest("[data-open]")) return open(id);
    if (t.closest("[data-pick]")) {
      if (e.shiftKey && s.anchor != null && byId.has(s.anchor)) selectRange(s.anchor, id);
      else toggle(id);
      s.focus = id;
      render();
    }
  }
  function onImageError(e) {
    // A search thumbnail the browser cannot load (gone, blocked, not an image): say so in words
    // instead of the browser's broken-image icon. Image errors do not bubble: listened to in capture.
    const img = e.target;
    if (!(img instanceof HTMLImageElement) || !root.contains(img)) return;
    const note = document.createElement("span");
    note.className = "cg-missing";
    note.textContent = "no preview";
    img.replaceWith(note);
  }
  function onDblClick(e) {
    const cardEl = e.target.closest(".cg-grid [data-card]");
    if (cardEl && e.target.closest("[data-pick]")) open(Number(cardEl.dataset.card));
  }
  function onChange(e) {
    const t = e.target;
    if (t.classList.contains("cg-bulk-to")) { s.bulkTo = t.value; return; }
    if (!t.classList.contains("cg-relabel")) return;
    const cardEl = t.closest("[data-card]");
    s.focus = Number(cardEl.dataset.card);
    send("relabel", [s.focus], t.value);
  }
  function onKey(e) {
    if (window.__lotrCardsActive !== key || !root.isConnected) return;
    const origin = e.composedPath ? e.composedPath()[0] : e.target;
    if (origin && origin.closest && origin.closest("input, select, textarea, [contenteditable='true']")) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const k = e.key;
    let handled = true;
    if (k === "ArrowRight") moveFocus(1, e.shiftKey);
    else if (k === "ArrowLeft") moveFocus(-1, e.shiftKey);
    else if (k === "ArrowDown" && s.lb == null) moveFocus(cols, e.shiftKey);
    else if (k === "ArrowUp" && s.lb == null) moveFocus(-cols, e.shiftKey);
    else if (k === "Escape") {
      if (s.help) s.help = false;
      else if (s.lb != null) return closeLb();
      else s.sel.clear();
      render();
    } else if (k === "?") { s.help = !s.help; render(); }
    else if ((k === "Enter" || k === " ") && s.focus != null) { if (s.lb == null) open(s.focus); else closeLb(); }
    else if (k === "z" || k === "Z") send("undo", []);
    else if (allowed.has("predict") && s.lb == null && (k === "[" || k === "]")) nudge(k === "]" ? 5 : -5);
    else if (allowed.has("predict") && s.lb == null && (k === "s" || k === "S") && !e.shiftKey) selectDoubted();
    else if (allowed.has("predict") && s.lb == null && k === "P" && e.shiftKey) predict(doubted());
    else if (allowed.has("keep") && s.lb == null && k === "K" && e.shiftKey) keepPage();
    else if (/^[1-9]$/.test(k) && allowed.has("relabel") && classes[Number(k) - 1] !== undefined) {
      send("relabel", s.lb != null ? [s.lb] : targets(), classes[Number(k) - 1]);
    } else if (KEY_ACTION[k.toLowerCase()] && !e.shiftKey) {
      const name = KEY_ACTION[k.toLowerCase()];
      const t = s.lb != null ? [s.lb] : targets();
      if (name === "keep" && !allowed.has("keep")) moveFocus(1, false); // no review state here: K = fine, next
      else if (allowed.has(name)) act(name, t);
      else handled = false;
    } else handled = false;
    if (handled) { e.preventDefault(); e.stopPropagation(); }
  }

  // One grid listens: the one last clicked, else the first one shown (a grid gone from the page hands over).
  s.root = root;
  if (!window.__lotrCards[window.__lotrCardsActive]?.root?.isConnected) window.__lotrCardsActive = key;
  render();
  // A window made narrower or wider: as many columns as fit (up to grid_columns), without a rerun.
  const resized = new ResizeObserver(() => {
    const n = fit();
    if (n !== cols) { cols = n; root.style.setProperty("--cg-cols", String(cols)); }
  });
  resized.observe(root);
  root.addEventListener("click", onClick);
  root.addEventListener("dblclick", onDblClick);
  root.addEventListener("error", onImageError, true);
  root.addEventListener("change", onChange);
  document.addEventListener("keydown", onKey, true);
  s.cleanup = () => {
    root.removeEventListener("click", onClick);
    root.removeEventListener("dblclick", onDblClick);
    root.removeEventListener("error", onImageError, true);
    root.removeEventListener("change", onChange);
    document.removeEventListener("keydown", onKey, true);
    resized.disconnect();
    s.cleanup = null;
  };
  return s.cleanup;
}
