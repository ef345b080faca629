"""Types and helpers shared by the synthetic cross-border data generators.

The generators model a federation of financial institutions, each in one jurisdiction,
each holding its own table. This module holds what every generator needs: the
jurisdiction codes, the institution specification and result types, the quantity-skew
allocation of rows to institutions, and the intercept calibration that pins each
jurisdiction's base rate.

Randomness is an input: every function that draws takes a ``numpy.random.Generator``;
nothing here touches the global ``np.random`` state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from simulations.errors import GeneratorError

__all__ = [
    "JURISDICTIONS",
    "MIN_ROWS_PER_INSTITUTION",
    "GeneratedFederation",
    "GeneratorDef",
    "InstitutionData",
    "InstitutionSpec",
    "allocate_rows",
    "calibrate_intercept",
    "default_institutions",
    "draw_category",
    "sigmoid",
    "standardise",
    "zipf_weights",
]

#: Jurisdiction codes the generators (and the shipped compliance profiles) know.
JURISDICTIONS: tuple[str, ...] = ("BR", "CN", "EU", "ID", "IN", "SG", "US")

#: Minimum rows any institution receives, so that even the smallest lender has a table
#: to train on. Rare-label generators may still give a tiny lender few positives.
MIN_ROWS_PER_INSTITUTION = 50

# A realistic default mix, largest first: a few large banks, then smaller lenders.
_DEFAULT_MIX: tuple[tuple[str, str], ...] = (
    ("eu-universal-bank", "EU"),
    ("us-card-bank", "US"),
    ("cn-platform-lender", "CN"),
    ("sg-digital-bank", "SG"),
    ("br-fintech-lender", "BR"),
    ("in-nbfc", "IN"),
    ("id-p2p-lender", "ID"),
)


@dataclass(frozen=True)
class InstitutionSpec:
    """One institution of a federation, before data is generated.

    Parameters
    ----------
    name
        Unique name of the institution, used as its identifier everywhere.
    jurisdiction
        Code of the jurisdiction it is regulated in, one of :data:`JURISDICTIONS`.
    size_weight
        Relative size; rows are split in proportion to these weights.
    """

    name: str
    jurisdiction: str
    size_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.jurisdiction not in JURISDICTIONS:
            raise GeneratorError(
                f"unknown jurisdiction {self.jurisdiction!r} for institution {self.name!r}; "
                f"known: {', '.join(JURISDICTIONS)}"
            )
        if not self.size_weight > 0:
            raise GeneratorError(f"size_weight of {self.name!r} must be positive")


@dataclass(frozen=True)
class InstitutionData:
    """One institution's generated table.

    Parameters
    ----------
    name
        The institution's name.
    jurisdiction
        Its jurisdiction code.
    frame
        Its rows: the feature columns and the target column.
    """

    name: str
    jurisdiction: str
    frame: pd.DataFrame


@dataclass(frozen=True)
class GeneratedFederation:
    """A generated federation: one table per institution plus the shared schema.

    Attributes
    ----------
    name
        The generator that produced it (``"sme-credit"`` or ``"payment-fraud"``).
    seed
        The seed it was generated from.
    institutions
        One :class:`InstitutionData` per institution, in the order requested.
    target
        Name of the label column.
    positive, negative
        The label values: ``positive`` is the event a risk model scores (a default,
        a fraud).
    numeric_columns
        Numeric feature columns, in a fixed order.
    categorical_columns
        Categorical feature columns, each with its fixed, sorted category list, so that
        every institution one-hot encodes identically.
    """

    name: str
    seed: int
    institutions: list[InstitutionData]
    target: str
    positive: str
    negative: str
    numeric_columns: list[str]
    categorical_columns: dict[str, list[str]] = field(default_factory=dict)

    @property
    def feature_columns(self) -> list[str]:
        """Numeric then categorical feature columns."""
        return [*self.numeric_columns, *self.categorical_columns]

    def pooled(self) -> pd.DataFrame:
        """All institutions' rows in one frame, with ``institution`` and ``jurisdiction``.

        This is what the centralized (pooling) strategy trains on.
        """
        frames = [
            d.frame.assign(institution=d.name, jurisdiction=d.jurisdiction)
            for d in self.institutions
        ]
        return pd.concat(frames, ignore_index=True)


#: Samples ``n`` rows for an institution in a jurisdiction with the given generator.
SampleFn = Callable[[str, int, np.random.Generator], pd.DataFrame]


@dataclass(frozen=True)
class GeneratorDef:
    """What a generator module registers: its schema and its row sampler."""

    name: str
    target: str
    positive: str
    negative: str
    numeric_columns: tuple[str, ...]
    categorical_columns: dict[str, tuple[str, ...]]
    sample: SampleFn


def zipf_weights(n: int, exponent: float = 1.4) -> list[float]:
    """Zipf-like size weights ``1 / rank**exponent`` for ``n`` institutions.

    With the default exponent the largest of seven institutions is about fifteen times
    the smallest: a few large banks, a long tail of small lenders.
    """
    return [1.0 / (rank**exponent) for rank in range(1, n + 1)]


def default_institutions(n: int = 7) -> list[InstitutionSpec]:
    """A realistic default federation of ``n`` institutions across the jurisdictions.

    The first seven cover the seven jurisdictions once each, largest first (an EU
    universal bank down to an Indonesian peer-to-peer lender); beyond seven the mix
    repeats with a numeric suffix. Sizes follow :func:`zipf_weights`.

    Parameters
    ----------
    n
        Number of institutions, at least 1.
    """
    if n < 1:
        raise GeneratorError("a federation needs at least one institution")
    specs = []
    for i, weight in enumerate(zipf_weights(n)):
        base, jurisdiction = _DEFAULT_MIX[i % len(_DEFAULT_MIX)]
        name = base if i < len(_DEFAULT_MIX) else f"{base}-{i // len(_DEFAULT_MIX) + 1}"
        specs.append(InstitutionSpec(name, jurisdiction, weight))
    return specs


def allocate_rows(weights: Sequence[float], total_rows: int) -> list[int]:
    """Split ``total_rows`` in proportion to ``weights`` (largest remainder method).

    Every institution gets at least :data:`MIN_ROWS_PER_INSTITUTION` rows; the counts sum
    exactly to ``total_rows``.
    """
    n = len(weights)
    floor = MIN_ROWS_PER_INSTITUTION
    if total_rows < n * floor:
        raise GeneratorError(
            f"total_rows={total_rows} is too small for {n} institutions (need at least {n * floor})"
        )
    w = np.asarray(weights, dtype=float)
    share = w / w.sum() * (total_rows - n * floor)
    counts = np.floor(share).astype(int)
    remainder = share - counts
    short = (total_rows - n * floor) - int(counts.sum())
    # Stable order: ties broken by position, so the split is deterministic.
    for idx in np.argsort(-remainder, kind="stable")[:short]:
        counts[idx] += 1
    return [int(c) + floor for c in counts]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, elementwise."""
    return 1.0 / (1.0 + np.exp(-x))


def calibrate_intercept(logits: np.ndarray, base_rate: float) -> float:
    """Intercept ``b`` such that ``mean(sigmoid(logits + b)) == base_rate``.

    Solved by bisection (the mean is monotone in ``b``), so a jurisdiction's expected
    positive rate equals its configured base rate whatever its feature shift.
    """
    if not 0.0 < base_rate < 1.0:
        raise GeneratorError(f"base rate must lie in (0, 1), got {base_rate}")
    lo, hi = -40.0, 40.0
    for _ in range(80):
        mid = (lo + hi) / 2.0
        if float(np.mean(sigmoid(logits + mid))) < base_rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def draw_category(
    rng: np.random.Generator, categories: Sequence[str], probs: Sequence[float], n: int
) -> np.ndarray:
    """Draw ``n`` labels from ``categories`` with (unnormalised) probabilities ``probs``."""
    p = np.asarray(probs, dtype=float)
    return rng.choice(np.asarray(categories, dtype=object), size=n, p=p / p.sum())


def standardise(x: np.ndarray, centre: float, scale: float) -> np.ndarray:
    """``(x - centre) / scale`` with fixed, population-level centre and scale.

    Fixed constants (not the sample's own mean) keep the jurisdictions' feature shifts
    visible to the label model.
    """
    return (x - centre) / scale
