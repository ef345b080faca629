"""A points-based scorecard from the federation's logistic regression.

The model is ``logit(PD) = b + sum_i w_i (x_i - mean_i) / std_i`` over the
encoded columns. Grouping the columns by the raw characteristic they come
from (a numeric column, or every one-hot column of a categorical one) and
putting the log-odds on the points scale of :class:`~clients.scaling.ScoreScaling`
gives each characteristic its points (Siddiqi, *Credit Risk Scorecards*, 2006,
ch. 6, with the intercept and offset spread evenly over the ``n``
characteristics)::

    points_j(x) = -factor * sum_{i in j} w_i (x_i - mean_i) / std_i + (offset - factor * b) / n

and the points of all characteristics add up to the score exactly.

**Bins.** A categorical characteristic has one bin per category, and its
points are exact. A numeric characteristic is cut into at most ``max_bins``
bins at the quantiles of **this institution's own training split** (deciles
by default, ties merged), and a bin's points are the points at the mean
training value inside it. Own data, not the federation's statistics, because
the institution holds only the federation's mean and standard deviation per
column: quantiles derived from them would assume a normal distribution, which
credit amounts and durations are not (edges below zero, empty bins), while
the institution's own quantiles give bins that each hold about a tenth of its
applicants, the "fine classing" a credit team reviews. The bins shape the
table and the reason codes only; the model, identical at every institution,
is untouched, and nothing here leaves the institution. How far the binned
points stray from the exact score is measured on the test split and written
in the model card (:func:`binning_error`).

**Reason codes** (:func:`reason_codes`): for each applicant, the
characteristics whose bin earns the fewest points compared with that
characteristic's best bin, most points lost first, as adverse-action notices
state the principal reasons for a decision (US Regulation B, 12 CFR
1002.9(b)(2), asks for the specific principal reasons; its commentary finds
more than four unhelpful).

A multilayer perceptron has no scorecard: its log-odds are not a sum of one
term per characteristic (the hidden layers mix them), so points per bin that
add up to the score do not exist.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd

from clients.errors import ConfigError, ModelFileError
from clients.model_file import SavedModel
from clients.scaling import ScoreScaling
from clients.schema import FederationSchema

__all__ = [
    "DEFAULT_MAX_BINS",
    "DEFAULT_REASONS",
    "Characteristic",
    "Scorecard",
    "ScorecardBin",
    "binning_error",
    "build_scorecard",
    "characteristics",
    "exact_points",
    "reason_codes",
]

DEFAULT_MAX_BINS = 10
"""Numeric characteristics are cut at their training deciles (at most ten bins)."""
DEFAULT_REASONS = 4
"""Reason codes per applicant (Regulation B's commentary: more than four rarely helps)."""

_POINTS_TOLERANCE = 1e-6  # points lost below this are no reason at all


@dataclass(frozen=True)
class Characteristic:
    """A raw column of the schema and the encoded columns it became.

    Attributes
    ----------
    name
        The raw column.
    kind
        ``"numeric"`` or ``"categorical"``.
    columns
        Indices of its encoded columns (one for numeric, one per level).
    levels
        The categorical levels, in one-hot order (empty for numeric).
    """

    name: str
    kind: Literal["numeric", "categorical"]
    columns: tuple[int, ...]
    levels: tuple[str, ...] = ()


def characteristics(schema: FederationSchema, feature_names: Sequence[str]) -> list[Characteristic]:
    """The schema's characteristics, located in the model's encoded columns.

    Raises
    ------
    ModelFileError
        If the model's feature names are not the schema's (another federation's model).
    """
    index = {name: i for i, name in enumerate(feature_names)}
    found: list[Characteristic] = []
    expected = [c.name for c in schema.numeric]
    for column in schema.numeric:
        found.append(Characteristic(column.name, "numeric", (index.get(column.name, -1),)))
    for categorical in schema.categorical:
        names = [f"{categorical.name}={level}" for level in categorical.levels]
        expected.extend(names)
        found.append(
            Characteristic(
                categorical.name,
                "categorical",
                tuple(index.get(n, -1) for n in names),
                tuple(categorical.levels),
            )
        )
    if list(feature_names) != expected:
        raise ModelFileError(
            "the model's input columns are not the kit schema's: it was trained on another "
            "schema (compare feature_names in global_model.npz with schema.yaml)"
        )
    return found


def _linear(model: SavedModel) -> tuple[np.ndarray, float]:
    if model.kind != "logistic":
        raise ConfigError(
            "a points-based scorecard needs logistic regression: an MLP's log-odds are not "
            "a sum of one term per characteristic"
        )
    weight, bias = model.weights
    return weight.astype(np.float64).ravel(), float(np.asarray(bias, dtype=np.float64).ravel()[0])


def exact_points(
    model: SavedModel,
    found: Sequence[Characteristic],
    x: np.ndarray,
    scaling: ScoreScaling,
) -> np.ndarray:
    """Each row's exact points per characteristic, shape ``(rows, characteristics)``.

    Rows sum to the score ``scaling.score_from_logit(model.logit(x))``.
    """
    weight, bias = _linear(model)
    terms = model.standardize(x) * weight
    share = (scaling.offset - scaling.factor * bias) / len(found)
    contributions = np.stack([terms[:, list(c.columns)].sum(axis=1) for c in found], axis=1)
    return share - scaling.factor * contributions


@dataclass(frozen=True)
class ScorecardBin:
    """One row of ``scorecard.csv``.

    Attributes
    ----------
    characteristic
        The raw column.
    kind
        ``"numeric"`` or ``"categorical"``.
    label
        ``"< 12"``, ``"[12, 24)"``, ``">= 48"``, or the category.
    lower, upper
        Numeric bins: ``lower <= x < upper``; ``None`` for an open end.
    points
        The points this bin earns.
    train_share
        Share of this institution's training rows in the bin.
    train_bad_rate
        Their bad rate (NaN where the bin is empty).
    """

    characteristic: str
    kind: Literal["numeric", "categorical"]
    label: str
    lower: float | None
    upper: float | None
    points: float
    train_share: float
    train_bad_rate: float


@dataclass(frozen=True)
class Scorecard:
    """A points-based scorecard: the bins of every characteristic and their points."""

    scaling: ScoreScaling
    bins: tuple[ScorecardBin, ...]

    def bins_of(self, characteristic: str) -> list[ScorecardBin]:
        """The bins of one characteristic, in table order."""
        return [b for b in self.bins if b.characteristic == characteristic]

    @property
    def characteristic_names(self) -> list[str]:
        """Characteristics in table order."""
        return list(dict.fromkeys(b.characteristic for b in self.bins))

    def rescaled(self, to: ScoreScaling) -> Scorecard:
        """The same scorecard on another points scale (exact)."""
        n = len(self.characteristic_names)
        ratio = to.factor / self.scaling.factor
        moved = tuple(
            replace(b, points=to.offset / n + ratio * (b.points - self.scaling.offset / n))
            for b in self.bins
        )
        return Scorecard(to, moved)

    def to_frame(self) -> pd.DataFrame:
        """The table as written to ``scorecard.csv``."""
        return pd.DataFrame(
            {
                "characteristic": [b.characteristic for b in self.bins],
                "type": [b.kind for b in self.bins],
                "bin": [b.label for b in self.bins],
                "lower": [b.lower for b in self.bins],
                "upper": [b.upper for b in self.bins],
                "points": [round(b.points, 4) for b in self.bins],
                "train_share": [round(b.train_share, 6) for b in self.bins],
                "train_bad_rate": [round(b.train_bad_rate, 6) for b in self.bins],
            }
        )

    def to_csv(self) -> bytes:
        """``scorecard.csv``'s bytes."""
        return self.to_frame().to_csv(index=False).encode()

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, scaling: ScoreScaling) -> Scorecard:
        """Read back a table written by :meth:`to_frame` (all columns as text).

        Raises
        ------
        ModelFileError
            If a column is missing or a number does not parse.
        """
        needed = ("characteristic", "type", "bin", "lower", "upper", "points")
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ModelFileError(f"scorecard.csv lacks column(s) {', '.join(missing)}")
        bins = []
        for row in frame.to_dict("records"):
            kind = str(row["type"])
            if kind not in ("numeric", "categorical"):
                raise ModelFileError(f"scorecard.csv: unknown type {kind!r}")
            bins.append(
                ScorecardBin(
                    characteristic=str(row["characteristic"]),
                    kind=kind,  # type: ignore[arg-type]
                    label=str(row["bin"]),
                    lower=_number(row["lower"]),
                    upper=_number(row["upper"]),
                    points=_required(row["points"]),
                    train_share=_or(_number(row.get("train_share")), 0.0),
                    train_bad_rate=_or(_number(row.get("train_bad_rate")), math.nan),
                )
            )
        return cls(scaling, tuple(bins))

    def check_against(self, found: Sequence[Characteristic]) -> None:
        """Refuse a table whose characteristics or categories are not the schema's.

        Raises
        ------
        ModelFileError
            If they differ.
        """
        if self.characteristic_names != [c.name for c in found]:
            raise ModelFileError("scorecard.csv's characteristics are not the kit schema's")
        for c in found:
            rows = self.bins_of(c.name)
            if c.kind == "categorical" and [b.label for b in rows] != list(c.levels):
                raise ModelFileError(
                    f"scorecard.csv's categories of {c.name!r} are not the kit schema's"
                )
            if c.kind == "numeric" and any(b.kind != "numeric" for b in rows):
                raise ModelFileError(f"scorecard.csv lists {c.name!r} as categorical")

    def bin_index(self, found: Sequence[Characteristic], x: np.ndarray) -> np.ndarray:
        """For each row and characteristic, the index of its bin, shape ``(rows, chars)``."""
        matrix = np.asarray(x, dtype=np.float64)
        columns = []
        for c in found:
            if c.kind == "numeric":
                edges = [b.lower for b in self.bins_of(c.name)[1:]]
                values = matrix[:, c.columns[0]]
                columns.append(np.searchsorted(np.asarray(edges, float), values, side="right"))
            else:
                columns.append(np.argmax(matrix[:, list(c.columns)], axis=1))
        return np.stack(columns, axis=1)

    def binned_points(self, found: Sequence[Characteristic], x: np.ndarray) -> np.ndarray:
        """Each row's table points per characteristic, shape ``(rows, chars)``."""
        index = self.bin_index(found, x)
        return np.stack(
            [
                np.asarray([b.points for b in self.bins_of(c.name)])[index[:, j]]
                for j, c in enumerate(found)
            ],
            axis=1,
        )

    def best_points(self) -> np.ndarray:
        """Each characteristic's best bin's points, in table order."""
        return np.asarray(
            [max(b.points for b in self.bins_of(n)) for n in self.characteristic_names]
        )


def _number(value: object) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"scorecard.csv: {value!r} is not a number") from exc
    return None if math.isnan(number) else number


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _required(value: object) -> float:
    number = _number(value)
    if number is None or not math.isfinite(number):
        raise ModelFileError(f"scorecard.csv: points must be finite numbers, got {value!r}")
    return number


def _edges(values: np.ndarray, max_bins: int) -> list[float]:
    """Interior bin edges at the training quantiles, each an observed value."""
    if values.size == 0:
        return []
    quantiles = np.linspace(0.0, 1.0, max_bins + 1)[1:-1]
    edges = np.unique(np.quantile(values, quantiles, method="inverted_cdf"))
    return [float(e) for e in edges if e > values.min()]


def _label(lower: float | None, upper: float | None) -> str:
    if lower is None and upper is None:
        return "all values"
    if lower is None:
        return f"< {upper:g}"
    if upper is None:
        return f">= {lower:g}"
    return f"[{lower:g}, {upper:g})"


def build_scorecard(
    model: SavedModel,
    schema: FederationSchema,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    scaling: ScoreScaling | None = None,
    max_bins: int = DEFAULT_MAX_BINS,
) -> Scorecard:
    """The scorecard of a logistic regression, binned on this institution's training split.

    Parameters
    ----------
    model
        The final global model (logistic regression).
    schema
        The federation schema (characteristics and categories).
    x_train, y_train
        This institution's encoded training rows and labels: numeric bin edges
        at their quantiles, and each bin's share and bad rate.
    scaling
        The points scale; 600 points at 50:1, 20 points to double the odds by default.
    max_bins
        At most this many bins per numeric characteristic (2 to 50).

    Raises
    ------
    ConfigError
        If the model is not logistic regression or ``max_bins`` is out of range.
    ModelFileError
        If the model's columns are not the schema's.
    """
    if not 2 <= max_bins <= 50:
        raise ConfigError(f"max_bins must be in [2, 50], got {max_bins}")
    scale = scaling or ScoreScaling()
    found = characteristics(schema, model.feature_names)
    weight, bias = _linear(model)
    x = np.asarray(x_train, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64).ravel()
    share = (scale.offset - scale.factor * bias) / len(found)
    rows = max(len(y), 1)
    bins: list[ScorecardBin] = []
    for c in found:
        if c.kind == "categorical":
            cols = list(c.columns)
            w, mu, sd = weight[cols], model.mean[cols], model.std[cols]
            centre = float(np.sum(w * mu / sd))
            level_of = np.argmax(x[:, cols], axis=1) if len(y) else np.zeros(0, int)
            for k, level in enumerate(c.levels):
                inside = level_of == k
                bins.append(
                    ScorecardBin(
                        c.name, "categorical", level, None, None,
                        share - scale.factor * (float(w[k] / sd[k]) - centre),
                        float(inside.sum() / rows),
                        float(y[inside].mean()) if inside.any() else math.nan,
                    )
                )  # fmt: skip
            continue
        i = c.columns[0]
        values = x[:, i]
        edges = _edges(values, max_bins)
        slope = weight[i] / model.std[i]
        lowers: list[float | None] = [None, *edges]
        uppers: list[float | None] = [*edges, None]
        where = np.searchsorted(np.asarray(edges, float), values, side="right")
        for k, (lower, upper) in enumerate(zip(lowers, uppers, strict=True)):
            inside = where == k
            if inside.any():
                representative = float(values[inside].mean())
            elif lower is not None:  # no training row in the bin: its finite edge
                representative = lower
            else:
                representative = float(model.mean[i]) if upper is None else upper
            bins.append(
                ScorecardBin(
                    c.name, "numeric", _label(lower, upper), lower, upper,
                    share - scale.factor * slope * (representative - model.mean[i]),
                    float(inside.sum() / rows),
                    float(y[inside].mean()) if inside.any() else math.nan,
                )
            )  # fmt: skip
    return Scorecard(scale, tuple(bins))


def binning_error(
    card: Scorecard, model: SavedModel, found: Sequence[Characteristic], x: np.ndarray
) -> dict[str, float]:
    """How far the table's points stray from the exact score on rows ``x``.

    Returns
    -------
    dict
        ``max_abs_points`` and ``mean_abs_points``: the difference between the
        sum of a row's bin points and its exact score.
    """
    exact = exact_points(model, found, x, card.scaling).sum(axis=1)
    binned = card.binned_points(found, x).sum(axis=1)
    gap = np.abs(binned - exact)
    return {"max_abs_points": float(gap.max()), "mean_abs_points": float(gap.mean())}


def reason_codes(
    points: np.ndarray, best: np.ndarray, names: Sequence[str], top: int = DEFAULT_REASONS
) -> tuple[list[list[str]], np.ndarray]:
    """The characteristics that cost each row the most points, most first.

    Parameters
    ----------
    points
        Each row's points per characteristic, ``(rows, chars)``.
    best
        The reference each characteristic is measured against (its best bin's
        points, or the federation-average applicant's for attributions).
    names
        Characteristic names.
    top
        At most this many reasons per row; a characteristic that lost no
        points is never a reason.

    Returns
    -------
    reasons, lost
        Per row, up to ``top`` names; and the points each of them lost,
        ``(rows, top)``, NaN where there are fewer reasons.
    """
    if top < 1:
        raise ConfigError(f"ask for at least one reason code, got {top}")
    lost = np.asarray(best, dtype=np.float64)[None, :] - np.asarray(points, dtype=np.float64)
    order = np.argsort(-lost, axis=1, kind="stable")[:, :top]
    taken = np.take_along_axis(lost, order, axis=1)
    reasons: list[list[str]] = []
    amounts = np.full((lost.shape[0], top), np.nan)
    for r in range(lost.shape[0]):
        keep = taken[r] > _POINTS_TOLERANCE
        reasons.append([names[j] for j in order[r][keep]])
        amounts[r, : int(keep.sum())] = taken[r][keep]
    return reasons, amounts
