"""The live scorer: the Review queue fills while a download adds images.

A thread of the download job embeds what is new (one network load for the whole job) and refits
the head (a fraction of a second for a thousand images) every few seconds, with the backbone of the
last fit (``last_fit.fit_backbone``), so the queue the user sees keeps its embeddings.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from lotr_labeler.errors import Conflict, InvalidInput, NotFound, WeightsUnavailable
from lotr_labeler.model import embed
from lotr_labeler.model.network import Network
from lotr_labeler.review.fitting import fit_scores
from lotr_labeler.store import Store

log = logging.getLogger(__name__)


class LiveScorer:
    """Embeds and scores the images another job adds, in a thread, so the Review queue fills
    while a download runs. Each pass embeds what is new (one network load for the whole job)
    and refits the head (a fraction of a second for a thousand images)."""

    def __init__(self, root: Path, backbone: embed.Backbone, *, interval: float = 2.0) -> None:
        self.root = root
        self.backbone = backbone
        self.interval = interval
        self.embedded = 0
        self.scored = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._network: Network | None = None

    @property
    def status(self) -> str:
        if self.error:
            return f"scoring stopped: {self.error}"
        return f"scored {self.scored} (embedded {self.embedded} new)"

    def start(self) -> LiveScorer:
        self._thread = threading.Thread(target=self._loop, name="live-scoring", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Score what arrived last, then end the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        with Store(self.root) as store:  # sqlite connections belong to one thread
            while not self.error:
                stopping = self._stop.wait(self.interval)
                self.score_new(store)
                if stopping:
                    return

    def score_new(self, store: Store) -> int:
        """One pass: embed the images without a vector, refit, store the scores; images embedded."""
        try:
            new = embed.missing(store, self.backbone)
            if not new:
                return 0
            if self._network is None:
                self._network = embed.load_network(self.backbone)
            report = embed.compute_embeddings(store, self.backbone, new, network=self._network)
            self.embedded += report.computed
            self.scored = fit_scores(store, self.backbone).info.scored
            return report.computed
        except Conflict as exc:  # e.g. a single class so far: wait for more images
            log.info("live scoring waits: %s", exc)
            return 0
        except (WeightsUnavailable, NotFound, InvalidInput) as exc:
            self.error = str(exc)
            log.warning("live scoring stopped: %s", exc)
            return 0
