"""Test hook: DuckDuckGo results from a JSON file instead of the network.

Set ``LOTR_LABELER_FAKE_DDGS=/path/results.json`` and the CLI (which runs every search,
also those started from the Search page) replaces ``ddgs.DDGS`` with ``FakeDDGS``.
Only that boundary is swapped: paging, error mapping and storage run as in production.
Browser tests need it because DuckDuckGo cannot be reached from CI.

The file maps a query to a list of ddgs result dicts (``title, image, thumbnail, url,
height, width, source``), or to one of the strings ``"ratelimit"``, ``"timeout"``,
``"none"``, ``"offline"`` (the DNS failure ddgs reports without a network) to raise the
matching ddgs error. Key ``"*"`` answers any other query;
``{slug}`` in its strings becomes the query's slug so each query gets its own URLs.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

ENV = "LOTR_LABELER_FAKE_DDGS"
PAGE = 100


class FakeDDGS:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.data: dict[str, Any] = json.loads(Path(os.environ[ENV]).read_text(encoding="utf-8"))

    def images(self, query: str, **kwargs: Any) -> list[dict[str, Any]]:
        # Imported here: the CLI loads this module on every command, ddgs only matters for search.
        from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

        rows = self.data.get(query)
        if rows is None:
            slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-")
            rows = json.loads(json.dumps(self.data.get("*", [])).replace("{slug}", slug))
        if rows == "ratelimit":
            raise RatelimitException(f"{query}: 403 Ratelimit")
        if rows == "timeout":
            raise TimeoutException(f"{query}: timed out")
        if rows == "offline":
            raise DDGSException(offline_error(query))
        page = int(kwargs.get("page") or 1)
        chunk = list(rows if isinstance(rows, list) else [])[(page - 1) * PAGE : page * PAGE]
        chunk = chunk[: int(kwargs.get("max_results") or PAGE)]
        if not chunk:
            raise DDGSException("No results found.")
        return chunk


def offline_error(query: str) -> str:
    """The text ddgs 9 gives a DDGSException when DuckDuckGo's host name does not resolve."""
    return (
        "DNSError: DNSError('error sending request for url (https://duckduckgo.com/?q="
        + query.replace(" ", "+")
        + ') > error resolving DNS > DNS error: no records found for Query { name: Name("duckduckgo.com."), '
        "query_type: A, query_class: IN }')"
    )


def install_from_env() -> bool:
    """Swap in the fake when the environment asks for it. Returns whether it did."""
    if not os.environ.get(ENV):
        return False
    import ddgs

    ddgs.DDGS = FakeDDGS  # type: ignore[misc,assignment]
    return True
