"""The Monte Carlo and the tornado: seeded, within the stated ranges, consistent with the model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from simulations.compliance import (
    CLAIM,
    CostModel,
    Registry,
    load_consortium,
    load_profiles,
    run_monte_carlo,
)
from simulations.compliance.monte_carlo import saving

PROFILES = load_profiles()
CONSORTIUM = load_consortium()
REGISTRY = Registry(PROFILES, CONSORTIUM)


@dataclass(frozen=True)
class Inst:
    name: str
    jurisdiction: str
    rows: int


INSTITUTIONS = [
    Inst("eu-universal-bank", "EU", 5_906),
    Inst("us-card-bank", "US", 2_269),
    Inst("cn-platform-lender", "CN", 1_308),
    Inst("sg-digital-bank", "SG", 891),
]


def _models() -> dict[str, CostModel]:
    kw: dict[str, Any] = {"as_of": date(2026, 11, 30), "years": 3}
    return {
        "fedavg": CostModel(
            "fedavg", INSTITUTIONS, PROFILES, CONSORTIUM, cpu_s=50, bytes_sent=2e6, **kw
        ),
        "he-fedavg": CostModel(
            "he-fedavg", INSTITUTIONS, PROFILES, CONSORTIUM, cpu_s=80, bytes_sent=2e8, **kw
        ),
        "centralized": CostModel(
            "centralized", INSTITUTIONS, PROFILES, CONSORTIUM, cpu_s=5, bytes_sent=1e6, **kw
        ),
    }


def test_reproducible_per_seed_and_different_across_seeds() -> None:
    models = _models()
    first = run_monte_carlo(models, REGISTRY, draws=400, seed=7)
    again = run_monte_carlo(models, REGISTRY, draws=400, seed=7)
    other = run_monte_carlo(models, REGISTRY, draws=400, seed=8)
    assert first == again
    assert first.strategies["fedavg"].p50 != other.strategies["fedavg"].p50
    assert first.draws == 400 and first.seed == 7


def test_draws_stay_in_their_ranges_and_settled_flags_never_move() -> None:
    values = REGISTRY.draw(np.random.default_rng(3), 2_000)
    for key, p in REGISTRY.parameters.items():
        drawn = values.num(key)
        low, high = p.value.bounds
        assert drawn.min() >= low and drawn.max() <= high, key
        if p.sampled:
            assert drawn.std() > 0, key
        else:
            assert np.all(drawn == p.value.value), key
    assert np.all(~values.flag("CN.flags.encryption_exits_scope"))  # settled (PIPL Arts 4/73)
    assert np.all(~values.flag("US.flags.encryption_exits_scope"))  # settled (§202.206)
    # EU: P(updates are personal data) ~ triangular(0.5, 0.7, 0.9), mean 0.7.
    share = values.flag("EU.flags.updates_are_personal_data").mean()
    assert abs(share - 0.7) < 0.05


def test_probability_of_the_claim_matches_the_paired_draws() -> None:
    models = _models()
    result = run_monte_carlo(models, REGISTRY, draws=600, seed=11)
    values = REGISTRY.draw(np.random.default_rng(11), 600)
    moved = saving(models["he-fedavg"].evaluate(values), models["fedavg"].evaluate(values))
    assert result.p_he_saves_40pct == pytest.approx(float(np.mean(moved >= CLAIM)))
    head = result.headline
    assert head is not None and (head.baseline, head.candidate) == ("fedavg", "he-fedavg")
    assert head.saving.p50 == pytest.approx(float(np.percentile(moved, 50)))
    quantiles = result.strategies["he-fedavg"]
    assert quantiles.p5 is not None and quantiles.p95 is not None
    assert quantiles.p5 <= quantiles.p50 <= quantiles.p95  # type: ignore[operator]
    # A strategy against itself never saves anything.
    same = run_monte_carlo(
        {"fedavg": models["fedavg"], "he-fedavg": models["fedavg"]}, REGISTRY, draws=50, seed=1
    )
    assert same.p_he_saves_40pct == 0.0 and same.tornado == ()


def test_tornado_bars_are_sorted_and_each_end_reprices_the_model() -> None:
    models = _models()
    result = run_monte_carlo(models, REGISTRY, draws=10, seed=0)
    bars = result.tornado
    assert bars and all(a.swing >= b.swing for a, b in pairwise(bars))
    assert all(b.swing > 0 for b in bars)
    # Reprice the widest bar's high end by hand: that number at its high, all else at base.
    top = bars[0]
    values = REGISTRY.base()
    if top.kind == "flag":
        values.flag(top.id)[0] = True
    else:
        values.num(top.id)[0] = top.high
    at_high = saving(models["he-fedavg"].evaluate(values), models["fedavg"].evaluate(values))
    assert top.saving_at_high == pytest.approx(float(at_high[0]))
    # The headline's base-case saving is the saving at base values.
    base = REGISTRY.base()
    expected = saving(models["he-fedavg"].evaluate(base), models["fedavg"].evaluate(base))
    assert result.headline is not None
    assert result.headline.saving_base == pytest.approx(float(expected[0]))


def test_infeasible_strategy_has_no_percentiles_and_missing_pair_no_headline() -> None:
    mix = [*INSTITUTIONS, Inst("in-nbfc", "IN", 527)]  # RBI directions: no pooling abroad
    model = CostModel(
        "centralized", mix, PROFILES, CONSORTIUM, cpu_s=1, bytes_sent=1, as_of=date(2026, 11, 30)
    )
    result = run_monte_carlo({"centralized": model}, REGISTRY, draws=20, seed=0)
    q = result.strategies["centralized"]
    assert q.p50 is None and q.defined_share == 0.0
    assert result.headline is None and result.p_he_saves_40pct is None and result.tornado == ()
    with pytest.raises(ValueError, match="draws"):
        run_monte_carlo({"centralized": model}, REGISTRY, draws=0)
