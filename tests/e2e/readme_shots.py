"""The README's card grid screenshots (docs/img/search.jpg, docs/img/dataset.jpg, docs/img/review.jpg), made
reproducibly, at 1000x800 (a laptop window: the grid must start above the fold there):

    .venv/bin/python tests/e2e/readme_shots.py

A project of 200 real pictures — scikit-learn's bundled digits (no download), upscaled to 96 px — in five
classes with 10 % filed under a wrong class, scored on Review by a head on random-init resnet18 embeddings
(offline), and 48 of the pictures as search candidates; served by the app and shot in headless Chromium
at 1000x800, the window as the user sees it: Search after A, X, A, 2 typed (the decided cards stay in
place, marked), Review with the threshold lowered to 70 % and the doubted cards selected (S), Dataset with a
Shift-click range selected.
"""

from __future__ import annotations

import base64
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from e2e.app_server import AppServer, find_chromium, launch_chromium  # noqa: E402
from e2e.streamlit_page import StreamlitPage  # noqa: E402
from lotr_labeler.collect.importers import import_folder  # noqa: E402
from lotr_labeler.model import embed  # noqa: E402
from lotr_labeler.review import fitting  # noqa: E402
from lotr_labeler.store import CandidateIn  # noqa: E402
from lotr_labeler.workspace import create_project  # noqa: E402

CLASSES = ("zero", "one", "two", "three", "four")
VIEWPORT = {"width": 1000, "height": 800}
OUT = ROOT / "docs" / "img"


def digit(pixels: np.ndarray, tint: tuple[int, int, int]) -> Image.Image:
    """An 8x8 scan (0..16) as a 96 px picture: ink tinted, paper light, like a photo of a written digit."""
    g = Image.fromarray((np.clip(pixels, 0, 16) * (255 / 16)).astype(np.uint8), "L")
    g = g.resize((96, 96), Image.Resampling.BICUBIC)
    ink = np.asarray(g, dtype=np.float32)[..., None] / 255
    paper = np.array([246, 242, 232], dtype=np.float32)
    rgb = paper * (1 - ink) + np.array(tint, dtype=np.float32) * ink
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB")


def make_project(data: Path, src: Path) -> None:
    from sklearn.datasets import load_digits  # bundled with scikit-learn

    d = load_digits()
    rng = np.random.default_rng(7)
    tints = [(30, 40, 120), (120, 30, 40), (20, 90, 50), (40, 40, 40)]
    for ci, name in enumerate(CLASSES):
        (src / name).mkdir(parents=True, exist_ok=True)
        idx = np.flatnonzero(d.target == ci)[:40]
        for k, i in enumerate(idx):
            filed = name
            if k % 10 == 3:  # 10 % filed under another class
                filed = CLASSES[(ci + 1 + int(rng.integers(0, len(CLASSES) - 1))) % len(CLASSES)]
            (src / filed).mkdir(parents=True, exist_ok=True)
            digit(d.images[i], tints[int(rng.integers(0, len(tints)))]).save(src / filed / f"{name}-{k}.png")
    with create_project(data, "digits", "empty") as store:
        import_folder(store, src)
        fitting.refresh(store, embed.resolve_backbone(store, "imagenet", pretrained=False, size=64))
        store.add_candidates(
            CandidateIn(CLASSES[k % 5], f"http://img.invalid/{k}.png", data_url(p), query=f"{CLASSES[k % 5]} digit")
            for k, p in enumerate(sorted(src.glob("*/*.png"))[::4][:48])
        )


def data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def jpeg(png: Path, out: Path, top: int, height: int) -> None:
    img = Image.open(png).convert("RGB")
    img = img.crop((0, top, img.width, min(img.height, top + height)))
    img.save(out, "JPEG", quality=86, optimize=True)
    print(f"{out.relative_to(ROOT)}: {img.width}x{img.height}, {out.stat().st_size // 1024} KB")


def main() -> int:
    chromium = find_chromium()
    if chromium is None:
        print("error: no Chromium (apt-get install chromium, or set LOTR_LABELER_CHROMIUM)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="readme-shots-") as tmp:
        work = Path(tmp)
        make_project(work / "data", work / "src")
        with AppServer(work / "data", work / "streamlit.log") as server, sync_playwright() as pw:
            browser = launch_chromium(pw, chromium)
            try:
                sp = StreamlitPage(browser.new_context(viewport=VIEWPORT).new_page(), server.url, work)
                for page, name in (("/Search", "search"), ("/Dataset", "dataset"), ("/Review", "review")):
                    sp.open(page)
                    sp.page.locator(".cg-grid .cg-card").first.wait_for()
                    sp.wait_idle()
                    sp.page.mouse.click(5, 5)
                    if name == "search":
                        for key in ("a", "x", "a", "2"):  # decided cards stay in place, marked
                            sp.page.keyboard.press(key)
                            sp.page.wait_for_timeout(150)
                        sp.page.wait_for_timeout(1500)  # the queue reached the store and came back
                    elif name == "review":
                        sp.page.keyboard.press("ArrowRight")
                        for key in ("[", "[", "s"):  # t = 70 %, select the doubted cards
                            sp.page.keyboard.press(key)
                    else:  # a Shift-click range
                        thumbs = sp.page.locator(".cg-grid .cg-thumb")
                        thumbs.nth(1).click()
                        thumbs.nth(3).click(modifiers=["Shift"])
                    sp.wait_idle()
                    png = work / f"{name}.png"
                    sp.page.screenshot(path=str(png))  # the window as the user sees it
                    jpeg(png, OUT / f"{name}.jpg", 0, VIEWPORT["height"])
            finally:
                browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
