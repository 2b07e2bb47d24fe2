"""Run the real app for browser tests and benchmarks: Streamlit server, Chromium, fake search results.

Used by ``tests/e2e/conftest.py`` and by ``bench/bench_app.py``; nothing here imports pytest.

- ``find_chromium()``: Debian's Chromium (``apt-get install chromium``). Playwright's own browser
  download cannot work here (no network but the package registries), so it is launched by path.
- ``AppServer``: ``streamlit run streamlit_app.py`` on a free 127.0.0.1 port against a data dir, in its
  own process group; ``start()`` waits (bounded) for ``/_stcore/health``, ``stop()`` always ends it.
- ``fake_search_results()``: the JSON file behind ``LOTR_LABELER_FAKE_DDGS`` (see lotr_labeler/fakes.py),
  its results pointing at a local image server. That is the only thing faked.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from lotr_labeler.fakes import ENV as FAKE_DDGS_ENV

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM_ENV = "LOTR_LABELER_CHROMIUM"
# Without the background-networking flags Chromium's own connections (updates, sync, QUIC probes)
# are refused by the closed network and slow or break the start.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HEALTH_TIMEOUT_S = 60.0


def find_chromium() -> str | None:
    """$LOTR_LABELER_CHROMIUM, else chromium / chromium-browser on PATH, else None."""
    explicit = os.environ.get(CHROMIUM_ENV)
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def launch_chromium(playwright: Any, executable: str) -> Any:
    """A headless Chromium Browser (Playwright) from the given binary."""
    return playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(data_dir: Path, *args: str, project: str | None = None) -> str:
    """Run ``lotr-labeler`` (the real CLI, a user's terminal) on ``data_dir``; returns stdout."""
    argv = [sys.executable, "-m", "lotr_labeler", "--data", str(data_dir)]
    argv += ["--project", project] if project else []
    done = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode:
        raise RuntimeError(f"lotr-labeler {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def fake_search_results(path: Path, image_base: str, queries: dict[str, Iterable[int]]) -> Path:
    """Write the fake DuckDuckGo file: each query answers with ``image_base/img/<n>.png`` for its n.

    The thumbnail is the same URL, so the browser loads the grid from the local image server just as
    it loads DuckDuckGo's thumbnail proxy in real use.
    """
    doc = {
        query: [
            {
                "title": f"{query} {n}",
                "image": f"{image_base}/img/{n}.png",
                "thumbnail": f"{image_base}/img/{n}.png",
                "url": f"{image_base}/page/{n}",
                "width": 96,
                "height": 96,
                "source": "fake",
            }
            for n in numbers
        ]
        for query, numbers in queries.items()
    }
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


class AppServer:
    """``streamlit run streamlit_app.py`` (or ``script``) against ``data_dir``; a context manager that always
    stops it. Run from the repository root, so ``.streamlit/config.toml`` applies."""

    def __init__(
        self, data_dir: Path, log_path: Path, env: dict[str, str] | None = None, script: Path | None = None
    ) -> None:
        self.data_dir = data_dir
        self.script = script or ROOT / "streamlit_app.py"
        self.log_path = log_path
        self.extra_env = env or {}
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0  # time.monotonic() just before the process was spawned
        self.health_s = 0.0  # process start → /_stcore/health answered "ok"
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = HEALTH_TIMEOUT_S) -> AppServer:
        self.port = free_port()
        env = {**os.environ, "LOTR_LABELER_DATA": str(self.data_dir), **self.extra_env}
        argv = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(self.script),
            "--server.headless=true",
            "--server.address=127.0.0.1",
            f"--server.port={self.port}",
            "--server.fileWatcherType=none",
            "--server.runOnSave=false",
            "--browser.gatherUsageStats=false",
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child, closed in stop()
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends the server and anything it forked
        )
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        self.health_s = time.monotonic() - self.started_at
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"streamlit exited with {self.proc.returncode} before it was healthy:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200 and r.read().strip() == b"ok":
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"streamlit was not healthy within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL what is left after 10 s."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> AppServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def timing_line(name: str, seconds: float, **extra: Any) -> dict[str, Any]:
    """One measurement as the JSON-line record the e2e run prints and stores."""
    return {"name": name, "seconds": round(seconds, 4), **extra}


def write_timings(records: list[dict[str, Any]], path: Path = ARTIFACTS / "timings.json") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    return path


__all__ = [
    "ARTIFACTS",
    "CHROMIUM_ARGS",
    "FAKE_DDGS_ENV",
    "AppServer",
    "cli",
    "fake_search_results",
    "find_chromium",
    "free_port",
    "launch_chromium",
    "timing_line",
    "write_timings",
]


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process started in its own session (its whole group), SIGKILL what is left after 10 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
