"""The phone page ``GET /`` of the prediction API: take or pick a photo, see every class's probability.

Plain HTML + JS, no build step and no external asset (a phone on the LAN may have no internet).
``{{AUTH}}`` becomes ``true`` when the server wants a token: the page then asks for it once,
keeps it in the browser's localStorage, and sends it as ``Authorization: Bearer <token>``. A
``#token=...`` fragment in the address (printed by ``serve``) fills it in; fragments never reach
the server's logs.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Classify a photo</title>
<style>
  :root { color-scheme: light dark; font-family: system-ui, sans-serif; }
  body { margin: 0 auto; max-width: 34rem; padding: 1rem; }
  h1 { font-size: 1.4rem; margin: 0 0 .75rem; }
  label.pick { display: block; text-align: center; padding: 1rem; border-radius: .75rem;
               background: #2d6cdf; color: #fff; font-size: 1.15rem; cursor: pointer; }
  label.pick input { display: none; }
  #token-box { margin-bottom: 1rem; }
  #token-box input { width: 100%; box-sizing: border-box; font-size: 1rem; padding: .6rem; }
  #preview { display: none; width: 100%; max-height: 45vh; object-fit: contain; margin: 1rem 0;
             border-radius: .5rem; }
  #status { min-height: 1.5rem; margin: .75rem 0; }
  #status.error { color: #c62828; }
  .row { margin: .45rem 0; }
  .row .name { display: flex; justify-content: space-between; font-size: 1rem; }
  .bar { height: .7rem; background: #8884; border-radius: .35rem; overflow: hidden; }
  .bar div { height: 100%; background: #2d6cdf; }
  .row.top .name { font-weight: 700; }
</style>
</head>
<body>
<h1>Classify a photo</h1>
<div id="token-box" hidden>
  <label for="token">Access token (printed where the server was started)</label>
  <input id="token" name="token" type="password" autocomplete="off" placeholder="token">
</div>
<label class="pick">Take or pick a photo
  <input id="photo" type="file" accept="image/*" capture="environment">
</label>
<img id="preview" alt="the chosen photo">
<div id="status" role="status"></div>
<div id="results" aria-live="polite"></div>
<script>
const AUTH = {{AUTH}};
const tokenBox = document.getElementById("token-box");
const tokenInput = document.getElementById("token");
const statusLine = document.getElementById("status");
const results = document.getElementById("results");
const preview = document.getElementById("preview");
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) {
  localStorage.setItem("lotr-token", fromHash);
  history.replaceState(null, "", location.pathname + location.search);
}
tokenInput.value = localStorage.getItem("lotr-token") || "";
tokenBox.hidden = !AUTH;
tokenInput.addEventListener("change", () => localStorage.setItem("lotr-token", tokenInput.value.trim()));

function say(text, error) {
  statusLine.textContent = text;
  statusLine.className = error ? "error" : "";
}

function show(doc) {
  results.replaceChildren();
  const rows = Object.entries(doc.predictions).sort((a, b) => b[1] - a[1]);
  rows.forEach(([name, p], i) => {
    const row = document.createElement("div");
    row.className = i === 0 ? "row top" : "row";
    row.dataset.class = name;
    const label = document.createElement("div");
    label.className = "name";
    const left = document.createElement("span");
    left.textContent = name;
    const right = document.createElement("span");
    right.className = "pct";
    right.textContent = (100 * p).toFixed(1) + "%";
    label.append(left, right);
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.style.width = (100 * p).toFixed(1) + "%";
    bar.append(fill);
    row.append(label, bar);
    results.append(row);
  });
  say(doc.top + " (" + (100 * doc.probability).toFixed(1) + "%) in " + Math.round(doc.latency_ms) + " ms");
}

document.getElementById("photo").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  preview.src = URL.createObjectURL(file);
  preview.style.display = "block";
  results.replaceChildren();
  say("Classifying…");
  const headers = {"Content-Type": file.type || "application/octet-stream"};
  const token = tokenInput.value.trim();
  if (AUTH && !token) { say("Enter the access token first.", true); tokenInput.focus(); return; }
  if (token) headers["Authorization"] = "Bearer " + token;
  try {
    const resp = await fetch("predict", {method: "POST", headers, body: file});
    const doc = await resp.json().catch(() => ({error: "The server answered " + resp.status + "."}));
    if (resp.status === 401) { tokenBox.hidden = false; tokenInput.focus(); }
    if (!resp.ok) { say(doc.error || ("Error " + resp.status), true); return; }
    show(doc);
  } catch (err) {
    say("Could not reach the server: " + err.message, true);
  } finally {
    event.target.value = "";
  }
});
</script>
</body>
</html>
"""


def render(auth: bool) -> str:
    """The page, asking for a token when ``auth``."""
    return PAGE.replace("{{AUTH}}", "true" if auth else "false")
