"""Labeling while downloading: the download job embeds and scores new images as they land."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import SHAPES, image_bytes, shape_image, wait_for

from lotr_labeler.imaging import normalize
from lotr_labeler.jobs import table as jobs
from lotr_labeler.jobs.specs import DownloadJob
from lotr_labeler.model import embed
from lotr_labeler.review import fitting, last_fit, live, queue
from lotr_labeler.store import CandidateIn, Store

SIZE = 32


pytestmark = pytest.mark.slow  # downloads embedded and scored by real networks


def scored_store(store: Store) -> embed.Backbone:
    """Scores of the 18 shape images from random-init features (what Review's Compute leaves)."""
    backbone = embed.resolve_backbone(store, "imagenet", pretrained=False, size=SIZE)
    embed.compute_embeddings(store, backbone)
    fitting.fit_scores(store, backbone)
    return backbone


def accept_candidates(store: Store, base: str, n: int) -> None:
    store.add_candidates(CandidateIn(SHAPES[i % 3], f"{base}/img/{i}.png") for i in range(n))
    store.decide([c.id for c in store.candidates()], "accepted")


def download(data_root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "lotr_labeler", "--data", str(data_root), "--project", "demo", "download"]
    return subprocess.run([*cmd, "--allow-private-hosts", *extra], capture_output=True, text=True, check=True)


def test_download_scores_the_new_images(store: Store, image_server: str, data_root: Path) -> None:
    backbone = scored_store(store)
    accept_candidates(store, image_server, 6)
    out = download(data_root)
    assert store.count() == 24
    info = last_fit.fit_info(store)
    assert info is not None and info.scored == 24 and info.backbone == backbone.as_dict()
    items = queue.ranking(store, status="all")
    assert len(items) == 24 and all(it.scored for it in items)  # the new ones are in the Review queue
    assert "Review: scored 24 (embedded 6 new)" in out.stdout + out.stderr
    job = jobs.latest_job(store, "download")
    assert job is not None and "Review: scored 24" in job.message


def test_scores_update_while_images_arrive(store: Store) -> None:
    """Not only at the end: each pass picks up what landed since the last one."""
    backbone = scored_store(store)
    scorer = live.LiveScorer(store.root, backbone, interval=0.1).start()
    try:
        for n, shape in enumerate(SHAPES, start=1):
            store.add_image(normalize(image_bytes(shape_image(shape, 4000 + n))), shape, source="upload")

            def caught_up(n: int = n) -> bool:
                info = last_fit.fit_info(store)
                return info is not None and info.scored == 18 + n

            wait_for(caught_up, what=f"image {n} scored")
    finally:
        scorer.stop()
    assert scorer.error is None and scorer.embedded == 3


def test_without_a_model_the_bundled_network_scores_the_download(
    store: Store, image_server: str, data_root: Path
) -> None:
    """No scores and no run: the live scorer embeds with the bundled pretrained network (no download)."""
    store.set_setting("embed_size", SIZE)
    backbone = last_fit.fit_backbone(store)
    assert backbone is not None and backbone.kind == "efficientnet_lite0" and backbone.pretrained
    accept_candidates(store, image_server, 3)
    out = download(data_root)
    assert store.count() == 21
    info = last_fit.fit_info(store)
    assert info is not None and info.backbone_spec == backbone and info.scored == 21
    assert "Review:" in out.stdout + out.stderr


def test_no_score_flag_turns_it_off(store: Store, image_server: str, data_root: Path) -> None:
    scored_store(store)
    assert DownloadJob(score=False).to_argv() == ["download", "--no-score"]
    accept_candidates(store, image_server, 3)
    download(data_root, "--no-score")
    info = last_fit.fit_info(store)
    assert store.count() == 21 and info is not None and info.scored == 18


def test_a_download_that_lands_nothing_does_not_report_scoring(
    store: Store, image_server: str, data_root: Path
) -> None:
    """Every URL failed: the job's line said "Review: scored 0 (embedded 0 new)" as if scoring had run."""
    scored_store(store)
    store.add_candidates(CandidateIn(SHAPES[i % 3], f"{image_server}/no-such-image-{i}.png") for i in range(3))
    store.decide([c.id for c in store.candidates()], "accepted")
    cmd = [sys.executable, "-m", "lotr_labeler", "--data", str(data_root), "--project", "demo", "download"]
    out = subprocess.run([*cmd, "--allow-private-hosts"], capture_output=True, text=True, check=False)
    assert out.returncode == 1 and store.count() == 18
    job = jobs.latest_job(store, "download")
    assert job is not None and job.state == "failed" and "Downloaded 0 of 3" in job.message, job and job.message
    assert "Review:" not in job.message and "Review:" not in out.stdout + out.stderr
