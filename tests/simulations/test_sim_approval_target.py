"""The simulation's approval rate: by default at half each training split's bad rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clients import (
    LocalDataset,
    ModelSpec,
    Standardizer,
    build_model,
    encode,
    infer_schema,
    load_table,
    train_test_split,
)
from simulations import ScenarioSpec, SimulationError
from simulations.evaluation import InstitutionSplit, evaluate_strategy
from simulations.scenario import Institution

DATA = Path(__file__).parents[1] / "data" / "german_credit.csv"


def _splits() -> list[InstitutionSplit]:
    frame = load_table(DATA)
    schema = infer_schema(frame, "creditability", "bad")
    # Two institutions with different bad rates: the first keeps fewer bads.
    bad = frame["creditability"] == "bad"
    parts = [pd.concat([frame[~bad].iloc[:350], frame[bad].iloc[:50]]), frame.iloc[400:]]
    splits = []
    for k, part in enumerate(parts):
        x, y = encode(part, schema)
        s = train_test_split(x, y, test_size=0.25, seed=k)
        splits.append(
            InstitutionSplit(
                Institution(f"i{k}", "EU", DATA, len(part), int(y.sum())),
                LocalDataset(schema, s.x_train, s.y_train, s.x_test, s.y_test),
            )
        )
    return splits


def test_the_default_target_is_half_of_each_training_bad_rate() -> None:
    splits = _splits()
    scaler = Standardizer.fit(np.concatenate([s.data.x_train for s in splits]))
    model = build_model(ModelSpec(), splits[0].data.n_features, 0)
    result = evaluate_strategy(splits, [model] * 2, [scaler] * 2)
    for split, metrics in zip(splits, result.institutions, strict=True):
        assert metrics is not None and metrics.target is not None
        assert metrics.target.bad_rate == pytest.approx(0.5 * float(split.data.y_train.mean()))
    pooled = np.concatenate([s.data.y_train for s in splits])
    assert result.overall.target is not None
    assert result.overall.target.bad_rate == pytest.approx(0.5 * float(pooled.mean()))
    given = evaluate_strategy(splits, [model] * 2, [scaler] * 2, target_bad_rate=0.02)
    assert given.overall.target is not None and given.overall.target.bad_rate == 0.02


def test_the_spec_states_its_target() -> None:
    assert ScenarioSpec().target_bad_rate is None
    assert "0.5 x the training split's bad rate" in ScenarioSpec().approval_target
    assert "2.0% (given)" in ScenarioSpec(target_bad_rate=0.02).approval_target
    with pytest.raises(SimulationError):
        ScenarioSpec(target_bad_rate=1.5)
