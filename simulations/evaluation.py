"""The same test sets for every strategy: per-institution and pooled model quality.

Each institution's held-out split is the one its ClientApp uses in the
federation (:func:`clients.load_local_dataset` with the scenario's seed and test
fraction), so a centralized, local-only or federated model is scored on exactly
the same rows. A strategy gives each institution a model and a standardiser —
the federation's single model with the federation-wide standardiser (from the
summed feature moments, as the statistics round computes it), or the
institution's own model and standardiser for local-only training — and
:func:`evaluate_strategy` reports:

- per institution, the credit-risk metrics on its own test split;
- overall, the metrics on the union of the test splits, each row scored by the
  model its institution would use (the portfolio view);
- the mean of the per-institution AUCs (the view of an average member).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from clients import (
    BadRateTarget,
    LocalDataset,
    RiskMetrics,
    Standardizer,
    UndefinedMetricError,
    evaluate,
    load_local_dataset,
    local_moments,
    predict_proba,
    sum_moments,
)
from simulations.scenario import Institution, Scenario

__all__ = [
    "InstitutionSplit",
    "StrategyEvaluation",
    "evaluate_strategy",
    "federation_standardizer",
    "load_splits",
]


@dataclass(frozen=True)
class InstitutionSplit:
    """An institution and its encoded training and held-out test rows."""

    institution: Institution
    data: LocalDataset


@dataclass(frozen=True)
class StrategyEvaluation:
    """A strategy's model quality on the scenario's test splits.

    Attributes
    ----------
    overall
        Metrics on the union of the institutions' test splits.
    institutions
        Metrics per institution, in scenario order; ``None`` where a test split
        holds one class only (AUC undefined).
    """

    overall: RiskMetrics
    institutions: tuple[RiskMetrics | None, ...]

    @property
    def mean_institution_auc(self) -> float:
        """Unweighted mean of the defined per-institution AUCs."""
        aucs = [m.auc for m in self.institutions if m is not None]
        return float(np.mean(aucs)) if aucs else float("nan")


def load_splits(scenario: Scenario) -> list[InstitutionSplit]:
    """Every institution's encoded train and test split, as its ClientApp loads it."""
    spec = scenario.spec
    return [
        InstitutionSplit(
            inst,
            load_local_dataset(
                str(inst.data_file),
                str(scenario.schema_path),
                seed=spec.seed,
                test_fraction=spec.test_fraction,
            ),
        )
        for inst in scenario.institutions
    ]


def federation_standardizer(splits: Sequence[InstitutionSplit]) -> Standardizer:
    """The federation-wide standardiser: from the summed moments of all training rows."""
    total = sum_moments(local_moments(s.data.x_train) for s in splits)
    return Standardizer.from_moments(total.n_rows, total.sums, total.sums_sq)


def evaluate_strategy(
    splits: Sequence[InstitutionSplit],
    models: Sequence[nn.Module],
    scalers: Sequence[Standardizer],
    *,
    target_bad_rate: float | None = None,
) -> StrategyEvaluation:
    """Score each institution's test split with its model; pool the scores.

    Parameters
    ----------
    splits
        The institutions' splits.
    models, scalers
        One model and one standardiser per institution (the same objects
        repeated for a single federation-wide model).
    target_bad_rate
        Tolerated bad rate among approved applicants; ``None``: half the
        training split's bad rate, each institution's own for its metrics and
        the pooled training rows' for the overall ones.
    """
    if not len(splits) == len(models) == len(scalers):
        raise ValueError("one model and one standardiser per institution are needed")

    def target(train_labels: np.ndarray) -> BadRateTarget:
        if target_bad_rate is None:
            return BadRateTarget.relative(train_labels)
        return BadRateTarget.given(target_bad_rate)

    labels: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    per_institution: list[RiskMetrics | None] = []
    for split, model, scaler in zip(splits, models, scalers, strict=True):
        p = predict_proba(model, scaler.transform(split.data.x_test))
        labels.append(split.data.y_test)
        scores.append(p)
        try:
            per_institution.append(evaluate(split.data.y_test, p, target(split.data.y_train)))
        except UndefinedMetricError:
            per_institution.append(None)
    pooled_train = np.concatenate([s.data.y_train for s in splits])
    overall = evaluate(np.concatenate(labels), np.concatenate(scores), target(pooled_train))
    return StrategyEvaluation(overall, tuple(per_institution))
