"""The one URL sanitiser: every URL stored (candidates, images, manifests, URL lists, search results)
passes through ``clean_url``, so a ``user:password@`` part is never written to the database, shown
in a grid, listed by ``images list --json`` or exported in ``manifest.csv``.

URL lists refuse such rows with a message (``has_credentials``); other sources (a zip's manifest, a
search result) keep the address without its credentials; the store strips whatever still carries one.
"""

from __future__ import annotations

__all__ = ["clean_url", "has_credentials", "redact"]


def _userinfo_split(url: str) -> tuple[str, str, str] | None:
    """(scheme://, user-info, rest) when ``url``'s authority carries an ``@``, else None.

    Done on the text rather than through ``urlsplit`` alone, so a URL ``urlsplit`` refuses (an
    unbalanced IPv6 bracket) still loses its credentials.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        if url.startswith("//"):
            scheme, sep, rest = "", "//", url[2:]
        else:
            return None
    end = len(rest)
    for stop in "/?#":
        at = rest.find(stop)
        if at != -1:
            end = min(end, at)
    authority = rest[:end]
    if "@" not in authority:
        return None
    userinfo, _, host = authority.rpartition("@")
    return scheme + sep, userinfo, host + rest[end:]


def has_credentials(url: str) -> bool:
    """True when ``url`` names a user or a password (``user:secret@host``)."""
    return _userinfo_split(url) is not None


def clean_url(url: str | None) -> str | None:
    """``url`` without its user-info; None for None or an empty value. The one step before storage."""
    if not url:
        return None
    split = _userinfo_split(url)
    if split is None:
        return url
    start, _, rest = split
    return start + rest


def redact(url: str) -> str:
    """``url`` with its user-info replaced by ``***`` (for messages and logs: says one was there)."""
    split = _userinfo_split(url)
    if split is None:
        return url
    start, _, rest = split
    return f"{start}***@{rest}"
