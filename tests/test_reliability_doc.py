"""docs/reliability.md stays true: every test its tables name exists.

The page names each test as ``path::function``; a rename or deletion that
leaves the page pointing at nothing fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "reliability.md"
NAMED = re.compile(r"`([\w/.-]+\.py)::(\w+)`")


def _table_rows() -> list[list[str]]:
    rows = []
    for line in DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 4 and not set(cells[0]) <= {"-", " "}:
            rows.append(cells)
    return [row for row in rows if row[0] != "scenario"]


def test_every_row_names_at_least_one_test_and_an_observation() -> None:
    rows = _table_rows()
    assert len(rows) >= 13
    for scenario, promise, tests, observed in rows:
        assert NAMED.search(tests), scenario
        assert promise and observed, scenario


def test_every_named_test_exists() -> None:
    named = {match for row in _table_rows() for match in NAMED.findall(row[2])}
    assert named
    for path, function in sorted(named):
        source = ROOT / path
        assert source.is_file(), f"{path} does not exist"
        assert re.search(rf"^def {function}\(", source.read_text(), re.MULTILINE), (
            f"{path} has no function {function}"
        )
