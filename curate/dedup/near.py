"""Near-duplicate candidates from LSH bands, verified by exact Jaccard, grouped by union-find."""

from __future__ import annotations

import numpy as np

#: Buckets up to this size are verified pair by pair; larger ones (templated data) star + chain,
#: which keeps the work linear while every member is still compared with two others per band.
ALL_PAIRS_UP_TO = 16


def candidate_pairs(bands: np.ndarray, keys: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of `keys` that share at least one band hash."""
    pairs: set[tuple[int, int]] = set()
    for b in range(bands.shape[1]):
        column = bands[:, b]
        order = np.argsort(column, kind="stable")
        sorted_vals = column[order]
        breaks = np.flatnonzero(sorted_vals[1:] != sorted_vals[:-1]) + 1
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [len(sorted_vals)]))
        multi = np.flatnonzero(ends - starts > 1)
        for g in multi.tolist():
            members = np.sort(keys[order[starts[g]:ends[g]]]).tolist()
            if len(members) <= ALL_PAIRS_UP_TO:
                pairs.update((a, c) for i, a in enumerate(members) for c in members[i + 1:])
            else:
                first = members[0]
                pairs.update((first, c) for c in members[1:])
                pairs.update(zip(members[1:-1], members[2:]))
    return pairs


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
