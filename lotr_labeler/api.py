"""The JSON prediction HTTP API (Starlette), a drop-in for the seed's Django endpoint.

Endpoints::

    POST /predict   an image as JSON {"image": "<base64>"} (a "data:image/...;base64," prefix is
                    allowed), as multipart/form-data (file field "file" or "image"), as a form
                    field "image" holding base64, or as raw bytes (Content-Type image/* or
                    application/octet-stream)
                    → 200 {"predictions": {class: probability}, "top": class, "probability": p,
                           "model": run id (or the --model file name), "latency_ms": ms}
    GET  /health    → 200 {"status": "ok", "project": name, "model": run id or null, "loaded": bool}
                    (plus "message" when nothing is trained yet); 503 {"status": "error", ...,
                    "message": why} when the current run's (or --model) file is gone
    GET  /classes   → 200 {"classes": [...], "model": run id}

Every error is JSON ``{"error": message}``, with no absolute server paths in it: 400 bad JSON
(also nested too deeply), base64 or field; 404 no model (or
unknown path); 405 wrong method; 409 a run that is not finished; 413 body or image over
the limit; 415 unsupported Content-Type; 422 bytes that are not a usable image. An
unexpected failure answers 500 and is logged; the server keeps running. After a burst of
requests the server hands freed memory back to the OS (``MemoryRelease``).

The model is resolved per request — the project's current run, or the fixed ``model_path``
— and loaded through ``predict.load_predictor``'s (path, mtime) cache, so a newly
exported or newly chosen model is served without a restart.

Size limit: the decoded image may be at most the project setting ``max_bytes``; the request
body at most ``body_limit(max_bytes)`` (room for base64's 4/3 growth and multipart
framing). Larger bodies are refused from Content-Length before reading, or as soon as the
count passes the limit while streaming.

    GET  /          the phone page (``api_page``): take or pick a photo, see every class's probability

Binds 127.0.0.1 by default (``serve``); there, without a token, only requests whose ``Host`` names
loopback are answered (``LoopbackHostOnly``: no DNS-rebinding page can call it). With a ``token``
every endpoint but ``GET /`` (and CORS preflights) wants ``Authorization: Bearer <token>`` (or
``X-Token``) and answers 401 without it;
``serve`` requires one (given or generated) for any address but loopback unless ``--no-auth``.
``cors_origins`` lets pages of those origins call the API from a browser (Starlette's
CORSMiddleware); none by default.
"""

from __future__ import annotations

import base64
import binascii
import errno
import gc
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from lotr_labeler import api_page
from lotr_labeler.errors import Conflict, ImageRejected, InvalidInput, LabelerError, NotFound
from lotr_labeler.imaging import decode_budget, pixel_count, release_memory
from lotr_labeler.model.predict import (
    Limits,
    ModelRef,
    decode_image,
    is_loaded,
    load_predictor,
    model_from_path,
    resolve_model,
)
from lotr_labeler.model.runs import current_run
from lotr_labeler.store import Store
from lotr_labeler.workspace import open_project

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
LOOPBACK = ("127.0.0.1", "localhost", "::1")
TOKEN_HEADER = "x-token"  # noqa: S105 (a header name) - an alternative to ``Authorization: Bearer`` for simple clients
FILE_FIELDS = ("file", "image")
_FRAMING = 64 * 1024
_USAGE = (
    'Send JSON {"image": "<base64>"}, multipart/form-data with a "file" field, '
    "or raw image bytes with Content-Type image/*."
)

Endpoint = Callable[[Request], Awaitable[Response]]


class ApiError(LabelerError):
    """A request the API refuses: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def body_limit(max_bytes: int) -> int:
    """Largest request body accepted: a ``max_bytes`` image base64-encoded, plus framing."""
    return max_bytes * 4 // 3 + _FRAMING


def status_for(exc: LabelerError) -> int:
    """The HTTP status of a domain error."""
    if isinstance(exc, ImageRejected):
        return 413 if exc.reason == "too large" else 422
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    return 400


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def decode_base64(text: str) -> bytes:
    """Bytes of a base64 string, optionally a ``data:<type>;base64,`` URL (standard or URL-safe
    alphabet, whitespace and missing padding tolerated). Raises ApiError 400 on anything else."""
    payload = text.strip()
    if payload.startswith("data:"):
        head, sep, payload = payload.partition(",")
        if not sep or not head.endswith(";base64"):
            raise ApiError(400, f"The data URL {head[:40]!r}… is not base64. Use data:image/png;base64,<data>.")
    payload = "".join(payload.split()).replace("-", "+").replace("_", "/")
    if not payload:
        raise ApiError(400, 'The "image" field is empty. Put the base64 of an image file in it.')
    payload += "=" * (-len(payload) % 4)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            400, f'The "image" field is not valid base64 (starts {payload[:16]!r}). Encode the file bytes as base64.'
        ) from None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (413) without reading it all."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise ApiError(400, f"Content-Length {length!r} is not a number.")
        if int(length) > limit:
            raise ApiError(413, f"The request body is {int(length):,} bytes, over the limit of {limit:,}.")
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise ApiError(413, f"The request body is over the limit of {limit:,} bytes.")
    return bytes(buf)


async def _replay(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body
    yield b""


async def image_from_request(request: Request, body: bytes) -> tuple[bytes, str]:
    """The image bytes in a request body and a name for messages, by Content-Type."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype == "application/json" or (not ctype and body.lstrip().startswith(b"{")):
        return _from_json(body), "the posted image"
    if ctype == "multipart/form-data":
        return await _from_multipart(request, body)
    if ctype == "application/x-www-form-urlencoded":
        return _from_urlencoded(body), 'the "image" field'
    if ctype.startswith("image/") or ctype == "application/octet-stream":
        return body, "the posted image"
    raise ApiError(415, f"Content-Type {ctype or '(none)'!r} is not supported. {_USAGE}")


def _from_json(body: bytes) -> bytes:
    try:
        doc: Any = json.loads(body)
    except RecursionError:  # e.g. 100,000 nested [ — the parser runs out of stack
        raise ApiError(400, f"The JSON is nested too deeply to parse. {_USAGE}") from None
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, f"The body is not valid JSON. {_USAGE}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("image"), str):
        keys = ", ".join(map(str, doc)) if isinstance(doc, dict) else type(doc).__name__
        raise ApiError(400, f'The JSON needs an "image" string with base64 image data (got: {keys or "{}"}).')
    return decode_base64(doc["image"])


def _from_urlencoded(body: bytes) -> bytes:
    fields = parse_qs(body.decode("latin-1"), keep_blank_values=True)
    values = fields.get("image") or fields.get("file")
    if not values:
        raise ApiError(400, f'The form has no "image" field (fields: {", ".join(fields) or "none"}). {_USAGE}')
    # An unescaped "+" of base64 arrives as a space (curl -d image=...): put it back.
    return decode_base64(values[0].replace(" ", "+"))


async def _from_multipart(request: Request, body: bytes) -> tuple[bytes, str]:
    parser = MultiPartParser(request.headers, _replay(body), max_files=4, max_fields=16, max_part_size=len(body) + 1)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, f"The multipart body cannot be parsed ({exc.message}). {_USAGE}") from None
    try:
        for name in FILE_FIELDS:
            value = form.get(name)
            if isinstance(value, UploadFile):
                return await value.read(), value.filename or f"the {name!r} upload"
            if isinstance(value, str) and value:  # a form field carrying base64 text
                return decode_base64(value), f"the {name!r} field"
    finally:
        await form.close()
    fields = ", ".join(form.keys()) or "none"
    raise ApiError(400, f'The form has no "file" or "image" field (fields: {fields}). {_USAGE}')


# Absolute file paths left in a message after the known roots are cut (POSIX or Windows).
_ABS_PATH = re.compile(r"""(?<![\w.:/])(?:/|[A-Za-z]:\\)(?:[^\s'"/\\]+[/\\])+([^\s'"/\\]+)""")


def scrub_paths(message: str, roots: list[Path]) -> str:
    """``message`` without absolute file paths: paths under ``roots`` become relative to them,
    any other absolute path is cut to its file name. Clients need no layout of the server's disk."""
    for root in sorted({str(r) for r in roots if r.is_absolute() and len(r.parts) > 1}, key=len, reverse=True):
        message = message.replace(root.rstrip("/\\") + os.sep, "")
    return _ABS_PATH.sub(r"\1", message)


def _model_label(model: ModelRef) -> str:
    """What responses call the model: the run id, else the file name (never a server path)."""
    return model.run_id or model.path.name


class MemoryRelease:
    """Hands freed memory back to the OS when a burst of requests is over.

    A 56 MP upload decodes to ~170 MB; glibc keeps such freed blocks in per-thread arenas, so
    the server would stay at its peak. When the last request in flight ends and the resident
    size is ``slack`` bytes above what was left after the previous release, collect garbage and
    call glibc's ``malloc_trim`` (``imaging.release_memory``, where there is one).
    """

    def __init__(self, slack: int = 64 * 1024 * 1024) -> None:
        self.slack = slack
        self._lock = threading.Lock()
        self._active = 0
        self._baseline = rss_bytes()
        self.releases = 0

    def enter(self) -> None:
        with self._lock:
            self._active += 1

    def leave(self) -> bool:
        """True when this was the last request in flight and memory is worth releasing."""
        with self._lock:
            self._active -= 1
            return self._active == 0 and rss_bytes() > self._baseline + self.slack

    def release(self) -> None:
        gc.collect()
        release_memory()
        with self._lock:
            self._baseline = rss_bytes()
            self.releases += 1


def rss_bytes() -> int:
    """This process's resident size in bytes (0 where /proc is missing: then every burst releases)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


@dataclass(frozen=True)
class _Context:
    model: ModelRef | None
    missing: str  # why there is no model, when ``model`` is None
    broken: bool  # a model is configured but its file is gone (health answers 503)
    limits: Limits


class _Api:
    def __init__(self, data_root: Path, project: str | None, model_path: Path | None) -> None:
        self.data_root = Path(data_root)
        self.model_path = Path(model_path) if model_path is not None else None
        if self.model_path is not None:
            model_from_path(self.model_path)  # a clear error at start rather than on every request
        try:
            with open_project(self.data_root, project) as store:
                self.project: str | None = store.name
        except LabelerError:
            if self.model_path is None:
                raise
            self.project = None  # a model file without a project: default limits
        self.memory = MemoryRelease()
        roots = [self.data_root, self.data_root.resolve(), Path.cwd(), Path.home()]
        if self.model_path is not None:
            roots += [self.model_path.parent, self.model_path.expanduser().resolve().parent]
        self.roots = roots

    def scrub(self, message: str) -> str:
        return scrub_paths(message, self.roots)

    def context(self) -> _Context:
        """Limits and model for one request (runs in a worker thread: a store per call)."""
        limits = Limits.default()
        model: ModelRef | None = None
        missing = ""
        broken = False
        if self.project is not None:
            with Store(self.data_root / self.project) as store:
                limits = Limits.from_settings(store.settings())
                if self.model_path is None:
                    try:
                        model = resolve_model(store)
                    except NotFound as exc:
                        missing = str(exc)
                        broken = current_run(store) is not None  # chosen, but its file is gone
        if self.model_path is not None:
            try:
                model = model_from_path(self.model_path)
            except NotFound as exc:
                missing, broken = str(exc), True
        return _Context(model, missing, broken, limits)

    def warm(self) -> None:
        """Load the model now so the first request is fast (nothing to load yet is fine)."""
        ctx = self.context()
        if ctx.model is None:
            log.warning("no model yet: /predict answers 404 until one is trained (%s)", ctx.missing)
            return
        predictor = load_predictor(ctx.model.path)
        log.info("serving model %s: classes %s", ctx.model.label, ", ".join(predictor.vocab))
        self.memory = MemoryRelease()  # idle size counted with the model loaded

    @staticmethod
    def _require(ctx: _Context) -> ModelRef:
        if ctx.model is None:
            raise NotFound(ctx.missing or "No model to predict with.")
        return ctx.model

    async def predict(self, request: Request) -> Response:
        self.memory.enter()
        try:
            ctx = await run_in_threadpool(self.context)
            model = self._require(ctx)
            body = await read_body(request, body_limit(ctx.limits.max_bytes))
            data, name = await image_from_request(request, body)
            del body  # the image bytes are all that is needed now
            return JSONResponse(await run_in_threadpool(self._predict, model, data, name, ctx.limits))
        finally:
            if self.memory.leave():
                await run_in_threadpool(self.memory.release)

    @staticmethod
    def _predict(model: ModelRef, data: bytes, name: str, limits: Limits) -> dict[str, Any]:
        predictor = load_predictor(model.path)
        # The decoded image lives until the prediction is done: hold its pixels of the process-wide
        # budget across both, so concurrent big uploads take turns instead of piling up.
        with decode_budget(min(pixel_count(data), limits.max_pixels), name=name):
            image = decode_image(data, limits, name)
            started = time.perf_counter()
            result = predictor.predict_one(image)
            latency_ms = (time.perf_counter() - started) * 1000
            del image
        return {**result.as_dict(), "model": _model_label(model), "latency_ms": round(latency_ms, 2)}

    async def health(self, request: Request) -> Response:
        ctx = await run_in_threadpool(self.context)
        doc: dict[str, Any] = {
            "status": "error" if ctx.broken else "ok",
            "project": self.project,
            "model": _model_label(ctx.model) if ctx.model else None,
            "loaded": bool(ctx.model and is_loaded(ctx.model.path)),
        }
        if ctx.model is None:
            doc["message"] = self.scrub(ctx.missing)
        # Not ok when the model that should serve is gone: a monitor sees it before users do.
        return JSONResponse(doc, status_code=503 if ctx.broken else 200)

    async def classes(self, request: Request) -> Response:
        ctx = await run_in_threadpool(self.context)
        model = self._require(ctx)
        predictor = await run_in_threadpool(load_predictor, model.path)
        return JSONResponse({"classes": predictor.vocab, "model": _model_label(model)})


def _guarded(fn: Endpoint, scrub: Callable[[str], str]) -> Endpoint:
    """Every outcome of an endpoint is a JSON response: refusals 4xx, bugs 500 (logged). Messages
    carry no absolute server paths."""

    async def endpoint(request: Request) -> Response:
        try:
            return await fn(request)
        except ApiError as exc:
            return error_response(exc.status, scrub(exc.message))
        except LabelerError as exc:
            return error_response(status_for(exc), scrub(str(exc)))
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return error_response(500, "Internal error while handling the request; see the server log.")

    return endpoint


async def _http_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return error_response(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}")
    return error_response(500, "Internal error.")  # pragma: no cover - only HTTPException is routed here


class TokenAuth:
    """ASGI middleware: HTTP requests need the token, except ``GET /`` (the page that asks for
    it) and CORS preflights (browsers send those without credentials)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _allowed(self, scope: Scope) -> bool:
        if scope["method"] == "OPTIONS" or (scope["method"] in ("GET", "HEAD") and scope["path"] == "/"):
            return True
        headers = dict(scope["headers"])
        given = headers.get(TOKEN_HEADER.encode(), b"")
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        return hmac.compare_digest(given, self.token)  # constant time: no guessing by timing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {"error": "This server wants its access token: send the header 'Authorization: Bearer <token>'."},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)


def host_name(header: str) -> str:
    """The host of a ``Host`` header without its port, lower case, without a final dot:
    ``[::1]:8000`` -> ``[::1]``, ``LocalHost.:80`` -> ``localhost``."""
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        rest = header[end + 1 :] if end != -1 else ""
        if end != -1 and (not rest or (rest[0] == ":" and rest[1:].isdigit())):
            return header[: end + 1]
        return header  # "[::1]evil.example", "[::1": not an address with a port; judged (and refused) whole
    name, colon, port = header.rpartition(":")
    if colon and port.isdigit():
        header = name
    return header.rstrip(".")


class LoopbackHostOnly:
    """ASGI middleware for a server without a token on loopback: answer only requests addressed
    to a loopback name (``localhost``, 127.0.0.0/8, ``[::1]``) in their ``Host`` header.

    Why: a web page on another site can point its own host name at 127.0.0.1 (DNS rebinding) and
    then call this API from the user's browser as a same-origin page; its requests still carry
    that site's name in ``Host``. Starlette's ``TrustedHostMiddleware`` takes the text before the
    first colon as the host, which cuts ``[::1]:8000`` to ``[``, so loopback is judged here by
    address, as ``serve`` judges it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        if is_loopback(host_name(header)):
            await self.app(scope, receive, send)
            return
        shown = header[:80] or "(none)"
        response = JSONResponse(
            {
                "error": f"Host {shown!r} refused: this server has no token, so it answers only requests "
                "addressed to localhost or 127.0.0.1. To reach it by another name, start it with "
                "--host ADDRESS, which requires a token."
            },
            status_code=421,
        )
        await response(scope, receive, send)


def is_loopback(host: str) -> bool:
    """A loopback address (127.0.0.0/8, ::1) or ``localhost``; a name like ``127.foo.example`` is not."""
    if host in LOOPBACK:
        return True
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if "[" in host or "]" in host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_token(host: str, token: str | None, no_auth: bool) -> tuple[str | None, bool]:
    """The token ``serve`` requires and whether it was generated now.

    Loopback needs none (unless given); any other address needs one: the given ``token``, else a
    new random one, unless ``no_auth`` says explicitly to serve without.

    Raises
    ------
    InvalidInput
        Both a token and ``no_auth``, or a token too short to resist guessing.
    """
    if token is not None and no_auth:
        raise InvalidInput("Give --token T or --no-auth, not both.")
    if token is not None:
        if len(token) < 8:
            raise InvalidInput(f"The token is {len(token)} characters; use at least 8 (or omit it to get one).")
        return token, False
    if no_auth or is_loopback(host):
        return None, False
    return secrets.token_urlsafe(16), True


def create_app(
    data_root: Path,
    project: str | None = None,
    model_path: Path | None = None,
    *,
    cors_origins: Sequence[str] = (),
    token: str | None = None,
    loopback_hosts_only: bool = False,
) -> Starlette:
    """The API for ``project`` in ``data_root`` (its current run, per request), or for a fixed
    ``model_path`` the user gave explicitly (a pickle: only a file you trust).

    Parameters
    ----------
    data_root
        The data folder holding the projects.
    project
        The project whose current run answers; None: the only (or last used) project.
    model_path
        A fixed model file to serve instead of the project's runs.
    cors_origins
        Origins (``https://example.org``, or ``*``) whose pages may call the API from a browser.
    token
        When set, every endpoint but ``GET /`` answers 401 without it.
    loopback_hosts_only
        Answer only requests whose ``Host`` names loopback (``LoopbackHostOnly``): what ``serve``
        sets for a loopback server without a token, against DNS rebinding.

    Returns
    -------
    Starlette
        The app: ``POST /predict``, ``GET /health``, ``GET /classes``, ``GET /`` (phone page).

    Raises
    ------
    NotFound
        The project or the model file does not exist (raised now, not per request).
    InvalidInput
        The project name is not valid, or several projects and none named.
    """
    api = _Api(data_root, project, model_path)
    routes = [
        Route("/predict", _guarded(api.predict, api.scrub), methods=["POST"]),
        Route("/health", _guarded(api.health, api.scrub), methods=["GET"]),
        Route("/classes", _guarded(api.classes, api.scrub), methods=["GET"]),
        Route("/", _phone_page(token is not None), methods=["GET"]),
    ]
    middleware: list[Middleware] = []
    if cors_origins:  # outermost: preflights are answered before the token check
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", TOKEN_HEADER],
            )
        )
    if token is not None:
        middleware.append(Middleware(TokenAuth, token=token))
    if loopback_hosts_only:  # outermost: a rebinding page's request gets no answer but the refusal
        middleware.insert(0, Middleware(LoopbackHostOnly))
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={HTTPException: _http_error})
    app.state.api = api
    return app


def _phone_page(auth: bool) -> Endpoint:
    html = api_page.render(auth)

    async def page(request: Request) -> Response:
        # Inline script and style only; nothing from elsewhere, no framing by other sites.
        csp = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' blob:"
        return HTMLResponse(html, headers={"Content-Security-Policy": csp + "; frame-ancestors 'none'"})

    return page


def serve(
    data_root: Path,
    project: str | None = None,
    model_path: Path | None = None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    cors_origins: Sequence[str] = (),
    token: str | None = None,
    announce: Callable[[], None] | None = None,
    loading: Callable[[], None] | None = None,
) -> None:
    """Run the API with uvicorn (one worker) until interrupted.

    The port is checked and the model found before ``announce`` runs (the CLI's "Prediction API on
    …" lines), so a busy port or a missing model is one error line, never an announcement first.

    Parameters
    ----------
    data_root, project, model_path
        What to serve, as for ``create_app``.
    host
        The address to listen on; anything but loopback without a token is logged as a warning.
    port
        The TCP port, 1-65535.
    cors_origins, token
        As for ``create_app`` (``serve_token`` decides the token from ``--token``/``--no-auth``).
    announce
        Called once the server can start, just before it does.
    loading
        Called once the port is free and the model found, before the model loads (seconds of silence:
        a first ``curl`` then looked like a hung server).

    Raises
    ------
    InvalidInput
        The port is out of range, or as ``create_app``.
    Conflict
        Another program listens on the port already.
    NotFound
        As ``create_app``.
    """
    import uvicorn

    if not 0 < port < 65536:
        raise InvalidInput(f"Port {port} is not valid. Use 1-65535, e.g. {DEFAULT_PORT}.")
    local = token is None and is_loopback(host)
    check_port(host, port)
    app = create_app(data_root, project, model_path, cors_origins=cors_origins, token=token, loopback_hosts_only=local)
    if loading is not None:
        loading()
    app.state.api.warm()
    if token is None and not is_loopback(host):
        log.warning("serving on %s without a token (--no-auth): anyone who can reach it can use it", host)
    if announce is not None:
        announce()
    uvicorn.run(app, host=host, port=port, workers=1, log_level="info")


def check_port(host: str, port: int) -> None:
    """Raise Conflict when ``host:port`` is taken (bound as uvicorn binds, then let go at once)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise Conflict(
                    f"Port {port} on {host} is in use (another `serve`, or another program). "
                    f"Stop it, or pick another port with --port (e.g. --port {port + 1})."
                ) from None
            raise InvalidInput(f"Cannot listen on {host}:{port} ({exc.strerror or exc}). Check --host.") from None
