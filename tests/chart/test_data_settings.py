"""Retention, summaries and token counting: the chart's values reach the dataflow as the
settings the code reads (parsed by the same declarations the process uses)."""

from __future__ import annotations

from pathlib import Path

import yaml

from chatwax.core.settings import Settings
from tests.chart.conftest import Chart


def _dataflow_settings(chart: Chart, values: Path | None = None) -> Settings:
    docs = chart.render(values=(values,) if values else ())
    return Settings.from_env(docs.find("ConfigMap", "-dataflow-env")["data"])


def test_defaults_match_the_settings_defaults(chart: Chart) -> None:
    got, code = _dataflow_settings(chart), Settings()
    for name in ("transcript_max_age_s", "transcript_max_bytes", "summaries", "summary_model",
                 "summary_trigger", "summary_keep", "summary_max_tokens", "token_counter"):
        assert getattr(got, name) == getattr(code, name), name


def test_retention_summaries_and_counting_reach_the_dataflow(chart: Chart,
                                                              tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"dataflow": {
        "transcripts": {"maxAgeDays": 7, "maxBytes": 7 * 1024**3},
        "summaries": {"enabled": False, "model": "gpt-4o-mini", "trigger": 0.9, "keep": 0.4,
                      "maxTokens": 128},
        "tokenCounter": "estimate",
    }}))
    s = _dataflow_settings(chart, values)
    assert s.transcript_max_age_s == 7 * 86_400
    assert s.transcript_max_bytes == 7 * 1024**3
    assert (s.summaries, s.summary_model, s.summary_trigger, s.summary_keep,
            s.summary_max_tokens, s.token_counter) == (False, "gpt-4o-mini", 0.9, 0.4, 128,
                                                        "estimate")


def test_nonsense_is_refused_by_the_schema(chart: Chart) -> None:
    for bad in ("dataflow.transcripts.maxBytes=-1", "dataflow.summaries.trigger=2",
                "dataflow.tokenCounter=exact"):
        res = chart.helm("3", *chart.template_args(bad))
        assert res.returncode != 0 and "schema" in res.stderr.lower(), (bad, res.stderr)


def test_shared_storage_is_bounded_by_default(chart: Chart) -> None:
    """A plain install bounds what one user can take: a token quota, a prompt rate, a
    conversation cap, and byte bounds on all three streams that fit the NATS volume."""
    s, code = _dataflow_settings(chart), Settings()
    for name in ("user_token_quota", "user_prompts_per_minute", "user_max_conversations",
                 "prompt_max_bytes", "transcript_max_bytes", "dead_letter_max_bytes",
                 "dead_letter_max_age_s", "user_max_concurrent"):
        assert getattr(s, name) == getattr(code, name) > 0, name
    volume = 10 * 1024**3  # nats.jetstream.storageSize: 10Gi
    assert s.prompt_max_bytes + s.transcript_max_bytes + s.dead_letter_max_bytes < volume


def test_stream_bounds_that_do_not_fit_the_volume_are_refused_when_rendered(
        chart: Chart) -> None:
    res = chart.helm("3", *chart.template_args("nats.jetstream.storageSize=2Gi"))
    assert res.returncode != 0
    assert "more than nats.jetstream.storageSize (2Gi" in res.stderr, res.stderr
    fits = chart.helm("3", *chart.template_args("nats.jetstream.storageSize=2560Mi"))
    assert fits.returncode == 0, fits.stderr
    odd = chart.helm("3", *chart.template_args("nats.jetstream.storageSize=1.5Gi"))
    assert odd.returncode != 0 and "cannot read" in odd.stderr, odd.stderr


def test_fractions_from_set_and_from_a_values_file(chart: Chart, helm_major: str,
                                                   tmp_path: Path) -> None:
    """`--set` leaves `0.5` a string (helm's strvals types only whole numbers), so the
    schema accepts numeric strings for the fractional values; fractional days are not cut
    to 0 ("keep forever"), and a positive age never rounds down to 0."""
    sets = ("llm.temperature=0.5", "dataflow.transcripts.maxAgeDays=0.5",
            "dataflow.deadLetters.maxAgeDays=0.00001", "dataflow.summaries.trigger=0.75",
            "dataflow.summaries.keep=0.25")
    docs = chart.render(*sets, major=helm_major)
    s = Settings.from_env(docs.find("ConfigMap", "-dataflow-env")["data"])
    assert (s.temperature, s.transcript_max_age_s, s.dead_letter_max_age_s,
            s.summary_trigger, s.summary_keep) == (0.5, 43_200, 1, 0.75, 0.25)
    values = tmp_path / "values.yaml"
    values.write_text("dataflow:\n  transcripts:\n    maxAgeDays: 1.5\n")
    assert _dataflow_settings(chart, values).transcript_max_age_s == 129_600
    res = chart.helm(helm_major, *chart.template_args("llm.temperature=warm"))
    assert res.returncode != 0 and "temperature" in res.stderr


def test_an_env_value_that_is_not_a_string_is_refused_by_the_schema(
        chart: Chart, helm_major: str) -> None:
    """`--set ...value=100` makes an integer, which the API server cannot decode into an
    EnvVar (tests/support/apiserver.py `check_field_types`): refused while rendering, with
    the field named; `--set-string` renders."""
    for comp in ("dataflow", "frontend"):
        env = f"{comp}.extraEnv[0]"
        res = chart.helm(helm_major, *chart.template_args(f"{env}.name=CHATWAX_POLL_MS",
                                                          f"{env}.value=100"))
        assert res.returncode != 0, res.stdout[:200]
        assert "extraEnv" in res.stderr and "string" in res.stderr, res.stderr
        ok = chart.helm(helm_major, *chart.template_args(f"{env}.name=CHATWAX_POLL_MS"),
                        "--set-string", f"{env}.value=100")
        assert ok.returncode == 0, ok.stderr
        assert "value: \"100\"" in ok.stdout
