"""The ``crossfed`` command imports a sub-command's code only when it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from crossfed.cli import COMMANDS, app


def test_top_level_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for name in COMMANDS:
        assert name in result.output


def test_an_unknown_command_is_named() -> None:
    result = CliRunner().invoke(app, ["simulat"])
    assert result.exit_code == 2
    assert "No such command 'simulat'" in result.output


def test_deployment_commands_do_not_load_the_simulation_harness() -> None:
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from crossfed.cli import app\n"
        "runs = (['client', '--help'], ['aggregator', '--help'], ['kit', 'create', '--help'])\n"
        "for args in runs:\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('simulations', 'ray')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


# --- crossfed score (imports kept inside: this file is shared by several commands' tests) ---


def _scoring_setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A kit, a model folder as ``crossfed client`` writes it, and an applicants' file."""
    import pandas as pd

    from clients import (
        LocalDataset,
        ModelSpec,
        Standardizer,
        TrainConfig,
        build_model,
        encode,
        infer_schema,
        save_schema,
        train_local,
        train_test_split,
        write_final_outputs,
    )
    from federation import create_kits

    frame = pd.read_csv(Path(__file__).parent / "data" / "german_credit.csv")
    schema = infer_schema(frame, "creditability", "bad")
    save_schema(schema, tmp_path / "schema.yaml")
    create_kits(
        tmp_path / "kits",
        federation="scoring",
        aggregator_address="127.0.0.1:9092",
        institutions=[("bank-eu", "EU")],
        schema=tmp_path / "schema.yaml",
        pin="sha256:" + "0" * 64,
    )
    x, y = encode(frame, schema)
    parts = train_test_split(x, y, test_size=0.25, seed=0)
    data = LocalDataset(schema, parts.x_train, parts.y_train, parts.x_test, parts.y_test)
    scaler = Standardizer.fit(data.x_train)
    model = build_model(ModelSpec(), data.n_features, 0)
    train_local(
        model, scaler.transform(data.x_train), data.y_train.copy(), TrainConfig(epochs=3, seed=0)
    )
    write_final_outputs(tmp_path / "out", model, data, scaler, {"mode": "encrypted"})
    applicants = tmp_path / "applicants.csv"
    frame.drop(columns="creditability").assign(app_id=range(len(frame))).to_csv(
        applicants, index=False
    )
    return tmp_path / "kits" / "bank-eu", tmp_path / "out", applicants


def test_score_writes_a_row_per_applicant_and_reports_stability(tmp_path: Path) -> None:
    import pandas as pd

    kit, model, applicants = _scoring_setup(tmp_path)
    out = tmp_path / "scores.csv"
    args = ["score", "--kit", str(kit), "--model", str(model), "--data", str(applicants)]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--id-column", "app_id"])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out)
    assert len(scores) == 1000 and scores["app_id"].tolist() == list(range(1000))
    assert {"score", "probability_of_default", "band", "reason_1", "reason_4"} <= set(scores)
    assert set(scores["band"]) <= set("ABCDE")
    assert "PSI against this institution's training split" in result.output
    assert "stable" in result.output and "scores only" in result.output
    assert "600 points at 50:1" in result.output
    # Another scale on the command line: the same applicants, other points, same bands.
    rescaled = tmp_path / "rescaled.csv"
    again = CliRunner().invoke(app, [*args, "--out", str(rescaled), "--pdo", "40"])
    assert again.exit_code == 0, again.output
    other = pd.read_csv(rescaled)
    assert (other["band"] == scores["band"]).all()
    assert not (other["score"] == scores["score"]).all()


def test_score_refuses_wrong_input_with_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    kit, model, applicants = _scoring_setup(tmp_path)
    base = ["score", "--kit", str(kit), "--data", str(applicants)]
    cases = [
        ([*base, "--model", str(model), "--out", str(tmp_path / "no" / "s.csv")], "does not exist"),
        ([*base, "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "a.csv")], "model"),
        ([*base, "--model", str(model), "--out", str(tmp_path / "b.csv"), "--bands", "0.5,0.1"],
         "band edges"),
        (["score", "--kit", str(tmp_path), "--data", str(applicants), "--model", str(model),
          "--out", str(tmp_path / "c.csv")], "kit"),
    ]  # fmt: skip
    for args, said in cases:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert said in result.output, result.output
    assert {p.name for p in tmp_path.glob("*.csv")} == {"applicants.csv"}


def test_score_needs_no_torch(tmp_path: Path) -> None:
    # Scoring runs from the saved arrays alone: a scoring server needs no training stack.
    kit, model, applicants = _scoring_setup(tmp_path)
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from crossfed.cli import app\n"
        f"args = ['score', '--kit', {str(kit)!r}, '--model', {str(model)!r},\n"
        f"        '--data', {str(applicants)!r}, '--out', {str(tmp_path / 's.csv')!r}]\n"
        "result = CliRunner().invoke(app, args)\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'simulations')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
