"""Near-duplicate grouping of perceptual hashes: exact, and fast enough for tens of thousands.

Two images are linked when their phashes differ in at most ``max_distance`` bits; a group is a
connected component of that relation (A~B and B~C puts A, B, C together even if A and C are
further apart), the same result as comparing every pair, without comparing every pair.

How, for 64-bit hashes (16 hex digits, imagehash's default ``phash``):

1. identical hashes are collapsed first (distance 0, grouped directly);
2. multi-index hashing: the 64 bits are cut into ``max_distance + 1`` chunks. Two hashes that
   differ in at most ``max_distance`` bits cannot differ in every chunk (pigeonhole), so each
   such pair has at least one identical chunk. For each chunk the hashes are sorted by it and
   only hashes sharing that chunk's value become candidates;
3. candidates are verified with XOR + popcount (``np.bitwise_count``), so the result is exact;
4. connected components by vectorised union (min-label propagation with pointer jumping).

When chunks would be too short to narrow anything down (``max_distance`` of 16 or more) the
candidates are every pair, compared in blocks. Hashes of any other length fall back to a
plain pairwise loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lotr_labeler.imaging import hamming
from lotr_labeler.store.phash import BITS, HEX_DIGITS, MIN_CHUNK_BITS, IntArray, chunks

_BLOCK = 1024


@dataclass(frozen=True)
class Grouping:
    """Groups of indices (each sorted, groups ordered by their first index) with at least
    two members, and for each group the largest distance of a pair within ``max_distance``."""

    groups: list[list[int]]
    widest: list[int]


def group_near_duplicates(phashes: Sequence[str], max_distance: int) -> list[list[int]]:
    """Indices of ``phashes`` grouped by phash distance ≤ ``max_distance`` (connected components);
    only groups of two or more, each sorted, ordered by first index."""
    return find_groups(phashes, max_distance).groups


def find_groups(phashes: Sequence[str], max_distance: int) -> Grouping:
    """``group_near_duplicates`` plus each group's widest linking distance."""
    n = len(phashes)
    if n < 2 or max_distance < 0:
        return Grouping([], [])
    bits = _as_uint64(phashes)
    if bits is None:
        i, j, d = _pairs_python(phashes, max_distance)
        return _components(n, np.arange(n, dtype=np.int64), i, j, d)
    uniq, inverse = np.unique(bits, return_inverse=True)
    i, j, d = _pairs_of(uniq, max_distance)
    return _components(len(uniq), inverse.astype(np.int64).ravel(), i, j, d)


# The pairs of the last full search, by hash value. Deleting images (the Duplicates tab's "Keep
# only this") leaves a subset of the values, whose pairs are exactly the cached pairs between
# survivors; a relabel changes no value at all. At 20,000 clustered hashes the search costs
# about a second, the filter milliseconds. Pairs are a function of the values alone, so one
# entry serves every project.
_last_pairs: tuple[int, npt.NDArray[np.uint64], IntArray, IntArray, IntArray] | None = None


def _pairs_of(uniq: npt.NDArray[np.uint64], max_distance: int) -> tuple[IntArray, IntArray, IntArray]:
    """``near_pairs(uniq, max_distance)`` (``uniq`` sorted and distinct), from the last search when it covered them."""
    global _last_pairs
    last = _last_pairs
    if last is not None and last[0] == max_distance and 0 < len(uniq) <= len(last[1]):
        known = last[1]
        pos = np.searchsorted(known, uniq)
        if np.array_equal(known[np.minimum(pos, len(known) - 1)], uniq):  # every value was searched
            new_index = np.full(len(known), -1, dtype=np.int64)
            new_index[pos] = np.arange(len(uniq), dtype=np.int64)
            ni, nj = new_index[last[2]], new_index[last[3]]
            keep = (ni >= 0) & (nj >= 0)
            return ni[keep], nj[keep], last[4][keep]
    i, j, d = near_pairs(uniq, max_distance)
    _last_pairs = (max_distance, uniq, i, j, d)
    return i, j, d


def near_pairs(bits: npt.NDArray[np.uint64], max_distance: int) -> tuple[IntArray, IntArray, IntArray]:
    """(i, j, distance) arrays, i < j, for every pair of ``bits`` within ``max_distance``.

    ``bits`` should hold distinct values (else identical values yield every pair of them).
    """
    n = len(bits)
    empty = np.zeros(0, dtype=np.int64)
    if n < 2 or max_distance < 0:
        return empty, empty, empty
    if max_distance >= BITS:
        i, j = np.triu_indices(n, k=1)
        d = np.bitwise_count(bits[i] ^ bits[j]).astype(np.int64)
        return i.astype(np.int64), j.astype(np.int64), d
    n_chunks = max_distance + 1
    if BITS // n_chunks < MIN_CHUNK_BITS:
        return _pairs_blocks(bits, max_distance)
    found: list[IntArray] = []
    for shift, width in chunks(n_chunks):
        keys = (bits >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        order = np.argsort(keys, kind="stable").astype(np.int64)
        sorted_keys = keys[order]
        # Position p pairs with p + k while the key stays equal; a position whose neighbour at
        # k differs has no partner further on either (sorted), so it drops out of ``live``.
        live = np.arange(n - 1, dtype=np.int64)
        k = 1
        while live.size:
            live = live[live + k < n]
            live = live[sorted_keys[live] == sorted_keys[live + k]]
            if not live.size:
                break
            a, b = order[live], order[live + k]
            dist = np.bitwise_count(bits[a] ^ bits[b])
            close = dist <= max_distance
            lo, hi = np.minimum(a[close], b[close]), np.maximum(a[close], b[close])
            found.append(lo * n + hi)
            k += 1
    if not found:
        return empty, empty, empty
    codes = np.unique(np.concatenate(found))  # a pair sharing several chunks is found several times
    i, j = codes // n, codes % n
    return i, j, np.bitwise_count(bits[i] ^ bits[j]).astype(np.int64)


def _pairs_blocks(bits: npt.NDArray[np.uint64], max_distance: int) -> tuple[IntArray, IntArray, IntArray]:
    """Every pair, compared in blocks (upper triangle only)."""
    n = len(bits)
    parts_i: list[IntArray] = []
    parts_j: list[IntArray] = []
    parts_d: list[IntArray] = []
    for start in range(0, n - 1, _BLOCK):
        block = bits[start : start + _BLOCK]
        rest = bits[start + 1 :]
        dist = np.bitwise_count(block[:, None] ^ rest[None, :])
        a, b = np.nonzero(dist <= max_distance)
        i = a.astype(np.int64) + start
        j = b.astype(np.int64) + start + 1
        keep = i < j
        parts_i.append(i[keep])
        parts_j.append(j[keep])
        parts_d.append(dist[a[keep], b[keep]].astype(np.int64))
    return np.concatenate(parts_i), np.concatenate(parts_j), np.concatenate(parts_d)


def _pairs_python(phashes: Sequence[str], max_distance: int) -> tuple[IntArray, IntArray, IntArray]:
    n = len(phashes)
    rows = [
        (i, j, d) for i in range(n) for j in range(i + 1, n) if (d := hamming(phashes[i], phashes[j])) <= max_distance
    ]
    arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def _as_uint64(phashes: Sequence[str]) -> npt.NDArray[np.uint64] | None:
    """The hashes as uint64, or None when any is not 16 hex digits."""
    if not all(len(h) == HEX_DIGITS for h in phashes):
        return None
    try:
        return np.array([int(h, 16) for h in phashes], dtype=np.uint64)
    except ValueError:
        return None


def _labels(m: int, i: IntArray, j: IntArray) -> IntArray:
    """Connected-component label (the smallest node id) of each of ``m`` nodes."""
    labels = np.arange(m, dtype=np.int64)
    if not i.size:
        return labels
    while True:
        li, lj = labels[i], labels[j]
        low = np.minimum(li, lj)
        new = labels.copy()
        np.minimum.at(new, li, low)
        np.minimum.at(new, lj, low)
        while True:  # pointer jumping: every node straight to its root
            jumped = new[new]
            if np.array_equal(jumped, new):
                break
            new = jumped
        if np.array_equal(new, labels):
            return labels
        labels = new


def _components(m: int, node_of: IntArray, i: IntArray, j: IntArray, d: IntArray) -> Grouping:
    """Groups of original indices from pairs over ``m`` nodes; ``node_of[k]`` is index k's node."""
    node_label = _labels(m, i, j)
    label = node_label[node_of]
    widest_by_label = np.zeros(m, dtype=np.int64)
    if d.size:
        np.maximum.at(widest_by_label, node_label[i], d)
    order = np.argsort(label, kind="stable")  # stable: indices stay ascending within a label
    sorted_labels = label[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    ends = np.r_[starts[1:], len(order)]
    groups: list[list[int]] = []
    widest: list[int] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if e - s > 1:
            groups.append(order[s:e].tolist())
            widest.append(int(widest_by_label[sorted_labels[s]]))
    pairs = sorted(zip(groups, widest, strict=True), key=lambda gw: gw[0][0])
    return Grouping([g for g, _ in pairs], [w for _, w in pairs])
