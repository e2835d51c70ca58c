"""Conversation logic without I/O: trimming, prompt building, ordering, answers."""

from __future__ import annotations

from chatwax.core.conversation import (
    Answered,
    Conversation,
    ConversationConfig,
    LlmCall,
    LlmResult,
)
from chatwax.core.errors import ErrorCode
from chatwax.core.history import Turn, build_messages, trim_history
from chatwax.core.intake import Accepted, Inbound, Rejected, parse_inbound
from chatwax.core.replies import Reply
from chatwax.core.tokens import ESTIMATE, message_tokens
from chatwax.core.wire import ErrorEvent, FinalEvent, PromptRequest, Usage

CFG = ConversationConfig(system_prompt="be brief", prompt_budget=200, provider="local")


def _req(rid: str, user: str = "alice", conv: str = "c1", prompt: str = "q") -> Accepted:
    return Accepted(PromptRequest(rid, user, conv, prompt, f"_INBOX.{rid}", 1.0), 1.0)


def _ok(rid: str, answer: str, conv: str = "c1") -> LlmResult:
    return LlmResult(rid, conv, answer, Usage(3, 4), "m", 10.0, 2.0, 5.0, user_id="alice")


def estimate_tokens(text: str) -> int:
    return message_tokens(ESTIMATE, text)


def test_estimate_grows_with_text() -> None:
    assert estimate_tokens("") < estimate_tokens("a" * 40) < estimate_tokens("a" * 400)


def test_build_messages_keeps_newest_turns_that_fit() -> None:
    history = [Turn(f"r{i}", "p" * 40, "a" * 40) for i in range(10)]
    per_turn = history[0].size()
    fixed = estimate_tokens("now") + estimate_tokens("sys")
    built = build_messages("sys", history, "now", budget=fixed + 3 * per_turn)
    assert built.dropped_turns == 7
    assert built.messages[0] == {"role": "system", "content": "sys"}
    assert built.messages[-1] == {"role": "user", "content": "now"}
    assert len(built.messages) == 1 + 3 * 2 + 1
    assert built.tokens <= fixed + 3 * per_turn


def test_build_messages_always_sends_system_and_prompt() -> None:
    built = build_messages("sys", [Turn("r", "p", "a")], "x" * 4000, budget=10)
    assert [m["role"] for m in built.messages] == ["system", "user"]
    assert built.dropped_turns == 1


def test_trim_history_drops_oldest_beyond_budget() -> None:
    history = [Turn(f"r{i}", "p" * 40, "a" * 40) for i in range(5)]
    kept = trim_history(history, budget=2 * history[0].size())
    assert [t.request_id for t in kept] == ["r3", "r4"]


def test_parse_inbound_turns_garbage_into_a_rejection_with_reply_address() -> None:
    got = parse_inbound(Inbound(0, 1, b"{oops", "_INBOX.z", 0.0), 100)
    assert isinstance(got, Rejected)
    assert got.code is ErrorCode.BAD_REQUEST
    reply = got.reply()
    assert reply is not None and reply.subject == "_INBOX.z"


def test_parse_inbound_never_replies_to_internal_subjects() -> None:
    got = parse_inbound(Inbound(0, 1, b"{oops", "chatwax.prompts.0", 0.0), 100)
    assert isinstance(got, Rejected) and got.reply() is None


def test_one_call_in_flight_and_queued_turns_see_earlier_answers() -> None:
    conv = Conversation(owner="alice")
    first = conv.on_prompt(_req("r1", prompt="one"), CFG)
    assert len(first) == 1 and isinstance(first[0], LlmCall)
    assert conv.on_prompt(_req("r2", prompt="two"), CFG) == []  # queued behind r1
    effects = conv.on_result(_ok("r1", "ONE"), CFG)
    answered, call = effects
    assert isinstance(answered, Answered)
    transcript, final = answered.transcript, answered.final
    assert transcript.turn == 1 and transcript.answer == "ONE"
    assert transcript.usage == Usage(3, 4)
    # One item: stored first, then this final sent, to the prompt's reply subject.
    assert final.subject == "_INBOX.r1" and isinstance(final.event, FinalEvent)
    assert (final.event.text, final.event.turn, final.event.usage) == ("ONE", 1, Usage(3, 4))
    assert isinstance(call, LlmCall) and call.request.request_id == "r2"
    assert call.messages[1:] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "ONE"},
        {"role": "user", "content": "two"},
    ]
    assert call.turn == 2


def test_failed_call_adds_no_turn_and_starts_the_next() -> None:
    conv = Conversation(owner="alice")
    conv.on_prompt(_req("r1"), CFG)
    conv.on_prompt(_req("r2"), CFG)
    failed = LlmResult("r1", "c1", None, Usage(), "m", 0.0, None, 1.0, ErrorCode.LLM_UNAVAILABLE,
                       error_message="the server is down", user_id="alice")
    effects = conv.on_result(failed, CFG)
    reply, call = effects
    assert isinstance(reply, Reply) and reply.subject == "_INBOX.r1"
    assert isinstance(reply.event, ErrorEvent)
    assert (reply.event.code, reply.event.message) == (ErrorCode.LLM_UNAVAILABLE,
                                                       "the server is down")
    assert isinstance(call, LlmCall) and call.request.request_id == "r2"
    assert conv.history == [] and conv.turns == 0


def test_prompt_beyond_the_context_window_is_refused() -> None:
    cfg = ConversationConfig("sys", prompt_budget=50, provider="p", input_limit=100)
    conv = Conversation(owner="alice")
    effects = conv.on_prompt(_req("r1", prompt="x" * 1000), cfg)
    (reply,) = effects
    assert isinstance(reply, Reply) and isinstance(reply.event, ErrorEvent)
    assert reply.event.code is ErrorCode.PROMPT_TOO_LARGE
    assert conv.pending == [] and conv.in_flight is None


def test_redelivered_prompt_is_not_queued_twice() -> None:
    conv = Conversation(owner="alice")
    conv.on_prompt(_req("r1"), CFG)
    assert conv.on_prompt(_req("r1"), CFG) == []
    conv.on_result(_ok("r1", "a"), CFG)
    assert conv.knows("r1") and not conv.knows("r2")
    assert conv.on_prompt(_req("r1"), CFG) == []
    assert conv.turns == 1


def test_stale_result_is_ignored() -> None:
    conv = Conversation(owner="alice")
    conv.on_prompt(_req("r1"), CFG)
    assert conv.on_result(_ok("zzz", "a"), CFG) == []
    assert conv.in_flight == "r1"


def test_restart_reissues_the_head_of_the_queue() -> None:
    conv = Conversation(owner="alice")
    conv.on_prompt(_req("r1"), CFG)
    effects = conv.restart_in_flight(CFG)
    assert len(effects) == 1 and isinstance(effects[0], LlmCall)
    assert effects[0].request.request_id == "r1"


def _forget(rid: str = "f1", user: str = "alice", conv: str = "c1", command: bool = True
            ) -> Inbound:
    from chatwax.core.wire import ForgetRequest
    return Inbound(0, 9, ForgetRequest(rid, user, conv, f"_INBOX.{rid}").encode(),
                   f"_INBOX.{rid}", 1.0, command=command)


def test_commands_are_read_only_from_the_command_subject() -> None:
    from chatwax.core.intake import Forget
    got = parse_inbound(_forget(), 100)
    assert isinstance(got, Forget) and got.request.conversation_id == "c1"
    # The same command on a prompt subject (where clients may publish) is refused...
    refused = parse_inbound(_forget(command=False), 100)
    assert isinstance(refused, Rejected) and "not 'forget'" in refused.message
    # ...and a prompt on the command subject is not a command.
    prompt = PromptRequest("r1", "alice", "c1", "hi", "_INBOX.r1", 1.0).encode()
    odd = parse_inbound(Inbound(0, 1, prompt, "_INBOX.r1", 1.0, command=True), 100)
    assert isinstance(odd, Rejected) and "unknown command None" in odd.message


def test_a_dropped_conversation_tells_its_waiting_prompts() -> None:
    conv = Conversation(owner="alice")
    conv.on_prompt(_req("r1"), CFG)
    conv.on_result(_ok("r1", "a"), CFG)
    conv.on_prompt(_req("r2"), CFG)  # in flight
    conv.on_prompt(_req("r3"), CFG)  # waiting
    replies = conv.drop()
    assert [r.subject for r in replies if isinstance(r, Reply)] == ["_INBOX.r2", "_INBOX.r3"]
    assert all(isinstance(r, Reply) and isinstance(r.event, ErrorEvent)
               and r.event.code is ErrorCode.CONVERSATION_DELETED for r in replies)
