"""The command line a bank engineer meets first: version, -h, fast help, choices, errors."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from crossfed.cli import COMMANDS, SUMMARIES, app

DATA = Path(__file__).parent / "data" / "german_credit.csv"


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_version_is_the_installed_one() -> None:
    for flag in ("--version", "-V"):
        result = CliRunner().invoke(app, [flag])
        assert result.exit_code == 0
        assert result.output.strip() == f"crossfed {version('crossfed')}"


@pytest.mark.parametrize(
    "args", [[], ["kit"], ["kit", "create"], ["client"], ["schema", "infer"], ["audit"]]
)
def test_dash_h_is_help_everywhere(args: list[str]) -> None:
    result = CliRunner().invoke(app, [*args, "-h"])
    assert result.exit_code == 0, result.output
    assert "Usage: crossfed" in result.output


def test_top_level_help_imports_no_sub_command() -> None:
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from crossfed.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = ('clients', 'federation', 'simulations', 'crypto', 'torch', 'flwr', 'ray')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_each_summary_is_the_command_s_own_help() -> None:
    assert set(SUMMARIES) == set(COMMANDS)
    group = typer.main.get_command(app)
    context = click.Context(group)
    for name in COMMANDS:
        command = group.get_command(context, name)  # type: ignore[attr-defined]
        assert command is not None
        own = _flat((command.help or "").split("\n\n")[0])
        assert own == _flat(SUMMARIES[name]), name


@pytest.mark.parametrize(
    "args", [["simulate"], ["bench", "crypto"], ["bench", "round"], ["bench", "scale"]]
)
def test_a_count_of_institutions_is_institutions_everywhere(args: list[str]) -> None:
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "--institutions" in result.output


@pytest.mark.parametrize(
    ("args", "choices"),
    [
        (["kit", "create"], "[logistic|mlp]"),
        (["simulate"], "[drop|own]"),
        (["schema", "infer"], "[category|error|unseen]"),
    ],
)
def test_choices_are_listed(args: list[str], choices: str) -> None:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, [*args, "--help"])
    assert choices in result.output


@pytest.fixture
def gappy_csv(tmp_path: Path) -> Path:
    frame = pd.read_csv(DATA)
    frame.loc[[3, 5], "housing"] = np.nan
    path = tmp_path / "semicolons.csv"
    frame.to_csv(path, sep=";", index=False)
    return path


def test_schema_infer_reports_its_choices_and_the_schema_accepts_the_file(
    gappy_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "schema.yaml"
    result = CliRunner().invoke(
        app,
        ["schema", "infer", "--data", str(gappy_csv), "--target", "creditability",
         "--positive", "bad", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = _flat(result.output)
    assert "fields separated by semicolon" in text
    assert "'housing': 3 categories; missing values a category of their own" in text
    from clients import load_schema, load_table, validate

    assert len(validate(load_table(gappy_csv), load_schema(out))) == 1000


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--exclude", "hosing"], "did you mean 'housing'"),
        (["--out", "{tmp}"], "is a folder"),
        (["--out", "{tmp}/a-file/schema.yaml"], "cannot write --out"),
    ],
)
def test_schema_infer_errors_are_one_line_not_a_traceback(
    gappy_csv: Path, tmp_path: Path, extra: list[str], said: str
) -> None:
    (tmp_path / "a-file").write_text("")
    args = ["schema", "infer", "--data", str(gappy_csv), "--target", "creditability"]
    args += ["--positive", "bad", "--out", str(tmp_path / "s.yaml")]
    args += [part.format(tmp=tmp_path) for part in extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert said in _flat(result.output)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
