"""The document cache's accounting: the memory a parsed document holds, and a cache bounded
by the bytes its entries hold rather than by their count (see schema/documents.py)."""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import Any, Generic, TypeVar

from graphql import DocumentNode, Node


def deep_size(document: DocumentNode | None) -> int:
    """The memory a parsed document holds: its nodes, their lists and names, its locations
    and the token chain the parser keeps; linear in the document."""
    if document is None:
        return 0
    total = 0
    seen: set[int] = set()
    stack: list[Any] = [document]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        if isinstance(item, Node):
            for key in item.keys:
                value = getattr(item, key, None)
                if value is not None and not isinstance(value, (bool, int)):
                    stack.append(value)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    loc = document.loc
    token = loc.start_token if loc is not None else None
    while token is not None:
        total += sys.getsizeof(token) + (sys.getsizeof(token.value) if token.value else 0)
        token = token.next
    return total


K = TypeVar("K")
V = TypeVar("V")


class ByteBoundedCache(Generic[K, V]):
    """A least-recently-used map whose entries' sizes (as given to ``put``) add up to at most
    ``budget`` bytes; an entry larger than the whole budget is not kept."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.entries: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: K) -> V | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        self.entries.move_to_end(key)
        return entry[0]

    def put(self, key: K, value: V, size: int) -> None:
        if key in self.entries:
            self.used -= self.entries.pop(key)[1]
        if size > self.budget:
            return
        while self.used + size > self.budget:
            _, (_, evicted) = self.entries.popitem(last=False)
            self.used -= evicted
        self.entries[key] = (value, size)
        self.used += size
