"""Model quality the way credit-risk teams read it.

- ROC AUC: how well scores rank bads above goods (scikit-learn).
- KS statistic: the largest distance between the score distributions of bads
  and goods, equal to ``max(tpr - fpr)`` over the ROC curve.
- Brier score and log loss: calibration of the predicted probability of
  default (scikit-learn).
- Approval rate at a target bad rate: the business number. Applicants are
  sorted by predicted risk, lowest first, and the largest prefix whose bad
  rate stays at or under the target is approved; the rate is its share.

All functions take labels (1 = bad) and predicted probabilities of bad.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score, roc_curve

from clients.errors import MetricsError, UndefinedMetricError

__all__ = ["RiskMetrics", "approval_rate_at_bad_rate", "evaluate", "ks_statistic"]

DEFAULT_TARGET_BAD_RATE = 0.05
"""Default tolerated bad rate among approved applicants."""


@dataclass(frozen=True)
class RiskMetrics:
    """Quality of a credit-risk model on one test set.

    Attributes
    ----------
    auc
        ROC AUC.
    ks
        Kolmogorov-Smirnov statistic, in ``[0, 1]``.
    brier
        Brier score (mean squared error of the probability); lower is better.
    log_loss
        Mean negative log-likelihood; lower is better.
    approval_rate
        Share of applicants approved at the target bad rate, in ``[0, 1]``.
    """

    auc: float
    ks: float
    brier: float
    log_loss: float
    approval_rate: float

    def as_dict(self) -> dict[str, float]:
        """The metrics as a plain mapping, for tables and JSON reports."""
        return asdict(self)


def _checked(y_true: np.ndarray, p_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(p_pred, dtype=np.float64).ravel()
    if y.size != p.size:
        raise MetricsError(f"{y.size} labels but {p.size} predictions")
    if y.size == 0:
        raise MetricsError("no labels to evaluate")
    if not np.isin(y, (0.0, 1.0)).all():
        raise MetricsError("labels must be 0 (good) or 1 (bad)")
    if not (np.isfinite(p).all() and (p >= 0.0).all() and (p <= 1.0).all()):
        raise MetricsError("predictions must be probabilities in [0, 1]")
    if y.min() == y.max():
        only = "bad" if y[0] == 1.0 else "good"
        raise UndefinedMetricError(
            f"all {y.size} labels are {only}; AUC, KS and the rest need bads and goods"
        )
    return y, p


def ks_statistic(y_true: np.ndarray, p_pred: np.ndarray) -> float:
    """Kolmogorov-Smirnov statistic between the score distributions of bads and goods.

    ``max_t |F_bad(t) - F_good(t)|``; over the ROC curve this is
    ``max(tpr - fpr)`` (for a model no worse than random).

    Raises
    ------
    UndefinedMetricError
        If only one class is present.
    MetricsError
        If labels or probabilities are malformed.
    """
    y, p = _checked(y_true, p_pred)
    fpr, tpr, _ = roc_curve(y, p)
    return float(np.max(np.abs(tpr - fpr)))


def approval_rate_at_bad_rate(
    y_true: np.ndarray, p_pred: np.ndarray, target_bad_rate: float = DEFAULT_TARGET_BAD_RATE
) -> float:
    """Share of applicants that can be approved while the bad rate stays within target.

    Applicants are sorted by predicted probability of default, lowest first;
    the largest prefix whose OBSERVED bad rate (mean of the true labels among
    the approved, on this test set) is at or under ``target_bad_rate`` is
    approved. Observed labels are used rather than the model's own predicted
    probabilities so a miscalibrated model cannot flatter itself. The rate
    need not stay under target for every shorter prefix: the policy is a
    single score cut-off. Applicants with equal scores cannot be told apart
    by a cut-off, so prefixes only end between distinct scores.

    Returns
    -------
    float
        The approved share, in ``[0, 1]``; 0 if even the safest group of
        applicants exceeds the target.

    Raises
    ------
    MetricsError
        If ``target_bad_rate`` is outside ``[0, 1]`` or inputs are malformed.
    UndefinedMetricError
        If only one class is present.
    """
    if not (math.isfinite(target_bad_rate) and 0.0 <= target_bad_rate <= 1.0):
        raise MetricsError(f"target_bad_rate must be in [0, 1], got {target_bad_rate}")
    y, p = _checked(y_true, p_pred)
    order = np.argsort(p, kind="stable")
    sorted_p = p[order]
    bads = np.cumsum(y[order])
    approved = np.arange(1, y.size + 1, dtype=np.float64)
    # A cut-off may fall after position k only if the next score differs.
    cut_allowed = np.append(sorted_p[1:] != sorted_p[:-1], True)
    within = bads <= target_bad_rate * approved + 1e-12
    feasible = np.flatnonzero(cut_allowed & within)
    if feasible.size == 0:
        return 0.0
    return float(approved[feasible[-1]] / y.size)


def evaluate(
    y_true: np.ndarray, p_pred: np.ndarray, target_bad_rate: float = DEFAULT_TARGET_BAD_RATE
) -> RiskMetrics:
    """Compute AUC, KS, Brier score, log loss and approval rate on a test set.

    Parameters
    ----------
    y_true
        Labels, 1 for bad.
    p_pred
        Predicted probabilities of bad.
    target_bad_rate
        Tolerated observed bad rate among approved applicants.

    Raises
    ------
    UndefinedMetricError
        If only one class is present.
    MetricsError
        If labels or probabilities are malformed.
    """
    y, p = _checked(y_true, p_pred)
    return RiskMetrics(
        auc=float(roc_auc_score(y, p)),
        ks=ks_statistic(y, p),
        brier=float(brier_score_loss(y, p)),
        log_loss=float(log_loss(y, p, labels=[0.0, 1.0])),
        approval_rate=approval_rate_at_bad_rate(y, p, target_bad_rate),
    )
