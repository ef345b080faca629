"""``crossfed client --check``: every later failure named up front; nothing sent or started."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from clients import (
    DataValidationError,
    check_institution,
    infer_schema,
    run_institution,
    save_schema,
)
from clients.schema import load_schema
from clients.shapes import model_shapes_json
from crossfed.cli import app
from federation import create_kits

DATA = Path(__file__).parents[1] / "data" / "german_credit.csv"
PIN = "sha256:" + "0" * 64


def _federation(root: Path, name: str, *, shapes: bool = True) -> Path:
    """Kits for two banks over German credit's schema; returns bank-eu's kit."""
    frame = pd.read_csv(DATA)
    frame.head(300).to_csv(root / "bank.csv", index=False)
    save_schema(infer_schema(frame, "creditability", "bad"), root / "schema.yaml")
    training = {}
    if shapes:
        schema = load_schema(root / "schema.yaml")
        training["model-shapes"] = model_shapes_json(schema, "logistic", ())
    create_kits(
        root / name,
        federation=name,
        aggregator_address="127.0.0.1:9092",
        institutions=[("bank-eu", "EU"), ("bank-us", "US")],
        schema=root / "schema.yaml",
        training=training,
        pin=PIN,
    )
    return root / name / "bank-eu"


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _federation(tmp_path_factory.mktemp("check"), "checked")


def test_a_ready_institution_passes_and_nothing_is_written(kit: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"

    report = check_institution(kit, kit.parents[1] / "bank.csv", out)

    assert report.ok, report.problems
    assert report.institution == "bank-eu" and report.rows == 300
    assert any("225 to train on, 75 held out" in note for note in report.notes)
    assert not out.exists()  # nothing written, no SuperNode working folder


def test_every_data_problem_is_named_not_only_the_first(kit: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(kit.parents[1] / "bank.csv")
    frame["duration_in_month"] = frame["duration_in_month"].astype(object)
    frame.loc[5, "duration_in_month"] = "six"
    frame.loc[6, "housing"] = "castle"
    frame.loc[7, "purpose"] = None
    frame.to_csv(tmp_path / "bad.csv", index=False)

    report = check_institution(kit, tmp_path / "bad.csv", tmp_path / "out")

    text = "\n".join(report.problems)
    assert len(report.problems) == 3, text
    assert "'duration_in_month' has 1 rows with non-numeric values: 'six'" in text
    assert "'housing' has 1 rows with values outside the schema's categories: 'castle'" in text
    assert "'purpose'" in text and "without a value" in text


def test_imputation_the_schema_allows_is_reported(tmp_path: Path) -> None:
    frame = pd.read_csv(DATA)
    frame.loc[[1, 2], "age_in_years"] = float("nan")
    frame.head(300).to_csv(tmp_path / "bank.csv", index=False)
    from clients import propose_schema  # the median policy, written into the schema

    save_schema(
        propose_schema(frame, "creditability", "bad", impute="median").schema,
        tmp_path / "schema.yaml",
    )
    schema = load_schema(tmp_path / "schema.yaml")
    create_kits(
        tmp_path / "kits",
        federation="imputing",
        aggregator_address="127.0.0.1:9092",
        institutions=[("bank-eu", None)],
        schema=tmp_path / "schema.yaml",
        training={"model-shapes": model_shapes_json(schema, "logistic", ())},
        pin=PIN,
    )

    report = check_institution(tmp_path / "kits" / "bank-eu", tmp_path / "bank.csv", tmp_path)

    assert report.ok, report.problems
    assert any(
        "'age_in_years': 2 missing values filled with 33" in note for note in report.notes
    ), report.notes


def test_too_few_rows_of_a_class_fail_the_check_and_the_run_before_connecting(
    kit: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = pd.read_csv(kit.parents[1] / "bank.csv")
    few = pd.concat([frame[frame.creditability == "good"], frame[frame.creditability == "bad"][:1]])
    few.to_csv(tmp_path / "few.csv", index=False)

    report = check_institution(kit, tmp_path / "few.csv", tmp_path / "out")
    assert not report.ok
    assert "1 bad and 220 good rows: at least 4 rows of each class" in report.problems[0]

    started: list[str] = []
    monkeypatch.setattr("clients.deploy.spawn", lambda *a, **k: started.append("spawn"))
    with pytest.raises(DataValidationError):
        run_institution(kit, tmp_path / "few.csv", tmp_path / "out", timeout=5)
    assert started == []  # no runner, no SuperNode: nothing was sent


def test_a_foreign_secret_key_and_a_bad_out_are_named(kit: Path, tmp_path: Path) -> None:
    other = _federation(tmp_path, "other")
    mixed = tmp_path / "mixed"
    shutil.copytree(kit, mixed)
    shutil.copy(other / "secret.ctx", mixed / "secret.ctx")
    (tmp_path / "a-file").write_text("")

    report = check_institution(mixed, kit.parents[1] / "bank.csv", tmp_path / "a-file")

    text = "\n".join(report.problems)
    assert "is not this federation's key" in text
    assert "is a file, not a folder" in text


def test_a_kit_without_model_shapes_is_named(tmp_path: Path) -> None:
    kit = _federation(tmp_path, "shapeless", shapes=False)
    report = check_institution(kit, tmp_path / "bank.csv", tmp_path / "out")
    assert any("records no model shapes" in p for p in report.problems), report.problems


def test_the_command_exits_0_when_ready_and_2_with_the_problems(kit: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    data = kit.parents[1] / "bank.csv"
    ready = runner.invoke(
        app, ["client", "--check", "--kit", str(kit), "--data", str(data), "--out", str(tmp_path)]
    )
    assert ready.exit_code == 0, ready.output
    assert "ready to join; nothing was sent" in ready.output

    pd.read_csv(data).assign(extra=1).to_csv(tmp_path / "extra.csv", index=False)
    refused = runner.invoke(
        app,
        ["client", "--check", "--kit", str(kit), "--data", str(tmp_path / "extra.csv")],
    )
    assert refused.exit_code == 2
    assert "column 'extra' (300 rows) is not in the federation schema" in refused.output
    assert "1 problem(s); nothing was sent" in refused.output
