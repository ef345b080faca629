"""``--partition-by`` on a table with gaps: rows without a value dropped and counted, or kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clients import load_table, validate
from crossfed.cli import app
from simulations import ScenarioSpec, SimulationError, partition_by_column
from simulations.scenario import prepare_scenario

GERMAN_CREDIT = Path(__file__).parents[1] / "data" / "german_credit.csv"


@pytest.fixture
def gappy(tmp_path: Path) -> Path:
    """German credit with two rows lacking the partition value and gaps in two categoricals."""
    frame = pd.read_csv(GERMAN_CREDIT)
    frame.loc[[0, 1], "housing"] = np.nan
    frame.loc[[4, 9, 12], "purpose"] = np.nan
    frame.loc[[5, 6], "savings_account_and_bonds"] = np.nan
    path = tmp_path / "gappy.csv"
    frame.to_csv(path, index=False)
    return path


def test_rows_without_a_value_are_dropped_by_default(gappy: Path) -> None:
    frame = load_table(gappy)
    parts = partition_by_column(frame, "housing")
    assert [p.name for p in parts] == ["housing-for-free", "housing-own", "housing-rent"]
    assert sum(len(p.frame) for p in parts) == len(frame) - 2


def test_or_they_form_an_institution_of_their_own(gappy: Path) -> None:
    frame = load_table(gappy)
    parts = partition_by_column(frame, "housing", missing="own")
    assert parts[-1].name == "housing-missing" and len(parts[-1].frame) == 2
    assert parts[-1].frame["housing"].isna().all()
    assert sum(len(p.frame) for p in parts) == len(frame)


def test_one_value_and_no_gaps_is_still_one_institution_too_few() -> None:
    frame = pd.DataFrame({"branch": ["a", "a", None], "y": [0, 1, 0]})
    with pytest.raises(SimulationError, match=r"1 value.*1 rows without a value"):
        partition_by_column(frame, "branch")
    assert len(partition_by_column(frame, "branch", missing="own")) == 2


def test_a_scenario_on_a_gappy_table_prepares_and_says_what_it_dropped(
    gappy: Path, tmp_path: Path
) -> None:
    spec = ScenarioSpec(
        data=str(gappy), target="creditability", positive="bad", partition_by="housing"
    )

    scenario = prepare_scenario(spec, tmp_path / "work")

    assert "2 rows without a value in 'housing' dropped" in scenario.assumed
    assert sum(i.rows for i in scenario.institutions) == 998
    # The inferred schema accepts every partition, missing categories included.
    for institution in scenario.institutions:
        validate(pd.read_parquet(institution.data_file), scenario.schema)


def test_a_scenario_keeps_the_rows_as_their_own_institution_when_asked(
    gappy: Path, tmp_path: Path
) -> None:
    spec = ScenarioSpec(
        data=str(gappy),
        target="creditability",
        positive="bad",
        partition_by="housing",
        partition_missing="own",
        institutions=2,
    )
    scenario = prepare_scenario(spec, tmp_path / "work")
    # Two rows cannot be trained and tested: left out, and said so.
    assert any("housing-missing" in line for line in scenario.excluded)
    assert "2 rows without a value in 'housing' form an institution of their own" in (
        scenario.assumed
    )


def test_the_simulate_command_refuses_an_unknown_policy(gappy: Path) -> None:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        app,
        ["simulate", "--data", str(gappy), "--target", "creditability", "--positive", "bad",
         "--partition-by", "housing", "--partition-missing", "guess"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "'guess' is not one of 'drop', 'own'" in " ".join(result.output.split())
