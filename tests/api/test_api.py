"""The JSON prediction API: inputs the seed's clients send, every refusal as 4xx JSON, live model changes."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from helpers import TOL, TinyModel, image_bytes, max_diff, reference, register, shape_image
from starlette.testclient import TestClient

from lotr_labeler.api import body_limit, create_app
from lotr_labeler.cli import main
from lotr_labeler.errors import NotFound
from lotr_labeler.model import predict as pr
from lotr_labeler.model import runs
from lotr_labeler.store import Store

pytestmark = pytest.mark.slow  # the session's tiny trained model, real servers


@pytest.fixture
def client(project: tuple[Store, runs.Run], data_root: Path) -> Iterator[TestClient]:
    with TestClient(create_app(data_root, "demo")) as c:
        yield c


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def check_ok(resp: httpx.Response, expected: dict[str, float], model: str) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    doc: dict[str, Any] = resp.json()
    assert max_diff(doc["predictions"], expected) < TOL
    assert doc["top"] == max(expected, key=expected.__getitem__)
    assert doc["probability"] == pytest.approx(doc["predictions"][doc["top"]])
    assert doc["model"] == model and doc["latency_ms"] >= 0
    return doc


def check_error(resp: httpx.Response, status: int, fragment: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    doc = resp.json()
    assert list(doc) == ["error"] and fragment in doc["error"], doc


# -- accepted inputs ---------------------------------------------------------------------------


def test_predict_accepts_the_seeds_json_and_other_encodings(
    client: TestClient, project: tuple[Store, runs.Run], tiny_model: TinyModel
) -> None:
    _, run = project
    png, jpg = tiny_model.samples[0], tiny_model.samples[1]
    exp_png, exp_jpg = reference(tiny_model.learn, png), reference(tiny_model.learn, jpg)

    check_ok(client.post("/predict", json={"image": b64(png)}), exp_png, run.id)
    check_ok(client.post("/predict", json={"image": f"data:image/jpeg;base64,{b64(jpg)}"}), exp_jpg, run.id)
    wrapped = "\n".join(b64(png)[i : i + 76] for i in range(0, len(b64(png)), 76))  # MIME line breaks
    check_ok(client.post("/predict", json={"image": wrapped}), exp_png, run.id)
    for field in ("file", "image"):
        files = {field: (png.name, png.read_bytes(), "image/png")}
        check_ok(client.post("/predict", files=files), exp_png, run.id)
    check_ok(client.post("/predict", data={"image": b64(jpg)}), exp_jpg, run.id)  # an HTML form's field
    check_ok(client.post("/predict", data={"image": b64(jpg)}, files={"x": ("", b"", "text/plain")}), exp_jpg, run.id)
    raw = client.post("/predict", content=jpg.read_bytes(), headers={"content-type": "image/jpeg"})
    check_ok(raw, exp_jpg, run.id)


def test_health_and_classes(client: TestClient, project: tuple[Store, runs.Run], tiny_model: TinyModel) -> None:
    _, run = project
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "project": "demo", "model": run.id, "loaded": False}
    classes = client.get("/classes")
    assert classes.status_code == 200 and classes.json() == {"classes": tiny_model.vocab, "model": run.id}
    assert client.get("/health").json()["loaded"] is True


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        ({"json": {"image": "@@@ not base64 $$$"}}, 400, "not valid base64"),
        ({"json": {"image": "data:image/png,plain"}}, 400, "is not base64"),
        ({"json": {"image": ""}}, 400, "is empty"),
        ({"json": {"picture": "abc"}}, 400, '"image" string with base64 image data (got: picture)'),
        ({"json": ["image"]}, 400, '"image" string with base64 image data (got: list)'),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
        ({"json": {"image": base64.b64encode(b"hello world").decode()}}, 422, "not an image"),
        ({"files": {"file": ("notes.png", b"plain text", "image/png")}}, 422, "notes.png is not an image"),
        ({"files": {"other": ("a.png", b"x", "image/png")}}, 400, 'no "file" or "image" field (fields: other)'),
        ({"content": b"x=1", "headers": {"content-type": "text/plain"}}, 415, "'text/plain' is not supported"),
        ({"content": b"", "headers": {"content-type": "image/png"}}, 422, "is empty"),
    ],
)
def test_bad_requests_answer_4xx_json(client: TestClient, kwargs: dict[str, Any], status: int, fragment: str) -> None:
    check_error(client.post("/predict", **kwargs), status, fragment)
    assert client.get("/health").status_code == 200  # still serving


def test_oversize_bodies_and_images_are_refused(
    client: TestClient, project: tuple[Store, runs.Run], tiny_model: TinyModel
) -> None:
    store, _ = project
    store.set_setting("max_bytes", 10_000)
    limit = body_limit(10_000)
    check_error(
        client.post("/predict", content=b"\0" * (limit + 1), headers={"content-type": "image/png"}),
        413,
        f"over the limit of {limit:,}",
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(limit // 4096 + 2):
            yield b"\0" * 4096

    check_error(client.post("/predict", content=chunks(), headers={"content-type": "image/png"}), 413, "over the limit")
    # Under the body limit but the decoded image is over max_bytes.
    check_error(client.post("/predict", json={"image": base64.b64encode(b"\0" * 10_001).decode()}), 413, "max_bytes")
    # A small image still works under the same limits.
    assert client.post("/predict", json={"image": b64(tiny_model.samples[0])}).status_code == 200


def test_no_model_yet_answers_404_json(empty_store: Store, data_root: Path, tiny_model: TinyModel) -> None:
    with TestClient(create_app(data_root, "demo")) as c:
        check_error(c.post("/predict", json={"image": b64(tiny_model.samples[0])}), 404, "No model yet")
        check_error(c.get("/classes"), 404, "No model yet")
        health = c.get("/health").json()
        assert health["model"] is None and "No model yet" in health["message"]


def test_unknown_routes_methods_and_bugs_answer_json(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    check_error(client.get("/nope"), 404, "Not Found")
    check_error(client.get("/predict"), 405, "Method Not Allowed")

    def broken(path: Path) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr("lotr_labeler.api.load_predictor", broken)
    check_error(client.get("/classes"), 500, "Internal error")
    monkeypatch.undo()
    assert client.get("/classes").status_code == 200  # the server lives on


# -- live model changes ------------------------------------------------------------------------


def test_new_current_model_and_new_export_are_served_without_restart(
    client: TestClient, project: tuple[Store, runs.Run], tiny_model: TinyModel
) -> None:
    store, first = project
    sample = tiny_model.samples[2]
    body = {"image": b64(sample)}
    check_ok(client.post("/predict", json=body), reference(tiny_model.learn, sample), first.id)

    # Another run becomes current.
    second = register(store, tiny_model.other, tiny_model.vocab)
    runs.set_current(store, second.id)
    other = pr.load_predictor(tiny_model.other).predict_one(pr.read_image_file(sample, pr.Limits.default()))
    check_ok(client.post("/predict", json=body), other.predictions, second.id)

    # The first run is current again, and its model file is replaced by a new export.
    runs.set_current(store, first.id)
    tmp = first.path / "model.pkl.tmp"
    shutil.copyfile(tiny_model.other, tmp)
    os.replace(tmp, first.model_path)
    os.utime(first.model_path, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    check_ok(client.post("/predict", json=body), other.predictions, first.id)


def test_fixed_model_path_needs_no_project(tmp_path: Path, tiny_model: TinyModel) -> None:
    with TestClient(create_app(tmp_path / "empty-root", None, tiny_model.path)) as c:
        sample = tiny_model.samples[3]
        expected = reference(tiny_model.learn, sample)
        check_ok(c.post("/predict", json={"image": b64(sample)}), expected, tiny_model.path.name)  # no server path
        assert c.get("/health").json()["project"] is None
    with pytest.raises(NotFound, match=r"missing\.pkl"):
        create_app(tmp_path, None, tmp_path / "missing.pkl")
    with pytest.raises(NotFound, match="No project"):
        create_app(tmp_path / "empty-root", None)


# -- a real server -----------------------------------------------------------------------------


@pytest.fixture
def live_server(project: tuple[Store, runs.Run], data_root: Path) -> Iterator[str]:
    """The app under uvicorn on a free loopback port, in a thread."""
    server = uvicorn.Server(uvicorn.Config(create_app(data_root, "demo"), host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_real_server_refuses_a_huge_declared_body_without_reading_it(
    live_server: str, project: tuple[Store, runs.Run], tiny_model: TinyModel
) -> None:
    host, port = live_server.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 900000000\r\n\r\n"
        )
        head = sock.recv(65536).decode()  # answered although no body byte was sent
    assert head.startswith("HTTP/1.1 413") and '"error"' in head
    resp = httpx.post(f"http://{live_server}/predict", json={"image": b64(tiny_model.samples[0])}, timeout=30)
    check_ok(resp, reference(tiny_model.learn, tiny_model.samples[0]), project[1].id)


def test_cli_serve_binds_loopback_by_default(
    project: tuple[Store, runs.Run], data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        seen.update(kwargs, app=app)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    assert main(["--data", str(data_root), "serve"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8000 and seen["workers"] == 1
    with TestClient(seen["app"], base_url="http://127.0.0.1:8000") as c:
        assert c.get("/health").json()["loaded"] is True  # warmed before serving
    assert main(["--data", str(data_root), "serve", "--port", "0"]) == 1


def test_cli_serve_reports_a_missing_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(tmp_path), "serve"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: No project")


def test_json_body_matches_seed_client_code(client: TestClient, tiny_model: TinyModel) -> None:
    """What a seed client does: base64 of the file bytes in {"image": ...}, read predictions back."""
    payload = json.dumps({"image": base64.b64encode(image_bytes(shape_image("circle", 4242))).decode()})
    resp = client.post("/predict", content=payload, headers={"content-type": "application/json"})
    doc = resp.json()
    assert resp.status_code == 200 and set(doc["predictions"]) == set(tiny_model.vocab)
    assert sum(doc["predictions"].values()) == pytest.approx(1.0, abs=1e-5)
