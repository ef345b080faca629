"""docs/security.md stays true: its tests exist, its error codes are the wire's.

Every attack row names the tests that play it (``path::function``); a rename or
deletion that leaves the page pointing at nothing fails here, and so does a
code table that drifts from :class:`crossfed.protocol.ErrorCode`.
"""

from __future__ import annotations

import re
from pathlib import Path

from crossfed.protocol import ErrorCode, reason_of

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "security.md"
NAMED = re.compile(r"`([\w/.-]+\.py)::(\w+)`")

#: The attacks issue 9 lists, each a row of the page.
ATTACKS = (
    "code shipping",
    "settings from the aggregator",
    "decryption oracle",
    "model steering",
    "DP set by the aggregator",
    "a malicious institution",
    "passive leaks",
    "denial of service",
    "deployment hygiene",
    "architecture",
)


def _rows(columns: int) -> list[list[str]]:
    rows = []
    for line in DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == columns and not set(cells[0]) <= {"-", " "}:
            rows.append(cells)
    return rows[1:]  # the header


def test_every_attack_has_a_row_with_tests() -> None:
    rows = {row[0]: row for row in _rows(4)}
    assert set(ATTACKS) <= set(rows), sorted(set(ATTACKS) - set(rows))
    for attack in ATTACKS:
        _, did, defence, tests = rows[attack]
        assert did and defence, attack
        assert NAMED.search(tests), attack


def test_every_named_test_exists() -> None:
    named = {match for row in _rows(4) for match in NAMED.findall(row[3])}
    assert len(named) >= 30
    for path, function in sorted(named):
        source = ROOT / path
        assert source.is_file(), f"{path} does not exist"
        assert re.search(rf"^def {function}\(", source.read_text(), re.MULTILINE), (
            f"{path} has no function {function}"
        )


def test_the_code_table_is_the_wire_enumeration() -> None:
    documented = {int(code): name.strip("`") for code, name, _ in _rows(3) if code.isdigit()}
    assert documented == {int(code): code.name for code in ErrorCode}
    assert all(reason_of(code) == f"crossfed:{code.name}" for code in ErrorCode)
