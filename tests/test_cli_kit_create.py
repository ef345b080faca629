"""``crossfed kit create`` checks every value before writing, and carries a study's settings."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from clients import infer_schema, save_schema
from crossfed.cli import app
from crossfed.cli.kit_settings import read_settings_file, resolve_settings
from crossfed.protocol import FederationSettings, ProvisioningError
from simulations import ScenarioSpec

DATA = Path(__file__).parent / "data" / "german_credit.csv"


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("schema") / "schema.yaml"
    save_schema(infer_schema(pd.read_csv(DATA), "creditability", "bad"), path)
    return path


def _create(out: Path, schema: Path, *extra: str, address: str = "agg.example.org:9092"):
    args = [
        "kit", "create", "--out", str(out), "--federation", "f",
        "--aggregator-address", address, "--institution", "a", "--institution", "b",
        "--schema", str(schema), *extra,
    ]  # fmt: skip
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize(
    ("extra", "address", "said"),
    [
        (["--model", "xgboost"], "agg:9092", "'xgboost' is not one of 'logistic', 'mlp'"),
        (["--epochs", "0"], "agg:9092", "0 is not in the range x>=1"),
        (["--learning-rate", "0"], "agg:9092", "learning-rate must be positive"),
        ([], "0.0.0.0:9092", "0.0.0.0 is a listening address"),
        ([], "agg:70000", "port 70000 of 'agg:70000' is outside 1-65535"),
        ([], "https://agg:9092", "neither an IP address nor a DNS name"),
        (["--dp-clip", "0.5"], "agg:9092", "--dp-clip without noise"),
        (["--dp-epsilon", "4"], "agg:9092", "a target ε needs a clip norm"),
        (["--min-institutions", "3"], "agg:9092", "min-institutions must be between 1 and 2"),
        (["--model", "mlp", "--hidden", "32,0"], "agg:9092", "hidden must be positive widths"),
    ],
)
def test_a_bad_value_is_refused_before_anything_is_written(
    tmp_path: Path, schema: Path, extra: list[str], address: str, said: str
) -> None:
    result = _create(tmp_path / "kits", schema, *extra, address=address)
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.output.split()), result.output
    assert not (tmp_path / "kits").exists()


def test_training_and_dp_settings_are_recorded(tmp_path: Path, schema: Path) -> None:
    result = _create(
        tmp_path / "kits", schema,
        "--learning-rate", "0.2", "--seed", "7", "--batch-size", "32", "--max-weight", "5000",
        "--max-update-norm", "4", "--dp-clip", "0.5", "--dp-epsilon", "4", "--rounds", "5",
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    manifest = yaml.safe_load((tmp_path / "kits" / "a" / "federation.yaml").read_text())
    training = manifest["training"]
    assert manifest["rounds"] == 5
    assert (training["learning-rate"], training["seed"], training["batch-size"]) == (0.2, 7, 32)
    assert (training["max-weight"], training["max-update-norm"]) == (5000, 4.0)
    assert training["dp-clip"] == 0.5 and training["dp-delta"] == 1e-5
    from federation import epsilon_spent

    spent = epsilon_spent([training["dp-noise-multiplier"]] * 5, training["dp-delta"])
    assert 3.9 < spent <= 4.0


def _study(path: Path) -> Path:
    results = {
        "scenario": {
            "settings": {
                "rounds": 6, "epochs": 3, "batch_size": 16, "learning_rate": 0.25,
                "model": "logistic", "seed": 4, "test_fraction": 0.2, "dp_delta": 1e-6,
            }
        },
        "strategies": [
            {"name": "fedavg", "detail": {}},
            {
                "name": "he-fedavg-dp-eps4",
                "target_epsilon": 4.0,
                "detail": {"dp_clip": 0.5, "noise_multiplier": 2.5},
            },
            {
                "name": "he-fedavg-dpsgd-eps4",
                "target_epsilon": 4.0,
                "detail": {
                    "epsilon_per_institution": [{"rows": 900, "epsilon": 4.0}],
                    "dpsgd_clip": 0.8, "dpsgd_batch_size": 96, "dpsgd_learning_rate": 0.4,
                },
            },
        ],
    }  # fmt: skip
    path.write_text(json.dumps(results))
    return path


def test_a_study_carries_its_training_and_its_dp_into_the_kit(tmp_path: Path) -> None:
    values, notes = read_settings_file(_study(tmp_path / "results.json"), "he-fedavg-dp-eps4")
    chosen = resolve_settings({"epochs": 5}, values, institutions=3, notes=notes)

    settings = chosen.settings
    assert (settings.rounds, settings.batch_size, settings.learning_rate) == (6, 16, 0.25)
    assert (settings.seed, settings.test_fraction, settings.dp_delta) == (4, 0.2, 1e-6)
    assert settings.epochs == 5  # an option given wins over the study
    assert settings.dp_clip == 0.5 and settings.dp_noise_multiplier > 0
    assert any("target ε 4" in note for note in chosen.notes)
    assert chosen.training["dp-noise-multiplier"] == settings.dp_noise_multiplier


def test_a_study_names_its_dp_strategies_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    study = _study(tmp_path / "results.json")
    values, notes = read_settings_file(study)
    assert "dp-clip" not in values
    assert any("he-fedavg-dp-eps4" in note for note in notes)
    with pytest.raises(ProvisioningError, match="no strategy 'nope'"):
        read_settings_file(study, "nope")


def test_a_dp_sgd_strategy_reaches_the_kit_with_its_own_settings(tmp_path: Path) -> None:
    values, notes = read_settings_file(_study(tmp_path / "results.json"), "he-fedavg-dpsgd-eps4")
    chosen = resolve_settings({}, values, institutions=3, notes=notes)

    settings = chosen.settings
    assert settings.dpsgd_enabled and not settings.dp_enabled
    assert (settings.dpsgd_epsilon, settings.dpsgd_clip) == (4.0, 0.8)
    assert (settings.dpsgd_batch_size, settings.dpsgd_learning_rate) == (96, 0.4)
    assert chosen.training["dpsgd-epsilon"] == 4.0 and chosen.training["dp-delta"] == 1e-6
    assert any("record-level DP-SGD" in note for note in notes)


def test_a_dp_sgd_strategy_without_its_settings_is_refused(tmp_path: Path) -> None:
    study = _study(tmp_path / "results.json")
    data = json.loads(study.read_text())
    del data["strategies"][2]["detail"]["dpsgd_clip"]
    study.write_text(json.dumps(data))
    with pytest.raises(ProvisioningError, match="DP-SGD without dpsgd_clip"):
        read_settings_file(study, "he-fedavg-dpsgd-eps4")


def test_dp_sgd_from_the_command_line_is_in_every_kit(tmp_path: Path, schema: Path) -> None:
    result = _create(tmp_path / "kits", schema, "--dpsgd-epsilon", "2", "--dpsgd-clip", "0.7")
    assert result.exit_code == 0, result.output

    for name in ("a", "b", "aggregator"):
        manifest = yaml.safe_load((tmp_path / "kits" / name / "federation.yaml").read_text())
        training = manifest["training"]
        assert (training["dpsgd-epsilon"], training["dpsgd-clip"]) == (2.0, 0.7), name
        assert "dp-clip" not in training


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--dpsgd-epsilon", "2", "--dp-clip", "0.5", "--dp-epsilon", "4"], "choose one"),
        (["--dpsgd-epsilon", "2", "--dpsgd-clip", "0"], "dpsgd-clip must be positive"),
    ],
)
def test_dp_sgd_settings_are_checked_before_a_kit_is_written(
    tmp_path: Path, schema: Path, extra: list[str], said: str
) -> None:
    result = _create(tmp_path / "kits", schema, *extra)
    assert result.exit_code != 0
    assert said in result.output
    assert not (tmp_path / "kits").exists()


def test_a_settings_file_is_checked_by_name(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("rounds: 4\nlearning_rate: 0.05\ndp-noise-multiplier: 1.1\ndp-clip: 0.4\n")
    values, notes = read_settings_file(path)
    chosen = resolve_settings({}, values, institutions=2, notes=notes)
    assert (chosen.settings.rounds, chosen.settings.learning_rate) == (4, 0.05)
    assert chosen.settings.dp_noise_multiplier == 1.1

    path.write_text("rounds: 4\nlearnig-rate: 0.05\n")
    with pytest.raises(ProvisioningError, match=r"unknown setting.*learnig-rate"):
        read_settings_file(path)
    path.write_text("rounds: many\n")
    with pytest.raises(ProvisioningError, match="rounds must be a whole number"):
        read_settings_file(path)


def test_a_target_epsilon_and_a_noise_multiplier_are_not_both_taken() -> None:
    with pytest.raises(ProvisioningError, match="not both"):
        resolve_settings(
            {"dp-clip": 0.5, "dp-epsilon": 4.0, "dp-noise-multiplier": 1.0},
            {},
            institutions=2,
            notes=[],
        )


def test_one_set_of_defaults_for_simulation_and_deployment() -> None:
    defaults = FederationSettings(mode="plaintext")
    kit = resolve_settings({}, {}, institutions=2, notes=[]).settings
    spec = ScenarioSpec()
    for name in ("rounds", "epochs", "learning_rate", "batch_size", "seed", "test_fraction"):
        assert getattr(kit, name) == getattr(defaults, name) == getattr(spec, name), name
    assert (defaults.rounds, defaults.epochs, defaults.learning_rate) == (10, 2, 0.3)
