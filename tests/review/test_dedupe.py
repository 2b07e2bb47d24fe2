"""dedupe.group_near_duplicates against the naive every-pair loop: the groups must be identical."""

from __future__ import annotations

import random

import imagehash
import pytest

from lotr_labeler.review import dedupe

pytestmark = pytest.mark.slow  # the naive every-pair loop over 2,500 hashes


def hashes(n: int, planted: int, *, seed: int, spread: int = 10, exact: int = 20) -> list[str]:
    """n random 64-bit hex phashes, plus near copies (0..spread bits flipped, so some just over
    a threshold of 8), exact repeats and a chain A~B~C whose ends are further apart."""
    rng = random.Random(seed)
    vals = [rng.getrandbits(64) for _ in range(n)]
    for _ in range(planted):
        src = rng.choice(vals)
        for bit in rng.sample(range(64), rng.randint(0, spread)):
            src ^= 1 << bit
        vals.append(src)
    vals += [rng.choice(vals) for _ in range(exact)]
    a = rng.getrandbits(64)
    b = a ^ 0b11111111  # 8 bits from a
    c = b ^ (0b11111111 << 8)  # 8 from b, 16 from a
    vals += [a, b, c]
    rng.shuffle(vals)
    return [f"{v:016x}" for v in vals]


def naive_pairs(phashes: list[str], up_to: int) -> list[tuple[int, int, int]]:
    """What a student writes: imagehash objects and every pair. (i, j, distance) for distance <= up_to."""
    objs = [imagehash.hex_to_hash(h) for h in phashes]
    return [(i, j, d) for i in range(len(objs)) for j in range(i + 1, len(objs)) if (d := objs[i] - objs[j]) <= up_to]


def union_find(n: int, pairs: list[tuple[int, int, int]], max_distance: int) -> list[list[int]]:
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i, j, d in pairs:
        if d <= max_distance:
            parent[find(i)] = find(j)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(find(i), []).append(i)
    return sorted((g for g in members.values() if len(g) > 1), key=lambda g: g[0])


def naive_groups(phashes: list[str], max_distance: int) -> list[list[int]]:
    return union_find(len(phashes), naive_pairs(phashes, max_distance), max_distance)


SETS = {0: hashes(1_500, 500, seed=0), 1: hashes(1_000, 400, seed=1, spread=14)}
UP_TO = 24


@pytest.fixture(scope="module")
def naive() -> dict[int, list[tuple[int, int, int]]]:
    """Every pair within UP_TO of each set, by the naive loop (about 2 million pairs per set, once)."""
    return {seed: naive_pairs(phashes, UP_TO) for seed, phashes in SETS.items()}


@pytest.mark.parametrize("max_distance", [0, 4, 8, 12, 16, 24])
@pytest.mark.parametrize("seed", list(SETS))
def test_groups_equal_the_naive_pairwise_result(
    naive: dict[int, list[tuple[int, int, int]]], seed: int, max_distance: int
) -> None:
    phashes = SETS[seed]
    expected = union_find(len(phashes), naive[seed], max_distance)
    assert any(len(g) > 1 for g in expected)  # the planted copies make real groups
    assert dedupe.group_near_duplicates(phashes, max_distance) == expected
    widest = dedupe.find_groups(phashes, max_distance).widest
    group_of = {i: k for k, g in enumerate(expected) for i in g}
    links: dict[int, int] = {}
    for i, _j, d in naive[seed]:
        if d <= max_distance:
            links[group_of[i]] = max(links.get(group_of[i], 0), d)
    assert widest == [links.get(k, 0) for k in range(len(expected))]


def test_chain_is_one_group_and_widest_is_the_largest_link() -> None:
    a = 0x0123456789ABCDEF
    b = a ^ 0xFF  # 8 bits
    c = b ^ 0xFF00  # 8 more: 16 from a
    far = ~a & (2**64 - 1)
    phashes = [f"{v:016x}" for v in (far, a, b, c, a)]
    grouping = dedupe.find_groups(phashes, 8)
    assert grouping.groups == [[1, 2, 3, 4]]
    assert grouping.widest == [8]
    assert dedupe.find_groups(phashes, 7).groups == [[1, 4]]  # only the exact copy
    assert dedupe.find_groups(phashes, 7).widest == [0]
    assert dedupe.find_groups(phashes, 16).widest == [16]


def test_edge_cases() -> None:
    assert dedupe.group_near_duplicates([], 8) == []
    assert dedupe.group_near_duplicates(["0" * 16], 8) == []
    assert dedupe.group_near_duplicates(["0" * 16, "f" * 16], 64) == [[0, 1]]
    assert dedupe.group_near_duplicates(["0" * 16, "f" * 16], 63) == []
    assert dedupe.group_near_duplicates(["0" * 16, "0" * 16], -1) == []


def test_other_hash_lengths_fall_back_to_pairwise() -> None:
    # 256-bit phashes (hash_size=16) still group, through the plain loop.
    phashes = hashes(60, 20, seed=7, spread=6, exact=2)
    long = [h * 4 for h in phashes]
    assert dedupe.group_near_duplicates(long, 24) == naive_groups(long, 24)
