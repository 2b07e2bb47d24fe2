"""Plain helpers shared by the tests: generated images, polling, the tiny model's build and checks.

Fixtures live in conftest.py and are used as fixtures; everything here is an ordinary function or
class that a test module imports (``from helpers import ...``). No test module imports another
test module or conftest (pinned by test_layering_tests.py).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from lotr_labeler.imaging import normalize
from lotr_labeler.model import embed, runs
from lotr_labeler.store import Store

REPO = Path(__file__).resolve().parents[1]
SHAPES = ("circle", "square", "triangle")
TOL = 1e-4  # our fast predictor against learn.predict


def shape_image(shape: str, seed: int, size: int = 64) -> Image.Image:
    """A coloured shape on a noisy background: distinct per seed, class given by the shape."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
    img = Image.fromarray(bg, "RGB")
    draw = ImageDraw.Draw(img)
    colour = tuple(int(v) for v in rng.integers(120, 256, 3))
    lo, hi = int(size * 0.2 + rng.integers(0, 6)), int(size * 0.8 - rng.integers(0, 6))
    if shape == "circle":
        draw.ellipse((lo, lo, hi, hi), fill=colour)
    elif shape == "square":
        draw.rectangle((lo, lo, hi, hi), fill=colour)
    else:
        draw.polygon([(size // 2, lo), (lo, hi), (hi, hi)], fill=colour)
    return img


def image_bytes(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.jpg")}


def fresh_python(code: str, *args: str, timeout: float = 120) -> tuple[Any, str]:
    """``python -c code args`` in a fresh interpreter (nothing imported yet) at the repository's root:
    the JSON of its last stdout line and its stderr. Fails, with the child's stderr, on a non-zero exit."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll until ``predicate()`` holds; a bounded loop that fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class ImageHandler(BaseHTTPRequestHandler):
    """/img/<n>.png: a distinct generated picture per n; anything else: 404."""

    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        if self.path.startswith("/img/") and name.split(".")[0].isdigit():
            n = int(name.split(".")[0])
            body = image_bytes(shape_image(SHAPES[n % 3], 1000 + n, size=96))
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
        else:
            body = b"not found"
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


# -- the tiny model (test_predict, test_api, test_api_hardening) -------------------------------


@dataclass(frozen=True)
class TinyModel:
    learn: Any  # the trained Learner, in memory
    path: Path  # its export (model.pkl)
    other: Path  # an export with other weights and the same classes
    samples: list[Path]  # images of several formats and sizes, not seen in training
    vocab: list[str]


def train_tiny_model(root: Path) -> TinyModel:
    """3 classes of drawn shapes, 64 px, resnet18 from scratch, 1 epoch; exports and samples under ``root``."""
    from fastai.vision.all import (
        ImageDataLoaders,
        Normalize,
        Resize,
        imagenet_stats,
        resnet18,
        vision_learner,
    )

    for shape in SHAPES:
        (root / "train" / shape).mkdir(parents=True)
        for i in range(8):
            shape_image(shape, 500 + 20 * SHAPES.index(shape) + i).save(root / "train" / shape / f"{i}.png")
    # Normalize as a pretrained model would have it, so the batch transforms are exercised too.
    dls = ImageDataLoaders.from_folder(
        root / "train",
        valid_pct=0.25,
        seed=0,
        item_tfms=Resize(64),
        batch_tfms=Normalize.from_stats(*imagenet_stats),
        bs=8,
        num_workers=0,
    )
    learn = vision_learner(dls, resnet18, pretrained=False)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
    learn.export(root / "model.pkl")
    untrained = vision_learner(dls, resnet18, pretrained=False)
    untrained.export(root / "other.pkl")

    samples = root / "samples"
    samples.mkdir()
    made = [
        ("circle.png", shape_image("circle", 9001), "PNG"),
        ("square.jpg", shape_image("square", 9002), "JPEG"),
        ("triangle-wide.jpg", shape_image("triangle", 9003, size=150).resize((150, 90)), "JPEG"),
        ("circle-grey.png", shape_image("circle", 9004).convert("L"), "PNG"),
        ("square.gif", shape_image("square", 9005), "GIF"),
        ("triangle.webp", shape_image("triangle", 9006, size=80), "WEBP"),
        ("circle.bmp", shape_image("circle", 9007, size=48), "BMP"),
    ]
    for name, img, fmt in made:
        img.save(samples / name, format=fmt)
    return TinyModel(learn, root / "model.pkl", root / "other.pkl", [samples / n for n, _, _ in made], list(dls.vocab))


def register(store: Store, model: Path, vocab: list[str]) -> runs.Run:
    """A finished run in ``store`` whose model.pkl is a copy of ``model``."""
    run = runs.create_run(store, {"arch": "resnet18"})
    shutil.copyfile(model, run.model_path)
    return runs.finish_run(store, run.id, "done", vocab=vocab, metrics={})


def reference(learn: Any, path: Path) -> dict[str, float]:
    """learn.predict's probabilities for an image file."""
    from fastai.vision.all import PILImage

    with learn.no_bar():
        _, _, probs = learn.predict(PILImage.create(path))
    return dict(zip(learn.dls.vocab, map(float, probs), strict=True))


def max_diff(a: dict[str, float], b: dict[str, float]) -> float:
    assert list(a) == list(b)
    return max(abs(a[k] - b[k]) for k in a)


def _element(at: Any, key: str) -> Any:
    """The components-v2 element keyed ``key`` that an AppTest run drew."""
    found = [e for e in at.get("bidi_component") if getattr(e, "key", None) == key]
    assert found, f"no element {key!r} drawn"
    return found[0]


def grid_data(at: Any, key: str) -> dict[str, Any]:
    """The payload an AppTest run sent to the card grid ``key`` (ui/cards.py), or to any element of ours."""
    data: dict[str, Any] = json.loads(_element(at, key).proto.json)
    return data


def send_trigger(at: Any, key: str, event: str, value: Any) -> Any:
    """Rerun ``at`` as if the browser's element ``key`` sent the trigger ``event`` with ``value``: the
    page's own callback takes it, with what the page showed.

    Private Streamlit 1.67 internals (AppTest has no public way to send a components-v2 trigger):
    ``_make_trigger_id``, ``AppTest._tree`` / ``_run`` and the ``[{"event", "value"}]`` trigger JSON. An
    upgrade that changes them fails loudly: an ImportError/AttributeError here, or every test's store
    assertions (the page's callback would not fire)."""
    from streamlit.components.v2.bidi_component.main import _make_trigger_id
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    el = _element(at, key)
    states = at._tree.get_widget_states()
    trigger = json.dumps([{"event": event, "value": value}])
    states.widgets.append(WidgetState(id=_make_trigger_id(el.proto.id, "events"), json_trigger_value=trigger))
    at = at._run(states)
    assert not at.exception, [e.value for e in at.exception]
    return at


def grid_send(at: Any, key: str, raw: dict[str, Any]) -> Any:
    """Rerun ``at`` as if the browser's card grid ``key`` sent the trigger value ``raw`` (what a key
    press or a click in cards.js sends)."""
    return send_trigger(at, key, "action", raw)


@dataclass
class ChoiceView:
    """What an AppTest run drew for ``ui.choice.choice(..., key)``: the chosen option's position, the
    options as shown (``labels``) and as sent back (``values``: their text), and the chosen option itself
    (``value``, from the session, as the page reads it)."""

    value: Any
    index: int
    labels: list[str]
    values: list[str]
    disabled: bool

    @property
    def options(self) -> list[str]:
        return self.labels


def choice_view(at: Any, key: str) -> ChoiceView:
    """The choice ``key`` as the page drew it (ui/choice.py)."""
    from lotr_labeler.ui.choice import element_key

    data = grid_data(at, element_key(key))
    return ChoiceView(at.session_state[key], data["index"], data["labels"], data["values"], data["disabled"])


def widget_label(element: Any) -> str:
    """An AppTest element's label: a Streamlit widget's, or a ``choice``'s (a components-v2 element)."""
    if getattr(element, "type", None) == "bidi_component":
        return str(json.loads(element.proto.json)["label"])
    return str(element.label)


def pick(at: Any, key: str, value: Any) -> Any:
    """Rerun ``at`` as if the user picked ``value`` in the choice ``key`` (what choice.js sends: the
    position and the text of the option picked); the page's ``on_change`` runs first, as in a browser."""
    from lotr_labeler.ui.choice import element_key

    shown = choice_view(at, key)
    assert str(value) in shown.values, f"{value!r} is not among the options of {key!r}: {shown.values}"
    index = shown.values.index(str(value))
    return send_trigger(at, element_key(key), "pick", {"index": index, "value": str(value)})


def grid_batch(at: Any, key: str, actions: list[dict[str, Any]], client: str = "tab-1") -> Any:
    """Rerun ``at`` as if the card grid ``key`` sent its queue (cards.js: every action not yet answered,
    each with its ``seq``; ``seen`` defaults to the label and state the page drew each card with)."""
    drawn = {c["id"]: [c.get("label") or "", c.get("state") or ""] for c in grid_data(at, key)["cards"]}
    queue = [{"seen": {str(i): drawn[i] for i in a.get("ids", []) if i in drawn}, "label": None, **a} for a in actions]
    return send_trigger(at, key, "batch", {"client": client, "actions": queue})


def plant_review_fit(store: Store, class_ids: list[int]) -> None:
    """A recorded head fit over ``class_ids`` (random-init resnet18 at 32 px) without computing one, so
    stored candidate scores count as the current model's (Search triage, thresholds)."""
    backbone = embed.Backbone("resnet18", 32, pretrained=False)
    fit = {"backbone": backbone.as_dict(), "class_ids": class_ids, "computed_at": "now", "seconds": 0.1}
    store.meta_set(
        "review_fit", json.dumps({**fit, "folds": 2, "scored": 0, "blended": 0, "run_id": None, "event_id": 0})
    )


def fill(store: Store, per_class: int = 10, valid: int = 3, classes: tuple[str, ...] = SHAPES) -> None:
    """Add generated shapes until each class has ``per_class`` images, ``valid`` of them in the valid split."""
    for shape in classes:
        store.add_class(shape)
        seed = 100 * SHAPES.index(shape)
        while store.count(shape) < per_class or store.count(shape, split="valid") < valid:
            store.add_image(normalize(image_bytes(shape_image(shape, seed))), shape, source="upload")
            seed += 1
    store.set_setting("min_images_per_class", 3)
