"""Render the README's settings table from the declarations in chatwax.core.settings.

    python scripts/settings_table.py          # print the table
    python scripts/settings_table.py --write  # refresh it in README.md

tests/unit/core/test_settings.py checks that README.md holds exactly what this prints.
"""

from __future__ import annotations

import sys
from pathlib import Path

from chatwax.core.settings import Settings, variable

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- settings-table:begin -->", "<!-- settings-table:end -->"


def table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for info in Settings.model_fields.values():
        default = "—" if info.default in (None, "") else f"`{info.default}`"
        rows.append(f"| `{variable(info)}` | {default} | {info.description} |")
    return "\n".join(rows)


def main() -> int:
    text = table()
    if "--write" in sys.argv:
        doc = README.read_text()
        start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
        README.write_text(doc[:start] + "\n" + text + "\n" + doc[end:])
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
