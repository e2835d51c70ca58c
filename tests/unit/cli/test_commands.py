"""`chatwax` puts together the production commands and, where their packages are installed,
`up`, `bench` and `local-llm`; where the images dropped them, `up` and `bench` say which
extra brings them."""

from __future__ import annotations

import argparse

import pytest

from chatwax import cli


def commands(parser: argparse.ArgumentParser) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def test_every_command_of_a_full_install() -> None:
    assert commands(cli.build_parser()) == ["up", "dataflow", "kube", "ask", "usage", "export",
                                            "forget", "ui", "local-llm", "bench"]
    args = cli.build_parser().parse_args(["bench", "--only", "ceiling", "--quick"])
    assert (args.only, args.quick, args.func.__name__) == ("ceiling", True, "bench")
    assert cli.build_parser().parse_args(["up", "--no-ui"]).func.__name__ == "up"


def test_an_image_without_dev_bench_or_local(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "_installed", lambda package: False)
    assert "local-llm" not in commands(cli.build_parser())
    assert cli.main(["up", "--processes", "2", "--help"]) == 2
    assert "`chatwax up` is not in this install: pip install 'chatwax[dev]'" in \
        capsys.readouterr().err
    assert cli.main(["bench", "--only", "restart"]) == 2
    assert "pip install 'chatwax[bench]'" in capsys.readouterr().err
    assert cli.build_parser().parse_args(["dataflow"]).func.__name__ == "cmd_dataflow"
