// A button that unfolds a list of lines (lotr_labeler/ui/menu.py). Open and closed live in the browser:
// a rerun redraws the lines and keeps the list as the user left it (opening one asks for that rerun).

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  const root = parentElement.querySelector(".mn");
  if (!root.firstChild) {
    root.innerHTML =
      '<button type="button" class="mn-btn" aria-haspopup="true" aria-expanded="false"><span class="mn-label"></span>' +
      '<span class="mn-chev" aria-hidden="true"></span></button><div class="mn-panel" role="region" hidden></div>';
  }
  const button = root.querySelector(".mn-btn");
  const panel = root.querySelector(".mn-panel");
  root.querySelector(".mn-label").textContent = data.label;
  panel.setAttribute("aria-label", data.label);
  const lines = data.lines || [];
  panel.innerHTML = lines.length
    ? "<ul>" + lines.map((l) =>
        `<li><span class="${l.struck ? "mn-struck" : ""}">${esc(l.text)}</span>${l.note ? ` <span class="mn-note">${esc(l.note)}</span>` : ""}</li>`).join("") + "</ul>"
    : `<p class="mn-note">${esc(data.empty)}</p>`;

  const show = (open) => {
    panel.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
  };
  button.onclick = () => {
    const open = panel.hidden;
    show(open);
    // The lines drawn with the page show at once; the caller's rerun redraws them as they are now.
    if (open && data.refresh) setTriggerValue("opened", Date.now());
  };
  if (root._outside) {
    document.removeEventListener("pointerdown", root._outside, true);
    document.removeEventListener("keydown", root._escape, true);
  }
  root._outside = (e) => { if (!panel.hidden && !e.composedPath().includes(root)) show(false); };
  root._escape = (e) => { if (e.key === "Escape" && !panel.hidden) { show(false); button.focus(); } };
  document.addEventListener("pointerdown", root._outside, true);
  document.addEventListener("keydown", root._escape, true);
}
