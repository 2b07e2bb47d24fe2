"""Fast inference: agreement with learn.predict, the model cache, the seed's serving code, the CLI, the Predict page.

One tiny model (3 classes of drawn shapes, 64 px, resnet18 from scratch, 1 epoch) is trained per session:
the ``tiny_model`` and ``project`` fixtures of conftest.py, shared with test_api.py.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import SHAPES, TOL, TinyModel, choice_view, image_bytes, max_diff, pick, reference, register, shape_image
from PIL import Image
from streamlit.testing.v1 import AppTest

from lotr_labeler.cli import main
from lotr_labeler.errors import Conflict, ImageRejected, InvalidInput, NotFound
from lotr_labeler.model import predict as pr
from lotr_labeler.model import runs
from lotr_labeler.store import Store

ROOT = Path(__file__).resolve().parents[2]
PAGE = "pages/6_Predict.py"


# -- the fast path ----------------------------------------------------------------------------


pytestmark = pytest.mark.slow  # the session's tiny trained model


def test_probabilities_equal_learn_predict(tiny_model: TinyModel) -> None:
    learn = tiny_model.learn
    assert "Normalize" in [type(t).__name__ for t in learn.dls.after_batch.fs]
    predictor = pr.load_predictor(tiny_model.path)
    assert predictor.vocab == tiny_model.vocab == sorted(SHAPES)
    images = [pr.read_image_file(p, pr.Limits.default()) for p in tiny_model.samples]
    batched = predictor.predict(images, batch_size=4)  # two batches
    for path, image, in_batch in zip(tiny_model.samples, images, batched, strict=True):
        expected = reference(learn, path)
        single = predictor.predict_one(image)
        assert max_diff(single.predictions, expected) < TOL, path.name
        assert max_diff(in_batch.predictions, expected) < TOL, path.name
        assert single.top == max(expected, key=expected.__getitem__)
        assert single.probability == pytest.approx(max(expected.values()), abs=TOL)
    # Not a constant model: the check above would be vacuous otherwise.
    assert (
        len({r.top for r in batched}) > 1
        or max(r.probability for r in batched) - min(r.probability for r in batched) > 1e-3
    )


def test_seed_serving_code_runs_on_the_run_model(project: tuple[Store, runs.Run], tiny_model: TinyModel) -> None:
    """The seed's Django view, verbatim, on a run's model.pkl: it loads and agrees with our path."""
    from fastai.vision.all import PILImage, load_learner

    _, run = project
    img = PILImage.create(tiny_model.samples[0])
    model = load_learner(run.model_path)
    _, _, outputs = model.predict(img)
    seed = dict(zip(model.dls.vocab, map(float, outputs)))  # noqa: B905 - the seed's code, unchanged
    ours = pr.load_predictor(run.model_path).predict_one(pr.read_image_file(tiny_model.samples[0], pr.Limits.default()))
    assert max_diff(ours.predictions, seed) < TOL


def test_cache_reuses_and_reloads_a_new_export(tmp_path: Path, tiny_model: TinyModel) -> None:
    path = tmp_path / "model.pkl"
    shutil.copyfile(tiny_model.path, path)
    image = pr.read_image_file(tiny_model.samples[0], pr.Limits.default())
    first = pr.load_predictor(path)
    assert pr.load_predictor(path) is first and pr.is_loaded(path)
    before = first.predict_one(image).predictions

    tmp = tmp_path / "new.pkl"
    shutil.copyfile(tiny_model.other, tmp)
    os.replace(tmp, path)  # a new export at the same path, as training writes it
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, first.version[0] + 1_000_000_000))
    assert not pr.is_loaded(path)
    second = pr.load_predictor(path)
    assert second is not first and second.version != first.version
    after = second.predict_one(image).predictions
    assert max_diff(after, before) > 1e-3  # the other weights are in use
    assert max_diff(after, pr.load_predictor(tiny_model.other).predict_one(image).predictions) < TOL


def test_load_refuses_a_missing_or_non_model_file(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"nope\.pkl"):
        pr.load_predictor(tmp_path / "nope.pkl")
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(InvalidInput, match=r"junk\.pkl.*not a loadable fastai model"):
        pr.load_predictor(junk)
    assert not pr.is_loaded(junk)


def test_decode_image_guards_and_normalises() -> None:
    limits = pr.Limits(max_bytes=50_000, max_pixels=200 * 200)
    for data, reason in [
        (b"", "empty"),
        (b"hello, not an image", "not an image"),
        (image_bytes(shape_image("circle", 1))[:200], "corrupt"),
        (image_bytes(Image.new("RGB", (300, 300))), "bomb"),
        (image_bytes(Image.effect_noise((240, 240), 100), "BMP"), "too large"),
    ]:
        with pytest.raises(ImageRejected) as exc:
            pr.decode_image(data, limits, "upload.png")
        assert exc.value.reason == reason and "upload.png" in str(exc.value)
    # Transparent pixels become white, as in stored training images.
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert pr.decode_image(image_bytes(rgba), limits).getpixel((0, 0)) == (255, 255, 255)
    # EXIF orientation is applied (phone photos), greyscale becomes RGB.
    rotated = Image.new("L", (40, 20))
    exif = rotated.getexif()
    exif[0x0112] = 6
    img = pr.decode_image(image_bytes(rotated, "JPEG", exif=exif), limits)
    assert img.size == (20, 40) and img.mode == "RGB"
    # Animated GIF: the first frame.
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    gif = image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert pr.decode_image(gif, limits).getpixel((4, 4))[0] > 200


def test_resolve_model_current_chosen_and_refusals(project: tuple[Store, runs.Run], tiny_model: TinyModel) -> None:
    store, run = project
    assert pr.resolve_model(store) == pr.ModelRef(run.model_path, run.id)
    running = runs.create_run(store, {"arch": "resnet18"})
    with pytest.raises(Conflict, match=f"{running.id} is running"):
        pr.resolve_model(store, running.id)
    gone = register(store, tiny_model.path, tiny_model.vocab)
    gone.model_path.unlink()
    with pytest.raises(NotFound, match="no model file"):
        pr.resolve_model(store, gone.id)
    with pytest.raises(NotFound, match="No run 'nope'"):
        pr.resolve_model(store, "nope")
    assert [r.id for r in pr.finished_runs(store)] == [gone.id, run.id]  # newest (created last) first


def test_resolve_model_without_runs_says_how_to_get_one(empty_store: Store) -> None:
    with pytest.raises(NotFound, match=r"No model yet.*Train"):
        pr.resolve_model(empty_store)


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_predict_table_and_json(
    project: tuple[Store, runs.Run], tiny_model: TinyModel, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, run = project
    files = [str(p) for p in tiny_model.samples[:3]]
    expected = [reference(tiny_model.learn, p) for p in tiny_model.samples[:3]]

    assert main(["--data", str(data_root), "predict", *files, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == [1, 2, 3] and [r["path"] for r in rows] == files
    for row, exp in zip(rows, expected, strict=True):
        assert max_diff(row["predictions"], exp) < TOL
        assert row["top"] == max(exp, key=exp.__getitem__) and row["model"] == run.id
        assert row["probability"] == pytest.approx(row["predictions"][row["top"]])

    assert main(["--data", str(data_root), "predict", *files]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"Model: {run.id}" and out[1].split() == ["id", "top", "probability", "path"]
    assert [line.split()[1] for line in out[2:]] == [r["top"] for r in rows]


def test_cli_predict_with_model_path_and_no_project(
    tmp_path: Path, tiny_model: TinyModel, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--data", str(tmp_path / "nothing"), "predict", "--model", str(tiny_model.path), "--json"]
    assert main([*args, str(tiny_model.samples[1])]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["model"] == str(tiny_model.path.resolve())
    assert max_diff(row["predictions"], reference(tiny_model.learn, tiny_model.samples[1])) < TOL


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["missing.png"], "No image file 'missing.png'"),
        (["NOT_AN_IMAGE"], "not an image PIL can read"),
        (["--run", "nope", "IMAGE"], "No run 'nope'"),
        (["--run", "x", "--model", "m.pkl", "IMAGE"], "not both"),
    ],
)
def test_cli_predict_errors_are_one_line(
    project: tuple[Store, runs.Run],
    tiny_model: TinyModel,
    data_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    (tmp_path / "m.pkl").write_bytes(b"x")
    bad = tmp_path / "notes.png"
    bad.write_text("this is text")
    subst = {"NOT_AN_IMAGE": str(bad), "IMAGE": str(tiny_model.samples[0]), "m.pkl": str(tmp_path / "m.pkl")}
    argv = ["--data", str(data_root), "predict", *[subst.get(a, a) for a in extra]]
    assert main(argv) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert captured.out == ""


def test_cli_predict_without_a_model(empty_store: Store, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(data_root), "predict", "x.png"]) == 1
    assert "No model yet" in capsys.readouterr().err


# -- the Predict page ------------------------------------------------------------------------------


def predict_page() -> AppTest:
    """The Predict page as the app runs it (from the home script, so page links resolve)."""
    at = AppTest.from_file(str(ROOT / "home.py"), default_timeout=90)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_page_without_model_says_train_first(empty_store: Store) -> None:
    at = predict_page()
    assert any("No model yet" in i.value for i in at.info)
    links = at.get("page_link")
    assert len(links) == 1 and links[0].proto.page_script_hash  # resolves to the Train page
    assert not at.error and not at.metric and not at.get("file_uploader")


def test_the_uploader_says_the_projects_limit_and_a_file_over_it_is_refused_clearly(
    project: tuple[Store, runs.Run], tiny_model: TinyModel
) -> None:
    """The uploader says "Limit 15MB per file" (max_bytes, rounded up), not the server's 200 MB for dataset
    zips; and a file over max_bytes that the browser let through gets the setting's message, nothing
    predicted."""
    store, _ = project
    at = predict_page()
    (uploader,) = at.get("file_uploader")
    assert uploader.proto.max_upload_size_mb == 15  # the default max_bytes, 15,000,000
    sample = tiny_model.samples[0]
    store.set_setting("max_bytes", 10_000)
    at = predict_page()
    assert at.get("file_uploader")[0].proto.max_upload_size_mb == 1  # 10 KB: the uploader's least, 1 MB
    big = sample.read_bytes() + b"\0" * 20_000  # under 1 MB, over 10 KB
    at.file_uploader(key="predict_upload").set_value((sample.name, big, "image/png")).run()
    assert not at.exception and not at.metric
    assert any("max_bytes" in e.value and "10,000" in e.value for e in at.error), [e.value for e in at.error]


def test_page_predicts_an_upload(project: tuple[Store, runs.Run], tiny_model: TinyModel) -> None:
    _, run = project
    at = predict_page()
    assert choice_view(at, "predict_run").value == run.id
    assert at.caption and any("Choose an image" in c.value for c in at.caption)
    sample = tiny_model.samples[0]
    at.file_uploader(key="predict_upload").set_value((sample.name, sample.read_bytes(), "image/png")).run()
    assert not at.exception and not at.error
    expected = reference(tiny_model.learn, sample)
    top = max(expected, key=expected.__getitem__)
    assert metrics(at) == {"Top class": top, "Probability": f"{expected[top]:.1%}"}
    (chart,) = at.get("vega_lite_chart")  # the probability of every class, on a 0-100 % axis whatever they are
    spec = json.loads(chart.proto.spec)
    assert spec["encoding"]["x"]["scale"]["domain"] == [0, 1] and spec["encoding"]["x"]["axis"]["format"] == "%"
    assert at.get("image")[0].captions == [sample.name]
    assert any(c.value.startswith(f"Run {run.id} · ") and " ms" in c.value for c in at.caption)


def test_page_refuses_non_images_and_oversize_uploads(project: tuple[Store, runs.Run], tiny_model: TinyModel) -> None:
    store, _ = project
    at = predict_page()
    uploader = at.file_uploader(key="predict_upload")
    uploader.set_value(("notes.png", b"just text", "image/png")).run()
    assert not at.exception and not at.metric
    assert any("notes.png is not an image" in e.value for e in at.error)

    store.set_setting("max_bytes", 10_000)  # on the Settings page: the uploader is a new one when back here
    big = image_bytes(Image.effect_noise((200, 200), 80).convert("RGB"), "PNG")
    assert len(big) > 10_000
    at = predict_page()
    at.file_uploader(key="predict_upload").set_value(("big.png", big, "image/png")).run()
    assert not at.exception and not at.metric
    assert any("max_bytes limit of 10,000" in e.value for e in at.error)


def test_page_predicts_a_dataset_image_with_a_chosen_run(
    project: tuple[Store, runs.Run], tiny_model: TinyModel
) -> None:
    store, first = project
    second = register(store, tiny_model.other, tiny_model.vocab)
    runs.set_current(store, second.id)
    image = store.images("triangle")[0]
    at = predict_page()
    assert choice_view(at, "predict_run").value == second.id  # the current run is the default
    at = pick(at, "predict_run", first.id)
    at = pick(at, "predict_source", "Dataset image")
    at.number_input(key="predict_ds_id").set_value(image.id).run()
    assert not at.exception and not at.error
    expected = pr.load_predictor(first.model_path).predict_one(
        pr.decode_image(store.path(image).read_bytes(), pr.Limits.default())
    )
    assert metrics(at)["Top class"] == expected.top
    assert any(c.value.startswith(f"Run {first.id} · ") for c in at.caption)
    assert at.get("image")[0].captions == [f"image #{image.id} · labelled triangle ({image.split})"]
    at.number_input(key="predict_ds_id").set_value(99_999).run()
    assert any("No image with id 99999" in e.value for e in at.error)


def test_page_predicts_a_camera_photo(project: tuple[Store, runs.Run], tiny_model: TinyModel) -> None:
    at = predict_page()
    at = pick(at, "predict_source", "Camera")
    photo = tiny_model.samples[1]  # a JPEG, as browsers send camera shots
    at.camera_input(key="predict_camera").set_value(("photo.jpg", photo.read_bytes(), "image/jpeg")).run()
    assert not at.exception and not at.error
    expected = reference(tiny_model.learn, photo)
    assert metrics(at)["Top class"] == max(expected, key=expected.__getitem__)


def test_page_fetches_an_image_url_through_the_host_guard(
    project: tuple[Store, runs.Run], tiny_model: TinyModel, image_server: str
) -> None:
    store, _ = project
    url = f"{image_server}/img/4.png"
    at = predict_page()
    at = pick(at, "predict_source", "URL")
    at.text_input(key="predict_url").input(url).run()
    next(b for b in at.button if b.label == "Fetch").click().run()
    assert not at.exception and not at.metric
    assert any("non-public address 127.0.0.1" in e.value for e in at.error)  # loopback refused by default

    store.set_setting("allow_private_hosts", True)
    next(b for b in at.button if b.label == "Fetch").click().run()
    assert not at.exception and not at.error
    expected = pr.load_predictor(project[1].model_path).predict_one(
        pr.decode_image(pr.fetch_image(url, store.settings()), pr.Limits.default())
    )
    assert metrics(at) == {"Top class": expected.top, "Probability": f"{expected.probability:.1%}"}
    assert at.get("image")[0].captions == [url]


def test_cli_predict_fetches_urls(
    project: tuple[Store, runs.Run], data_root: Path, image_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store, run = project
    url = f"{image_server}/img/5.png"
    assert main(["--data", str(data_root), "predict", url, "--json"]) == 1
    assert "allow_private_hosts" in capsys.readouterr().err
    store.set_setting("allow_private_hosts", True)
    assert main(["--data", str(data_root), "predict", url, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["path"] == url and row["model"] == run.id and set(row["predictions"]) == set(SHAPES)
