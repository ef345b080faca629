"""Credit-risk metrics: hand-computed cases, scikit-learn and SciPy references."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from clients import (
    MetricsError,
    RiskMetrics,
    UndefinedMetricError,
    approval_rate_at_bad_rate,
    evaluate,
    ks_statistic,
)

Y = np.array([0, 0, 1, 0, 1])
P = np.array([0.1, 0.2, 0.3, 0.4, 0.5])


def test_ks_by_hand() -> None:
    # Goods score {.1, .2, .4}, bads {.3, .5}. At cut-off .2 the good CDF is 2/3 and the
    # bad CDF 0; at .4 they are 1 and 1/2. The largest gap is 2/3.
    assert ks_statistic(Y, P) == pytest.approx(2 / 3)


def test_approval_rate_by_hand() -> None:
    # Sorted by risk: good, good, bad, good, bad. Prefix bad rates: 0, 0, 1/3, 1/4, 2/5.
    assert approval_rate_at_bad_rate(Y, P, 0.25) == pytest.approx(4 / 5)
    assert approval_rate_at_bad_rate(Y, P, 0.05) == pytest.approx(2 / 5)
    assert approval_rate_at_bad_rate(Y, P, 0.40) == pytest.approx(1.0)
    assert approval_rate_at_bad_rate(Y, P, 0.30) == pytest.approx(4 / 5)


def test_approval_rate_takes_the_largest_prefix_not_the_first_breach() -> None:
    # The safest applicant defaults, yet approving all ten keeps the bad rate at 10%.
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    p = np.linspace(0.01, 0.10, 10)
    assert approval_rate_at_bad_rate(y, p, 0.10) == pytest.approx(1.0)
    assert approval_rate_at_bad_rate(y, p, 0.05) == 0.0


def test_approval_rate_never_splits_equal_scores() -> None:
    # Applicants 2 and 3 share a score: a cut-off approves both or neither.
    y = np.array([0, 0, 1, 0])
    p = np.array([0.1, 0.2, 0.2, 0.9])
    assert approval_rate_at_bad_rate(y, p, 0.0) == pytest.approx(0.25)


def test_perfect_model() -> None:
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.01, 0.02, 0.03, 0.9, 0.95])
    metrics = evaluate(y, p, target_bad_rate=0.0)
    assert metrics.auc == 1.0 and metrics.ks == pytest.approx(1.0)
    assert metrics.approval_rate == pytest.approx(0.6)


def test_evaluate_matches_scikit_learn_and_scipy() -> None:
    rng = np.random.default_rng(11)
    y = (rng.random(500) < 0.2).astype(float)
    p = np.clip(0.2 + 0.3 * (y - 0.2) + rng.normal(scale=0.15, size=500), 0.001, 0.999)
    metrics = evaluate(y, p)
    assert isinstance(metrics, RiskMetrics)
    assert metrics.auc == pytest.approx(roc_auc_score(y, p))
    assert metrics.brier == pytest.approx(brier_score_loss(y, p))
    assert metrics.log_loss == pytest.approx(log_loss(y, p))
    assert metrics.ks == pytest.approx(ks_2samp(p[y == 1], p[y == 0], method="asymp").statistic)
    # No target given: half this test set's own bad rate, and the metrics say so.
    assert metrics.approval_rate == pytest.approx(approval_rate_at_bad_rate(y, p, y.mean() / 2))
    assert metrics.target is not None and metrics.target.bad_rate == pytest.approx(y.mean() / 2)
    assert set(metrics.as_dict()) == {"auc", "ks", "brier", "log_loss", "approval_rate"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        metrics.auc = 0.5  # type: ignore[misc]


def _brute_force_approval(y: np.ndarray, p: np.ndarray, target: float) -> float:
    best = 0
    for cut in np.unique(p):
        approved = p <= cut
        if y[approved].sum() <= target * approved.sum() + 1e-12:
            best = max(best, int(approved.sum()))
    return best / len(y)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 20)), min_size=2, max_size=40).filter(
        lambda rows: len({r[0] for r in rows}) == 2
    ),
    target=st.floats(0.0, 1.0),
)
def test_approval_rate_matches_brute_force(data: list[tuple[int, int]], target: float) -> None:
    y = np.array([r[0] for r in data], dtype=float)
    p = np.array([r[1] for r in data], dtype=float) / 20.0  # coarse scores: many ties
    assert approval_rate_at_bad_rate(y, p, target) == pytest.approx(
        _brute_force_approval(y, p, target)
    )
    assert ks_statistic(y, p) == pytest.approx(
        ks_2samp(p[y == 1], p[y == 0], method="asymp").statistic
    )


def test_single_class_is_refused() -> None:
    with pytest.raises(UndefinedMetricError, match="all 3 labels are good"):
        evaluate(np.zeros(3), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(UndefinedMetricError):
        ks_statistic(np.ones(2), np.array([0.1, 0.2]))


@pytest.mark.parametrize(
    ("y", "p"),
    [
        ([0, 1], [0.1]),
        ([], []),
        ([0, 2], [0.1, 0.2]),
        ([0, 1], [0.1, 1.2]),
        ([0, 1], [0.1, float("nan")]),
    ],
)
def test_malformed_inputs_are_refused(y: list[float], p: list[float]) -> None:
    with pytest.raises(MetricsError):
        evaluate(np.array(y), np.array(p))


def test_target_bad_rate_out_of_range() -> None:
    with pytest.raises(MetricsError):
        approval_rate_at_bad_rate(Y, P, 1.5)
