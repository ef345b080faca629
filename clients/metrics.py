"""Model quality the way credit-risk teams read it.

- ROC AUC: how well scores rank bads above goods (scikit-learn).
- KS statistic: the largest distance between the score distributions of bads
  and goods, equal to ``max(tpr - fpr)`` over the ROC curve.
- Brier score and log loss: calibration of the predicted probability of
  default (scikit-learn).
- Approval rate at a target bad rate: the business number. Applicants are
  sorted by predicted risk, lowest first, and the largest prefix whose bad
  rate stays at or under the target is approved; the rate is its share.

The target matters as much as the model: a fixed 2 % target on a book whose
bad rate is 28 % approves almost nobody, and the same 2 % on a 1 % book
approves everybody. Unless a target is given, :func:`evaluate` uses
:data:`DEFAULT_TARGET_FRACTION` (one half) of an observed bad rate, preferably
the training split's (:meth:`BadRateTarget.relative`): "halve the bad rate
and keep as many applicants as possible" reads the same on every book. Every
:class:`RiskMetrics` carries the :class:`BadRateTarget` it was computed with,
and every printed approval rate says which.

All functions take labels (1 = bad) and predicted probabilities of bad.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score, roc_curve

from clients.errors import MetricsError, UndefinedMetricError

__all__ = [
    "DEFAULT_TARGET_FRACTION",
    "BadRateTarget",
    "RiskMetrics",
    "approval_rate_at_bad_rate",
    "evaluate",
    "ks_statistic",
]

DEFAULT_TARGET_FRACTION = 0.5
"""Default target: this fraction of the observed (preferably training-split) bad rate."""


@dataclass(frozen=True)
class BadRateTarget:
    """The bad rate tolerated among approved applicants, and how it was chosen.

    Attributes
    ----------
    bad_rate
        The target, in ``[0, 1]``.
    fraction
        For a relative target, the fraction of :attr:`observed` it is; ``None``
        for a target given as a number.
    observed
        For a relative target, the observed bad rate it derives from.
    source
        Where :attr:`observed` was measured (``"training split"``, ``"test
        split"``) or ``"given"``.

    Raises
    ------
    MetricsError
        If a rate is outside ``[0, 1]`` or not finite.
    """

    bad_rate: float
    fraction: float | None = None
    observed: float | None = None
    source: str = "given"

    def __post_init__(self) -> None:
        for name in ("bad_rate", "fraction", "observed"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise MetricsError(f"{name} of a bad-rate target must be in [0, 1], got {value}")

    @classmethod
    def given(cls, bad_rate: float) -> BadRateTarget:
        """A target stated as a number (a credit policy's own figure)."""
        return cls(float(bad_rate))

    @classmethod
    def relative(
        cls,
        labels: np.ndarray,
        *,
        fraction: float = DEFAULT_TARGET_FRACTION,
        source: str = "training split",
    ) -> BadRateTarget:
        """``fraction`` of the bad rate observed in ``labels`` (1 = bad).

        Raises
        ------
        MetricsError
            If there are no labels or ``fraction`` is outside ``[0, 1]``.
        """
        y = np.asarray(labels, dtype=np.float64).ravel()
        if y.size == 0:
            raise MetricsError("no labels to derive a target bad rate from")
        observed = float(y.mean())
        if not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
            raise MetricsError(f"target fraction must be in [0, 1], got {fraction}")
        return cls(fraction * observed, fraction=float(fraction), observed=observed, source=source)

    def describe(self) -> str:
        """One line for a printed table: the rate and, for a relative target, its rule."""
        if self.fraction is None or self.observed is None:
            return f"bad rate <= {self.bad_rate:.2%} among the approved (given)"
        return (
            f"bad rate <= {self.bad_rate:.2%} among the approved ({self.fraction:g} x the "
            f"{self.source}'s bad rate, {self.observed:.2%})"
        )

    def as_dict(self) -> dict[str, float | str | None]:
        """The target for JSON reports, with its one-line description."""
        return {**asdict(self), "description": self.describe()}


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
    target
        The target bad rate the approval rate was computed at (``None`` only
        for metrics built by hand, e.g. a decrypted federation-wide mean).
    """

    auc: float
    ks: float
    brier: float
    log_loss: float
    approval_rate: float
    target: BadRateTarget | None = None

    def as_dict(self) -> dict[str, float]:
        """The five measured numbers as a plain mapping, in the order the wire uses.

        The target is a setting, not a measurement: read it from :attr:`target`.
        """
        return {
            "auc": self.auc,
            "ks": self.ks,
            "brier": self.brier,
            "log_loss": self.log_loss,
            "approval_rate": self.approval_rate,
        }


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
    y_true: np.ndarray, p_pred: np.ndarray, target_bad_rate: float
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
    y_true: np.ndarray,
    p_pred: np.ndarray,
    target_bad_rate: float | BadRateTarget | None = None,
) -> RiskMetrics:
    """Compute AUC, KS, Brier score, log loss and approval rate on a test set.

    Parameters
    ----------
    y_true
        Labels, 1 for bad.
    p_pred
        Predicted probabilities of bad.
    target_bad_rate
        Tolerated observed bad rate among approved applicants: a number, a
        :class:`BadRateTarget` (pass ``BadRateTarget.relative(y_train)`` to
        derive it from the training split, as the ClientApp does), or ``None``
        for :data:`DEFAULT_TARGET_FRACTION` of this test set's own bad rate.

    Raises
    ------
    UndefinedMetricError
        If only one class is present.
    MetricsError
        If labels or probabilities are malformed.
    """
    y, p = _checked(y_true, p_pred)
    if target_bad_rate is None:
        target = BadRateTarget.relative(y, source="test split")
    elif isinstance(target_bad_rate, BadRateTarget):
        target = target_bad_rate
    else:
        target = BadRateTarget.given(target_bad_rate)
    return RiskMetrics(
        auc=float(roc_auc_score(y, p)),
        ks=ks_statistic(y, p),
        brier=float(brier_score_loss(y, p)),
        log_loss=float(log_loss(y, p, labels=[0.0, 1.0])),
        approval_rate=approval_rate_at_bad_rate(y, p, target.bad_rate),
        target=target,
    )
