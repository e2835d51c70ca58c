"""What the README and docs/ name exists: every metric (and every metric the code exports
is in docs/metrics.md), every file or test cited, every `make` target and every `chatwax`
command with its options. A rename that forgets the docs fails here."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from chatwax.cli import build_parser
from chatwax.dataflow.metrics import Metrics

ROOT = Path(__file__).parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_METRICS = {"chatwax_partitions": "the prompts stream's metadata key"}
CITED_ROOTS = ("src/", "tests/", "docs/", "charts/", "scripts/", "frontend/", ".github/",
               ".ci/")


def _spans() -> list[tuple[Path, str]]:
    """Every `inline code` span of the docs (fenced blocks are examples, read whole)."""
    out = []
    for doc in DOCS:
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
        out += [(doc, s) for s in re.findall(r"`([^`\n]+)`", text)]
    return out


def _metric_families() -> set[str]:
    registry = CollectorRegistry()
    Metrics(registry)
    return {m.name + ("_total" if m.type == "counter" else "")
            for m in registry.collect()}


def test_every_metric_named_exists_and_every_metric_is_documented() -> None:
    families = _metric_families()
    table = set(re.findall(r"^\| `(chatwax_[a-z_]+)`", (ROOT / "docs" / "metrics.md")
                           .read_text(), flags=re.M))
    assert families == table, (families - table, table - families)
    named = {m for _, s in _spans() for m in re.findall(r"\bchatwax_[a-z_]+\b", s)}
    source = "".join(p.read_text() for p in (ROOT / "src" / "chatwax").rglob("*.py"))
    for name in named - families:
        assert name in NOT_METRICS and f'"{name}"' in source, name


def test_every_cited_file_and_test_exists() -> None:
    missing = []
    for doc, span in _spans():
        for ref in span.split(", "):
            ref = ref.strip().rstrip(".:")
            if not ref.startswith(CITED_ROOTS) or re.search(r"[<>*{}$ ]", ref):
                continue
            if not _cited_exists(ref):
                missing.append(f"{doc.name}: {ref}")
    assert not missing, missing


def _cited_exists(ref: str) -> bool:
    """`path` or `path::test_name` (a test function defined in that file)."""
    path, _, test = ref.partition("::")
    if not (ROOT / path).exists():
        return False
    return not test or bool(re.search(rf"^(async )?def {re.escape(test)}\b",
                                      (ROOT / path).read_text(), flags=re.M))


def test_every_make_target_named_exists() -> None:
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(),
                             flags=re.M))
    named = {m for _, s in _spans() for m in re.findall(r"^make ([a-z][a-z0-9-]*)", s)}
    assert named and named <= targets, named - targets


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public way to list subcommands
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_chatwax_command_and_option_named_exists(doc: Path) -> None:
    root = build_parser()
    checked = 0
    for span_doc, span in _spans():
        if span_doc != doc:
            continue
        words = re.sub(r"^(?:[A-Z_]+=\S+ )+", "", span).split()  # VAR=... chatwax ...
        if words[:1] != ["chatwax"] or len(words) < 2 or words[1].startswith("<"):
            continue
        parser, rest = root, words[1:]
        while rest and (sub := _subparsers(parser)) and not rest[0].startswith("-"):
            assert rest[0] in sub, f"{doc.name}: `{span}`: no command {rest[0]!r}"
            parser, rest = sub[rest[0]], rest[1:]
        for word in rest:
            option = word.split("=", 1)[0]
            if option.startswith("--"):
                assert option in _options(parser), f"{doc.name}: `{span}`: no {option}"
        checked += 1
    if doc.name in ("README.md", "data.md"):
        assert checked, "the check found no command to check"
