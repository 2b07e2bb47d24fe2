"""The phash index the store checks each new image against: nearest perceptual hashes, exact.

``Store.add_images`` flags a new image as a near duplicate of a stored one (phashes within
``near_dup_distance`` bits) with ``PhashIndex``; candidate triage uses it the same way. The
grouping of a whole dataset into near-duplicate groups (``review.dedupe``) shares the chunking
defined here.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from lotr_labeler.imaging import hamming

IntArray = npt.NDArray[np.int64]
BITS = 64
HEX_DIGITS = BITS // 4
# Below 4 bits per chunk (max_distance >= 16) buckets hold a sixteenth of all hashes or more.
MIN_CHUNK_BITS = 4
# Above this many bucket mates, PhashIndex compares the whole array instead (~1 ns a key).
_GATHER_MAX = 256


def chunks(count: int) -> list[tuple[int, int]]:
    """(shift, width) of ``count`` chunks covering 64 bits, widths differing by at most one."""
    base, extra = divmod(BITS, count)
    out, shift = [], 0
    for c in range(count):
        width = base + (1 if c < extra else 0)
        out.append((shift, width))
        shift += width
    return out


class PhashIndex:
    """Incremental nearest-phash lookup for inserts: multi-index hashing kept up to date by ``add``.

    The same pigeonhole as ``review.dedupe.near_pairs``: the 64 bits are cut into ``max_distance + 1`` chunks
    and a hash within ``max_distance`` shares at least one chunk value exactly, so only the
    keys in the query's buckets are compared (XOR + popcount over a numpy array). When the
    buckets would hold a large share of all keys (short chunks, or clustered hashes) the whole
    array is compared instead; either way the answer is exact. Hashes that are not 16 hex
    digits are compared one by one (``imaging.hamming``).
    """

    def __init__(self, max_distance: int) -> None:
        self.max_distance = max_distance
        n_chunks = max_distance + 1
        use_buckets = 0 <= max_distance < BITS and BITS // n_chunks >= MIN_CHUNK_BITS
        self._chunks = chunks(n_chunks) if use_buckets else []
        self._buckets: list[dict[int, list[int]]] = [{} for _ in self._chunks]
        self._bits = np.zeros(1024, dtype=np.uint64)
        self._keys = np.zeros(1024, dtype=np.int64)
        self._n = 0
        self._odd: list[tuple[int, str]] = []  # (key, phash) of hashes that are not 64-bit hex

    def __len__(self) -> int:
        return self._n + len(self._odd)

    def add(self, key: int, phash: str) -> None:
        """Index ``phash`` under ``key`` (e.g. an image id)."""
        value = _hex64(phash)
        if value is None:
            self._odd.append((key, phash))
            return
        if self._n == len(self._bits):  # amortised growth: appends stay O(1)
            self._bits = np.concatenate([self._bits, np.zeros_like(self._bits)])
            self._keys = np.concatenate([self._keys, np.zeros_like(self._keys)])
        pos = self._n
        self._bits[pos] = value
        self._keys[pos] = key
        self._n += 1
        for (shift, width), bucket in zip(self._chunks, self._buckets, strict=True):
            bucket.setdefault((value >> shift) & ((1 << width) - 1), []).append(pos)

    def near(self, phash: str) -> list[tuple[int, int]]:
        """(distance, key) of every indexed hash within ``max_distance`` of ``phash``, nearest first
        (ties by key)."""
        dist, keys = self.near_arrays(phash)
        return list(zip(dist.tolist(), keys.tolist(), strict=True))

    def near_arrays(self, phash: str) -> tuple[IntArray, IntArray]:
        """``near`` as two arrays (distances, keys), without a Python object per match: clustered
        hashes (a picture found thousands of times) can match a good share of the index."""
        empty = np.zeros(0, dtype=np.int64)
        if self.max_distance < 0:
            return empty, empty
        found: list[tuple[int, int]] = [
            (d, key) for key, other in self._odd if (d := hamming(phash, other)) <= self.max_distance
        ]
        value = _hex64(phash)
        if value is None:
            found += [
                (d, int(key))
                for key, bits in zip(self._keys[: self._n].tolist(), self._bits[: self._n].tolist(), strict=True)
                if (d := hamming(phash, f"{bits:016x}")) <= self.max_distance
            ]
            dist, keys = empty, empty
        else:
            positions = self._candidates(value)
            bits = self._bits[: self._n] if positions is None else self._bits[positions]
            all_keys = self._keys[: self._n] if positions is None else self._keys[positions]
            all_dist = np.bitwise_count(bits ^ np.uint64(value)).astype(np.int64)
            close = all_dist <= self.max_distance
            dist, keys = all_dist[close], all_keys[close]
        if found:
            extra = np.array(found, dtype=np.int64).reshape(-1, 2)
            dist, keys = np.concatenate([dist, extra[:, 0]]), np.concatenate([keys, extra[:, 1]])
        order = np.lexsort((keys, dist))
        return dist[order], keys[order]

    def _candidates(self, value: int) -> IntArray | None:
        """Positions sharing a chunk with ``value``, or None to compare everything."""
        if not self._chunks:
            return None
        lists = []
        total = 0
        for (shift, width), bucket in zip(self._chunks, self._buckets, strict=True):
            hit = bucket.get((value >> shift) & ((1 << width) - 1))
            if hit:
                lists.append(hit)
                total += len(hit)
        if total > _GATHER_MAX:  # clustered hashes: one vectorised pass beats gathering in Python
            return None
        if not lists:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.fromiter((p for hit in lists for p in hit), dtype=np.int64, count=total))


def _hex64(phash: str) -> int | None:
    if len(phash) != HEX_DIGITS:
        return None
    try:
        return int(phash, 16)
    except ValueError:
        return None
