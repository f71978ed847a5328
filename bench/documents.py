"""What hostile documents cost one process: memory pinned by distinct documents, and the time
of a fragment document with 2^30 paths. In process, through the schema, no database.

python -m bench.documents [--documents 512] [--levels 30]

Both measures run on any commit since the schema had ``build_schema(settings)``, so the
same command compares code before and after a change (run it from a worktree of each).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc

from storyline.config import Settings
from storyline.schema.roots import build_schema


def literal_document(n: int, size: int) -> str:
    """A distinct valid document of ``size`` bytes that is almost all one string literal."""
    head = f'query Q{n}($note: String = "'
    tail = '") { price }'
    return head + "x" * (size - len(head) - len(tail)) + tail


def alias_document(n: int, size: int, tokens: int) -> str:
    """A distinct document close to both the byte and the token limit (many long aliases)."""
    name = f"d{n}_" + "x" * 100
    aliases = " ".join(f"{name}{i}: price" for i in range((tokens - 10) // 3))
    return f"query Q{n} {{ {aliases} }}"[: size - 2] + " }"


def fragment_bomb(levels: int) -> str:
    lines = ["query Bomb { ...F0 }"]
    lines += [f"fragment F{n} on Query {{ ...F{n + 1} ...F{n + 1} }}" for n in range(levels)]
    lines.append(f"fragment F{levels} on Query {{ a: price }}")
    return "\n".join(lines)


async def pinned(documents: list[str]) -> float:
    """MiB still allocated after executing every document once (caches keep what they keep)."""
    schema = build_schema(Settings.model_construct())
    await schema.execute("{ __typename }")
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for document in documents:
        await schema.execute(document)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held / 1_048_576


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.documents")
    parser.add_argument("--documents", type=int, default=512)
    parser.add_argument("--levels", type=int, default=30)
    parser.add_argument("--skip-bomb", action="store_true", help="old code never answers it")
    args = parser.parse_args()
    settings = Settings.model_construct()
    body = settings.max_body_bytes - 100  # what fits in one request's body
    query_bytes = getattr(settings, "max_query_bytes", body)
    tokens = settings.max_query_tokens
    literal = [literal_document(n, body) for n in range(args.documents)]
    held = await pinned(literal)
    print(f"{args.documents} distinct {body:,}-byte literal documents: {held:.1f} MiB")
    aliases = [alias_document(n, query_bytes, tokens) for n in range(args.documents)]
    print(
        f"{args.documents} distinct {query_bytes:,}-byte, {tokens}-token alias documents: "
        f"{await pinned(aliases):.1f} MiB"
    )
    if not args.skip_bomb:
        schema = build_schema(settings)
        started = time.perf_counter()
        result = await schema.execute(fragment_bomb(args.levels))
        elapsed = (time.perf_counter() - started) * 1000
        print(f"2^{args.levels}-path fragment document: {elapsed:.1f} ms, {result.errors}")


if __name__ == "__main__":
    asyncio.run(main())
