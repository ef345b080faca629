"""Uncertainty: each strategy's cost distribution, the 40 % claim's probability, a tornado.

The motivating paper claims that privacy computing cut compliance cost by about 40 %.
No source supports the figure (``REGULATION.md`` §10), so it is never an input: it is
a question this module answers under the stated assumptions. :func:`run_monte_carlo`

- draws every ranged number (triangular on ``[low, high]``, mode at the base value)
  and every unsettled flag (Bernoulli with its probability) ``draws`` times from a
  seeded :func:`numpy.random.default_rng` — the same draws price every strategy,
  so differences between strategies are paired;
- reports each strategy's 5th, 50th and 95th percentile over the draws where it is
  feasible, and the share of draws where it is;
- computes the saving of the candidate (encrypted FedAvg) against the baseline
  (plaintext FedAvg), ``1 - cost(candidate) / cost(baseline)``, and the probability
  that it reaches the claimed 40 %;
- builds a tornado: each ranged number moved to its low and its high end (each
  unsettled flag answered no and yes), the others at base, and the saving at each
  end; bars sorted by how far they move it.

The seed is not secret: it makes a report reproducible (numpy generators are fine
here, never for keys or masks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from simulations.compliance.model import CostModel, Evaluation
from simulations.compliance.parameters import Registry, Values

__all__ = [
    "CLAIM",
    "DEFAULT_DRAWS",
    "Comparison",
    "MonteCarloResult",
    "Quantiles",
    "TornadoBar",
    "run_monte_carlo",
    "saving",
]

#: The claimed saving of privacy computing (unverified; REGULATION.md §10).
CLAIM = 0.40

#: Draws by default: a few seconds for a study's strategies.
DEFAULT_DRAWS = 2000


@dataclass(frozen=True)
class Quantiles:
    """Percentiles of a distribution over the draws where it is defined."""

    p5: float | None
    p50: float | None
    p95: float | None
    mean: float | None
    defined_share: float

    @classmethod
    def of(cls, sample: np.ndarray) -> Quantiles:
        """Quantiles of the finite entries of ``sample``."""
        finite = sample[np.isfinite(sample)]
        share = float(finite.size / sample.size) if sample.size else 0.0
        if finite.size == 0:
            return cls(None, None, None, None, share)
        p5, p50, p95 = (float(x) for x in np.percentile(finite, [5, 50, 95]))
        return cls(p5, p50, p95, float(finite.mean()), share)


@dataclass(frozen=True)
class TornadoBar:
    """One number (or flag) moved to each end; the saving at each end."""

    id: str
    unit: str
    kind: str
    base: float
    low: float
    high: float
    saving_at_low: float | None
    saving_at_high: float | None

    @property
    def swing(self) -> float:
        """How far the bar moves the saving (0 when either end is undefined)."""
        if self.saving_at_low is None or self.saving_at_high is None:
            return 0.0
        return abs(self.saving_at_high - self.saving_at_low)


@dataclass(frozen=True)
class Comparison:
    """The saving of ``candidate`` against ``baseline``: base case and distribution.

    ``legal_*`` repeat the figures on the legal parts alone (transfer mechanisms and
    residual risk, without the operational part and its technology lines), the
    narrower reading of "compliance cost".
    """

    baseline: str
    candidate: str
    saving: Quantiles
    saving_base: float | None
    p_saves_claim: float | None
    legal_saving: Quantiles
    legal_saving_base: float | None
    legal_p_saves_claim: float | None


@dataclass(frozen=True)
class MonteCarloResult:
    """The Monte Carlo's outputs (see the module docstring).

    ``comparisons[0]`` is the headline (encrypted against plaintext FedAvg), whose
    probability of a 40 % saving is ``p_he_saves_40pct`` and whose tornado is
    ``tornado``; a comparison whose strategies the study lacks is left out.
    """

    draws: int
    seed: int
    strategies: dict[str, Quantiles]
    comparisons: tuple[Comparison, ...]
    tornado: tuple[TornadoBar, ...]
    claim: float = CLAIM

    @property
    def headline(self) -> Comparison | None:
        """The first comparison, if any."""
        return self.comparisons[0] if self.comparisons else None

    @property
    def p_he_saves_40pct(self) -> float | None:
        """Probability that the headline candidate saves at least :data:`CLAIM`."""
        return self.headline.p_saves_claim if self.headline else None


def saving(candidate: Evaluation, baseline: Evaluation, *, legal: bool = False) -> np.ndarray:
    """``1 - candidate / baseline`` per column; ``nan`` where either is infeasible or free.

    ``legal`` compares transfer plus residual risk only (no operational part).
    """
    if legal:
        base = np.where(baseline.feasible, baseline.transfer + baseline.risk, np.nan)
        cand = np.where(candidate.feasible, candidate.transfer + candidate.risk, np.nan)
    else:
        base, cand = baseline.total, candidate.total
    ok = np.isfinite(base) & np.isfinite(cand) & (base > 0)
    out = np.full(base.shape, np.nan)
    out[ok] = 1.0 - cand[ok] / base[ok]
    return out


def _value(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def _tornado(
    candidate: CostModel, baseline: CostModel, registry: Registry, used: set[str]
) -> tuple[TornadoBar, ...]:
    values, swings = registry.swings(used)
    if not swings:
        return ()
    moved = saving(candidate.evaluate(values), baseline.evaluate(values))
    bars = []
    for index, swing in enumerate(swings):
        if swing.is_flag:
            fp = registry.flags[swing.id]
            unit, kind, base = "answer (no/yes)", "flag", float(fp.flag.value)
        else:
            p = registry.parameters[swing.id]
            unit, kind, base = p.unit, p.kind, p.value.value
        bars.append(
            TornadoBar(
                id=swing.id,
                unit=unit,
                kind=kind,
                base=base,
                low=swing.low,
                high=swing.high,
                saving_at_low=_value(moved[2 * index]),
                saving_at_high=_value(moved[2 * index + 1]),
            )
        )
    bars = [b for b in bars if b.swing > 0]
    return tuple(sorted(bars, key=lambda b: (-b.swing, b.id)))


def run_monte_carlo(
    models: Mapping[str, CostModel],
    registry: Registry,
    *,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    comparisons: Sequence[tuple[str, str]] = (("fedavg", "he-fedavg"),),
) -> MonteCarloResult:
    """Cost distributions of ``models`` (by report name), savings and the headline's tornado.

    ``comparisons`` are ``(baseline, candidate)`` pairs of model names; the first whose
    models exist is the headline (the 40 % question, the tornado).
    """
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    rng = np.random.default_rng(seed)
    drawn: Values = registry.draw(rng, draws)
    evaluations = {name: model.evaluate(drawn) for name, model in models.items()}
    strategies = {name: Quantiles.of(ev.total) for name, ev in evaluations.items()}
    base_values = registry.base()
    at_base = {name: model.evaluate(base_values) for name, model in models.items()}
    results = []
    for baseline, candidate in comparisons:
        if baseline not in models or candidate not in models:
            continue
        figures = []
        for legal in (False, True):
            drawn_saving = saving(evaluations[candidate], evaluations[baseline], legal=legal)
            defined = drawn_saving[np.isfinite(drawn_saving)]
            base_saving = saving(at_base[candidate], at_base[baseline], legal=legal)
            figures.append(
                (
                    Quantiles.of(drawn_saving),
                    _value(base_saving[0]),
                    float(np.mean(defined >= CLAIM)) if defined.size else None,
                )
            )
        (all_q, all_base, all_p), (legal_q, legal_base, legal_p) = figures
        results.append(
            Comparison(baseline, candidate, all_q, all_base, all_p, legal_q, legal_base, legal_p)
        )
    tornado: tuple[TornadoBar, ...] = ()
    if results:
        head = results[0]
        tornado = _tornado(
            models[head.candidate], models[head.baseline], registry, set(base_values.used)
        )
    return MonteCarloResult(draws, seed, strategies, tuple(results), tornado)
