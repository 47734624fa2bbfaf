"""Exact duplicates: rows whose content id (NFC-normalised turns) is the same."""

from __future__ import annotations


class ExactGroups:
    """content id -> rows, built as rows stream by. Only groups of two or more are kept apart."""

    def __init__(self) -> None:
        self._first: dict[bytes, int] = {}
        self._more: dict[int, list[int]] = {}

    def add(self, key: bytes, row: int) -> None:
        first = self._first.setdefault(key, row)
        if first != row:
            self._more.setdefault(first, [first]).append(row)

    def groups(self) -> list[list[int]]:
        return list(self._more.values())

    def __len__(self) -> int:
        return len(self._first)
