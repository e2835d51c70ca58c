"""Usage aggregation and prices: pure functions over transcripts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chatwax.core.errors import ConfigError
from chatwax.core.pricing import Price, PriceTable, parse_prices
from chatwax.core.usage import GroupBy, UsageReport, UsageRow, format_table, parse_since, total
from chatwax.core.wire import Transcript, Usage


def _t(rid: str, user: str, model: str, inp: int, out: int, cost: float = 0.0) -> Transcript:
    return Transcript(rid, user, f"c-{user}", 1, "q", "a", model, "p", Usage(inp, out),
                      100.0, None, 0.0, 1.0, cost)


def test_prices_match_dated_model_names_and_unknown_models_are_free() -> None:
    table = PriceTable()
    assert table.price("gpt-4o-mini-2024-07-18") == table.price("gpt-4o-mini")
    assert table.price("gpt-4o-2024-08-06") == table.price("gpt-4o")
    assert table.price("llama3.2") == Price(0.0, 0.0)
    assert table.cost("gpt-4o-mini", Usage(1_000_000, 1_000_000)) == pytest.approx(0.75)


def test_price_overrides_parse_and_bad_ones_name_themselves() -> None:
    table = PriceTable(parse_prices("my-model=1:2; gpt-4o-mini=0:0"))
    assert table.cost("my-model", Usage(500_000, 250_000)) == pytest.approx(1.0)
    assert table.cost("gpt-4o-mini", Usage(10, 10)) == 0.0
    with pytest.raises(ConfigError, match="'oops'"):
        parse_prices("oops")


def _rows(transcripts: list[Transcript], by: GroupBy) -> list[UsageRow]:
    report = UsageReport()
    for t in transcripts:
        report.add(t)
    return report.rows(by)


def test_rows_by_user_count_each_request_once() -> None:
    ts = [_t("1", "a", "m1", 10, 5, 0.5), _t("2", "b", "m1", 1, 1), _t("3", "a", "m2", 4, 4),
          _t("1", "a", "m1", 10, 5, 0.5)]
    rows = _rows(ts, "user")
    assert [(r.key, r.turns, r.input_tokens, r.output_tokens) for r in rows] == [
        ("a", 2, 14, 9), ("b", 1, 1, 1),
    ]
    assert rows[0].cost_usd == pytest.approx(0.5)
    t = total(rows)
    assert (t.turns, t.total_tokens) == (3, 25)
    by_model = {r.key: r.total_tokens for r in _rows(ts, "model")}
    assert by_model == {"m1": 17, "m2": 8}
    assert {r.key for r in _rows(ts, "conversation")} == {"a/c-a", "b/c-b"}


def test_table_ends_with_the_total() -> None:
    text = format_table(_rows([_t("1", "a", "m", 3, 4)], "user"), "user")
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["user", "turns"]
    assert lines[0].split() == ["user", "turns", "summaries", "input", "output", "total",
                                "estimated", "cost", "USD", "avg", "ms"]
    assert lines[-1].split()[:8] == ["total", "1", "0", "3", "4", "7", "0", "0.000000"]


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("24h", 86400), ("7d", 604800),
                                               ("all", None)])
def test_since_windows(text: str, seconds: float | None) -> None:
    assert parse_since(text) == seconds


def test_bad_since_is_refused() -> None:
    with pytest.raises(ConfigError, match="yesterday"):
        parse_since("yesterday")


def test_summaries_spend_tokens_but_are_not_turns_and_estimates_are_told_apart() -> None:
    turn = _t("1", "a", "m", 10, 5)
    summary = Transcript("sum-1", "a", "c-a", 1, "", "s", "m", "p", Usage(40, 8), 900.0, None,
                         0.0, 2.0, kind="summary")
    guessed = Transcript("2", "a", "c-a", 2, "q", "a", "m", "p", Usage(6, 2, "estimate"), 50.0,
                         None, 0.0, 3.0)
    (row,) = _rows([turn, summary, guessed], "user")
    assert (row.turns, row.summaries) == (2, 1)
    assert row.total_tokens == 15 + 48 + 8
    assert row.estimated_tokens == 8
    assert row.avg_latency_ms == pytest.approx(75.0)  # the summary's time is nobody's wait


def test_the_report_keeps_tokens_per_minute_and_buckets_by_span() -> None:
    """The Usage page's chart from one pass: minutes summed into buckets that fit the
    span (a minute up to 6 h, an hour up to 7 days, else a day)."""
    def at(rid: str, when: float, model: str, tokens: int) -> Transcript:
        return replace(_t(rid, "u", model, tokens, 0), finished_at=when)

    report = UsageReport()
    for t in (at("1", 60.0, "m", 3), at("2", 90.0, "m", 4), at("3", 150.0, "n", 5),
              at("1", 61.0, "m", 99)):  # stored twice: counted once
        report.add(t)
    assert report.series() == ("1min", [(60.0, "m", 7), (120.0, "n", 5)])
    report.add(at("4", 3 * 86_400.0, "m", 1))
    name, buckets = report.series()
    assert name == "1h" and buckets[0] == (0.0, "m", 7) and buckets[-1][1:] == ("m", 1)
    report.add(at("5", 30 * 86_400.0, "m", 2))
    assert report.series()[0] == "1D"
    assert UsageReport().series() == ("1min", [])
