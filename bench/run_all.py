"""Run every bench/bench_*.py and write bench/RESULTS.md: one row per figure.

Each bench script prints one JSON object per figure per line on stdout:
``{"name", "ours", "anchor", "ratio", "goal", "unit", "note"?}``; anything else it prints is passed
through. Figures are ratios against an anchor measured side by side in the same run; absolute times
are context. A goal reads ``">= 0.95"`` / ``"<= 1.5"`` (on the ratio) or ``"ours <= 0.5 s"`` (on ours), or two
of these joined by " or ";
``"context"`` has none.

    python bench/run_all.py                 # all of them (make bench)
    python bench/run_all.py bench_app.py    # only these; the other rows of RESULTS.md are kept

A script that cannot measure here (``bench_gpu.py`` without a GPU) prints one line starting ``skipped:``
and no figure: its rows of RESULTS.md, measured where it could, are kept.

Exit status 1 when a bench script failed (its row says so), else 0.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "RESULTS.md"
TIMEOUT_S = float(os.environ.get("BENCH_TIMEOUT_S", 3600))
COLUMNS = ("bench", "figure", "ours", "anchor", "ratio", "goal", "met", "unit", "date", "machine", "note")
SKIPPED = "skipped:"
_GOAL = re.compile(r"^\s*(ours|ratio)?\s*(<=|>=|<|>|≤|≥)\s*([-+0-9.eE]+)")


def machine() -> str:
    """Cores, CPU model (from /proc/cpuinfo) and memory, e.g. '2 cores, AMD EPYC 7B13, 24 GiB'."""
    model = platform.processor() or platform.machine()
    mem = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f", {round(int(line.split()[1]) / 1024**2)} GiB"
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}{mem}"


def met(row: dict[str, Any]) -> str:
    """'yes'/'no' when the goal can be checked, '' when it is context or unreadable. A goal of two
    parts joined by " or " (``"ours <= 2 s or <= 1.5"``) is met when either part is."""
    verdicts = [_met_one(row, part) for part in str(row.get("goal") or "").split(" or ")]
    if "" in verdicts:
        return ""
    return "yes" if "yes" in verdicts else "**no**"


def _met_one(row: dict[str, Any], goal: str) -> str:
    m = _GOAL.match(goal)
    if not m:
        return ""
    subject = m.group(1) or "ratio"
    value = row.get(subject)
    if not isinstance(value, int | float):
        return ""
    limit = float(m.group(3))
    op = {"≤": "<=", "≥": ">="}.get(m.group(2), m.group(2))
    ok = {"<=": value <= limit, ">=": value >= limit, "<": value < limit, ">": value > limit}[op]
    return "yes" if ok else "**no**"


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        value = f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def run_one(script: Path) -> tuple[list[dict[str, Any]], str | None, float, str | None]:
    """Run one bench script; returns its figures, an error (or None), its wall time, and why it skipped (or None)."""
    started = time.monotonic()
    print(f"== {script.name}", flush=True)
    proc = subprocess.Popen(
        [sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    tail: deque[str] = deque(maxlen=5)

    def pump_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            if line.strip():
                tail.append(line.strip())

    errs = threading.Thread(target=pump_stderr, daemon=True)
    errs.start()
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(TIMEOUT_S, kill)
    timer.start()
    rows: list[dict[str, Any]] = []
    skipped: str | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            text = line.strip()
            if text.startswith(SKIPPED):
                skipped = text
            if text.startswith("{"):
                try:
                    doc = json.loads(text)
                except json.JSONDecodeError:
                    continue
                if isinstance(doc, dict) and "name" in doc and "ours" in doc:
                    rows.append(doc)
        code = proc.wait()
    finally:
        timer.cancel()
        errs.join(timeout=5)
    wall = time.monotonic() - started
    error = None
    if code:
        reason = f"killed after {TIMEOUT_S:.0f} s (BENCH_TIMEOUT_S)" if timed_out.is_set() else f"exit {code}"
        error = f"{reason}: {tail[-1] if tail else 'no output'}"
    elif not rows and skipped is None:
        error = "printed no figure"
    return rows, error, wall, skipped


def _bench_of(line: str) -> str:
    return line.split("|")[1].strip().strip("`")


def _kept_rows(names: set[str]) -> list[str]:
    """Table lines of RESULTS.md for bench scripts not run this time (sorted() keeps their order)."""
    if not RESULTS.exists():
        return []
    lines = RESULTS.read_text(encoding="utf-8").splitlines()
    rows = [ln for ln in lines if ln.startswith("| ") and not ln.startswith("| bench |")]
    return [ln for ln in rows if _bench_of(ln) not in names]


def write_results(rows: list[list[str]], ran: set[str]) -> None:
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`bench/run_all.py`). Each figure is measured side by side with its anchor in "
        "one run on the machine named in its row (with its 1-minute load average when the script started: other "
        "work on the machine slows both sides); **ratio = ours / anchor** is the figure, absolute values are context. "
        "`met` checks the goal (on the ratio unless it says `ours`; of two parts joined by `or`, either).",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
        *sorted([*_kept_rows(ran), *("| " + " | ".join(r) + " |" for r in rows)], key=_bench_of),
        "",
    ]
    RESULTS.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str]) -> int:
    if argv:
        scripts = [BENCH / Path(a).name for a in argv]
        missing = [s.name for s in scripts if not s.is_file()]
        if missing:
            print(f"error: no bench script {', '.join(missing)} in {BENCH}", file=sys.stderr)
            return 2
    else:
        scripts = sorted(BENCH.glob("bench_*.py"))
    if not scripts:
        print(f"error: no bench_*.py in {BENCH}", file=sys.stderr)
        return 2
    host = machine()
    table: list[list[str]] = []
    failed = []
    ran = set()
    for script in scripts:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        figures, error, wall, skipped = run_one(script)
        if skipped is not None and not figures and error is None:
            print(f"== {script.name}: {skipped} (its rows in {RESULTS.name} are kept)", flush=True)
            continue
        ran.add(script.name)
        date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        where = host if load is None else f"{host}, load {load:.1f} at start"
        for f in figures:
            table.append(
                [
                    f"`{script.name}`",
                    _cell(f["name"]),
                    _cell(f.get("ours")),
                    _cell(f.get("anchor")),
                    _cell(f.get("ratio")),
                    _cell(f.get("goal")),
                    met(f),
                    _cell(f.get("unit")),
                    date,
                    where,
                    _cell(f.get("note", "")),
                ]
            )
        if error:
            failed.append(script.name)
            table.append(
                [
                    f"`{script.name}`",
                    "**bench failed**",
                    "–",
                    "–",
                    "–",
                    "–",
                    "",
                    "",
                    date,
                    where,
                    _cell(f"{error} (after {wall:.0f} s)"),
                ]
            )
        print(
            f"== {script.name}: {len(figures)} figure(s) in {wall:.0f} s" + (f", FAILED ({error})" if error else ""),
            flush=True,
        )
    write_results(table, ran)
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
