"""The study's figures, drawn with matplotlib's object API (Agg canvas, no pyplot).

- :func:`pareto_figure`: model quality (ROC AUC on the pooled test splits)
  against total compliance cost over the horizon, the Pareto front joined and
  marked, infeasible strategies in a band of their own (they have no price);
- :func:`uplift_figure`: per institution, AUC and approval rate at the target
  bad rate of its own local model, the federated model and its personalised one;
- :func:`tornado_figure`: the assumptions that move encrypted FedAvg's saving
  against plaintext FedAvg most, each bar from its low to its high end, with the
  base case and the claimed 40 % marked.

All return PNG bytes, so the report can write them and embed them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "InstitutionPoint",
    "StrategyPoint",
    "TornadoPoint",
    "pareto_figure",
    "tornado_figure",
    "uplift_figure",
]

# Institutions beyond this are drawn as a scatter, not as grouped bars.
_MAX_BARS = 15

# Tornado bars drawn (the full list is in results.json).
_TORNADO_BARS = 15


@dataclass(frozen=True)
class StrategyPoint:
    """A strategy as the Pareto plot sees it; ``cost`` is ``None`` when infeasible."""

    name: str
    auc: float
    cost: float | None
    on_front: bool


@dataclass(frozen=True)
class TornadoPoint:
    """One tornado bar: an input's low and high end, and the saving (a fraction) at each."""

    label: str
    low: float
    high: float
    saving_at_low: float | None
    saving_at_high: float | None


@dataclass(frozen=True)
class InstitutionPoint:
    """An institution's local-only, federated and personalised quality."""

    name: str
    local_auc: float | None
    federated_auc: float | None
    local_approval: float | None
    federated_approval: float | None
    personalised_auc: float | None = None
    personalised_approval: float | None = None


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def pareto_figure(points: Sequence[StrategyPoint], currency: str = "USD", years: int = 1) -> bytes:
    """AUC against total compliance cost over ``years``, with the Pareto front marked."""
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
    horizon = "first-year" if years == 1 else f"{years}-year"
    ax.set_xlabel(f"total {horizon} compliance cost ({currency})")
    ax.set_ylabel("ROC AUC, pooled test splits")
    ax.set_title("Model quality against compliance cost")
    ax.set_xlim(left=-0.03 * band, right=band * 1.08)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _png(figure)


def _bars(ax: Axes, points: Sequence[InstitutionPoint], series: Sequence[list[float]]) -> None:
    positions = list(range(len(points)))
    width = 0.8 / len(series)
    styles = (("local-only", "tab:grey"), ("federated", "tab:green"), ("personalised", "tab:blue"))
    for index, (values, (label, color)) in enumerate(zip(series, styles, strict=False)):
        offset = (index - (len(series) - 1) / 2) * width
        ax.bar([x + offset for x in positions], values, width=width, label=label, color=color)
    ax.set_xticks(positions, [p.name for p in points], rotation=35, ha="right", fontsize="small")


def _scatter(ax: Axes, local: list[float], fed: list[float]) -> None:
    ax.scatter(local, fed, s=18, color="tab:green")
    finite = [v for v in (*local, *fed) if math.isfinite(v)] or [0.0, 1.0]
    low, high = min(finite), max(finite)
    ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1, label="no change")
    ax.set_xlabel("local-only")
    ax.set_ylabel("federated")


def uplift_figure(points: Sequence[InstitutionPoint], target_bad_rate: float | None) -> bytes:
    """Per-institution AUC and approval rate: local-only, federated and personalised.

    ``target_bad_rate`` None: each institution's approval rate is at half its training
    split's bad rate (the simulation's default).
    """
    figure = Figure(figsize=(11, 4.8))
    at = (
        "half the training bad rate"
        if target_bad_rate is None
        else f"a {target_bad_rate:.0%} bad rate"
    )
    for index, (title, pick) in enumerate(
        (
            ("ROC AUC", lambda p: (p.local_auc, p.federated_auc, p.personalised_auc)),
            (
                f"approval rate at {at}",
                lambda p: (p.local_approval, p.federated_approval, p.personalised_approval),
            ),
        )
    ):
        ax = figure.add_subplot(1, 2, index + 1)
        triples = [pick(p) for p in points]
        series = [
            [float("nan") if v is None else v for v in (t[i] for t in triples)] for i in range(3)
        ]
        if all(v != v for v in series[2]):
            series = series[:2]  # no personalised models in this study
        if len(points) <= _MAX_BARS:
            _bars(ax, points, series)
        else:
            _scatter(ax, series[0], series[1])
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize="small")
    figure.suptitle("Per-institution uplift: alone, the federated model, and personalised")
    figure.tight_layout()
    return _png(figure)


def _short(value: float, flag: bool) -> str:
    if flag:
        return "yes" if value else "no"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def tornado_figure(
    points: Sequence[TornadoPoint], base: float | None, title: str, claim: float = 0.4
) -> bytes:
    """Horizontal bars of the saving (in %) at each input's low and high end.

    The widest bars are on top; the base-case saving is a vertical line and the
    claimed saving a dashed one. With no bars (a study without both FedAvg
    strategies), the figure says so.
    """
    shown = [p for p in points if p.saving_at_low is not None and p.saving_at_high is not None]
    shown = shown[:_TORNADO_BARS]
    figure = Figure(figsize=(10, 0.42 * max(len(shown), 4) + 1.6))
    ax = figure.add_subplot()
    if not shown or base is None:
        ax.text(0.5, 0.5, "no saving to show (a strategy is missing or infeasible)", ha="center")
        ax.set_axis_off()
        return _png(figure)
    ends = [100.0 * float(v or 0.0) for p in shown for v in (p.saving_at_low, p.saving_at_high)]
    ends += [100.0 * base, 100.0 * claim]
    span = max(ends) - min(ends) or 1.0
    ax.set_xlim(min(ends) - 0.18 * span, max(ends) + 0.18 * span)
    for row, point in enumerate(reversed(shown)):
        flag = ".flags." in point.label
        low = 100.0 * float(point.saving_at_low or 0.0)
        high = 100.0 * float(point.saving_at_high or 0.0)
        left = min(low, high)
        ax.barh(row, abs(high - low), left=left, color="tab:blue", alpha=0.75, height=0.6)
        ax.annotate(
            _short(point.low, flag),
            (low, row),
            textcoords="offset points",
            xytext=(-3 if low <= high else 3, -3),
            ha="right" if low <= high else "left",
            fontsize="x-small",
            color="dimgrey",
        )
        ax.annotate(
            _short(point.high, flag),
            (high, row),
            textcoords="offset points",
            xytext=(3 if high >= low else -3, -3),
            ha="left" if high >= low else "right",
            fontsize="x-small",
            color="dimgrey",
        )
    ax.set_yticks(range(len(shown)), [p.label for p in reversed(shown)], fontsize="small")
    ax.axvline(100.0 * base, color="black", linewidth=1.2, label=f"base case {100 * base:.0f} %")
    ax.axvline(100.0 * claim, color="tab:red", linestyle="--", label=f"claimed {100 * claim:.0f} %")
    ax.set_xlabel("saving in total compliance cost (%), each input at its low and high end")
    ax.set_title(f"What moves the saving most: {title}")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(loc="lower right", fontsize="small")
    return _png(figure)
