"""`perpdex stress --all`'s comparison: saved as comparison.csv and comparison.md, and a rich
table that never cuts a number at 80 columns."""

from __future__ import annotations

import csv
from pathlib import Path

from rich.console import Console

from perpdex.sim.ui import COMPARISON_COLUMNS, comparison_table, write_comparison

ROWS = [
    [name, "-40.0%", "+12.5%", "12,345", "11/18", "$1,234,568", "-$1,097,812", "+$12,345,679",
     "$98,765", "$1,235", "ok" if name != "gap" else "2 failed", "3.4"]
    for name in ("gbm", "crash", "gap", "squeeze", "bleed")
]


def test_write_comparison__csv_and_markdown_hold_every_row(tmp_path: Path) -> None:
    csv_path, md_path = write_comparison(ROWS, tmp_path / "out")
    assert (csv_path.name, md_path.name) == ("comparison.csv", "comparison.md")
    read = list(csv.reader(csv_path.open()))
    assert read == [list(COMPARISON_COLUMNS), *ROWS]
    lines = md_path.read_text().splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == "| " + " | ".join(COMPARISON_COLUMNS) + " |"
    assert len(table) == 2 + len(ROWS) and all(line.count("|") == len(COMPARISON_COLUMNS) + 1 for line in table)
    assert "| gap | -40.0% |" in md_path.read_text() and "2 failed" in table[4]


def test_comparison_table__80_columns__every_number_whole() -> None:
    console = Console(record=True, width=80)
    console.print(comparison_table(ROWS))
    text = console.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for cell in ("-$1,097,812", "+$12,345,679", "$1,234,568", "2 failed"):
        assert any(cell in line for line in text.splitlines()), cell
