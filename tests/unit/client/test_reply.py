"""`Reply`: how the reply events of one prompt become what a client shows. Fed the wire
bytes the dataflow sends, as NATS hands them to the subscription's callback."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from chatwax.client.chat import Chunk, Reply
from chatwax.core.errors import ErrorCode, NoAnswer, RequestFailed
from chatwax.core.wire import ChunkEvent, ErrorEvent, FinalEvent, PromptRequest, Usage

REQUEST = PromptRequest(request_id="r1", user_id="alice", conversation_id="trip",
                        prompt="hi", reply_to="_INBOX.x")


@dataclass
class Msg:
    data: bytes


def _final(text: str, request_id: str = "r1") -> FinalEvent:
    return FinalEvent(request_id, "trip", text, "echo-1", Usage(1, 2), 5.0, 1.0, 1)


async def _fed(*events: ChunkEvent | FinalEvent | ErrorEvent | bytes,
               timeout: float = 5.0) -> Reply:
    reply = Reply(REQUEST, timeout)
    for e in events:
        await reply.on_msg(Msg(e if isinstance(e, bytes) else e.encode()))
    return reply


def _shown(chunks: list[Chunk]) -> str:
    text = ""
    for c in chunks:
        text = c.text if c.restart else text + c.text
    return text


def test_chunks_add_up_to_the_final_text() -> None:
    async def main() -> tuple[list[Chunk], FinalEvent, str]:
        reply = await _fed(ChunkEvent("r1", 0, "echo:"), ChunkEvent("r1", 1, " hi"),
                           _final("echo: hi"))
        return [c async for c in reply], await reply.result(), reply.text

    chunks, answer, text = asyncio.run(main())
    assert chunks == [Chunk("echo:"), Chunk(" hi")]
    assert answer.text == text == "echo: hi"


def test_a_retried_stream_restarts_once_and_duplicates_are_dropped() -> None:
    async def main() -> list[Chunk]:
        reply = await _fed(ChunkEvent("r1", 0, "one"), ChunkEvent("r1", 1, " two"),
                           ChunkEvent("r1", 1, " two"),  # re-sent after a restart
                           ChunkEvent("r1", 0, "uno"), ChunkEvent("r1", 1, " dos"),
                           _final("uno dos"))
        return [c async for c in reply]

    chunks = asyncio.run(main())
    assert chunks == [Chunk("one"), Chunk(" two"), Chunk("uno", restart=True), Chunk(" dos")]
    assert _shown(chunks) == "uno dos"


def test_a_final_text_unlike_the_chunks_replaces_them() -> None:
    """Chunks lost on the way (core NATS drops to a slow consumer): the final is the truth."""
    async def main() -> list[Chunk]:
        reply = await _fed(ChunkEvent("r1", 0, "echo:"), _final("echo: all of it"))
        return [c async for c in reply]

    chunks = asyncio.run(main())
    assert chunks[-1] == Chunk("echo: all of it", restart=True)
    assert _shown(chunks) == "echo: all of it"
    nothing_streamed = asyncio.run(_fed(_final("whole")))
    assert asyncio.run(_chunks(nothing_streamed)) == [Chunk("whole")]


async def _chunks(reply: Reply) -> list[Chunk]:
    return [c async for c in reply]


def test_an_error_ends_the_chunks_and_result_raises_its_code() -> None:
    async def main() -> tuple[list[Chunk], RequestFailed]:
        reply = await _fed(ChunkEvent("r1", 0, "par"),
                           ErrorEvent("r1", ErrorCode.LLM_UNAVAILABLE, "the LLM went away"))
        chunks = [c async for c in reply]
        with pytest.raises(RequestFailed) as caught:
            await reply.result()
        return chunks, caught.value

    chunks, error = asyncio.run(main())
    assert chunks == [Chunk("par")]
    assert (error.code, error.message) == (ErrorCode.LLM_UNAVAILABLE, "the LLM went away")


def test_other_requests_and_malformed_bytes_are_ignored() -> None:
    async def main() -> list[Chunk]:
        reply = await _fed(b"{not json", ChunkEvent("r2", 0, "not mine"), _final("x", "r2"),
                           ChunkEvent("r1", 0, "mine"), _final("mine"))
        return [c async for c in reply]

    assert asyncio.run(main()) == [Chunk("mine")]


def test_no_end_within_the_timeout_is_no_answer() -> None:
    """The client's own condition, not a wire code: the request stays stored."""
    async def main() -> NoAnswer:
        reply = await _fed(ChunkEvent("r1", 0, "slow"), timeout=0.2)
        with pytest.raises(NoAnswer) as caught:
            await reply.result()
        return caught.value

    error = asyncio.run(main())
    assert "no answer within 0.2s" in error.message and "r1" in error.message
    assert not isinstance(error, RequestFailed)
