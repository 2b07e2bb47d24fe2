"""serve off loopback: a token (given or generated) unless --no-auth, CORS origins, the phone page GET /."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from helpers import TinyModel
from starlette.testclient import TestClient

from lotr_labeler.api import create_app, host_name, serve_token
from lotr_labeler.cli import main
from lotr_labeler.errors import InvalidInput
from lotr_labeler.model import runs
from lotr_labeler.store import Store

TOKEN = "s3cret-token-for-tests"
ORIGIN = "https://phone.example"


pytestmark = pytest.mark.slow  # the session's tiny trained model, `serve` in subprocesses


@pytest.fixture
def guarded(project: tuple[Store, runs.Run], data_root: Path) -> Iterator[TestClient]:
    with TestClient(create_app(data_root, "demo", token=TOKEN, cors_origins=[ORIGIN])) as c:
        yield c


def _post(client: TestClient, tiny_model: TinyModel, headers: dict[str, str] | None = None) -> Any:
    data = tiny_model.samples[0].read_bytes()
    return client.post("/predict", content=data, headers={"Content-Type": "image/png", **(headers or {})})


def test_token_is_required_by_every_endpoint_but_the_page(guarded: TestClient, tiny_model: TinyModel) -> None:
    for resp in (_post(guarded, tiny_model), guarded.get("/health"), guarded.get("/classes")):
        assert resp.status_code == 401
        assert "Authorization: Bearer" in resp.json()["error"]
        assert resp.headers["www-authenticate"] == "Bearer"
    assert _post(guarded, tiny_model, {"Authorization": "Bearer wrong-token-xx"}).status_code == 401
    assert _post(guarded, tiny_model, {"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert _post(guarded, tiny_model, {"X-Token": TOKEN}).status_code == 200
    assert guarded.get("/health", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
    page = guarded.get("/")
    assert page.status_code == 200 and "const AUTH = true;" in page.text


def test_phone_page_offers_the_camera(project: tuple[Store, runs.Run], data_root: Path) -> None:
    with TestClient(create_app(data_root, "demo")) as c:
        page = c.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert 'accept="image/*" capture="environment"' in page.text
    assert 'name="viewport"' in page.text and "const AUTH = false;" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_cors_only_for_the_given_origins(
    guarded: TestClient, tiny_model: TinyModel, project: tuple[Store, runs.Run], data_root: Path
) -> None:
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    resp = guarded.options("/predict", headers=preflight)  # no token: browsers send none on preflights
    assert resp.status_code == 200 and resp.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in resp.headers["access-control-allow-headers"].lower()
    ok = _post(guarded, tiny_model, {"Origin": ORIGIN, "Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
    refused = _post(guarded, tiny_model, {"Origin": ORIGIN})  # the page can read why (401 carries CORS)
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == ORIGIN
    other = guarded.options("/predict", headers={**preflight, "Origin": "https://evil.example"})
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    with TestClient(create_app(data_root, "demo")) as plain:  # none by default
        resp = _post(plain, tiny_model, {"Origin": ORIGIN})
        assert resp.status_code == 200 and "access-control-allow-origin" not in resp.headers


def test_serve_token_rules() -> None:
    assert serve_token("127.0.0.1", None, False) == (None, False)
    assert serve_token("localhost", None, False) == (None, False)
    token, generated = serve_token("0.0.0.0", None, False)
    assert generated and token is not None and len(token) >= 16
    assert serve_token("0.0.0.0", None, False)[0] != token
    assert serve_token("192.168.1.5", None, True) == (None, False)
    assert serve_token("127.0.0.1", TOKEN, False) == (TOKEN, False)
    with pytest.raises(InvalidInput, match="not both"):
        serve_token("0.0.0.0", TOKEN, True)
    with pytest.raises(InvalidInput, match="at least 8"):
        serve_token("0.0.0.0", "short", False)


def _serve(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    assert main(argv) == 0
    return seen


def test_cli_serve_on_the_lan_prints_and_requires_a_token(
    project: tuple[Store, runs.Run],
    data_root: Path,
    tiny_model: TinyModel,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen = _serve(monkeypatch, ["--data", str(data_root), "serve", "--host", "0.0.0.0", "--cors-origin", ORIGIN])
    err = capsys.readouterr().err
    # Something on the screen while the model loads (seconds of silence looked like a hung server), then the address.
    lines = err.splitlines()
    assert lines[0].startswith("Loading the model (a few seconds") and lines[1].startswith("Prediction API on"), lines
    token = next(line.split(": ", 1)[1] for line in err.splitlines() if line.startswith("Access token (generated"))
    assert f"#token={token}" in err and seen["host"] == "0.0.0.0"
    with TestClient(seen["app"]) as c:
        assert _post(c, tiny_model).status_code == 401
        resp = _post(c, tiny_model, {"Authorization": f"Bearer {token}", "Origin": ORIGIN})
        assert resp.status_code == 200 and resp.headers["access-control-allow-origin"] == ORIGIN

    seen = _serve(monkeypatch, ["--data", str(data_root), "serve", "--host", "0.0.0.0", "--no-auth"])
    assert "Access token" not in capsys.readouterr().err
    with TestClient(seen["app"]) as c:
        assert _post(c, tiny_model).status_code == 200

    seen = _serve(monkeypatch, ["--data", str(data_root), "serve", "--token", TOKEN])  # loopback with a token
    with TestClient(seen["app"]) as c:
        assert _post(c, tiny_model).status_code == 401

    assert main(["--data", str(data_root), "serve", "--host", "0.0.0.0", "--token", TOKEN, "--no-auth"]) == 1
    assert "not both" in capsys.readouterr().err


def test_loopback_is_an_address_not_a_name_prefix() -> None:
    from lotr_labeler.api import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.3.2.1", "localhost", "::1", "[::1]"))
    # a host name that merely starts like a loopback address must need a token like any other
    assert not any(is_loopback(h) for h in ("127.foo.example", "0.0.0.0", "192.168.1.5", "::"))


def test_loopback_without_a_token_answers_only_loopback_host_names(
    project: tuple[Store, runs.Run],
    data_root: Path,
    tiny_model: TinyModel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: a page of rebind.example whose name now resolves to 127.0.0.1 calls the API as a
    same-origin page, but its requests say ``Host: rebind.example:8000``; they get the refusal only."""
    app = _serve(monkeypatch, ["--data", str(data_root), "serve"])["app"]  # loopback, no token
    for base in ("http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000", "http://127.4.5.6"):
        with TestClient(app, base_url=base) as c:
            assert _post(c, tiny_model).status_code == 200, base
            assert c.get("/").status_code == 200 and c.get("/health").status_code == 200
    for base in ("http://rebind.example:8000", "http://127.foo.example:8000", "http://192.168.1.5:8000"):
        with TestClient(app, base_url=base) as c:
            for resp in (_post(c, tiny_model), c.get("/"), c.get("/classes")):
                assert resp.status_code == 421, (base, resp.status_code)
                message = resp.json()["error"]
                assert base.removeprefix("http://") in message and "--host" in message and "token" in message
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:  # no Host header at all
        assert c.get("/health", headers={"host": ""}).status_code == 421

    # A token protects by itself, and --no-auth on the LAN is the user's explicit choice: no Host check.
    for argv in (["serve", "--token", TOKEN], ["serve", "--host", "0.0.0.0", "--no-auth"]):
        app = _serve(monkeypatch, ["--data", str(data_root), *argv])["app"]
        with TestClient(app, base_url="http://phone-sees-this.lan:8000") as c:
            headers = {"Authorization": f"Bearer {TOKEN}"} if "--token" in argv else {}
            assert _post(c, tiny_model, headers).status_code == 200, argv


def test_host_name_drops_the_port_and_keeps_ipv6_brackets() -> None:
    assert host_name("LocalHost.:8501") == "localhost"
    assert host_name("[::1]:8000") == "[::1]" and host_name("[::1]") == "[::1]"
    assert host_name("127.0.0.1") == "127.0.0.1" and host_name("127.0.0.1:80") == "127.0.0.1"
    assert host_name("evil.example:8000") == "evil.example" and host_name("") == ""
