"""Attack: read customers' identities out of the schema that ships in every kit.

``schema.yaml`` goes into every institution's kit and into the aggregator's.
Before, ``crossfed schema infer`` copied every non-numeric column's values into
it as categories, so a reference table with a name, IBAN or note column handed
those values to the aggregator and to every other bank (and a customer number
leaked as a "median"). The attacker here is anyone who reads the kit: the test
runs the real command on such a table and searches the written file, byte by
byte and parsed, for any value of the identifying columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from clients import load_schema, propose_schema
from crossfed.cli import app

ROWS = 400
IDENTIFYING = ("customer_name", "iban", "customer_id", "account_no", "note", "vip_note")
_FIRST = ("Anna", "Jonas", "Leonie", "Mehmet", "Sofia", "Pieter", "Ines", "Tomasz", "Freya")
_LAST = ("Keller", "Okafor", "Lindqvist", "Moreau", "Novak", "Brandt", "Costa", "Jansen")


def _bank_table(rng: np.random.Generator) -> pd.DataFrame:
    """A loan book with identifying columns beside the ordinary features."""
    first = rng.choice(_FIRST, ROWS)
    last = rng.choice(_LAST, ROWS)
    names = [f"{f} {n}-{k}" for k, (f, n) in enumerate(zip(first, last, strict=True))]
    ibans = [f"DE{rng.integers(10, 99)}{rng.integers(10**17, 10**18)}" for _ in range(ROWS)]
    amounts = rng.integers(500, 20_000, ROWS)
    notes = [
        f"Called {name} on {int(rng.integers(1, 28))} March about {iban}: "
        f"promised {amount} EUR by Friday"
        for name, iban, amount in zip(names, ibans, amounts, strict=True)
    ]
    vip = np.full(ROWS, "none", dtype=object)
    vip[:12] = [f"VIP, ask for {name}" for name in names[:12]]
    return pd.DataFrame(
        {
            "customer_id": np.arange(100_000, 100_000 + ROWS),
            "customer_name": names,
            "iban": ibans,
            "account_no": rng.choice(np.arange(10**9, 10**9 + 10**7), ROWS, replace=False),
            "income": np.round(rng.lognormal(8, 0.4, ROWS), 2),
            "age": rng.integers(18, 80, ROWS),
            "loan_amount": amounts,
            "employment": rng.choice(["employed", "self-employed", "retired", "none"], ROWS),
            "region": rng.choice(["north", "south", "east", "west", "capital"], ROWS),
            "note": notes,
            "vip_note": vip,
            "default": rng.choice(["yes", "no"], ROWS, p=[0.2, 0.8]),
        }
    )


def _identifying_values(frame: pd.DataFrame) -> set[str]:
    """Every value of the identifying columns, and the name and IBAN inside each note."""
    values = {str(v) for column in IDENTIFYING for v in frame[column]} - {"none"}
    return values | set(frame["customer_name"]) | set(frame["iban"])


def _strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (str(key), *_strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [str(node)]


@pytest.fixture
def loan_book(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    frame = _bank_table(np.random.default_rng(20261130))
    path = tmp_path / "loans.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_schema_infer_writes_no_identifier_into_the_kit_schema(
    loan_book: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    table, frame = loan_book
    out = tmp_path / "kit" / "schema.yaml"
    result = CliRunner().invoke(
        app,
        [
            "schema", "infer", "--data", str(table), "--target", "default",
            "--positive", "yes", "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    # What the attacker reads: the file's bytes, and every string in it once parsed.
    raw = out.read_bytes()
    leaked = sorted(v for v in _identifying_values(frame) if v.encode("utf-8") in raw)
    assert leaked == []
    parsed = _strings(yaml.safe_load(raw))
    leaked = sorted(v for v in _identifying_values(frame) if v in parsed)
    assert leaked == []
    for name in frame["customer_name"]:  # not even a name's distinctive part
        assert name.split("-")[0].encode() + b"-" not in raw
    for column in ("customer_id", "account_no"):  # no customer number as a "median"
        assert str(float(frame[column].median())).encode() not in raw

    # The ordinary features are still there, and right.
    schema = load_schema(out)
    assert [c.name for c in schema.numeric] == ["income", "age", "loan_amount"]
    assert {c.name: c.categories for c in schema.categorical} == {
        "employment": ("employed", "none", "retired", "self-employed"),
        "region": ("capital", "east", "north", "south", "west"),
    }
    assert (schema.target.positive, schema.target.negatives) == ("yes", ("no",))
    income = next(c for c in schema.numeric if c.name == "income")
    assert income.value == pytest.approx(frame["income"].median())

    # The command says what it left out and why, without showing a value.
    output = result.output
    assert "left out 6 column(s)" in output
    for column in IDENTIFYING:
        line = next(line for line in output.splitlines() if line.strip().startswith(column))
        assert "identifier" in line or "free text" in line, line
    assert not any(v in output for v in _identifying_values(frame))


def test_an_explicit_categorical_request_does_not_let_identifiers_through(
    loan_book: tuple[Path, pd.DataFrame],
) -> None:
    # Forcing the customer number to be "categorical" must not publish every number.
    _, frame = loan_book
    proposal = propose_schema(
        frame, "default", "yes", categorical=["customer_id", "account_no"], impute="median"
    )
    excluded = {c.name: c.reason for c in proposal.excluded}
    assert set(excluded) == set(IDENTIFYING)
    assert "unique per row" in excluded["customer_id"]
    text = proposal.schema.to_yaml()
    assert not [v for v in _identifying_values(frame) if v in text]
    assert not any(v in reason for reason in excluded.values() for v in _identifying_values(frame))
