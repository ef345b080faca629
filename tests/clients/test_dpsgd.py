"""DP-SGD at one institution: its accountant spends the target, its clipping bounds a record."""

from __future__ import annotations

import numpy as np
import pytest

from clients import ConfigError, ModelSpec, TrainConfig, build_model, get_weights, train_local
from clients.dpsgd import DpSgdTraining, epsilon_spent, institution_delta, noise_for


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
