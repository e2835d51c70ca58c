"""Summaries and token counting in a conversation's state machine, without I/O."""

from __future__ import annotations

import pickle

from chatwax.core.conversation import (
    Conversation,
    ConversationConfig,
    LlmCall,
    LlmResult,
    SummaryCall,
    SummaryResult,
)
from chatwax.core.history import SUMMARY_PREFIX, Turn, build_messages
from chatwax.core.intake import Accepted
from chatwax.core.summary import SUMMARIZER_MARK, SummaryConfig, summary_messages, to_fold
from chatwax.core.tokens import ESTIMATE, MESSAGE_OVERHEAD_TOKENS, message_tokens
from chatwax.core.wire import PromptRequest, Transcript, Usage


class Words:
    """A counter that counts words: exact numbers to reason about."""

    kind = "tokenizer"

    def count(self, text: str) -> int:
        return len(text.split())


WORDS = Words()
ON = SummaryConfig(enabled=True, trigger=0.75, keep=0.5, max_tokens=64, model="m")
CFG = ConversationConfig("sys", prompt_budget=100, provider="p", counter=WORDS, summary=ON)


def _req(rid: str, prompt: str) -> Accepted:
    return Accepted(PromptRequest(rid, "alice", "c1", prompt, f"_INBOX.{rid}", 1.0), 1.0)


def _answer(rid: str, words: int, usage: Usage | None = None) -> LlmResult:
    text = " ".join(["w"] * words)
    return LlmResult(rid, "c1", text, usage or Usage(1, words), "m", 5.0, 1.0, 2.0,
                     user_id="alice")


def _turn(conv: Conversation, rid: str, prompt_words: int = 6, answer_words: int = 10,
          cfg: ConversationConfig = CFG) -> list[object]:
    calls = conv.on_prompt(_req(rid, " ".join(["p"] * prompt_words)), cfg)
    assert isinstance(calls[-1], LlmCall)
    return list(conv.on_result(_answer(rid, answer_words), cfg))


def _summarizing() -> tuple[Conversation, SummaryCall]:
    """A conversation four turns in: past the trigger, its first summary under way."""
    conv = Conversation(owner="alice")
    for i in range(4):
        _turn(conv, f"r{i}")
    assert conv.summarizing is not None
    return conv, conv.summarizing


def test_a_turn_costs_its_words_and_framing_by_the_counter() -> None:
    turn = Turn("r", "a b c", "d e", tokens=-1)
    assert turn.size(WORDS) == 3 + 2 + 2 * MESSAGE_OVERHEAD_TOKENS
    assert turn.size(ESTIMATE) == message_tokens(ESTIMATE, "a b c") + message_tokens(
        ESTIMATE, "d e")
    assert Turn("r", "a", "b", tokens=7).size(WORDS) == 7  # counted once, when it ended


def test_fold_nothing_below_the_trigger_and_keep_the_newest_share_above() -> None:
    small = [Turn(f"r{i}", "p", "a", tokens=10) for i in range(7)]  # 70 <= 75
    assert to_fold(small, 100, ON, WORDS) == 0
    big = [Turn(f"r{i}", "p", "a", tokens=10) for i in range(8)]  # 80 > 75
    assert to_fold(big, 100, ON, WORDS) == 3  # the newest 5 (50 tokens) stay
    assert to_fold(big, 100, SummaryConfig(enabled=False), WORDS) == 0
    huge = [Turn("r0", "p", "a", tokens=10), Turn("r1", "p", "a", tokens=500)]
    assert to_fold(huge, 100, ON, WORDS) == 1  # the newest turn always stays


def test_the_summarizer_sees_the_last_summary_and_the_turns_it_folds() -> None:
    messages = summary_messages("they like tea", [Turn("r", "I am Ada", "Hi Ada")], 64)
    assert messages[0]["role"] == "system" and messages[0]["content"].startswith(SUMMARIZER_MARK)
    assert "64 tokens" in messages[0]["content"]
    body = messages[1]["content"]
    assert body.index("they like tea") < body.index("User: I am Ada") < body.index(
        "Assistant: Hi Ada")


def test_the_prompt_carries_the_summary_before_the_recent_turns() -> None:
    built = build_messages("sys", [Turn("r", "p", "a")], "now", 1000, WORDS, summary="S")
    assert [m["role"] for m in built.messages] == ["system", "system", "user", "assistant",
                                                   "user"]
    assert built.messages[1]["content"] == SUMMARY_PREFIX + "S"
    assert built.tokens == sum(message_tokens(WORDS, m["content"]) for m in built.messages)


def test_history_past_the_trigger_starts_one_summary_and_the_answer_does_not_wait() -> None:
    conv = Conversation(owner="alice")
    started: list[SummaryCall] = []
    for i in range(8):
        effects = _turn(conv, f"r{i}")
        started += [e for e in effects if isinstance(e, SummaryCall)]
    # Each turn is 6 + 10 words + 2 * 4 framing = 24 tokens: the 4th passes 75.
    assert len(started) == 1, "one summary in flight per conversation"
    call = started[0]
    assert call.folds == ("r0", "r1")  # the newest two (48 tokens) fit half the budget
    assert call.folded_tokens == 48
    # While it runs, prompts are answered at once from the turns that fit.
    effects = conv.on_prompt(_req("r8", "next"), CFG)
    assert len(effects) == 1 and isinstance(effects[0], LlmCall)
    assert conv.busy and conv.summarizing is call


def test_a_summary_replaces_the_turns_it_folded_and_is_stored_with_its_usage() -> None:
    conv, call = _summarizing()
    _turn(conv, "r4")  # a turn that ends while the summary is made stays
    effects = conv.on_summary(SummaryResult(call.call_id, "c1", "Ada likes tea", Usage(30, 5),
                                            "m", 40.0, 9.0, user_id="alice"), CFG)
    (transcript,) = effects
    assert isinstance(transcript, Transcript) and transcript.kind == "summary"
    assert transcript.answer == "Ada likes tea" and transcript.usage == Usage(30, 5)
    assert transcript.subject == "chatwax.transcripts.alice.c1.summary"
    assert conv.summary == "Ada likes tea" and conv.folded == 2
    assert [t.request_id for t in conv.history] == ["r2", "r3", "r4"]
    call2 = conv.on_prompt(_req("r5", "and now?"), CFG)[0]
    assert isinstance(call2, LlmCall)
    assert call2.messages[1] == {"role": "system", "content": SUMMARY_PREFIX + "Ada likes tea"}
    assert call2.est_tokens <= CFG.prompt_budget


def test_a_failed_summary_falls_back_to_trimming_and_a_stale_one_is_ignored() -> None:
    conv, call = _summarizing()
    assert conv.on_summary(SummaryResult("sum-other", "c1", "x", Usage(), "m", 1.0, 1.0,
                                         user_id="alice"), CFG) == []
    effects = conv.on_summary(SummaryResult(call.call_id, "c1", None, Usage(), "m", 1.0, 1.0,
                                            user_id="alice"), CFG)
    assert effects == []
    assert conv.summary == "" and conv.summarizing is None
    assert sum(t.size(WORDS) for t in conv.history) <= CFG.prompt_budget


def test_without_summaries_history_stays_within_the_budget() -> None:
    cfg = ConversationConfig("sys", prompt_budget=100, provider="p", counter=WORDS)
    conv = Conversation(owner="alice")
    for i in range(30):
        effects = _turn(conv, f"r{i}", cfg=cfg)
        assert not any(isinstance(e, SummaryCall) for e in effects)
    assert sum(t.size(WORDS) for t in conv.history) <= 100
    assert conv.turns == 30


def test_history_stays_bounded_while_a_summary_never_comes_back() -> None:
    conv = Conversation(owner="alice")
    for i in range(40):
        _turn(conv, f"r{i}")
    assert sum(t.size(WORDS) for t in conv.history) <= 2 * CFG.prompt_budget


def test_a_restart_starts_the_cut_off_summary_again() -> None:
    conv = Conversation(owner="alice")
    for i in range(4):
        _turn(conv, f"r{i}")
    conv.on_prompt(_req("r4", "q"), CFG)
    restored = pickle.loads(pickle.dumps(conv))
    effects = restored.restart_in_flight(CFG)
    assert [type(e) for e in effects] == [SummaryCall, LlmCall]
    assert effects[0] == conv.summarizing


def test_state_round_trips_through_pickle() -> None:
    conv, _ = _summarizing()
    conv.summary, conv.folded = "so far", 3
    assert pickle.loads(pickle.dumps(conv)) == conv


def test_exact_output_counts_size_the_turn_for_later_calls() -> None:
    conv = Conversation(owner="alice")
    conv.on_prompt(_req("r0", "one two"), CFG)
    conv.on_result(_answer("r0", 3, Usage(50, 12)), CFG)  # the server's count wins
    assert conv.history[0].tokens == (2 + 4) + (12 + 4)
    conv.on_prompt(_req("r1", "one two"), CFG)
    conv.on_result(_answer("r1", 3, Usage(50, 12, "estimate")), CFG)
    assert conv.history[1].tokens == (2 + 4) + (3 + 4)  # an estimate does not
