"""Scores in points, and risk bands: how a credit team reads a probability of default.

A score is a linear function of the log-odds of being good (Siddiqi, *Credit
Risk Scorecards*, Wiley 2006, ch. 6)::

    score = offset + factor * ln(odds),   odds = (1 - PD) / PD
    factor = PDO / ln 2,                  offset = base_score - factor * ln(base_odds)

so the score is ``base_score`` where the odds of good are ``base_odds`` to 1,
and every ``PDO`` ("points to double the odds") points double them. The
defaults, 600 points at 50:1 odds with 20 points to double the odds, are the
convention most scorecard textbooks and vendors print; nothing in the model
depends on them, and :meth:`ScoreScaling.rescale` converts between scalings
exactly.

Bands group scores into grades by probability of default (a "master scale"),
so a grade means the same risk whatever the scaling: the default cut-offs,
PD below 2 %, 5 %, 10 % and 20 %, give grades A to E.
"""

from __future__ import annotations

import itertools
import math
import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clients.errors import ConfigError

__all__ = [
    "DEFAULT_BAND_EDGES",
    "DEFAULT_BASE_ODDS",
    "DEFAULT_BASE_SCORE",
    "DEFAULT_PDO",
    "RiskBands",
    "ScoreScaling",
]

DEFAULT_PDO = 20.0
"""Points to double the odds of good."""
DEFAULT_BASE_SCORE = 600.0
"""Score at the base odds."""
DEFAULT_BASE_ODDS = 50.0
"""Odds of good to bad (50:1, a PD of about 1.96 %) at the base score."""
DEFAULT_BAND_EDGES = (0.02, 0.05, 0.10, 0.20)
"""Upper PD of bands A to D; band E holds every PD from 20 % up."""

_MAX_LOGIT = 36.0  # PD clipped to [~2.3e-16, 1 - 2.3e-16]: finite scores for 0 and 1


@dataclass(frozen=True)
class ScoreScaling:
    """The points scale: ``base_score`` at ``base_odds``:1, ``pdo`` points to double the odds.

    Raises
    ------
    ConfigError
        If ``pdo`` or ``base_odds`` is not positive, or a value is not finite.
    """

    pdo: float = DEFAULT_PDO
    base_score: float = DEFAULT_BASE_SCORE
    base_odds: float = DEFAULT_BASE_ODDS

    def __post_init__(self) -> None:
        values = (self.pdo, self.base_score, self.base_odds)
        if not all(math.isfinite(v) for v in values):
            raise ConfigError(f"score scaling needs finite numbers, got {values}")
        if self.pdo <= 0:
            raise ConfigError(f"points to double the odds must be positive, got {self.pdo}")
        if self.base_odds <= 0:
            raise ConfigError(f"base odds must be positive, got {self.base_odds}")

    @property
    def factor(self) -> float:
        """Points per unit of log-odds of good: ``pdo / ln 2``."""
        return self.pdo / math.log(2.0)

    @property
    def offset(self) -> float:
        """The score at even odds (log-odds 0): ``base_score - factor * ln(base_odds)``."""
        return self.base_score - self.factor * math.log(self.base_odds)

    def score_from_logit(self, logit_bad: np.ndarray | float) -> np.ndarray:
        """Scores from the model's log-odds of BAD (higher score, lower risk)."""
        z = np.clip(np.asarray(logit_bad, dtype=np.float64), -_MAX_LOGIT, _MAX_LOGIT)
        return self.offset - self.factor * z

    def score_from_pd(self, pd_bad: np.ndarray | float) -> np.ndarray:
        """Scores from probabilities of default."""
        p = np.clip(np.asarray(pd_bad, dtype=np.float64), 1e-300, 1.0 - 1e-16)
        return self.score_from_logit(np.log(p) - np.log1p(-p))

    def pd_from_score(self, score: np.ndarray | float) -> np.ndarray:
        """Probabilities of default from scores (the inverse of :meth:`score_from_pd`)."""
        logit_bad = (self.offset - np.asarray(score, dtype=np.float64)) / self.factor
        return 1.0 / (1.0 + np.exp(-logit_bad))

    def rescale(self, points: np.ndarray | float, to: ScoreScaling) -> np.ndarray:
        """The same scores on another scale (exact: both are linear in the log-odds)."""
        logit_bad = (self.offset - np.asarray(points, dtype=np.float64)) / self.factor
        return to.score_from_logit(logit_bad)

    def as_dict(self) -> dict[str, float]:
        """The scale for ``metrics.json``, with the derived factor and offset."""
        return {
            "pdo": self.pdo,
            "base_score": self.base_score,
            "base_odds": self.base_odds,
            "factor": self.factor,
            "offset": self.offset,
        }

    def describe(self) -> str:
        """One line: the scale in words."""
        return (
            f"{self.base_score:g} points at {self.base_odds:g}:1 odds of good, "
            f"{self.pdo:g} points to double the odds"
        )


@dataclass(frozen=True)
class RiskBands:
    """Grades by probability of default: band ``i`` holds PDs in ``[edge[i-1], edge[i])``.

    Attributes
    ----------
    pd_edges
        Increasing PD cut-offs strictly between 0 and 1; ``len(pd_edges) + 1``
        bands, named A, B, C, ... from the safest.

    Raises
    ------
    ConfigError
        If the edges are not increasing, not in ``(0, 1)``, or more than 25.
    """

    pd_edges: tuple[float, ...] = DEFAULT_BAND_EDGES

    def __post_init__(self) -> None:
        edges = self.pd_edges
        if not edges or len(edges) > 25:
            raise ConfigError(f"give 1 to 25 band edges, got {len(edges)}")
        if not all(math.isfinite(e) and 0.0 < e < 1.0 for e in edges):
            raise ConfigError(f"band edges are probabilities in (0, 1), got {list(edges)}")
        if any(b <= a for a, b in itertools.pairwise(edges)):
            raise ConfigError(f"band edges must increase, got {list(edges)}")

    @classmethod
    def parse(cls, text: str | Sequence[float]) -> RiskBands:
        """Bands from ``"0.02,0.05,0.1,0.2"`` or a sequence of PDs.

        Raises
        ------
        ConfigError
            If a value is not a number or the edges are invalid.
        """
        if isinstance(text, str):
            try:
                values = tuple(float(v) for v in text.split(",") if v.strip())
            except ValueError as exc:
                raise ConfigError(f"band edges are comma-separated PDs, got {text!r}") from exc
        else:
            values = tuple(float(v) for v in text)
        return cls(values)

    @property
    def names(self) -> tuple[str, ...]:
        """Band names, safest first."""
        return tuple(string.ascii_uppercase[: len(self.pd_edges) + 1])

    def assign(self, pd_bad: np.ndarray) -> np.ndarray:
        """The band name of each probability of default."""
        index = np.searchsorted(np.asarray(self.pd_edges), np.asarray(pd_bad), side="right")
        return np.asarray(self.names, dtype=object)[index]

    def table(self, scaling: ScoreScaling) -> list[dict[str, object]]:
        """Each band's PD range and the score range it corresponds to on ``scaling``."""
        rows: list[dict[str, object]] = []
        lows = (0.0, *self.pd_edges)
        highs = (*self.pd_edges, 1.0)
        for name, low, high in zip(self.names, lows, highs, strict=True):
            rows.append(
                {
                    "band": name,
                    "pd_from": low,
                    "pd_to": high,
                    "score_above": None if high >= 1.0 else float(scaling.score_from_pd(high)),
                    "score_up_to": None if low <= 0.0 else float(scaling.score_from_pd(low)),
                }
            )
        return rows

    def describe(self, scaling: ScoreScaling) -> str:
        """One line per band: its PD range and score range."""
        lines = []
        for row in self.table(scaling):
            above, up_to = row["score_above"], row["score_up_to"]
            scores = (
                f"score > {above:.1f}" if up_to is None else
                f"score <= {up_to:.1f}" if above is None else
                f"{above:.1f} < score <= {up_to:.1f}"
            )  # fmt: skip
            lines.append(f"{row['band']}: PD {row['pd_from']:.0%} to {row['pd_to']:.0%} ({scores})")
        return "; ".join(lines)
