"""Masked FedAvg in Flower's simulation engine: the same model as plaintext FedAvg.

One simulation (Ray, the real ServerApp and ClientApp) runs plaintext FedAvg and
FedAvg over ``masked16`` deltas on the same three institutions, two rounds (the
second starts from the first's masked sum, opened by every institution with the
revealed seeds). The masked run's model, replayed from its masked sums, equals
plaintext FedAvg's within the quantisation error (about 6e-5 per institution and
round; the statistics are exact masked integer sums, so both standardise alike),
at a learning rate small enough that no delta reaches the preset's clip; so does
its federation-wide evaluation, a masked sum too.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import crypto
from clients import build_model, get_weights
from simulations.engine import default_backend_config
from simulations.multirun import run_federations
from simulations.scenario import ScenarioSpec, prepare_scenario
from simulations.strategies import StrategyPlan, federation_settings, masked_plan, model_spec

#: Quantisation error allowed per value: eight steps of masked16 (clip 4, 16-bit lanes).
ATOL = 8 * crypto.PRESETS["masked16"].build_masked_codec().step


def test_masked_fedavg_ends_where_plaintext_fedavg_does(tmp_path: Path) -> None:
    spec = ScenarioSpec(institutions=3, total_rows=900, rounds=2, epochs=1, seed=3)
    scenario = prepare_scenario(dataclasses.replace(spec, learning_rate=0.05), tmp_path)
    runs = [
        (plan.name, federation_settings(plan, scenario))
        for plan in (StrategyPlan("fedavg", "fedavg"), masked_plan("he-fedavg-masked16"))
    ]
    outcomes = run_federations(
        runs, len(scenario.institutions), backend_config=default_backend_config(num_cpus=2)
    )
    plain = outcomes["fedavg"].run.weights
    masked = outcomes["he-fedavg-masked16"].run.weights
    settings = outcomes["fedavg"].run.settings
    shapes = settings.shapes() or ()
    seeded = get_weights(build_model(model_spec(spec), shapes[0][-1], spec.seed))
    for got, want, start in zip(masked, plain, seeded, strict=True):
        np.testing.assert_allclose(got, want, atol=ATOL)
        assert np.abs(want - start).max() > 1e-2  # the model did move
    train = outcomes["he-fedavg-masked16"].run.metrics["train"]
    assert [train[r]["institutions"] for r in ("1", "2")] == [3, 3]
    evaluated = outcomes["he-fedavg-masked16"].run.final_evaluation()
    reference = outcomes["fedavg"].run.final_evaluation()
    assert evaluated["institutions"] == 3
    for name in ("auc", "brier"):  # the approval rate moves in steps of one applicant
        assert evaluated[name] == pytest.approx(reference[name], abs=2e-3)
