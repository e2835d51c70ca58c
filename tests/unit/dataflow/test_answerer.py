"""Chunk coalescing: the first token at once, later ones joined, restarts start over."""

from __future__ import annotations

import asyncio

from chatwax.dataflow.answerer import ChunkBatcher


def _run(interval_s: float, deltas: list[tuple[int, str]]) -> list[tuple[int, str]]:
    sent: list[tuple[int, str]] = []

    async def send(index: int, text: str) -> None:
        sent.append((index, text))

    async def main() -> None:
        batcher = ChunkBatcher(interval_s, send)
        for index, text in deltas:
            await batcher.add(index, text)
        await batcher.flush()

    asyncio.run(main())
    return sent


TOKENS = [(i, f"t{i} ") for i in range(6)]


def test_first_token_goes_alone_and_the_rest_is_joined() -> None:
    assert _run(3600.0, TOKENS) == [(0, "t0 "), (1, "t1 t2 t3 t4 t5 ")]


def test_zero_interval_sends_every_token() -> None:
    assert _run(0.0, TOKENS) == [(i, f"t{i} ") for i in range(6)]


def test_a_restarted_stream_starts_again_at_chunk_zero() -> None:
    sent = _run(3600.0, [(0, "a "), (1, "b "), (0, "x "), (1, "y ")])
    assert sent == [(0, "a "), (0, "x "), (1, "y ")]  # "b " was never flushed: dropped
    assert "".join(t for i, t in sent[1:]) == "x y "
