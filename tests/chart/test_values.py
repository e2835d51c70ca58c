"""values.yaml, values.schema.json and the values table in docs/kubernetes.md say the same."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart.conftest import Chart

# Maps whose keys are the user's (Kubernetes objects, labels): the schema leaves them open.
FREE_FORM = {"resources", "podSecurityContext"}


@pytest.fixture(scope="module")
def table(chart: Chart) -> ModuleType:
    sys.path.insert(0, str(chart.root / "scripts"))
    try:
        import chart_values_table
    finally:
        sys.path.pop(0)
    return chart_values_table


def _schema(chart: Chart) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((chart.path / "values.schema.json").read_text())
    return schema


def _values(chart: Chart) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((chart.path / "values.yaml").read_text())
    return values


def _schema_keys(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for key, sub in node.get("properties", {}).items():
        yield f"{path}{key}", sub
        yield from _schema_keys(sub, f"{path}{key}.")


def test_every_value_is_documented_and_the_docs_table_is_current(
    chart: Chart, table: ModuleType
) -> None:
    documented = {key for key, _ in table.documented()}

    def leaves(node: Any, path: str) -> list[str]:
        if isinstance(node, dict) and node:
            return [leaf for k, v in node.items() for leaf in leaves(v, f"{path}{k}.")]
        return [path.rstrip(".")]

    for leaf in leaves(_values(chart), ""):
        parts = leaf.split(".")
        assert any(".".join(parts[:n]) in documented for n in range(1, len(parts) + 1)), (
            f"values.yaml: {leaf} has no '# --' comment")
    doc = (chart.root / "docs" / "kubernetes.md").read_text()
    assert table.table() in doc, "run: python scripts/chart_values_table.py --write"


def test_the_schema_describes_each_value_as_values_yaml_does(
    chart: Chart, table: ModuleType
) -> None:
    schema = dict(_schema_keys(_schema(chart)))
    for key, doc in table.documented():
        assert key in schema, f"{key} is missing from values.schema.json"
        assert schema[key].get("description") == doc, key
    values = _values(chart)
    for key in schema:
        if key == "global":  # parent charts' values, allowed by convention
            continue
        node: Any = values
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"schema key {key} not in values.yaml"
            node = node[part]


def test_the_schema_is_closed_and_accepts_the_defaults(chart: Chart) -> None:
    schema = _schema(chart)
    assert schema["additionalProperties"] is False and "global" in schema["properties"]
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(_values(chart), schema)
    for values in sorted((chart.path / "ci").glob("*-values.yaml")):
        jsonschema.validate(yaml.safe_load(values.read_text()) or {}, schema)

    def walk(node: dict[str, Any], sch: dict[str, Any], path: str) -> None:
        for key, value in node.items():
            sub = sch["properties"][key]
            if isinstance(value, dict) and value and key not in FREE_FORM:
                assert sub.get("additionalProperties") is False, f"{path}{key} is open"
                walk(value, sub, f"{path}{key}.")

    walk(_values(chart), schema, "")


def test_the_values_table_script_writes_what_the_test_expects(
    chart: Chart, table: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = tmp_path / "kubernetes.md"
    doc.write_text(f"# x\n\n{table.BEGIN}\nstale\n{table.END}\nafter\n")
    monkeypatch.setattr(table, "DOC", doc)
    monkeypatch.setattr(sys, "argv", ["chart_values_table.py", "--write"])
    assert table.main() == 0
    text = doc.read_text()
    assert table.table() in text and "stale" not in text and text.endswith("after\n")
