"""Membership inference as the harness plays it: it finds a memorising model, not a DP one."""

from __future__ import annotations

import numpy as np
import pytest

from clients import DpSgdTraining, ModelSpec, Standardizer, TrainConfig, build_model, train_local
from simulations.attacks import advantage, per_row_loss

FEATURES = 96


def _noise_table(seed: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels independent of the features: whatever a model learns is memorised."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    return x, (rng.random(rows) < 0.5).astype(np.float32)


def _attack(model: object, scaler: Standardizer, rows: int) -> float:
    members = _noise_table(1, rows)
    outsiders = _noise_table(2, rows)
    member_loss = per_row_loss((model, scaler), *members)  # type: ignore[arg-type]
    outsider_loss = per_row_loss((model, scaler), *outsiders)  # type: ignore[arg-type]
    auc_advantage, best = advantage(-member_loss, -outsider_loss)
    assert 0.0 <= best <= 1.0
    return auc_advantage


def test_the_loss_attack_tells_the_members_of_a_memorising_model() -> None:
    x, y = _noise_table(1, 80)  # more features than rows: a linear model can memorise
    scaler = Standardizer.fit(x)
    model = build_model(ModelSpec(), FEATURES, 0)
    config = TrainConfig(epochs=300, batch_size=80, learning_rate=1.0)
    train_local(model, scaler.transform(x), y, config)
    # Members fit perfectly, outsiders get confident random guesses: AUC about 0.75.
    assert _attack(model, scaler, 80) > 0.15


def test_the_loss_attack_learns_little_from_a_dp_sgd_model() -> None:
    x, y = _noise_table(1, 400)  # more rows: the advantage's own noise is about 0.02
    scaler = Standardizer.fit(x)
    model = build_model(ModelSpec(), FEATURES, 0)
    training = DpSgdTraining(target_epsilon=1.0, rounds=1, federation_delta=1e-3)
    training(
        model, scaler.transform(x), y, TrainConfig(epochs=20, batch_size=80, learning_rate=1.0)
    )
    # The attacker wanted members told apart; at epsilon 1 it does about as well as chance.
    assert abs(_attack(model, scaler, 400)) < 0.1


def test_advantage_is_auc_minus_a_half_and_best_tpr_minus_fpr() -> None:
    auc_advantage, best = advantage(np.array([3.0, 2.0, 0.5]), np.array([1.0, 0.0, -1.0]))
    assert auc_advantage == pytest.approx(8 / 9 - 0.5)  # 8 of 9 member/outsider pairs right
    assert best == pytest.approx(2 / 3)  # at threshold 2: two of three members, no outsider
