"""Seeded model construction and weight exchange."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clients import (
    MLP,
    ConfigError,
    InvalidWeightsError,
    LogisticRegression,
    ModelSpec,
    build_model,
    coefficient_table,
    get_weights,
    predict_proba,
    set_weights,
)

SPECS = [ModelSpec(), ModelSpec(kind="mlp", hidden=(16, 8), dropout=0.1)]


@pytest.mark.parametrize("spec", SPECS)
def test_same_seed_gives_identical_weights(spec: ModelSpec) -> None:
    first = get_weights(build_model(spec, 12, seed=42))
    torch.rand(5)  # disturbing the global generator must not matter
    second = get_weights(build_model(spec, 12, seed=42))
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("spec", SPECS)
def test_other_seed_gives_other_weights(spec: ModelSpec) -> None:
    first = get_weights(build_model(spec, 12, seed=42))
    other = get_weights(build_model(spec, 12, seed=43))
    assert not np.array_equal(first[0], other[0])


def test_building_does_not_touch_global_random_state() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model(ModelSpec(kind="mlp"), 30, seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_architectures() -> None:
    logistic = build_model(ModelSpec(), 5, seed=0)
    assert isinstance(logistic, LogisticRegression)
    assert [w.shape for w in get_weights(logistic)] == [(1, 5), (1,)]
    mlp = build_model(ModelSpec(kind="mlp", hidden=(7, 3)), 5, seed=0)
    assert isinstance(mlp, MLP)
    assert [w.shape for w in get_weights(mlp)] == [(7, 5), (7,), (3, 7), (3,), (1, 3), (1,)]
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    for model in (logistic, mlp):
        p = predict_proba(model, x)
        assert p.shape == (4,) and np.all((p > 0) & (p < 1))


def test_set_weights_round_trip_and_checks() -> None:
    source = build_model(ModelSpec(kind="mlp", hidden=(4,)), 3, seed=1)
    target = build_model(ModelSpec(kind="mlp", hidden=(4,)), 3, seed=2)
    set_weights(target, get_weights(source))
    for a, b in zip(get_weights(source), get_weights(target), strict=True):
        assert np.array_equal(a, b)
    weights = get_weights(source)
    with pytest.raises(InvalidWeightsError, match="weight tensors"):
        set_weights(target, weights[:-1])
    with pytest.raises(InvalidWeightsError, match="shape"):
        set_weights(target, [weights[0].T, *weights[1:]])
    spoiled = [w.copy() for w in weights]
    spoiled[1][0] = np.nan
    before = get_weights(target)
    with pytest.raises(InvalidWeightsError, match="NaN"):
        set_weights(target, spoiled)
    for a, b in zip(before, get_weights(target), strict=True):
        assert np.array_equal(a, b)  # unchanged after a refused update


def test_coefficient_table_lists_every_coefficient() -> None:
    model = build_model(ModelSpec(), 3, seed=0)
    assert isinstance(model, LogisticRegression)
    set_weights(model, [np.array([[0.5, -2.0, 0.1]], dtype=np.float32), np.array([0.3])])
    table = coefficient_table(model, ["a", "b", "c"])
    assert table["feature"].tolist() == ["b", "a", "c", "(intercept)"]
    assert np.allclose(table["odds_ratio"], np.exp(table["coefficient"]))
    assert model.intercept == pytest.approx(0.3)
    with pytest.raises(ConfigError):
        coefficient_table(model, ["a"])


@pytest.mark.parametrize(
    "make",
    [
        lambda: ModelSpec(kind="forest"),  # type: ignore[arg-type]
        lambda: ModelSpec(kind="mlp", hidden=()),
        lambda: ModelSpec(kind="mlp", hidden=(8, 0)),
        lambda: ModelSpec(dropout=1.0),
        lambda: build_model(ModelSpec(), 0, seed=0),
        lambda: build_model(ModelSpec(), 3, seed=-1),
        lambda: build_model(ModelSpec(), 3, seed=2**64),
    ],
)
def test_bad_specs_raise_config_error(make: object) -> None:
    with pytest.raises(ConfigError):
        make()  # type: ignore[operator]
