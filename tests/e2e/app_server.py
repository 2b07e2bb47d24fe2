"""Run the real app for browser tests and benchmarks: Streamlit server, Chromium, fake search results.

Used by ``tests/e2e/conftest.py`` and by ``bench/bench_app.py``; nothing here imports pytest.

- ``find_chromium()``: Debian's Chromium (``apt-get install chromium``). Playwright's own browser
  download cannot work here (no network but the package registries), so it is launched by path.
- ``AppServer``: ``streamlit run streamlit_app.py`` on a free 127.0.0.1 port against a data dir, in its
  own process group; ``start()`` waits (bounded) for ``/_stcore/health``, ``stop()`` always ends it.
  ``AppServer.like_make_run(checkout, …)`` starts it as ``make run`` does instead: the venv's streamlit,
  cwd = a checkout (see ``fresh_checkout()``), its ``.streamlit/config.toml``, no data environment
  variable, so the data lands in the default ``./data`` of the checkout.
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
from lotr_labeler.project import DATA_ENV

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM_ENV = "LOTR_LABELER_CHROMIUM"
CHECKOUT_ENV = "LOTR_LABELER_E2E_CHECKOUT"  # "head": the app from a plain clone of HEAD, no uncommitted edits
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
VIEWPORT = {"width": 1400, "height": 1000}  # the desktop window of every browser test and screenshot


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


def user_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment as a user's shell has it: no data directory variable, so ``./data`` is used.

    Bytecode writing is left on so the checkout's ``__pycache__`` shows which copy of the code ran."""
    env = {k: v for k, v in os.environ.items() if k not in (DATA_ENV, "PYTHONDONTWRITEBYTECODE")}
    return {**env, **(extra or {})}


def cli(data_dir: Path | None, *args: str, project: str | None = None, cwd: Path | None = None) -> str:
    """Run ``lotr-labeler`` (the real CLI, a user's terminal); returns stdout.

    With ``data_dir``: ``--data data_dir``. Without: in ``cwd`` with no ``--data`` and no data variable,
    on the default ``./data`` there, as a user in that folder types it."""
    argv = [sys.executable, "-m", "lotr_labeler"]
    argv += ["--data", str(data_dir)] if data_dir is not None else []
    argv += ["--project", project] if project else []
    env = user_env() if data_dir is None else None
    done = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd, env=env)
    if done.returncode:
        raise RuntimeError(f"lotr-labeler {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def fresh_checkout(dest: Path, repo: Path = ROOT) -> list[str]:
    """A fresh clone of ``repo`` at ``dest`` holding the working tree's tracked files; returns the files
    that differ from HEAD (none in CI).

    ``git clone`` gives what CI checks out: tracked files only, no venv, no ``data/`` contents, no caches.
    Its HEAD lacks uncommitted edits, so a local run would silently test the last commit instead of the
    code being edited; the tracked files of the working tree are copied over it (``git ls-files``, the
    deleted ones removed). In CI the working tree is a fresh clone, so this copies nothing. Untracked
    files stay out, as they are out of CI: a new module not yet ``git add``-ed fails here too.
    ``LOTR_LABELER_E2E_CHECKOUT=head`` keeps the plain clone of HEAD (to test exactly what is committed)."""
    subprocess.run(["git", "clone", "--quiet", str(repo), str(dest)], check=True, timeout=120)
    if os.environ.get(CHECKOUT_ENV, "").strip().lower() == "head":
        return []

    def tracked(root: Path) -> set[str]:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], check=True, capture_output=True, timeout=60)
        return {name for name in out.stdout.decode().split("\0") if name}

    wanted = {name for name in tracked(repo) if (repo / name).is_file()}  # tracked and not deleted
    changed: list[str] = []
    for name in sorted(tracked(dest) - wanted):
        (dest / name).unlink()
        changed.append(name)
    for name in sorted(wanted):
        src, dst = repo / name, dest / name
        if dst.is_file() and dst.read_bytes() == src.read_bytes():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        changed.append(name)
    return changed


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
        self.checkout: Path | None = None  # set by like_make_run()
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0  # time.monotonic() just before the process was spawned
        self.health_s = 0.0  # process start → /_stcore/health answered "ok"
        self._log: IO[bytes] | None = None

    @classmethod
    def like_make_run(cls, checkout: Path, log_path: Path, env: dict[str, str] | None = None) -> AppServer:
        """The app as ``make run`` starts it in ``checkout``: ``<venv>/bin/streamlit run streamlit_app.py``
        with cwd = checkout (its ``.streamlit/config.toml`` applies), no data variable in the environment,
        so the data goes to ``checkout/data``. The one difference: a free port instead of the config's 8501,
        which a real ``make run`` or another test run may hold."""
        server = cls(checkout / "data", log_path, env=env, script=checkout / "streamlit_app.py")
        server.checkout = checkout
        return server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, project: str | None = None) -> str:
        """``lotr-labeler`` on this app's data, as its user runs it: in the checkout with the default
        ``./data`` when started like ``make run``, else with ``--data``."""
        if self.checkout is not None:
            return cli(None, *args, project=project, cwd=self.checkout)
        return cli(self.data_dir, *args, project=project)

    def cli_popen(self, *args: str, project: str | None = None) -> tuple[list[str], dict[str, Any]]:
        """The argv and ``subprocess.Popen`` keywords (cwd, env) of the same command as ``cli()``."""
        argv = [sys.executable, "-m", "lotr_labeler"]
        if self.checkout is None:
            argv += ["--data", str(self.data_dir)]
        argv += ["--project", project] if project else []
        kwargs: dict[str, Any] = {"cwd": self.checkout, "env": user_env()} if self.checkout is not None else {}
        return [*argv, *args], kwargs

    def start(self, timeout: float = HEALTH_TIMEOUT_S) -> AppServer:
        if self.proc is not None and self.proc.poll() is None:  # `with AppServer(...)` has started it already
            raise RuntimeError(f"this AppServer runs already (pid {self.proc.pid}): a second start would leak it")
        self.port = free_port()
        cwd = self.checkout or ROOT
        if self.checkout is not None:
            # `make run`: $(BIN)/streamlit run streamlit_app.py; the venv is the one running these tests.
            streamlit = Path(sys.executable).parent / "streamlit"
            if not streamlit.is_file():
                raise RuntimeError(f"No {streamlit}: install the project into this venv (make test).")
            env = user_env(self.extra_env)
            argv = [str(streamlit), "run", "streamlit_app.py", f"--server.port={self.port}"]
        else:
            env = {**os.environ, DATA_ENV: str(self.data_dir), **self.extra_env}
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
            cwd=cwd,
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
    "fresh_checkout",
    "launch_chromium",
    "timing_line",
    "user_env",
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
