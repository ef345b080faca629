"""Local training on the real German credit table, FedProx, divergence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from clients import (
    ConfigError,
    DataValidationError,
    FederationSchema,
    InvalidWeightsError,
    ModelSpec,
    Standardizer,
    TrainConfig,
    TrainingDivergedError,
    TrainTestSplit,
    binary_cross_entropy,
    build_model,
    encode,
    evaluate,
    get_weights,
    predict_proba,
    set_weights,
    train_local,
    train_test_split,
)


@pytest.fixture(scope="module")
def split(_german_frame: pd.DataFrame, german_schema: FederationSchema) -> TrainTestSplit:
    """German credit, encoded, split 75/25 and standardised on the training part."""
    x, y = encode(_german_frame, german_schema)
    parts = train_test_split(x, y, seed=0)
    scaler = Standardizer.fit(parts.x_train)
    return TrainTestSplit(
        scaler.transform(parts.x_train), scaler.transform(parts.x_test), parts.y_train, parts.y_test
    )


def test_training_reduces_loss_and_logistic_regression_reaches_auc(
    split: TrainTestSplit,
) -> None:
    model = build_model(ModelSpec(), split.x_train.shape[1], seed=0)
    before = binary_cross_entropy(model, split.x_train, split.y_train)
    result = train_local(model, split.x_train, split.y_train, TrainConfig(epochs=15, seed=1))
    after = binary_cross_entropy(model, split.x_train, split.y_train)
    assert after < before - 0.1
    assert result.num_examples == 750
    assert len(result.epoch_losses) == 15
    assert result.epoch_losses[-1] < result.epoch_losses[0]
    metrics = evaluate(split.y_test, predict_proba(model, split.x_test))
    assert metrics.auc > 0.7
    for returned, held in zip(result.weights, get_weights(model), strict=True):
        assert np.array_equal(returned, held)


def test_mlp_trains_too(split: TrainTestSplit) -> None:
    model = build_model(ModelSpec(kind="mlp", hidden=(16,), dropout=0.1), 61, seed=0)
    before = binary_cross_entropy(model, split.x_train, split.y_train)
    train_local(model, split.x_train, split.y_train, TrainConfig(epochs=5, seed=1))
    assert binary_cross_entropy(model, split.x_train, split.y_train) < before


def test_training_is_deterministic_and_leaves_global_rng_alone(split: TrainTestSplit) -> None:
    config = TrainConfig(epochs=2, batch_size=16, seed=5)
    spec = ModelSpec(kind="mlp", hidden=(8,), dropout=0.2)
    torch.manual_seed(99)
    expected_draw = torch.rand(2)
    torch.manual_seed(99)
    first = train_local(build_model(spec, 61, seed=3), split.x_train, split.y_train, config)
    assert torch.equal(torch.rand(2), expected_draw)
    second = train_local(build_model(spec, 61, seed=3), split.x_train, split.y_train, config)
    other = train_local(
        build_model(spec, 61, seed=3), split.x_train, split.y_train, TrainConfig(epochs=2, seed=6)
    )
    for a, b in zip(first.weights, second.weights, strict=True):
        assert np.array_equal(a, b)
    assert not np.array_equal(first.weights[0], other.weights[0])


def _distance(weights: list[np.ndarray], anchor: list[np.ndarray]) -> float:
    return float(sum(np.sum((w - a) ** 2) for w, a in zip(weights, anchor, strict=True)))


def test_fedprox_keeps_weights_closer_to_the_global_model(split: TrainTestSplit) -> None:
    global_model = build_model(ModelSpec(), 61, seed=0)
    global_weights = get_weights(global_model)
    distances = {}
    for mu in (0.0, 1.0):
        model = build_model(ModelSpec(), 61, seed=0)
        config = TrainConfig(epochs=5, learning_rate=0.1, proximal_mu=mu, seed=2)
        result = train_local(model, split.x_train, split.y_train, config)
        distances[mu] = _distance(result.weights, global_weights)
    assert distances[1.0] < 0.7 * distances[0.0]


def test_fedprox_anchor_can_be_given_explicitly(split: TrainTestSplit) -> None:
    anchor = [np.zeros_like(w) for w in get_weights(build_model(ModelSpec(), 61, seed=0))]
    config = TrainConfig(epochs=3, learning_rate=0.1, proximal_mu=5.0, seed=2)
    plain = train_local(build_model(ModelSpec(), 61, seed=0), split.x_train, split.y_train, config)
    pulled = train_local(
        build_model(ModelSpec(), 61, seed=0),
        split.x_train,
        split.y_train,
        config,
        global_weights=anchor,
    )
    assert _distance(pulled.weights, anchor) < _distance(plain.weights, anchor)
    with pytest.raises(InvalidWeightsError):
        train_local(
            build_model(ModelSpec(), 61, seed=0),
            split.x_train,
            split.y_train,
            config,
            global_weights=anchor[:1],
        )


def test_divergence_raises_a_typed_error() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(scale=1e30, size=(64, 3)).astype(np.float32)  # forgot to standardise
    y = (rng.random(64) < 0.5).astype(np.float32)
    model = build_model(ModelSpec(), 3, seed=0)
    set_weights(model, [np.full((1, 3), 1e10, dtype=np.float32), np.zeros(1, np.float32)])
    with pytest.raises(TrainingDivergedError) as caught:
        train_local(model, x, y, TrainConfig(epochs=3, learning_rate=1e30))
    assert caught.value.epoch >= 0 and caught.value.batch >= 0


def test_bad_inputs_raise_typed_errors() -> None:
    model = build_model(ModelSpec(), 2, seed=0)
    x = np.zeros((4, 2), dtype=np.float32)
    with pytest.raises(DataValidationError):
        train_local(model, x, np.zeros(3), TrainConfig())
    with pytest.raises(DataValidationError):
        train_local(model, x, np.array([0, 1, 2, 0]), TrainConfig())
    with pytest.raises(DataValidationError):
        train_local(model, x[:0], np.zeros(0), TrainConfig())


@pytest.mark.parametrize(
    "options",
    [
        {"epochs": 0},
        {"batch_size": 0},
        {"learning_rate": 0.0},
        {"learning_rate": float("nan")},
        {"momentum": 1.0},
        {"proximal_mu": -0.1},
        {"pos_weight": 0.0},
        {"seed": -1},
    ],
)
def test_bad_configs_raise_config_error(options: dict) -> None:
    with pytest.raises(ConfigError):
        TrainConfig(**options)
