"""Sensitivity to the unsettled legal questions: all at once, and jurisdiction by jurisdiction.

Whether model updates are personal data, and whether encryption takes them out of
scope, are open questions (``REGULATION.md``); a report should not rest on one answer.

- :func:`sensitivity` prices a strategy under the four combinations of answers to
  the two questions, applied to every jurisdiction whose profile leaves them open;
- :func:`jurisdiction_sweep` flips one flag of one jurisdiction at a time (including
  extra flags such as the US financial-services exemption).

A profile that marks a question *settled* (PIPL Arts 4/73; 28 CFR §202.206) keeps its
answer in every column. Residual risk moves with the answers, consistently with
the transfer cost: a flow that is not personal data under an answer needs no
mechanism and carries no transfer risk.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np
import pandas as pd

from simulations.compliance.costs import ComplianceCost, FlagOverrides
from simulations.compliance.model import CostModel
from simulations.compliance.parameters import Registry

__all__ = [
    "SensitivityRow",
    "SweepRow",
    "jurisdiction_sweep",
    "sensitivity",
    "sensitivity_table",
    "sweep_table",
]


@dataclass(frozen=True)
class SensitivityRow:
    """The cost of a strategy under one answer to each unsettled question."""

    updates_are_personal_data: bool
    encryption_exits_scope: bool
    cost: ComplianceCost


@dataclass(frozen=True)
class SweepRow:
    """A strategy's cost with one jurisdiction's flag answered one way, the rest as profiled.

    ``applied`` is the answer the model used: a settled flag keeps its own.
    """

    strategy: str
    jurisdiction: str
    flag: str
    answer: bool
    applied: bool
    settled: bool
    feasible: bool
    transfer_usd: float | None
    residual_risk_usd: float | None
    operational_usd: float
    total_usd: float | None


def sensitivity(model: CostModel, registry: Registry) -> list[SensitivityRow]:
    """Price ``model`` under each of the four answers to the two unsettled flags.

    Rows come in a fixed order: (False, False), (False, True), (True, False),
    (True, True) for (``updates_are_personal_data``, ``encryption_exits_scope``).
    """
    rows = []
    for personal, exits in product((False, True), repeat=2):
        answers = FlagOverrides(personal, exits).answers(model.profiles)
        cost = model.cost(registry.base(flags=answers), registry)
        rows.append(SensitivityRow(personal, exits, cost))
    return rows


def _number(values: np.ndarray, index: int, feasible: bool) -> float | None:
    return float(values[index]) if feasible else None


def jurisdiction_sweep(model: CostModel, registry: Registry) -> list[SweepRow]:
    """One row per (jurisdiction in play, flag, answer), priced in one vectorised pass."""
    codes = sorted({p.jurisdiction for p in model.parties} | {model.hub})
    cases = [
        (code, name, answer)
        for code in codes
        for name in model.profiles[code].flags
        for answer in (False, True)
    ]
    if not cases:
        return []
    values = registry.base(len(cases))
    for column, (code, name, answer) in enumerate(cases):
        key = f"{code}.flags.{name}"
        if not registry.flags[key].flag.settled:
            values.flag(key)[column] = answer
    ev = model.evaluate(values)
    rows = []
    for column, (code, name, answer) in enumerate(cases):
        key = f"{code}.flags.{name}"
        flag = registry.flags[key].flag
        feasible = bool(ev.feasible[column])
        rows.append(
            SweepRow(
                strategy=model.strategy,
                jurisdiction=code,
                flag=name,
                answer=answer,
                applied=bool(values.flag(key)[column]),
                settled=flag.settled,
                feasible=feasible,
                transfer_usd=_number(ev.transfer, column, feasible),
                residual_risk_usd=_number(ev.risk, column, feasible),
                operational_usd=float(ev.operational[column]),
                total_usd=_number(ev.total, column, feasible),
            )
        )
    return rows


def sensitivity_table(rows: Iterable[SensitivityRow]) -> pd.DataFrame:
    """One line per (strategy, flag combination), the cost parts as columns.

    Rows from several :func:`sensitivity` calls (one per strategy) may be mixed; an
    infeasible combination shows ``feasible`` False and empty cost cells.
    """
    return pd.DataFrame(
        [
            {
                "strategy": r.cost.strategy,
                "updates_are_personal_data": r.updates_are_personal_data,
                "encryption_exits_scope": r.encryption_exits_scope,
                "feasible": r.cost.feasible,
                "transfer_cost_usd": r.cost.transfer_cost_usd,
                "lead_time_days": r.cost.lead_time_days,
                "residual_risk_usd": r.cost.residual_risk_usd,
                "operational_cost_usd": r.cost.operational_cost_usd,
                "total_usd": r.cost.total_usd,
            }
            for r in rows
        ]
    )


def sweep_table(rows: Sequence[SweepRow]) -> pd.DataFrame:
    """The per-jurisdiction sweep as a table (one line per row)."""
    return pd.DataFrame([r.__dict__ for r in rows])
