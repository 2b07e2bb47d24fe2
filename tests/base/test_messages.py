"""Errors the user reads: one sentence that says what happened and what to do (issue 12).

Library errors are real ones (torch.load of a file that is no weights file, PIL on bytes that are no
image, httpx against a closed port); DuckDuckGo is faked only at ``ddgs.DDGS``; downloads go to the
tests' image server on 127.0.0.1, which the default settings refuse as a private host.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import subprocess
import sys
import urllib.error
import warnings
import zlib
from pathlib import Path
from typing import Any, ClassVar

import ddgs
import httpx
import pytest
from ddgs.exceptions import DDGSException
from PIL import Image
from streamlit.testing.v1 import AppTest

from lotr_labeler.cli.main import main
from lotr_labeler.collect.importers import import_urls
from lotr_labeler.collect.search import SearchOptions, run_search
from lotr_labeler.errors import LabelerError, WeightsUnavailable
from lotr_labeler.explain import explain, explain_known
from lotr_labeler.fakes import ENV as FAKE_ENV
from lotr_labeler.fakes import offline_error
from lotr_labeler.jobs import table as jobs
from lotr_labeler.jobs.worker import JobRun
from lotr_labeler.store import CandidateIn, Store

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = (
    "DuckDuckGo cannot be reached: check the connection or proxy. Offline, import the pictures you have "
    "instead: a folder or zip of class folders (Dataset page, Import; or `lotr-labeler import folder PATH`)."
)


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / name), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# -- explain: library errors in one sentence ---------------------------------------------------------


def test_a_file_that_is_no_weights_file_is_named_in_one_sentence(tmp_path: Path) -> None:
    import torchvision

    from lotr_labeler.model.learner import load_body_weights

    bad = tmp_path / "notes.pth"
    bad.write_bytes(b"these are my notes, not weights\n" * 10)
    with pytest.raises(WeightsUnavailable) as info:
        load_body_weights(None, torchvision.models.resnet18, str(bad))
    message = str(info.value)
    assert "Weights file notes.pth is not a PyTorch weights file" in message and "torch.save" in message
    assert "Please file an issue" not in message and "Weights only load failed" not in message
    assert "\n" not in message and str(tmp_path) not in message


def test_a_weights_file_of_another_network_says_so(tmp_path: Path) -> None:
    import torch
    import torchvision

    from lotr_labeler.model.embed import Backbone, _resnet18_body

    other = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(3, 2).state_dict(), other)
    with pytest.raises(WeightsUnavailable) as info:
        _resnet18_body(Backbone("resnet18", 64, pretrained=False, weights=str(other)))
    assert "Weights file other.pth holds weights of another network" in str(info.value)
    assert "Missing key(s)" not in str(info.value)
    assert torchvision  # the import above is what loads the real network


def test_offline_imagenet_weights_say_no_internet_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    from lotr_labeler.model.embed import Backbone, _resnet18_body

    def offline(**_: Any) -> None:  # what torch.hub's urlopen raises without DNS
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(torchvision.models, "resnet18", offline)
    with pytest.raises(WeightsUnavailable) as info:
        _resnet18_body(Backbone("resnet18", 64, pretrained=True))
    message = str(info.value)
    assert "there is no internet connection" in message
    assert "urlopen error" not in message and "Errno" not in message


def test_pil_and_httpx_errors_become_sentences() -> None:
    with pytest.raises(Image.UnidentifiedImageError) as pil:
        Image.open(io.BytesIO(b"not an image at all"))
    assert explain(pil.value, "holiday.jpg") == (
        "holiday.jpg is not an image that can be read. Use a jpg, png, webp, gif or bmp file."
    )
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(httpx.ConnectError) as conn:
        httpx.get(f"http://127.0.0.1:{port}/x.jpg", timeout=5)
    assert explain(conn.value, "The server") == (
        "The server cannot be reached. Check the network connection or proxy and try again."
    )


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` (PIL judges the size from the header alone)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def test_a_decompression_bomb_names_the_real_limit_and_the_max_pixels_setting() -> None:
    # PIL refuses above 2 x MAX_IMAGE_PIXELS and warns above MAX_IMAGE_PIXELS (an error where the
    # project turns that warning into one); the project's own limit is max_pixels (60 MP by default).
    with pytest.raises(Image.DecompressionBombError) as error:
        Image.open(io.BytesIO(_png_header(20_000, 10_000)))
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    assert explain(error.value, "huge.png") == (
        f"huge.png is 200,000,000 pixels, over the limit of {limit:,} pixels for opening an image safely "
        "(possible decompression bomb). Use a smaller image; the project keeps images up to its max_pixels "
        "setting (60,000,000 pixels by default)."
    )
    with warnings.catch_warnings(), pytest.raises(Image.DecompressionBombWarning) as warning:
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        Image.open(io.BytesIO(_png_header(10_000, 9_000)))
    message = explain_known(warning.value, "big.png") or ""
    assert message.startswith(f"big.png is 90,000,000 pixels, over the limit of {Image.MAX_IMAGE_PIXELS:,} pixels")
    assert "100 megapixels" not in message
    assert explain(Image.DecompressionBombError("too big"), "odd.tif") == (
        "odd.tif has too many pixels to open safely (possible decompression bomb). Use a smaller one; "
        "the project keeps images up to its max_pixels setting (60,000,000 pixels by default)."
    )


def test_only_weight_downloads_are_called_weight_downloads() -> None:
    requests = pytest.importorskip("requests")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # requests names the URL in its error: "github" in it is no torch hub download.
    with pytest.raises(requests.ConnectionError) as conn:
        requests.get(f"http://127.0.0.1:{port}/github/frodo.jpg", timeout=5)
    assert "github" in str(conn.value)
    message = explain(conn.value, "frodo.jpg")
    assert message == "frodo.jpg cannot be reached. Check the network connection or proxy and try again."
    for text in (
        "<urlopen error [Errno -2] Name or service not known> fetching https://download.pytorch.org/models/r.pth",
        "Cannot reach https://huggingface.co/timm/resnet18.a1_in1k: connection refused",
        "downloading to /root/.cache/torch/hub/checkpoints/resnet18.pth: Network is unreachable",
    ):
        assert "pretrained ImageNet weights cannot be downloaded" in explain(OSError(text)), text


def test_network_errors_without_a_subject_name_the_server() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(httpx.ConnectError) as conn:
        httpx.get(f"http://127.0.0.1:{port}/x.jpg", timeout=5)
    sentence = f"The server 127.0.0.1:{port} cannot be reached. Check the network connection or proxy and try again."
    assert explain(conn.value) == explain_known(conn.value) == sentence
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        silent_port = silent.getsockname()[1]
        with pytest.raises(httpx.ReadTimeout) as slow:
            httpx.get(f"http://127.0.0.1:{silent_port}/x.jpg", timeout=0.3)
    assert explain(slow.value) == (
        f"The server 127.0.0.1:{silent_port} did not answer in time. Check the connection and try again."
    )
    # A subject given by the caller wins; an httpx error without a request keeps the default subject.
    assert explain(conn.value, "holiday.jpg").startswith("holiday.jpg cannot be reached.")
    assert explain(httpx.ConnectError("[Errno 111] Connection refused")).startswith("The file cannot be reached.")


def test_unknown_errors_are_bugs_not_messages() -> None:
    assert explain_known(ZeroDivisionError("division by zero")) is None
    assert explain_known(LabelerError("Domain errors say it already.")) == "Domain errors say it already."
    assert explain(KeyError("x")) == "KeyError: 'x'"


@pytest.mark.slow
def test_error_boundary_shows_library_errors_and_lets_bugs_surface(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(
        "import io\n"
        "import streamlit as st\n"
        "from PIL import Image\n"
        "from lotr_labeler.ui.context import error_boundary\n"
        "with error_boundary():\n"
        "    Image.open(io.BytesIO(b'nope'))\n"
        "with error_boundary():\n"
        "    1 / 0\n"
    )
    at = AppTest.from_file(str(script), default_timeout=30)
    at.run()
    assert [e.value for e in at.error] == [
        "The file is not an image that can be read. Use a jpg, png, webp, gif or bmp file."
    ]
    assert at.exception and at.exception[0].message == "division by zero"


def test_a_failed_job_records_the_sentence(empty_store: Store) -> None:
    with pytest.raises(Image.UnidentifiedImageError), JobRun(empty_store, "download", {}):
        Image.open(io.BytesIO(b"nope"))
    job = jobs.latest_job(empty_store, "download")
    assert job is not None and job.state == "failed"
    assert job.message == "The file is not an image that can be read. Use a jpg, png, webp, gif or bmp file."


def test_a_bad_model_import_names_the_uploaded_file(empty_store: Store, tmp_path: Path) -> None:
    from lotr_labeler.model.record import import_model

    temp = tmp_path / "tmpa8f3k2" / "model.pkl"
    temp.parent.mkdir()
    temp.write_bytes(b"PK\x03\x04 not a fastai export")
    with pytest.raises(LabelerError) as info:
        import_model(empty_store, temp, name="my-gpu-model.pkl")
    assert str(info.value).startswith("my-gpu-model.pkl is not a model this app can load")
    assert "tmpa8f3k2" not in str(info.value)


# -- offline search: one sentence, no retries ---------------------------------------------------------


class OfflineDDGS:
    """ddgs.DDGS without a network: every call fails with the DNS error ddgs 9 really raises."""

    calls: ClassVar[list[str]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def images(self, query: str, **kwargs: Any) -> list[dict[str, Any]]:
        OfflineDDGS.calls.append(query)
        raise DDGSException(offline_error(query))


@pytest.fixture
def lotr_like(empty_store: Store) -> Store:
    empty_store.add_class("elves", ["Legolas", "Arwen", "Galadriel"], "{name} lotr")
    empty_store.add_class("dwarves", ["Gimli", "Thorin"], "{name} lotr")
    return empty_store


def test_offline_search_stops_at_the_first_query_without_pausing(
    lotr_like: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    OfflineDDGS.calls = []
    monkeypatch.setattr(ddgs, "DDGS", OfflineDDGS)
    pauses: list[float] = []
    jobs_ = [(c.name, q) for c in lotr_like.classes() for q in c.queries]
    report = run_search(lotr_like, jobs_, max_results=10, options=SearchOptions(), delay_s=3.0, sleep=pauses.append)
    assert OfflineDDGS.calls == ["Legolas lotr"] and pauses == []
    assert report.unreachable and report.failed and len(report.skipped) == 4
    assert report.summary() == OFFLINE  # nothing found: what to do offline, not "the 0 candidate(s) … are kept"


def test_rate_limits_and_single_query_errors_keep_their_behaviour(
    lotr_like: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    class OneBadQuery(OfflineDDGS):
        def images(self, query: str, **kwargs: Any) -> list[dict[str, Any]]:
            if query == "Legolas lotr":
                raise DDGSException("HTTP 500 from duckduckgo.com")
            return [{"image": f"https://img.example/{query.replace(' ', '-')}.jpg", "title": query}]

    monkeypatch.setattr(ddgs, "DDGS", OneBadQuery)
    jobs_ = [(c.name, q) for c in lotr_like.classes() for q in c.queries]
    report = run_search(lotr_like, jobs_, max_results=10, options=SearchOptions(), delay_s=0)
    assert len(report.queries) == 5 and report.added == 4 and not report.unreachable and not report.failed


@pytest.mark.slow
def test_offline_search_in_the_cli_and_on_the_page(
    lotr_like: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "ddg.json"
    fake.write_text(json.dumps({"*": "offline"}))
    monkeypatch.setenv(FAKE_ENV, str(fake))
    lotr_like.set_setting("search_delay", 0)
    # A real process: what a user's terminal shows, log lines included.
    done = subprocess.run(
        [sys.executable, "-m", "lotr_labeler", "--project", "demo", "search"], capture_output=True, text=True
    )
    out, err = done.stdout, done.stderr
    assert done.returncode == 1 and out == ""
    assert err.strip().splitlines() == [f"error: {OFFLINE}"]
    job = jobs.latest_job(lotr_like, "search")
    assert job is not None and job.state == "failed" and "DNSError" not in job.message

    at = page("pages/2_Search.py")
    shown = [e.value for e in at.error if "cannot be reached" in e.value]
    assert len(shown) == 1, shown
    everything = " ".join(str(e.proto) for e in [*at.error, *at.warning, *at.info, *at.success, *at.markdown])
    assert "DNSError" not in everything and "no records found" not in everything


# -- downloads that mostly fail are errors -------------------------------------------------------------


@pytest.mark.slow
def test_all_refused_download_is_an_error_with_the_fix(
    empty_store: Store, image_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    empty_store.add_class("elves", [], "{name}")
    empty_store.add_candidates([CandidateIn("elves", f"{image_server}/img/{i}.png") for i in range(3)])
    empty_store.decide([c.id for c in empty_store.candidates()], "accepted")
    assert main(["--project", "demo", "download"]) == 1  # allow_private_hosts is off by default
    out, err = capsys.readouterr()
    assert out == ""  # the one error line says it
    assert (
        "error: All 3 URLs were refused: blocked host (private/loopback address) ×3. If these are your own "
        "local servers, turn on allow_private_hosts in Settings"
    ) in err
    job = jobs.latest_job(empty_store, "download")
    assert job is not None and job.state == "failed" and job.message.startswith("All 3 URLs were refused")

    at = page("pages/2_Search.py")
    assert any("All 3 URLs were refused" in e.value and "allow_private_hosts" in e.value for e in at.error)
    assert not any("URLs were refused" in s.value for s in at.success)


@pytest.mark.slow
def test_mostly_failed_download_is_an_error_but_exits_zero(
    empty_store: Store, image_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    empty_store.set_setting("allow_private_hosts", True)
    empty_store.add_class("elves", [], "{name}")
    urls = [f"{image_server}/img/1.png"] + [f"{image_server}/missing-{i}.png" for i in range(3)]
    empty_store.add_candidates([CandidateIn("elves", u) for u in urls])
    empty_store.decide([c.id for c in empty_store.candidates()], "accepted")
    assert main(["--project", "demo", "download"]) == 0  # one image did arrive
    out = capsys.readouterr().out
    assert out.startswith("3 of 4 URLs were refused by their servers: HTTP 404 ×3.")
    job = jobs.latest_job(empty_store, "download")
    assert job is not None and job.state == "failed"


# -- URL lists: a typo is no new class -----------------------------------------------------------------


def test_unknown_label_is_refused_naming_the_known_classes(store: Store) -> None:
    report = import_urls(store, "http://x.test/1.jpg,cirlce\nhttp://x.test/2.jpg,Circle")
    assert report.candidates_added == 1 and report.created_classes == []
    reason = dict(report.rejected)["line 1"]
    assert "'cirlce' is not a class of this project (classes: circle, square, triangle)" in reason
    assert "Create classes for new labels" in reason
    assert "cirlce" not in store.class_names()
    created = import_urls(store, "http://x.test/3.jpg,hexagon", create_classes=True)
    assert created.created_classes == ["hexagon"] and "hexagon" in store.class_names()


def test_cli_url_import_needs_create_classes_for_new_labels(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "urls.csv"
    rows.write_text("http://x.test/1.jpg,cirlce\n")
    assert main(["--project", "demo", "import", "urls", str(rows), "--json"]) == 1  # its one row refused
    assert "not a class of this project" in capsys.readouterr().out
    assert "cirlce" not in store.class_names()
    assert main(["--project", "demo", "import", "urls", str(rows), "--create-classes", "--json"]) == 0
    assert "cirlce" in store.class_names()


# -- state that stays: expanders and their messages ----------------------------------------------------


@pytest.mark.slow
def test_dataset_import_error_leaves_no_progress_bar_and_stays_open(store: Store, tmp_path: Path) -> None:
    at = page("pages/3_Dataset.py")
    at.session_state["ds_import"] = True  # the user opened the import box
    at.run()
    at.text_input(key="ds_import_folder").input(str(tmp_path / "no-such-folder")).run()
    at.button(key="ds_import_folder_go").click().run()
    assert not at.exception
    box = next(e for e in at.expander if e.label == "Import images or URLs")
    assert box.proto.expanded
    assert any("no-such-folder" in e.value for e in box.error)
    assert not at.get("progress"), "an orphan 'Importing…' bar"


@pytest.mark.slow
def test_url_list_on_the_dataset_page_refuses_a_typo(store: Store) -> None:
    at = page("pages/3_Dataset.py")
    at.session_state["ds_import"] = True
    at.run()
    at.text_area(key="ds_urls_paste").input("http://x.test/1.jpg,trinagle").run()
    at.button(key="ds_urls_add").click().run()
    assert any("1 rejected" in w.value for w in at.warning) and not at.success
    assert "trinagle" not in store.class_names()


def _class_box(at: AppTest, name: str) -> Any:
    return next(e for e in at.expander if e.label.startswith(f"**{name}**"))


@pytest.mark.slow
def test_classes_expanders_stay_open_with_their_messages(store: Store) -> None:
    circle = store.get_class("circle").id
    at = page("pages/1_Classes.py")
    at.session_state[f"exp_class_{circle}"] = True  # the user opened "circle"
    at.run()
    at.text_input(key=f"rename_{circle}").input("Square").run()
    at.button(key=f"do_rename_{circle}").click().run()  # a clash: an error
    box = _class_box(at, "circle")
    assert box.proto.expanded
    assert any("already exists" in e.value for e in box.error)
    assert not any("already exists" in e.value for e in at.main.error if e not in box.error)

    at.text_input(key=f"rename_{circle}").input("disc").run()
    at.button(key=f"do_rename_{circle}").click().run()  # success: the label changes, the box stays open
    box = _class_box(at, "disc")
    assert box.proto.expanded and any("Renamed circle to disc" in s.value for s in box.success)

    at.button(key=f"save_{circle}").click().run()
    box = _class_box(at, "disc")
    assert box.proto.expanded and any("Saved disc" in s.value for s in box.success)

    at.checkbox(key=f"confirm_{circle}").check().run()
    at.button(key=f"delete_{circle}").click().run()  # its box is gone: the message is at the top
    assert any("Deleted class disc" in s.value for s in at.success)


@pytest.mark.slow
def test_new_project_error_stays_visible(store: Store, data_root: Path) -> None:
    at = page("home.py")
    at.session_state["home_new_project"] = True
    at.run()
    at.text_input[0].input("../evil")
    at.button[0].click().run()
    box = next(e for e in at.expander if e.label == "New project")
    assert box.proto.expanded
    assert any("../evil" in e.value for e in box.error)
    assert not (data_root.parent / "evil").exists()


@pytest.mark.slow
def test_home_is_in_the_navigation_and_every_page_file_is_reachable(store: Store) -> None:
    at = page("home.py")
    assert any("Next step" in m.value for m in at.markdown)  # the Home page is the default
    files = sorted((ROOT / "pages").glob("[!_]*.py"))
    # AppTest keeps what the app registered with the navigation (no public accessor in 1.67).
    registered = list(at._registered_pages.values())
    assert [p["page_name"] for p in registered] == ["Home", *(f.stem.split("_", 1)[1] for f in files)]
    # The URLs of the former pages/ layout (/Search, /Train, … as tests/e2e open them) still work.
    assert [p["url_pathname"] for p in registered[1:]] == [f.stem.split("_", 1)[1] for f in files]
    for path in files:
        at.switch_page(f"pages/{path.name}").run()
        assert not at.exception, (path.name, [e.value for e in at.exception])
        assert at.title, path.name


@pytest.mark.slow
def test_a_failed_training_is_reported_once_on_the_train_page(store: Store) -> None:
    from lotr_labeler.model import runs

    said = "Could not get the pretrained resnet18 weights: there is no internet connection. Either train from scratch."
    run = runs.create_run(store, {"arch": "resnet18", "epochs": 1, "size": 64})
    runs.finish_run(store, run.id, "failed", message=said)
    with JobRun(store, "train", {}) as job:
        job.finish("failed", said)
    at = page("home.py")
    at.switch_page("pages/4_Train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    in_boxes = [e.value for e in [*at.error, *at.warning] if said in e.value]
    in_table = [m for df in at.dataframe if "message" in df.value for m in df.value["message"] if said in str(m)]
    assert len(in_boxes) == 1 and in_table == [], (in_boxes, in_table)
