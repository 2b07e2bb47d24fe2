// The card grid (lotr_labeler/ui/cards.py). The browser owns what the user sees: focus, selection, the
// large view, and each card's state. A key changes the card at once (one DOM patch, no rerun) and joins
// an ordered queue of actions {seq, action, ids, label, seen}; the whole unanswered queue goes to Python
// as one trigger value, sent again only once the previous one has been answered (a trigger starts one
// rerun per call, and keys come faster than reruns). Python applies the seqs above the last it applied
// and answers with `applied`, the outcomes, and the cards as the store holds them: the browser shows
// those with the still-unanswered actions laid over them, so a refused action rolls its cards back, and
// marks them with the reason. The function runs again with new data on every rerun: state is kept per
// grid key on window, and the listeners of the previous run are removed first (one grid listens).

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
  ["Shift + A / Shift + X", "accept / reject the page's undecided cards (the ones shown)"],
  ["Z", "undo the last change"],
  ["?", "this help"],
];
const MIN_CARD_PX = 104;
const GAP_PX = 8;  // .cg-grid's gap in cards.css
const RESEND_MS = 4000;  // a queue unanswered this long is sent again (Python ignores the seqs it applied)
// Sent when the keys pause this long, or at the latest this long after the first unsent key: each send is
// a rerun, whose rendering holds the browser's main thread, so fewer sends keep every key's change quick.
const IDLE_MS = 300;
const MAX_WAIT_MS = 2000;
// A decision key on a card whose thumbnail has not loaded waits for it (the user cannot have judged it),
// at most this long: a thumbnail that hangs becomes "no preview" and the keys go on.
const HOLD_MS = 3000;
const KEY_ACTION = { k: "keep", d: "delete", r: "restore", p: "predict", m: "more", a: "accept", x: "reject" };
const BADGE = { pending: "⏳", accepted: "✅", rejected: "❌", downloaded: "💾", failed: "⚠️" };
const SNAP = ["label", "state", "deleted", "reviewed", "predicted", "hint", "confidence"];

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// Image URLs come from the web (search results): only http(s) and data:image URLs reach src/href,
// escaped, so a quote cannot end the attribute and javascript: never runs.
function safeUrl(u) {
  const v = String(u ?? "");
  return /^(https?:\/\/|data:image\/)/i.test(v) ? esc(v) : "";
}

function snap(c) {
  const o = {};
  for (const f of SNAP) o[f] = c[f];
  return o;
}

function gridState(key) {
  window.__lotrCards = window.__lotrCards || {};
  if (!window.__lotrCards[key]) {
    window.__lotrCards[key] = {
      focus: null, sel: new Set(), anchor: null, lb: null, help: false, thr: 80,
      // the queue: a token for this browser state, the last seq used / answered / sent, the actions not
      // answered yet, the browser's own undo stack, and the cards refused (id -> reason)
      client: Math.random().toString(36).slice(2) + Date.now().toString(36),
      seq: 0, acked: 0, readSeq: 0, inflight: 0, sentAt: 0, queue: [], hist: [], refused: new Map(),
      html: new Map(),
      // thumbnails the browser has shown (or given up on), and keys held until the card they act on shows
      shown: new Set(), held: [],
    };
  }
  return window.__lotrCards[key];
}

// What an action does to a card, as the store will do it (the browser shows it before Python hears).
function applyTo(v, a, kind) {
  if (a.action === "undo") { if (a.revert && a.revert[v.id]) Object.assign(v, a.revert[v.id]); return; }
  if (v.locked) return;
  switch (a.action) {
    case "accept": v.state = "accepted"; break;
    case "reject": v.state = "rejected"; break;
    case "relabel":
      v.label = a.label;
      if (v.state === "failed") v.state = "pending";
      if (kind === "review") v.reviewed = true;  // relabeled = reviewed
      if (v.predicted === a.label) { v.predicted = null; v.hint = ""; }
      break;
    case "predict":
      if (!v.predicted) break;
      v.label = v.predicted; v.predicted = null; v.hint = "";
      if (kind === "search") v.state = "accepted";
      if (kind === "review") v.reviewed = true;
      break;
    case "keep": v.reviewed = true; break;
    case "unkeep": v.reviewed = false; break;
    case "delete": v.deleted = true; break;
    case "restore": v.deleted = false; break;
  }
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  // The browser-side state is kept per grid key, not per mount: a full-page rerun that remounts the
  // grid (the page's ↩ Undo, Search's actions) keeps it, and keeps the queue.
  const key = data.grid || component.key;
  const root = parentElement.querySelector(".cg-root");
  const s = gridState(key);
  if (s.cleanup) s.cleanup();
  if (data.visit !== s.visit) {  // the page entered anew: a fresh view, only t (and the queue) is kept
    Object.assign(s, { visit: data.visit, focus: null, focusIndex: 0, sel: new Set(), anchor: null, lb: null, help: false });
    s.sentLb = null;
  }

  const server = data.cards || [];
  const ids = server.map((c) => c.id);
  const serverById = new Map(server.map((c) => [c.id, c]));
  const allowed = new Set(data.actions || []);
  const kind = allowed.has("accept") ? "search" : allowed.has("keep") ? "review" : "dataset";
  const classes = data.classes || [];
  // grid_columns is the most per row: a narrow window shows fewer, so a card stays wide enough for its
  // caption and relabel dropdown (at 1400 px the default 8 are ~111 px each). ↑ ↓ move by the shown row.
  const wanted = Math.max(1, data.columns || 8);
  const fit = () => {
    const w = root.clientWidth || parentElement.clientWidth || window.innerWidth;
    return Math.max(1, Math.min(wanted, Math.floor((w + GAP_PX) / (MIN_CARD_PX + GAP_PX))));
  };
  let cols = fit();
  s.trigger = setTriggerValue;  // the latest render's: a delayed send must not use a stale one

  // -- Python's answer: what it applied, the outcomes, the cards as stored ---------------------------
  if (data.client === s.client) {
    s.acked = Math.max(s.acked, data.applied || 0);
    for (const r of data.results || []) {
      if (r.seq <= s.readSeq) continue;
      s.readSeq = r.seq;
      const a = s.queue.find((q) => q.seq === r.seq) || s.sentActions?.get(r.seq);
      if (r.kind === "success" || !a) continue;
      // Refused (an error: nothing applied) or partly (a warning: another window won some cards): the
      // cards the store did not take as the browser showed them are marked, with the reason.
      for (const id of r.ids) {
        const now = serverById.get(id);
        const exp = a.expect && a.expect[id];
        const later = s.queue.some((q) => q.seq > r.seq && q.idset.has(id));
        if (r.kind === "error" || (now && exp && !later && SNAP.slice(0, 3).some((f) => (now[f] ?? null) !== (exp[f] ?? null))))
          s.refused.set(id, r.text);
      }
      if (r.kind === "error") s.hist = s.hist.filter((h) => h.seq !== r.seq);
    }
  }
  s.queue = s.queue.filter((q) => q.seq > s.acked);
  if (s.inflight && s.inflight <= s.acked) { s.inflight = 0; clearTimeout(s.resend); }

  // The cards as shown: the stored ones with the actions not yet answered laid over, in order.
  let view = new Map();
  function rebuild() {
    view = new Map();
    for (const c of server) {
      const v = { ...c };
      for (const a of s.queue) if (a.idset.has(c.id) || (a.revert && a.revert[c.id])) applyTo(v, a, kind);
      if (kind === "search") v.reviewed = v.state === "accepted";
      view.set(c.id, v);
    }
  }
  rebuild();

  // A listing sorted anew (scores computed, another sort or filter) starts at its top card; one that only
  // lost or gained cards (an action, the next page) keeps the focus where the user was.
  const shown = new Set(ids);
  const kept = (s.ids || []).filter((i) => shown.has(i));
  const keptSet = new Set(kept);
  if (kept.join() !== ids.filter((i) => keptSet.has(i)).join()) { s.focus = null; s.focusIndex = 0; }
  s.ids = ids;
  if (!view.has(s.focus)) s.focus = ids.length ? ids[Math.min(Math.max(s.focusIndex ?? 0, 0), ids.length - 1)] : null;
  for (const id of [...s.sel]) if (!view.has(id)) s.sel.delete(id);
  if (s.lb != null && !view.has(s.lb)) {
    s.lb = s.focus;
    if (s.lb != null) setTimeout(() => tellOpen(s.lb), 0);
  }

  // -- the queue ------------------------------------------------------------------------------------
  function flush() {
    if (!s.queue.length) return;
    if (s.inflight && performance.now() - s.sentAt < RESEND_MS) return;  // one rerun at a time
    clearTimeout(s.debounce);
    s.firstUnsentAt = 0;
    s.inflight = s.queue[s.queue.length - 1].seq;
    s.sentAt = performance.now();
    s.sentActions = new Map(s.queue.map((q) => [q.seq, q]));
    const actions = s.queue.map((q) => ({ seq: q.seq, action: q.action, ids: q.ids, label: q.label, seen: q.seen }));
    s.trigger("batch", { client: s.client, actions, n: Date.now() });
    clearTimeout(s.resend);
    s.resend = setTimeout(() => s.flush && s.flush(), RESEND_MS + 50);
  }
  s.flush = flush;
  // After a key: send at the pause, or now if keys have been waiting MAX_WAIT_MS already.
  function schedule() {
    const now = performance.now();
    s.lastKeyAt = now;
    if (!s.firstUnsentAt) s.firstUnsentAt = now;
    clearTimeout(s.debounce);
    if (now - s.firstUnsentAt >= MAX_WAIT_MS) return flush();
    s.debounce = setTimeout(() => s.flush && s.flush(), IDLE_MS);
  }

  function send(action, targetIds, label) {
    if (!allowed.has(action)) return false;
    if (action !== "undo" && !targetIds.length) return false;
    const seq = ++s.seq;
    const seen = {};
    const before = {};
    for (const id of targetIds) {
      const c = view.get(id);
      if (!c) continue;
      seen[id] = [c.label || "", c.state || ""];
      before[id] = snap(c);
      s.refused.delete(id);
    }
    const a = { seq, action, ids: targetIds, label: label ?? null, seen, idset: new Set(targetIds) };
    if (action === "undo") {
      const h = s.hist.pop();  // the browser's own last step: shown undone at once
      a.revert = h ? h.before : null;
    }
    s.queue.push(a);
    rebuild();
    a.expect = {};
    for (const id of targetIds) if (view.has(id)) a.expect[id] = snap(view.get(id));
    if (action !== "undo" && action !== "more") {
      s.hist.push({ seq, before });
      if (s.hist.length > 200) s.hist.shift();
    }
    s.focusIndex = ids.indexOf(s.focus);
    if (s.sel.size && targetIds.length > 1) s.sel.clear();
    schedule();
    return true;
  }
  // A decision on the focused card moves the focus on (the card stays in place, marked); in the large
  // view the view moves on to the next card.
  function decide(action, targetIds, label) {
    const single = targetIds.length === 1 && !s.sel.size;
    if (!send(action, targetIds, label)) return render();
    if (single && targetIds[0] === s.focus) {
      const i = ids.indexOf(s.focus);
      if (i + 1 < ids.length) s.focus = ids[i + 1];
      if (s.lb != null) return open(s.focus);
    }
    render();
    scrollToFocus();
  }
  function targets() {
    return s.sel.size ? ids.filter((i) => s.sel.has(i)) : s.focus != null ? [s.focus] : [];
  }
  function predict(targetIds) {
    // P takes each card to its own predicted class; cards the model agrees with are left alone.
    const t = targetIds.filter((i) => view.get(i)?.predicted);
    if (t.length) decide("predict", t);
  }
  // The confidence threshold t (kept per grid across reruns): S selects the doubted cards >= t for a look,
  // Shift+P accepts them all at once, Shift+K keeps what is left unreviewed on the page.
  function doubted() {
    return ids.filter((i) => { const c = view.get(i); return c.predicted && !c.deleted && !c.locked && (c.confidence ?? 0) >= s.thr; });
  }
  function nudge(delta) {
    s.thr = Math.min(95, Math.max(5, s.thr + delta));  // whole percents, as the cards show them
    render();
  }
  function selectDoubted() {
    s.sel = new Set(doubted());
    render();
  }
  function keepPage() {
    decide("keep", ids.filter((i) => { const c = view.get(i); return !c.deleted && !c.reviewed; }));
  }
  // Accept page / Reject page: the cards on screen, as the browser shows them now (keys queued included).
  function pageIds(state) {
    return ids.filter((i) => {
      const c = view.get(i);
      if (c.locked || c.state === "downloaded") return false;
      return data.page_scope === "any" ? c.state !== state : c.state === "pending";
    });
  }
  function act(action, targetIds) {
    if (action === "predict") return predict(targetIds);
    if (action === "more") { send("more", targetIds.slice(0, 1)); return render(); }
    decide(action, targetIds);
  }
  // Python hears where the large view comes to rest (250 ms), not every step of ← →.
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
  function scrollToFocus() {
    const el = root.querySelector(`.cg-grid [data-card="${s.focus}"]`);
    if (el) el.scrollIntoView({ block: "nearest" });
  }
  function moveFocus(delta, extend) {
    if (!ids.length) return;
    const i = Math.max(0, ids.indexOf(s.focus));
    const j = Math.min(Math.max(i + delta, 0), ids.length - 1);
    if (extend) {
      if (s.anchor == null || !view.has(s.anchor)) s.anchor = ids[i];
      selectRange(s.anchor, ids[j]);
    }
    s.focus = ids[j];
    if (s.lb != null) return open(ids[j]);
    render();
    scrollToFocus();
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

  // -- rendering: the first time whole, then only what changed (a key patches one or two cards) ----------
  function button(action, text, title, extra = "") {
    return allowed.has(action) ? `<button class="cg-btn ${extra}" data-act="${action}" title="${esc(title)}">${text}</button>` : "";
  }
  function classOptions(current) {
    return classes.map((c) => `<option${c === current ? " selected" : ""}>${esc(c)}</option>`).join("");
  }
  // A card's relabel menu holds its own class until it is about to open (a press, Tab to it): the
  // full list on every card is most of the grid's DOM (48 cards x 20 classes = 1,900 nodes), which
  // the browser builds on every page load while the user waits for the first picture.
  function lazyOptions(current) {
    return `<option selected>${esc(current)}</option>`;
  }
  function fillOptions(e) {
    const t = e.target;
    if (!(t instanceof HTMLSelectElement) || !t.classList.contains("cg-relabel") || t.dataset.full) return;
    t.innerHTML = classOptions(t.value);
    t.dataset.full = "1";
  }
  function controlsHtml(c, inLightbox) {
    if (c.locked) return `<span class="cg-badge" title="No decision applies any more">${esc(c.locked)}</span>`;
    if (c.deleted) return button("restore", "↺ Restore", "Restore from the trash (R)", "cg-wide");
    let html = c.reviewed && kind === "review" ? button("unkeep", "↺", "Reviewed already: back to the queue") : button("keep", "✓", "Keep: the label is right (K)");
    html += button("delete", "🗑", "Delete to the trash (D)");
    html += button("accept", "✓", "Accept (A)") + button("reject", "✗", "Reject (X)");
    if (inLightbox) html += button("more", "🔍 More like this", "The nearest images by embedding (M)");
    if (allowed.has("relabel"))
      html += `<select class="cg-relabel" title="Relabel (1-9)">${inLightbox ? classOptions(c.label) : lazyOptions(c.label)}</select>`;
    if (inLightbox && c.predicted && allowed.has("predict"))
      html += button("predict", `→ ${esc(c.predicted)}`, `Relabel to ${c.predicted}, the model's choice (P)`, data.hint_only ? "" : "cg-primary");
    return html;
  }
  // "→ no-middle-earth 83%": a long class name may be cut short, never the percentage after it.
  function hintHtml(hint) {
    const m = /^(.*?)(\s\d+%\??)$/.exec(hint);
    return m ? `<span class="cg-hint-name">${esc(m[1])}</span><span class="cg-hint-p">${esc(m[2])}</span>` : esc(hint);
  }
  function verdictHtml(c) {
    // The model's word, on its own line when the grid can take predictions: the primary button, or a
    // quiet hint when the model is weak (P accepts either).
    if (!allowed.has("predict") || c.deleted || c.locked) return "";
    let inner;
    if (c.predicted && !data.hint_only)
      inner = button("predict", hintHtml(c.hint), `Relabel to ${c.predicted}, the model's choice (P)`, "cg-primary cg-wide");
    else if (c.predicted)
      inner = `<span class="cg-hint" data-act="predict" title="A weak model's guess: check before accepting (P)">${hintHtml(c.hint + "?")}</span>`;
    else inner = `<span class="cg-agree">${c.scored ? "✓ model agrees" : "not scored yet"}</span>`;
    return `<div class="cg-ctl cg-verdict">${inner}</div>`;
  }
  function cardClass(c) {
    const cls = ["cg-card"];
    if (allowed.has("predict")) cls.push("cg-tall");
    if (c.id === s.focus) cls.push("cg-focus");
    if (s.sel.has(c.id)) cls.push("cg-sel");
    if (c.deleted) cls.push("cg-deleted");
    if (c.reviewed && kind !== "search") cls.push("cg-reviewed");  // a candidate's badge says it (✅)
    if (c.state) cls.push(`cg-st-${c.state}`);
    if (c.out) cls.push("cg-out");
    if (s.refused.has(c.id)) cls.push("cg-refused");
    if (safeUrl(c.src) && !s.shown.has(c.id)) cls.push("cg-loading");
    if (s.queue.some((a) => a.idset.has(c.id))) cls.push("cg-saving");
    return cls.join(" ");
  }
  function thumbHtml(c) {
    // Kept per card: escaping a 10 KB data: URL for 48 cards on every key would cost milliseconds.
    const hit = s.thumbs && s.thumbs.get(c.id);
    if (hit && hit.src === c.src && hit.flags === String(c.flags)) return hit.html;
    const html = thumbBuild(c);
    if (!s.thumbs) s.thumbs = new Map();
    s.thumbs.set(c.id, { src: c.src, flags: String(c.flags), html });
    return html;
  }
  function thumbBuild(c) {
    const src = safeUrl(c.src);
    const img = src ? `<img src="${src}" alt="#${c.id}" loading="lazy">` : `<span class="cg-missing">${c.src ? "no preview" : "file missing"}</span>`;
    const flags = c.flags && c.flags.length ? `<span class="cg-flag" title="${esc(c.flags.join(", "))}">⚠</span>` : "";
    return `<div class="cg-thumb" data-pick="1">${img}<span class="cg-check"></span>
        <button class="cg-zoom" data-open="1" title="Large view (Enter)">⤢</button>${flags}</div>`;
  }
  function bodyHtml(c) {
    const badge = c.state ? `${BADGE[c.state] || ""} ` : "";
    const why = s.refused.get(c.id);
    const full = `${c.label} ${badge}${c.caption}${c.out ? " · left this view" : ""}${why ? " · not applied: " + why : ""}`;
    const cap = why
      ? `<div class="cg-cap cg-why" title="${esc(full)}">⟲ ${esc(why)}</div>`
      : `<div class="cg-cap" title="${esc(full)}"><b>${esc(c.label)}</b> ${badge}${esc(c.caption)}</div>`;
    return `${cap}<div class="cg-ctl">${controlsHtml(c, false)}</div>${verdictHtml(c)}`;
  }
  function cardHtml(c) {
    return `<div class="${cardClass(c)}" data-card="${c.id}">${thumbHtml(c)}<div class="cg-body">${bodyHtml(c)}</div></div>`;
  }
  function pageCounts() {
    const cs = ids.map((i) => view.get(i));
    const n = (f) => cs.filter(f).length;
    let own = "";
    if (kind === "search") own = `${n((c) => c.state === "pending")} ⏳ · ${n((c) => c.state === "accepted")} ✅ · ${n((c) => c.state === "rejected")} ❌ on this page`;
    else if (kind === "review") own = `${n((c) => c.reviewed)} of ${cs.length} reviewed on this page`;
    else if (n((c) => c.deleted) && !allowed.has("delete")) own = `${n((c) => c.deleted)} in the trash`;
    else if (n((c) => c.deleted)) own = `${n((c) => c.deleted)} deleted on this page`;
    const parts = [data.counts, cs.length ? own : ""].filter(Boolean);
    return parts.length ? `<span class="cg-counts">${esc(parts.join(" · "))}</span>` : "";
  }
  function toolbarHtml() {
    const n = s.sel.size;
    const dis = n ? "" : " disabled";
    let bulk = "";  // the selection's buttons, while there is one (a short toolbar keeps the grid high)
    if (n && allowed.has("relabel"))
      bulk += `<select class="cg-bulk-to" title="Class for the selected cards">${classOptions(s.bulkTo ?? classes[0])}</select><button class="cg-btn" data-bulk="relabel"${dis}>Relabel</button>`;
    for (const [a, t] of [["keep", "Keep"], ["predict", "→ predicted"], ["accept", "Accept"], ["reject", "Reject"], ["restore", "Restore"], ["delete", "🗑 Delete"]])
      if (n && allowed.has(a)) bulk += `<button class="cg-btn" data-bulk="${a}">${t}</button>`;
    const msg = data.message;
    const waiting = s.queue.length;
    const status = waiting
      ? `<span class="cg-msg cg-info">Saving ${waiting}…</span>`
      : msg ? `<span class="cg-msg cg-${esc(msg[0])}" title="${esc(msg[1])}">${esc(msg[1])}</span>` : `<span class="cg-msg"></span>`;
    let page = "";
    if (allowed.has("accept")) {
      const acc = pageIds("accepted").length;
      const rej = pageIds("rejected").length;
      page = `<button class="cg-btn cg-page" data-tool="accept-page"${acc ? "" : " disabled"} title="Accept the ${acc} undecided cards shown: one step, undoable (Shift+A)">Accept page (${acc})</button>
        <button class="cg-btn cg-page" data-tool="reject-page"${rej ? "" : " disabled"} title="Reject the ${rej} undecided cards shown: one step, undoable (Shift+X)">Reject page (${rej})</button><span class="cg-sep"></span>`;
    }
    let thr = "";
    if (allowed.has("predict")) {
      const hits = doubted().length;
      const pct = s.thr;
      thr = `<span class="cg-sep"></span><span class="cg-thr" title="Confidence threshold t: [ lowers, ] raises">t
        <button class="cg-btn" data-tool="thr-" title="Lower t ([)">−</button><b class="cg-thr-val">${pct}%</b><button class="cg-btn" data-tool="thr+" title="Raise t (])">+</button></span>
        <button class="cg-btn" data-tool="doubted" title="Select the cards the model doubts with confidence ≥ ${pct}% (S)">Select ≥ t (${hits})</button>
        <button class="cg-btn" data-tool="predict-all"${hits ? "" : " disabled"} title="Accept the ${hits} predictions ≥ ${pct}% on this page: one undo step (Shift+P)">→ all ≥ t</button>`;
    }
    if (allowed.has("keep")) thr += `<button class="cg-btn" data-tool="keep-page" title="Keep every card of this page not reviewed yet (Shift+K)">Keep page</button>`;
    return `${page}<span class="cg-count"><b>${n} selected</b></span>
      <button class="cg-btn" data-tool="all">Select page</button><button class="cg-btn" data-tool="clear"${dis}>Clear</button>
      ${bulk ? `<span class="cg-sep"></span>${bulk}` : ""}${thr}<span class="cg-sep"></span>
      ${allowed.has("undo") && data.undo_button !== false ? `<button class="cg-btn" data-tool="undo" title="Undo the last change (Z)">↩ Undo</button>` : ""}
      <button class="cg-btn" data-tool="help" title="Keyboard shortcuts (?)">?</button>${pageCounts()}${status}`;
  }
  function legendHtml() {
    if (!allowed.has("relabel")) return "";
    return classes.slice(0, 9).map((c, i) => `<span class="cg-key"><kbd>${i + 1}</kbd> ${esc(c)}</span>`).join("");
  }
  function lightboxHtml() {
    const c = view.get(s.lb);
    if (!c) return "";
    const big = safeUrl(data.lightbox && data.lightbox.id === c.id && data.lightbox.src ? data.lightbox.src : c.src);
    const rows = (c.meta || []).map(([k, v]) => {
      const val = /^https?:\/\//i.test(v) ? `<a href="${esc(v)}" target="_blank" rel="noopener noreferrer">${esc(v)}</a>` : esc(v);
      return `<tr><th>${esc(k)}</th><td>${val}</td></tr>`;
    }).join("");
    const i = ids.indexOf(c.id);
    const badge = c.state ? ` ${BADGE[c.state] || ""} ${esc(c.state)}` : "";
    return `<div class="cg-overlay cg-lightbox" data-close="1"><div class="cg-lb" role="dialog" aria-label="Image #${c.id}">
      <div class="cg-lb-img">${big ? `<img src="${big}" alt="#${c.id}">` : `<span class="cg-missing">no preview</span>`}</div>
      <div class="cg-lb-side"><div class="cg-lb-head"><b>#${c.id} · ${esc(c.label)}${badge}</b><span>${i + 1} of ${ids.length}</span>
        <button class="cg-btn" data-close="1" title="Close (Esc)">✕</button></div>
        <table class="cg-meta">${rows}</table>
        <div class="cg-ctl cg-lb-ctl" data-card="${c.id}">${controlsHtml(c, true)}</div>
        <div class="cg-lb-nav"><button class="cg-btn" data-nav="-1">← Prev</button><button class="cg-btn" data-nav="1">Next →</button></div>
      </div></div></div>`;
  }
  function keyShown(k) {
    if (k === "K") return allowed.has("keep") || allowed.has("relabel");
    if (k === "D") return allowed.has("delete");
    if (k === "R") return allowed.has("restore");
    if (k === "P" || k === "[ / ]" || k === "S" || k === "Shift + P") return allowed.has("predict");
    if (k === "Shift + K") return allowed.has("keep");
    if (k === "M") return allowed.has("more");
    if (k === "A / X" || k === "Shift + A / Shift + X") return allowed.has("accept");
    if (k === "1 – 9") return allowed.has("relabel");
    if (k === "Z") return allowed.has("undo");
    return true;
  }
  function helpHtml() {
    const rows = KEYS.filter(([k]) => keyShown(k))
      .map(([k, v]) => [k, k === "K" && !allowed.has("keep") ? "the label is right: next card" : v])
      .concat(data.keys || [])  // the page's own shortcuts, after the grid's
      .map(([k, v]) => `<tr><th><kbd>${esc(k)}</kbd></th><td>${esc(v)}</td></tr>`).join("");
    return `<div class="cg-overlay cg-help" data-close-help="1"><div class="cg-helpbox" role="dialog" aria-label="Keyboard shortcuts">
      <div class="cg-lb-head"><b>Keyboard shortcuts</b><button class="cg-btn" data-close-help="1">✕</button></div>
      <table class="cg-meta">${rows}</table>
      <p class="cg-note">Keys act on the selected cards when there are any, else on the focused (outlined) card.
        A decided card stays in place, marked, until you turn the page.</p></div></div>`;
  }
  function render() {
    const structure = `${ids.join(",")}|${classes.join(",")}|${[...allowed].join(",")}|${data.hint_only}`;
    if (s.rootEl !== root || s.structure !== structure || !root.querySelector(".cg-toolbar")) {
      s.rootEl = root;
      s.structure = structure;
      s.html = new Map();
      s.toolbarHtml = toolbarHtml();
      s.layerHtml = "";
      root.style.setProperty("--cg-cols", String(cols));
      root.innerHTML = `<div class="cg-toolbar">${s.toolbarHtml}</div>
        <div class="cg-legend">${legendHtml()}</div>
        ${ids.length ? `<div class="cg-grid">${ids.map((i) => cardHtml(view.get(i))).join("")}</div>` : `<div class="cg-empty">${esc(data.empty || "Nothing here.")}</div>`}
        <div class="cg-layer"></div>`;
      for (const i of ids) {
        const c = view.get(i);
        s.html.set(i, { cls: cardClass(c), thumb: thumbHtml(c), body: bodyHtml(c) });
      }
    } else {
      for (const i of ids) {
        const c = view.get(i);
        const old = s.html.get(i);
        const now = { cls: cardClass(c), thumb: thumbHtml(c), body: bodyHtml(c) };
        if (old && old.cls === now.cls && old.thumb === now.thumb && old.body === now.body) continue;
        const el = root.querySelector(`.cg-grid [data-card="${i}"]`);
        if (!el) continue;
        if (!old || old.cls !== now.cls) el.className = now.cls;
        if (!old || old.thumb !== now.thumb) el.querySelector(".cg-thumb").outerHTML = now.thumb;
        if (!old || old.body !== now.body) el.querySelector(".cg-body").innerHTML = now.body;
        s.html.set(i, now);
      }
      const bar = toolbarHtml();
      if (bar !== s.toolbarHtml) { root.querySelector(".cg-toolbar").innerHTML = bar; s.toolbarHtml = bar; }
    }
    const layer = (s.lb != null ? lightboxHtml() : "") + (s.help ? helpHtml() : "");
    if (layer !== s.layerHtml) { root.querySelector(".cg-layer").innerHTML = layer; s.layerHtml = layer; }
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
      else if (name === "undo") return decide("undo", []);
      else if (name === "thr-" || name === "thr+") return nudge(name === "thr+" ? 5 : -5);
      else if (name === "doubted") return selectDoubted();
      else if (name === "predict-all") return predict(doubted());
      else if (name === "keep-page") return keepPage();
      else if (name === "accept-page") return decide("accept", pageIds("accepted"));
      else if (name === "reject-page") return decide("reject", pageIds("rejected"));
      else if (name === "help") s.help = !s.help;
      return render();
    }
    const bulk = t.closest("[data-bulk]");
    if (bulk) {
      const chosen = ids.filter((i) => s.sel.has(i));
      if (bulk.dataset.bulk === "relabel") return decide("relabel", chosen, root.querySelector(".cg-bulk-to").value);
      return act(bulk.dataset.bulk, chosen);
    }
    const cardEl = t.closest("[data-card]");
    if (!cardEl) return;
    const id = Number(cardEl.dataset.card);
    const a = t.closest("[data-act]");
    if (a) { s.focus = id; return act(a.dataset.act, [id]); }
    if (t.closest("[data-open]")) return open(id);
    if (t.closest("[data-pick]")) {
      if (e.shiftKey && s.anchor != null && view.has(s.anchor)) selectRange(s.anchor, id);
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
    const cardEl = img.closest("[data-card]");
    img.replaceWith(note);
    if (cardEl) settle(Number(cardEl.dataset.card), cardEl);
  }
  function onImageLoad(e) {
    const img = e.target;
    if (!(img instanceof HTMLImageElement) || !root.contains(img)) return;
    const cardEl = img.closest(".cg-grid [data-card]");
    if (cardEl) settle(Number(cardEl.dataset.card), cardEl);
  }
  // A card's thumbnail is on screen (or failed): drop its placeholder, and let the keys held for it go.
  function settle(id, cardEl) {
    s.shown.add(id);
    const el = cardEl || root.querySelector(`.cg-grid [data-card="${id}"]`);
    if (el) el.classList.remove("cg-loading");
    const kept = s.html.get(id);
    if (kept) kept.cls = kept.cls.replace(" cg-loading", "");
    release();
  }
  // -- keys that wait for a thumbnail ---------------------------------------------------------------
  const NAVIGATION = new Set(["ArrowRight", "ArrowLeft", "ArrowDown", "ArrowUp", "Escape", "?", "Enter", " "]);
  function decides(w) {
    // A key that decides on the focused or selected cards (navigation, undo and the threshold never do).
    const k = w.key || "";
    if (k.length !== 1) return false;
    if (/^[1-9]$/.test(k)) return true;
    if (w.shiftKey) return "AXPK".includes(k);
    return KEY_ACTION[k.toLowerCase()] !== undefined;
  }
  function gridKey(w) {
    // What handleKey acts on: only these queue behind a held key; Tab, PageDown, F5… go on untouched.
    const k = w.key || "";
    return NAVIGATION.has(k) || decides(w) || (k.length === 1 && "zZ[]sS".includes(k));
  }
  function waitsFor(w) {
    // The cards a decision key would act on that the user has not seen yet. The large view shows the
    // picture itself: nothing waits there.
    if (s.lb != null || !decides(w)) return [];
    return targets().filter((i) => { const c = view.get(i); return c && safeUrl(c.src) && !s.shown.has(i); });
  }
  function hold(w) {
    s.held.push(w);
    armHold();
  }
  function armHold() {
    // HOLD_MS for the first held key; each key that goes on gives the next one its own HOLD_MS.
    clearTimeout(s.holdTimer);
    if (!s.held.length) return;
    s.holdTimer = setTimeout(() => {
      for (const i of waitsFor(s.held[0])) settle(i);  // hung: shown as it is ("no preview" stays a placeholder)
      release();  // also when what it waited for changed meanwhile (another card clicked, a rerun)
    }, HOLD_MS);
  }
  function release() {
    while (s.held.length && !waitsFor(s.held[0]).length) handleKey(s.held.shift());
    armHold();
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
    decide("relabel", [s.focus], t.value);
  }
  function onKey(e) {
    if (window.__lotrCardsActive !== key) return;
    const origin = e.composedPath ? e.composedPath()[0] : e.target;
    if (origin && origin.closest && origin.closest("input, select, textarea, [contenteditable='true']")) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (!root.isConnected) {
      // Streamlit is swapping the grid's element (a full rerun): the key waits for the new one, in
      // order, rather than being lost (a grid gone for good drops them after a second).
      s.waiting = (s.waiting || []).concat([{ key: e.key, shiftKey: e.shiftKey, at: performance.now() }]);
      e.preventDefault();
      return;
    }
    const w = { key: e.key, shiftKey: e.shiftKey, at: performance.now() };
    if ((s.held.length && gridKey(w)) || waitsFor(w).length) {  // in order: a grid key after a held one waits too
      hold(w);
      e.preventDefault();
      e.stopPropagation();
      return;
    }
    handleKey(e);
  }
  function handleKey(e) {
    const k = e.key;
    s.log = (s.log || []).slice(-199).concat([[k, s.focus, s.seq]]);
    const here = s.lb != null ? [s.lb] : targets();
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
    else if (k === "z" || k === "Z") decide("undo", []);
    else if (allowed.has("predict") && s.lb == null && (k === "[" || k === "]")) nudge(k === "]" ? 5 : -5);
    else if (allowed.has("predict") && s.lb == null && (k === "s" || k === "S") && !e.shiftKey) selectDoubted();
    else if (allowed.has("predict") && s.lb == null && k === "P" && e.shiftKey) predict(doubted());
    else if (allowed.has("keep") && s.lb == null && k === "K" && e.shiftKey) keepPage();
    else if (allowed.has("accept") && s.lb == null && (k === "A" || k === "X") && e.shiftKey)
      decide(k === "A" ? "accept" : "reject", pageIds(k === "A" ? "accepted" : "rejected"));
    else if (/^[1-9]$/.test(k) && allowed.has("relabel") && classes[Number(k) - 1] !== undefined) {
      decide("relabel", here, classes[Number(k) - 1]);
    } else if (KEY_ACTION[k.toLowerCase()] && !e.shiftKey) {
      const name = KEY_ACTION[k.toLowerCase()];
      if (name === "keep" && !allowed.has("keep")) moveFocus(1, false); // no review state here: K = fine, next
      else if (allowed.has(name)) act(name, here);
      else handled = false;
    } else handled = false;
    if (handled && e.preventDefault) { e.preventDefault(); e.stopPropagation(); }
  }

  // One grid listens: the one last clicked, else the first one shown (a grid gone from the page hands over).
  s.root = root;
  if (!window.__lotrCards[window.__lotrCardsActive]?.root?.isConnected) window.__lotrCardsActive = key;
  render();
  const waiting = (s.waiting || []).filter((w) => performance.now() - w.at < 1000);
  s.waiting = [];
  for (const w of waiting) {  // keys typed while the element was being swapped, in order
    if ((s.held.length && gridKey(w)) || waitsFor(w).length) hold(w);
    else handleKey(w);
  }
  // Thumbnails the browser had already (a remount reuses its cache) count as shown at once.
  for (const img of root.querySelectorAll(".cg-grid img")) {
    const cardEl = img.closest("[data-card]");
    if (img.complete && img.naturalWidth > 0 && cardEl) settle(Number(cardEl.dataset.card), cardEl);
  }
  if (s.held.length) armHold();  // keys held by the grid before this rerun: this mount's timer lets them go
  // The answer came: what was typed meanwhile goes at the next pause (now, if the keys have paused).
  if (!s.inflight && s.queue.length) {
    const now = performance.now();
    if (now - (s.lastKeyAt || 0) >= IDLE_MS || now - (s.firstUnsentAt || now) >= MAX_WAIT_MS) flush();
    else { clearTimeout(s.debounce); s.debounce = setTimeout(() => s.flush && s.flush(), IDLE_MS - (now - s.lastKeyAt)); }
  }
  // A window made narrower or wider: as many columns as fit (up to grid_columns), without a rerun.
  const resized = new ResizeObserver(() => {
    const n = fit();
    if (n !== cols) { cols = n; root.style.setProperty("--cg-cols", String(cols)); }
  });
  resized.observe(root);
  root.addEventListener("click", onClick);
  root.addEventListener("dblclick", onDblClick);
  root.addEventListener("error", onImageError, true);
  root.addEventListener("load", onImageLoad, true);
  root.addEventListener("change", onChange);
  root.addEventListener("pointerdown", fillOptions, true);
  root.addEventListener("focusin", fillOptions);
  document.addEventListener("keydown", onKey, true);
  s.cleanup = () => {
    root.removeEventListener("click", onClick);
    root.removeEventListener("dblclick", onDblClick);
    root.removeEventListener("error", onImageError, true);
    root.removeEventListener("load", onImageLoad, true);
    root.removeEventListener("change", onChange);
    root.removeEventListener("pointerdown", fillOptions, true);
    root.removeEventListener("focusin", fillOptions);
    document.removeEventListener("keydown", onKey, true);
    clearTimeout(s.holdTimer);  // its closure is this mount's; the next mount arms its own
    resized.disconnect();
    s.cleanup = null;
  };
  return s.cleanup;
}
