"""Near-duplicate candidates from LSH bands, verified by exact Jaccard, grouped by union-find."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Buckets up to this size are verified pair by pair; larger ones (templated data) star + chain,
#: which keeps the work linear while every member is still compared with two others per band.
ALL_PAIRS_UP_TO = 16


def candidate_pairs(bands: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """(m, 2) int64 array of distinct pairs (a < b) of `keys` that share at least one band hash.

    Buckets of two, by far the most common, are paired in numpy; only larger buckets loop."""
    chunks: list[np.ndarray] = []
    keys = np.asarray(keys, dtype=np.int64)
    by_band = np.ascontiguousarray(bands.T)  # contiguous columns sort about twice as fast
    for column in by_band:
        order = np.argsort(column)  # members are sorted below, so stability does not matter
        sorted_vals = column[order]
        breaks = np.flatnonzero(sorted_vals[1:] != sorted_vals[:-1]) + 1
        starts = np.concatenate(([0], breaks))
        sizes = np.diff(np.concatenate((starts, [len(sorted_vals)])))
        two = starts[sizes == 2]
        if two.size:
            chunks.append(np.stack([keys[order[two]], keys[order[two + 1]]], axis=1))
        for start, size in zip(starts[sizes > 2].tolist(), sizes[sizes > 2].tolist(), strict=False):
            members = np.sort(keys[order[start : start + size]])
            if size <= ALL_PAIRS_UP_TO:
                i, j = np.triu_indices(size, k=1)
                chunks.append(np.stack([members[i], members[j]], axis=1))
            else:
                chunks.append(np.stack([np.full(size - 1, members[0]), members[1:]], axis=1))
                chunks.append(np.stack([members[1:-1], members[2:]], axis=1))
    if not chunks:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.sort(np.concatenate(chunks), axis=1)
    # One 1-D unique over (a << 32 | b) instead of a row-wise unique, which sorts structured rows.
    if pairs.max() < (1 << 32):
        packed = np.unique((pairs[:, 0].astype(np.uint64) << np.uint64(32)) | pairs[:, 1].astype(np.uint64))
        return np.stack(
            [(packed >> np.uint64(32)).astype(np.int64), (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)], axis=1
        )
    return np.unique(pairs, axis=0)


def star_groups(
    edges: list[tuple[int, int, float]], pick: Callable[[list[int]], int]
) -> list[tuple[int, dict[int, float]]]:
    """Groups in which every member is verified similar to the kept row itself.

    Connected components alone would chain: A~B and B~C would drop C as a duplicate of A even
    when A and C are not alike. Within each component, `pick` chooses a representative among
    the rows left, its direct neighbours join it, and the rest start over. Returns
    (representative, {member: similarity to the representative}) for groups of two or more.
    """
    neighbours: dict[int, dict[int, float]] = {}
    uf = UnionFind()
    for a, b, score in edges:
        neighbours.setdefault(a, {})[b] = score
        neighbours.setdefault(b, {})[a] = score
        uf.union(a, b)
    groups = []
    for component in uf.groups():
        left = list(component)
        while len(left) > 1:
            rep = pick(left)
            members = {row: neighbours[rep][row] for row in left if row in neighbours[rep]}
            if members:
                groups.append((rep, members))
            taken = set(members) | {rep}
            left = [row for row in left if row not in taken]
    return groups


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        self.parent.setdefault(a, a)
        self.parent.setdefault(b, b)
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if ra < rb:
                self.parent[rb] = ra
            else:
                self.parent[ra] = rb

    def groups(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for x in list(self.parent):
            out.setdefault(self.find(x), []).append(x)
        return [sorted(members) for members in out.values() if len(members) > 1]
