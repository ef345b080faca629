"""Population stability: has the bank's score distribution moved since the model was built?

The population stability index compares the share of applicants in each score
bin now (``a_k``) with a baseline (``e_k``)::

    PSI = sum_k (a_k - e_k) * ln(a_k / e_k)

(Siddiqi, *Credit Risk Scorecards*, 2006, ch. 8; Yurdakul, "Statistical
properties of population stability index", 2018). The customary reading: below
0.10 stable, 0.10 to 0.25 a shift worth investigating, above 0.25 a major
shift (the model should be reviewed before it is relied on).

**Which baseline.** The natural one would be the federation's score
distribution, but no party holds it: a score is a function of a whole
applicant row, and its distribution over the federation needs the joint
distribution of the features across institutions. What was aggregated is
each column's count, sum and sum of squares (the standardisation round), which
fixes per-column means and variances, not their joint law; sending score
histograms would be a new release of every institution's data, and nothing
new may cross the wire for monitoring. So the baseline is the score
distribution of **this institution's own training split under the final
model**, recorded when the model arrives (:class:`ScoreBaseline`, in
``metrics.json``): the development sample, as in the textbook practice, and
something the bank legitimately holds. Its bins are the deciles of those
scores (ties merged), so each holds about a tenth of the baseline; a share
below :data:`PSI_FLOOR` counts as the floor, so an empty bin adds a large but
finite term.

What the federation does pin down exactly, for logistic regression, is its
mean score: inputs are centred on the federation-wide mean of every
institution's training rows, and the log-odds are linear in them, so the mean
log-odds over the federation's training rows is the intercept ``b``, and the
mean score ``offset - factor * b``. :func:`federation_mean_logit` returns it;
``crossfed score`` prints the scored file's mean score beside it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from clients.errors import ModelFileError
from clients.model_file import SavedModel

__all__ = [
    "PSI_FLOOR",
    "PSI_MAJOR",
    "PSI_STABLE",
    "ScoreBaseline",
    "federation_mean_logit",
    "psi",
    "psi_reading",
]

PSI_FLOOR = 1e-4
"""Smallest bin share used in the index (an empty bin would make it infinite)."""
PSI_STABLE = 0.10
"""Below this the distribution is read as stable."""
PSI_MAJOR = 0.25
"""Above this the shift is major."""


def psi(expected: np.ndarray, actual: np.ndarray, *, floor: float = PSI_FLOOR) -> float:
    """Population stability index between two vectors of bin shares.

    Raises
    ------
    ValueError
        If the vectors differ in length or are empty.
    """
    e = np.maximum(np.asarray(expected, dtype=np.float64), floor)
    a = np.maximum(np.asarray(actual, dtype=np.float64), floor)
    if e.shape != a.shape or e.size == 0:
        raise ValueError(f"bin shares of shapes {e.shape} and {a.shape} cannot be compared")
    return float(np.sum((a - e) * np.log(a / e)))


def psi_reading(value: float) -> str:
    """The customary reading of a PSI value, in words."""
    if value < PSI_STABLE:
        return f"stable (PSI < {PSI_STABLE:g})"
    if value <= PSI_MAJOR:
        return f"some shift: investigate ({PSI_STABLE:g} <= PSI <= {PSI_MAJOR:g})"
    return f"major shift: review the model before relying on it (PSI > {PSI_MAJOR:g})"


def federation_mean_logit(model: SavedModel) -> float | None:
    """The mean log-odds over the federation's training rows (logistic only, else None).

    Exact up to the CKKS error of the summed moments: the inputs are centred on
    the federation mean, so their mean is zero and the mean log-odds is the bias.
    """
    if model.kind != "logistic":
        return None
    return float(np.asarray(model.weights[1], dtype=np.float64).ravel()[0])


@dataclass(frozen=True)
class ScoreBaseline:
    """The institution's training-time score distribution, binned, for PSI.

    Attributes
    ----------
    logit_edges
        Increasing interior bin edges on the log-odds of bad (scale-free:
        any points scale gives the same bins); ``len + 1`` bins.
    shares
        Share of the baseline rows in each bin.
    rows
        Number of baseline rows.
    source
        What the baseline is (``"training split"``).
    """

    logit_edges: tuple[float, ...]
    shares: tuple[float, ...]
    rows: int
    source: str = "training split"

    def __post_init__(self) -> None:
        if len(self.shares) != len(self.logit_edges) + 1:
            raise ModelFileError(
                f"a score baseline has one share more than edges, got "
                f"{len(self.shares)} and {len(self.logit_edges)}"
            )
        if any(b <= a for a, b in itertools.pairwise(self.logit_edges)):
            raise ModelFileError("a score baseline's edges must increase")
        if not all(math.isfinite(v) for v in (*self.logit_edges, *self.shares)):
            raise ModelFileError("a score baseline holds NaN or infinite values")

    @classmethod
    def from_logits(
        cls, logits: np.ndarray, *, bins: int = 10, source: str = "training split"
    ) -> ScoreBaseline:
        """The baseline of these log-odds: bins at their quantiles (ties merged).

        Raises
        ------
        ModelFileError
            If there are no finite log-odds.
        """
        values = np.asarray(logits, dtype=np.float64).ravel()
        if values.size == 0 or not np.isfinite(values).all():
            raise ModelFileError("a score baseline needs finite log-odds for at least one row")
        quantiles = np.linspace(0.0, 1.0, bins + 1)[1:-1]
        edges = np.unique(np.quantile(values, quantiles, method="inverted_cdf"))
        edges = edges[edges > values.min()]
        counts = np.bincount(np.searchsorted(edges, values, "right"), minlength=edges.size + 1)
        shares = tuple(float(c) for c in counts / values.size)
        return cls(tuple(float(e) for e in edges), shares, int(values.size), source)

    def shares_of(self, logits: np.ndarray) -> list[float]:
        """Share of ``logits`` in each baseline bin (``lower <= x < upper``)."""
        values = np.asarray(logits, dtype=np.float64).ravel()
        index = np.searchsorted(np.asarray(self.logit_edges, dtype=np.float64), values, "right")
        counts = np.bincount(index, minlength=len(self.shares)).astype(np.float64)
        return [float(c) for c in counts / max(values.size, 1)]

    def psi(self, logits: np.ndarray) -> float:
        """PSI of ``logits``' distribution against this baseline."""
        return psi(np.asarray(self.shares), np.asarray(self.shares_of(logits)))

    def as_dict(self) -> dict[str, Any]:
        """For ``metrics.json``."""
        return {
            "source": self.source,
            "rows": self.rows,
            "logit_edges": list(self.logit_edges),
            "shares": list(self.shares),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreBaseline:
        """Read back :meth:`as_dict`.

        Raises
        ------
        ModelFileError
            If a field is missing or malformed.
        """
        try:
            return cls(
                tuple(float(v) for v in data["logit_edges"]),
                tuple(float(v) for v in data["shares"]),
                int(data["rows"]),
                str(data.get("source", "training split")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"metrics.json's score baseline is malformed: {exc}") from exc
