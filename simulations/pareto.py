"""Pareto front of (model quality, compliance cost) points.

A strategy is worth showing a risk committee only if no other strategy is at least as
good on both axes and strictly better on one: higher quality (e.g. ROC AUC) and lower
cost. Infeasible strategies (cost ``None``, NaN or infinite) and points without a
quality are excluded, never ranked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["pareto_front"]


def pareto_front(points: Sequence[tuple[float | None, float | None]]) -> list[int]:
    """Indices of the non-dominated points, maximising quality and minimising cost.

    Parameters
    ----------
    points
        ``(quality, cost)`` pairs; a ``None``, NaN or infinite coordinate marks the
        point infeasible (excluded).

    Returns
    -------
    list[int]
        Indices into ``points``, in increasing order. Point ``i`` is dropped if some
        feasible ``j`` has ``quality_j >= quality_i`` and ``cost_j <= cost_i`` with at
        least one strict. Exact ties dominate neither way: duplicates are all kept.
    """
    feasible: list[tuple[int, float, float]] = []
    for i, (q, c) in enumerate(points):
        if q is not None and c is not None and math.isfinite(q) and math.isfinite(c):
            feasible.append((i, q, c))
    front = []
    for i, q, c in feasible:
        dominated = any(
            qj >= q and cj <= c and (qj > q or cj < c) for j, qj, cj in feasible if j != i
        )
        if not dominated:
            front.append(i)
    return front
