"""Render the chart's values table from values.yaml's `# --` comments.

    python scripts/chart_values_table.py          # print the table
    python scripts/chart_values_table.py --write  # refresh it in docs/kubernetes.md

tests/chart checks that docs/kubernetes.md holds exactly what this prints.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
VALUES = ROOT / "charts" / "chatwax" / "values.yaml"
DOC = ROOT / "docs" / "kubernetes.md"
BEGIN, END = "<!-- values-table:begin -->", "<!-- values-table:end -->"


def documented() -> list[tuple[str, str]]:
    """(dotted key, description) for every key with a `# --` comment, in file order."""
    out: list[tuple[str, str]] = []
    stack: list[str] = []
    pending: str | None = None
    for line in VALUES.read_text().splitlines():
        if m := re.match(r"^\s*# -- (.*)$", line):
            pending = m.group(1)
            continue
        if m := re.match(r"^(\s*)([A-Za-z0-9_]+):", line):
            depth = len(m.group(1)) // 2
            stack = [*stack[:depth], m.group(2)]
            if pending is not None:
                out.append((".".join(stack), pending))
            pending = None
    return out


def default(key: str) -> str:
    node = yaml.safe_load(VALUES.read_text())
    for part in key.split("."):
        node = node[part]
    return json.dumps(node, separators=(", ", ": "))


def table() -> str:
    rows = ["| key | default | description |", "|---|---|---|"]
    for key, doc in documented():
        rows.append(f"| `{key}` | `{default(key)}` | {doc} |")
    return "\n".join(rows)


def main() -> int:
    text = table()
    if "--write" in sys.argv:
        doc = DOC.read_text()
        start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
        DOC.write_text(doc[:start] + "\n" + text + "\n" + doc[end:])
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
