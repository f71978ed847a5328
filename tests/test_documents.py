"""What a document costs the server: linear in its size, and bounded in memory once cached."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import Any

import httpx

from storyline.config import Settings
from storyline.schema.document_cache import ByteBoundedCache
from storyline.schema.roots import build_schema
from tests.support import Api, new_user, token

LEVELS = 30  # 2^30 paths through the fragments below


def fragment_bomb(leaf: str, *, levels: int = LEVELS) -> str:
    """Each fragment spreads the next twice: a few hundred bytes, 2^levels ways to the leaf."""
    lines = ["query Bomb { ...F0 }"]
    lines += [f"fragment F{n} on Query {{ ...F{n + 1} ...F{n + 1} }}" for n in range(levels)]
    lines.append(f"fragment F{levels} on Query {{ {leaf} }}")
    return "\n".join(lines)


async def answered_while_healthy(api: Api, query: str) -> dict[str, Any]:
    """The anonymous answer to ``query``, asserting /healthz answered all the while."""
    done = asyncio.Event()
    health: list[int] = []

    async def probe() -> None:
        async with httpx.AsyncClient(base_url=api.url, timeout=5) as client:
            while not done.is_set():
                health.append((await client.get("/healthz")).status_code)
                await asyncio.sleep(0.01)

    prober = asyncio.create_task(probe())
    try:
        response = await api.request(query, auth=None, timeout=10)
    finally:
        done.set()
        await prober
    assert health
    assert set(health) == {200}
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_a_fragment_bomb_of_aliases_is_refused_at_once(api: Api) -> None:
    body = await answered_while_healthy(api, fragment_bomb("a: price"))
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"] == f"{2**LEVELS} aliases found. Allowed: 30"


async def test_a_fragment_bomb_without_aliases_passes_the_limits_and_runs(api: Api) -> None:
    """Within the limits, however many paths lead to the leaf, the document is measured,
    validated and executed while the server keeps answering: its one error is the leaf's
    (``price`` needs a token), not a limit's."""
    body = await answered_while_healthy(api, fragment_bomb("price"))
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert error["path"] == ["price"]


async def test_depth_counts_fragments_where_they_are_spread() -> None:
    """Each fragment nests one field and spreads the next twice: 2^levels paths, each as deep
    as the chain; only the deep chain is refused for its depth."""
    schema = build_schema()

    def chain(levels: int) -> str:
        lines = ["query Chain { ...F0 }"]
        lines += [
            f"fragment F{n} on Query {{ nest {{ ...F{n + 1} ...F{n + 1} }} }}"
            for n in range(levels)
        ]
        lines.append(f"fragment F{levels} on Query {{ price }}")
        return "\n".join(lines)

    def messages(levels: int) -> list[str]:
        return [error.message for error in schema.documents.check(chain(levels)).errors]

    assert "'Chain' exceeds maximum operation depth of 15" in messages(LEVELS)
    assert "'Chain' exceeds maximum operation depth of 15" in messages(16)
    assert not any("depth" in message for message in messages(15))


async def test_a_long_string_or_comment_counts_by_its_bytes(api: Api) -> None:
    """One token, a megabyte: refused by the document's size, before it is parsed."""
    literal = "x" * 200_000
    query = f'query Price($note: String = "{literal}") {{ price }}'
    error = await api.error(query, auth=token(new_user()))
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"] == "The document is larger than 65536 bytes."
    # Comments are no tokens at all.
    error = await api.error("{ price } #" + literal, auth=token(new_user()))
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"] == "The document is larger than 65536 bytes."
    # Just under the limit, the same shape is served.
    fits = "{ price } #" + "x" * 60_000
    assert await api.data(fits, auth=token(new_user())) == {"price": 60}


def near_limit_document(n: int, settings: Settings) -> str:
    """A distinct valid document close to both the byte and the token limit."""
    name = f"d{n}_" + "x" * 100
    count = (settings.max_query_tokens - 10) // 3
    aliases = " ".join(f"{name}{i}: price" for i in range(count))
    return f"query Q{n} {{ {aliases} }}"[: settings.max_query_bytes - 2] + " }"


async def test_distinct_documents_hold_at_most_the_cache_budget() -> None:
    """Hundreds of distinct, large, anonymous documents pin no more than the cache's budget."""
    budget = 2 * 1_048_576  # room for about three of these documents
    settings = Settings.model_validate({"document_cache_bytes": budget})
    schema = build_schema(settings)
    documents = [near_limit_document(n, settings) for n in range(16)]
    await schema.execute(documents[0])  # what the first request builds for good
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for document in documents[1:]:
            result = await schema.execute(document)
            # Too many aliases (and the field cut at the byte limit), but parsed and
            # validated all the same, and so cached.
            messages = [error.message for error in result.errors or ()]
            assert messages[0] == f"{document.count(': price')} aliases found. Allowed: 30"
            assert messages[1].startswith("Cannot query field 'd")
            del result
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0 < schema.documents.cache.used <= budget
    # The budget counts what the cache's entries hold; allow for the estimate's error.
    assert held <= budget * 1.5, f"{held / 1_048_576:.1f} MiB held"


def test_the_cache_evicts_least_recently_used_entries_by_size() -> None:
    cache: ByteBoundedCache[str, int] = ByteBoundedCache(100)
    cache.put("a", 1, 40)
    cache.put("b", 2, 40)
    assert cache.get("a") == 1  # now b is the least recently used
    cache.put("c", 3, 40)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    assert cache.used == 80
    cache.put("huge", 4, 101)  # larger than the whole budget: not kept, nothing evicted
    assert cache.get("huge") is None
    assert len(cache) == 2
    cache.put("a", 5, 10)  # replacing an entry replaces its size
    assert cache.used == 50
    assert cache.get("a") == 5


async def test_suggestions_do_not_name_the_schema_when_introspection_is_off() -> None:
    query = "mutation { updateStatu }"
    closed = await build_schema(Settings.model_validate({"introspection": False})).execute(query)
    opened = await build_schema(Settings.model_validate({"introspection": True})).execute(query)
    assert opened.errors
    assert "Did you mean 'updateStatus'?" in opened.errors[0].message
    assert closed.errors
    assert closed.errors[0].message == "Cannot query field 'updateStatu' on type 'Mutation'."
