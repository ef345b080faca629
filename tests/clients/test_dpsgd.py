"""DP-SGD at one institution: its accountant spends the target, its clipping bounds a record."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clients import (
    ConfigError,
    FederationSchema,
    InstitutionKit,
    LocalDataset,
    ModelSpec,
    Standardizer,
    TrainConfig,
    build_model,
    encode,
    get_weights,
    save_schema,
    train_local,
    train_test_split,
    write_final_outputs,
)
from clients.app_runner import runner_setup
from clients.client_app import local_training
from clients.dpsgd import DpSgdTraining, epsilon_spent, institution_delta, noise_for
from crossfed.protocol import ConfigurationError, FederationSettings
from federation import create_kits


@pytest.mark.parametrize("epsilon", [1.0, 4.0, 8.0])
def test_the_calibrated_noise_spends_the_target_over_every_step(epsilon: float) -> None:
    rows, delta = 900, institution_delta(900, 1e-5)
    sigma = noise_for(epsilon, rows, batch_size=128, epochs=2, rounds=10, delta=delta)
    spent = epsilon_spent(sigma, rows, batch_size=128, epochs=2, rounds=10, delta=delta)
    assert epsilon * 0.97 <= spent <= epsilon * 1.01
    # One more round than calibrated for spends more: every round's steps are counted.
    assert epsilon_spent(sigma, rows, batch_size=128, epochs=2, rounds=11, delta=delta) > spent


def test_a_smaller_institution_needs_more_noise_and_a_smaller_delta() -> None:
    assert institution_delta(400, 1e-3) < 1 / 400 and institution_delta(400, 1e-5) == 1e-5
    small = noise_for(4.0, 400, 128, 2, 10, institution_delta(400, 1e-3))
    large = noise_for(4.0, 6000, 128, 2, 10, institution_delta(6000, 1e-3))
    assert small > large > 0


def _data(rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(rows, 4)).astype(np.float32)
    y = (rng.random(rows) < 0.3).astype(np.float32)
    x[0], y[0] = 1e4, 1.0  # one extreme customer
    return x, y


def test_one_extreme_record_moves_the_model_only_as_far_as_the_clip_allows() -> None:
    x, y = _data(256)
    config = TrainConfig(epochs=1, batch_size=64, learning_rate=0.1, seed=0)
    start = build_model(ModelSpec(), 4, 0)
    before = np.concatenate([w.ravel() for w in get_weights(start)])
    plain = build_model(ModelSpec(), 4, 0)
    train_local(plain, x, y, config)
    private = build_model(ModelSpec(), 4, 0)
    result = DpSgdTraining(target_epsilon=8.0, rounds=1, max_grad_norm=1.0)(private, x, y, config)
    moved_plain = np.linalg.norm(np.concatenate([w.ravel() for w in get_weights(plain)]) - before)
    moved = np.linalg.norm(np.concatenate([w.ravel() for w in result.weights]) - before)
    assert moved_plain > 10.0  # without clipping the one record drags the model away
    # With it, each of the ~4 steps moves at most lr * (clip * batch + noise) / batch.
    assert 0.0 < moved < 2.0
    assert result.num_examples == 256 and np.isfinite(result.epoch_losses).all()


def test_a_proximal_term_is_refused() -> None:
    x, y = _data(64)
    training = DpSgdTraining(target_epsilon=4.0, rounds=1)
    with pytest.raises(ConfigError):
        training(build_model(ModelSpec(), 4, 0), x, y, TrainConfig(proximal_mu=0.1))


def test_a_kit_with_dp_sgd_makes_the_institution_train_with_it(
    tmp_path: Path, german: pd.DataFrame, german_schema: FederationSchema
) -> None:
    # The institution's training comes from its own kit, never from the aggregator.
    save_schema(german_schema, tmp_path / "schema.yaml")
    create_kits(
        tmp_path / "kits",
        federation="private",
        aggregator_address="127.0.0.1:9092",
        institutions=[("bank-eu", "EU"), ("bank-sg", "SG")],
        schema=tmp_path / "schema.yaml",
        preset="lean",
        rounds=3,
        training={"dpsgd-epsilon": 2.0, "dpsgd-clip": 0.7, "dp-delta": 1e-6},
    )
    kit = InstitutionKit.load(tmp_path / "kits" / "bank-eu")
    settings = runner_setup(kit, data_path=tmp_path / "bank.csv", out_dir=tmp_path / "o").settings

    training = local_training(settings)
    assert isinstance(training, DpSgdTraining)
    assert (training.target_epsilon, training.max_grad_norm, training.rounds) == (2.0, 0.7, 3)
    assert training.federation_delta == 1e-6
    assert local_training(replace(settings, dpsgd_epsilon=0.0)) is train_local


def test_the_model_card_states_the_institutions_own_epsilon(
    tmp_path: Path, german: pd.DataFrame, german_schema: FederationSchema
) -> None:
    x, y = encode(german, german_schema)
    parts = train_test_split(x, y, test_size=0.25, seed=0)
    data = LocalDataset(german_schema, parts.x_train, parts.y_train, parts.x_test, parts.y_test)
    scaler = Standardizer.fit(data.x_train)
    model = build_model(ModelSpec(kind="logistic"), data.n_features, 0)
    settings = FederationSettings(mode="plaintext", rounds=3, dpsgd_epsilon=2.0)
    training = DpSgdTraining.from_settings(settings)
    config = TrainConfig(epochs=settings.epochs, batch_size=settings.batch_size)
    spent, delta = training.epsilon(len(data.y_train), config)
    run = {
        "mode": "encrypted", "dpsgd_epsilon": 2.0, "dpsgd_clip": 1.0, "dpsgd_batch_size": 128,
        "dpsgd_epsilon_spent": spent, "dpsgd_delta": delta, "dpsgd_noise_multiplier": 1.3,
    }  # fmt: skip
    write_final_outputs(tmp_path / "out", model, data, scaler, run)

    card = (tmp_path / "out" / "model_card.md").read_text()
    assert "record-level DP-SGD" in card
    assert f"ε = {spent:.2f} at δ = {delta:.3g}" in card
    assert "no differential privacy" not in card


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"dpsgd_epsilon": 2.0, "dp_clip": 0.5, "dp_noise_multiplier": 1.0}, "choose one"),
        ({"dpsgd_epsilon": 2.0, "proximal_mu": 0.1}, "not a per-example loss"),
        ({"dpsgd_epsilon": float("nan")}, "dpsgd-epsilon must be 0"),
        ({"dpsgd_batch_size": 0}, "dpsgd-batch-size must be at least 1"),
    ],
)
def test_dp_sgd_settings_are_checked_by_name(changes: dict[str, float], said: str) -> None:
    with pytest.raises(ConfigurationError, match=said):
        FederationSettings(mode="plaintext", **changes)  # type: ignore[arg-type]
