"""The study's two figures, drawn with matplotlib's object API (Agg canvas, no pyplot).

- :func:`pareto_figure`: model quality (ROC AUC on the pooled test splits)
  against total first-year compliance cost, the Pareto front joined and marked,
  infeasible strategies in a band of their own (they have no price);
- :func:`uplift_figure`: per institution, AUC and approval rate at the target
  bad rate of its own local model against the federated model.

Both return PNG bytes, so the report can write them and embed them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["InstitutionPoint", "StrategyPoint", "pareto_figure", "uplift_figure"]

# Institutions beyond this are drawn as a scatter, not as grouped bars.
_MAX_BARS = 15


@dataclass(frozen=True)
class StrategyPoint:
    """A strategy as the Pareto plot sees it; ``cost`` is ``None`` when infeasible."""

    name: str
    auc: float
    cost: float | None
    on_front: bool


@dataclass(frozen=True)
class InstitutionPoint:
    """An institution's local-only and federated quality."""

    name: str
    local_auc: float | None
    federated_auc: float | None
    local_approval: float | None
    federated_approval: float | None


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def pareto_figure(points: Sequence[StrategyPoint], currency: str = "USD") -> bytes:
    """AUC against total compliance cost, with the Pareto front marked."""
    figure = Figure(figsize=(8, 5))
    ax = figure.add_subplot()
    priced = [(p, p.cost) for p in points if p.cost is not None and math.isfinite(p.cost)]
    infeasible = [p for p in points if p.cost is None or not math.isfinite(p.cost)]
    top = max((cost for _, cost in priced), default=1.0) or 1.0
    band = top * 1.25
    for p, cost in priced:
        ax.scatter(
            cost,
            p.auc,
            s=70,
            marker="o",
            color="tab:green" if p.on_front else "tab:blue",
            edgecolor="black" if p.on_front else "none",
            zorder=3,
        )
        ax.annotate(p.name, (cost, p.auc), textcoords="offset points", xytext=(6, 4))
    front = sorted(((cost, p.auc) for p, cost in priced if p.on_front), key=lambda c: c[0])
    if len(front) > 1:
        ax.step(
            [cost for cost, _ in front],
            [auc for _, auc in front],
            where="post",
            color="tab:green",
            linewidth=1.5,
            label="Pareto front",
        )
    for p in infeasible:
        ax.scatter(band, p.auc, s=70, marker="x", color="tab:red", zorder=3)
        ax.annotate(
            f"{p.name} (infeasible)",
            (band, p.auc),
            textcoords="offset points",
            xytext=(-6, -14),
            ha="right",
            color="tab:red",
        )
    if infeasible:
        ax.axvline(top * 1.12, color="grey", linestyle=":", linewidth=1)
    ax.scatter([], [], marker="o", color="tab:green", edgecolor="black", label="on the front")
    ax.scatter([], [], marker="o", color="tab:blue", label="dominated")
    if infeasible:
        ax.scatter([], [], marker="x", color="tab:red", label="infeasible: not priced")
    ax.set_xlabel(f"total first-year compliance cost ({currency})")
    ax.set_ylabel("ROC AUC, pooled test splits")
    ax.set_title("Model quality against compliance cost")
    ax.set_xlim(left=-0.03 * band, right=band * 1.08)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _png(figure)


def _bars(
    ax: Axes, points: Sequence[InstitutionPoint], local: list[float], fed: list[float]
) -> None:
    positions = list(range(len(points)))
    ax.bar([x - 0.2 for x in positions], local, width=0.4, label="local-only", color="tab:grey")
    ax.bar([x + 0.2 for x in positions], fed, width=0.4, label="federated", color="tab:green")
    ax.set_xticks(positions, [p.name for p in points], rotation=35, ha="right", fontsize="small")


def _scatter(ax: Axes, local: list[float], fed: list[float]) -> None:
    ax.scatter(local, fed, s=18, color="tab:green")
    finite = [v for v in (*local, *fed) if math.isfinite(v)] or [0.0, 1.0]
    low, high = min(finite), max(finite)
    ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1, label="no change")
    ax.set_xlabel("local-only")
    ax.set_ylabel("federated")


def uplift_figure(points: Sequence[InstitutionPoint], target_bad_rate: float) -> bytes:
    """Per-institution AUC and approval rate, local-only against federated."""
    figure = Figure(figsize=(11, 4.8))
    for index, (title, pick) in enumerate(
        (
            ("ROC AUC", lambda p: (p.local_auc, p.federated_auc)),
            (
                f"approval rate at a {target_bad_rate:.0%} bad rate",
                lambda p: (p.local_approval, p.federated_approval),
            ),
        )
    ):
        ax = figure.add_subplot(1, 2, index + 1)
        pairs = [pick(p) for p in points]
        local = [float("nan") if a is None else a for a, _ in pairs]
        fed = [float("nan") if b is None else b for _, b in pairs]
        if len(points) <= _MAX_BARS:
            _bars(ax, points, local, fed)
        else:
            _scatter(ax, local, fed)
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize="small")
    figure.suptitle("Per-institution uplift: each institution alone against the federation")
    figure.tight_layout()
    return _png(figure)
