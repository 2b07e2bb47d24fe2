"""A server's first page load pays for every import the page makes: the card grid and the import widgets
must not pull in pandas and pyarrow (~0.9 s on this machine) just to draw a page of cards, nor psutil
(20 ms; only a job's liveness check needs it), the importers (28 ms; an import needs them) or the
training module (9 ms; a training job's progress line needs it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import fresh_python

from lotr_labeler.store import Store

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, os, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=60)
at.session_state["project"] = "demo"
at.run()
print(json.dumps({
    "errors": [str(e.value) for e in at.exception],
    "grids": sum(b.proto.component_name.endswith("lotr_labeler.cards") for b in at.get("bidi_component")),
    "loaded": [m for m in ("pandas", "pyarrow", "psutil", "lotr_labeler.collect.importers", "lotr_labeler.model.train")
               if m in sys.modules],
}))
"""


pytestmark = pytest.mark.slow  # a fresh interpreter imports a page


def test_dataset_page_draws_its_cards_without_pandas_pyarrow_or_psutil(store: Store, data_root: Path) -> None:
    doc, _ = fresh_python(SCRIPT, str(ROOT / "pages" / "3_Dataset.py"))
    assert doc["errors"] == [] and doc["grids"] == 1  # the page ran and mounted its card grid
    assert doc["loaded"] == []
