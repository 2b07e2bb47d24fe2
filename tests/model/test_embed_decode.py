"""How embeddings decode an image: stored RGB JPEGs through libjpeg-turbo (simplejpeg) at a scale near
the target, anything else through PIL; the same pixels either way, within JPEG's own rounding."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from lotr_labeler.model import embed, onnx_export


def _photo(size: tuple[int, int]) -> Image.Image:
    """Smooth colour ramps: what a JPEG keeps well, so decoders can be compared pixel by pixel."""
    w, h = size
    x, y = np.meshgrid(np.linspace(0, 255, w), np.linspace(0, 255, h))
    return Image.fromarray(np.stack([x, y, 255 - x], axis=-1).astype(np.uint8), "RGB")


def _pil_way(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as img:
        img.draft("RGB", (size, size))
        return np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))


def test_a_stored_jpeg_decodes_through_simplejpeg_as_pil_would(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.jpg"
    _photo((400, 300)).save(path, quality=90)
    calls: list[tuple[int, int]] = []
    real = simplejpeg.decode_jpeg

    def counting(data: bytes, **kw: object) -> np.ndarray:
        out = real(data, **kw)
        calls.append(out.shape[:2])
        return out

    monkeypatch.setattr(simplejpeg, "decode_jpeg", counting)
    got = embed._pixels(path, 64)
    assert got.shape == (64, 64, 3) and got.dtype == np.uint8
    assert len(calls) == 1 and min(calls[0]) >= 64 and max(calls[0]) < 400  # reduced, never below the target
    assert np.abs(got.astype(int) - _pil_way(path, 64).astype(int)).mean() < 3


def test_a_png_goes_through_pil_and_a_cmyk_jpeg_keeps_its_colours(tmp_path: Path) -> None:
    png = tmp_path / "a.png"
    _photo((90, 60)).save(png)
    assert np.array_equal(embed._pixels(png, 32), _pil_way(png, 32))
    cmyk = tmp_path / "cmyk.jpg"  # a caller's file (the store keeps RGB): simplejpeg converts it as PIL does
    _photo((90, 60)).convert("CMYK").save(cmyk, quality=95)
    assert np.abs(embed._pixels(cmyk, 32).astype(int) - _pil_way(cmyk, 32).astype(int)).mean() < 3


def test_a_broken_file_is_an_oserror_as_before(tmp_path: Path) -> None:
    """compute_embeddings reports an OSError per image (and goes on): a truncated JPEG still raises one."""
    bad = tmp_path / "bad.jpg"
    buf = io.BytesIO()
    _photo((200, 200)).save(buf, format="JPEG")
    bad.write_bytes(buf.getvalue()[:40])
    with pytest.raises(OSError):
        embed._pixels(bad, 32)


def test_the_embedding_session_does_not_spin() -> None:
    """Its threads sleep between their parts of a run, leaving the cores to the prefetch thread; other
    sessions (predict: one image at a time) keep ONNX Runtime's default."""
    from onnx import TensorProto, helper

    from lotr_labeler.model import onnx_embed

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()
    entry = "session.intra_op.allow_spinning"
    assert onnx_embed._session(data).get_session_options().get_session_config_entry(entry) == "0"
    with pytest.raises(RuntimeError, match="does not have configuration"):  # not set: ORT spins by default
        onnx_export.make_session(data).get_session_options().get_session_config_entry(entry)
