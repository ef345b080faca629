"""Synthetic generators: determinism, promised skews, schema, learnability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from simulations import (
    GENERATORS,
    GeneratedFederation,
    GeneratorError,
    InstitutionSpec,
    default_institutions,
    generate,
)
from simulations.generators.common import MIN_ROWS_PER_INSTITUTION, allocate_rows

NAMES = sorted(GENERATORS)


def _rates(fed: GeneratedFederation) -> dict[str, float]:
    return {
        d.jurisdiction: float((d.frame[fed.target] == fed.positive).mean())
        for d in fed.institutions
    }


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_identical_frames(name: str) -> None:
    a = generate(name, 7, seed=11, total_rows=4_000)
    b = generate(name, 7, seed=11, total_rows=4_000)
    for x, y in zip(a.institutions, b.institutions, strict=True):
        pd.testing.assert_frame_equal(x.frame, y.frame)


@pytest.mark.parametrize("name", NAMES)
def test_other_seed_gives_other_frames(name: str) -> None:
    a = generate(name, 7, seed=11, total_rows=4_000)
    b = generate(name, 7, seed=12, total_rows=4_000)
    assert not a.institutions[0].frame.equals(b.institutions[0].frame)


def test_global_numpy_state_is_neither_used_nor_touched() -> None:
    np.random.seed(1)
    before = np.random.get_state(legacy=False)["state"]["key"].copy()
    a = generate("sme-credit", 3, seed=5, total_rows=1_000)
    assert np.array_equal(np.random.get_state(legacy=False)["state"]["key"], before)
    np.random.seed(2)
    b = generate("sme-credit", 3, seed=5, total_rows=1_000)
    pd.testing.assert_frame_equal(a.institutions[1].frame, b.institutions[1].frame)


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_fixed_and_respected(name: str) -> None:
    fed = generate(name, 7, seed=3, total_rows=5_000)
    assert (fed.positive, fed.negative) == (GENERATORS[name].positive, GENERATORS[name].negative)
    for column, categories in fed.categorical_columns.items():
        assert categories == sorted(categories)
        for d in fed.institutions:
            assert set(d.frame[column]) <= set(categories), column
    for d in fed.institutions:
        assert set(d.frame.columns) == {*fed.feature_columns, fed.target}
        assert set(d.frame[fed.target]) <= {fed.positive, fed.negative}
        for column in fed.numeric_columns:
            assert pd.api.types.is_numeric_dtype(d.frame[column]), column
            assert d.frame[column].notna().all(), column
    assert sum(len(d.frame) for d in fed.institutions) == 5_000


def test_default_mix_has_quantity_skew() -> None:
    fed = generate("sme-credit", default_institutions(), seed=0)
    sizes = [len(d.frame) for d in fed.institutions]
    assert 20_000 <= sum(sizes) <= 40_000
    assert max(sizes) >= 5 * min(sizes)
    assert len({d.jurisdiction for d in fed.institutions}) == 7


def test_sme_credit_has_label_skew_and_feature_shift() -> None:
    fed = generate("sme-credit", 7, seed=0)
    rates = _rates(fed)
    assert rates["BR"] > 2 * rates["CN"]
    assert max(rates.values()) - min(rates.values()) > 0.04
    gmv = {d.jurisdiction: d.frame["gmv_monthly_usd"].median() for d in fed.institutions}
    assert gmv["CN"] > 3 * gmv["IN"]
    delay = {d.jurisdiction: d.frame["logistics_delay_days"].mean() for d in fed.institutions}
    assert delay["ID"] > 1.8 * delay["SG"]


def test_payment_fraud_is_imbalanced_and_skewed_by_jurisdiction() -> None:
    fed = generate("payment-fraud", 7, seed=0, total_rows=40_000)
    pooled = fed.pooled()
    overall = float((pooled[fed.target] == fed.positive).mean())
    assert 0.004 < overall < 0.02
    rates = _rates(fed)
    assert rates["BR"] > 2 * rates["EU"]
    amount = {d.jurisdiction: d.frame["amount_usd"].median() for d in fed.institutions}
    assert amount["US"] > 2.5 * amount["IN"]


def _auc(name: str) -> float:
    fed = generate(name, 7, seed=21)
    pooled = fed.pooled()
    x = pd.get_dummies(
        pooled[fed.feature_columns], columns=list(fed.categorical_columns), dtype=float
    )
    x[fed.numeric_columns] = (x[fed.numeric_columns] - x[fed.numeric_columns].mean()) / x[
        fed.numeric_columns
    ].std()
    y = (pooled[fed.target] == fed.positive).to_numpy()
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[: len(y) * 2 // 3], order[len(y) * 2 // 3 :]
    model = LogisticRegression(max_iter=1_000).fit(x.to_numpy()[train], y[train])
    return float(roc_auc_score(y[test], model.predict_proba(x.to_numpy()[test])[:, 1]))


def test_sme_credit_labels_are_learnable() -> None:
    assert _auc("sme-credit") > 0.65


def test_payment_fraud_labels_are_learnable() -> None:
    assert _auc("payment-fraud") > 0.75


def test_pooled_frame_tags_rows() -> None:
    fed = generate("payment-fraud", 3, seed=1, total_rows=600)
    pooled = fed.pooled()
    assert len(pooled) == 600
    assert set(pooled["institution"]) == {d.name for d in fed.institutions}


def test_explicit_specs_and_errors() -> None:
    specs = [InstitutionSpec("big", "EU", 10.0), InstitutionSpec("small", "ID", 1.0)]
    fed = generate("sme-credit", specs, seed=0, total_rows=1_100)
    # 50 rows each first, the remaining 1,000 split 10:1.
    assert [len(d.frame) for d in fed.institutions] == [50 + 909, 50 + 91]
    with pytest.raises(GeneratorError, match="unknown generator"):
        generate("mortgages", 2, seed=0)
    with pytest.raises(GeneratorError, match="jurisdiction"):
        InstitutionSpec("x", "XX")
    with pytest.raises(GeneratorError, match="too small"):
        generate("sme-credit", 7, seed=0, total_rows=100)
    with pytest.raises(GeneratorError, match="unique"):
        generate("sme-credit", [specs[0], specs[0]], seed=0, total_rows=1_000)


@given(
    st.lists(st.floats(0.01, 100.0), min_size=1, max_size=12),
    st.integers(0, 50_000),
)
def test_allocate_rows_sums_exactly(weights: list[float], extra: int) -> None:
    total = len(weights) * MIN_ROWS_PER_INSTITUTION + extra
    counts = allocate_rows(weights, total)
    assert sum(counts) == total
    assert min(counts) >= MIN_ROWS_PER_INSTITUTION
