"""Sensitivity of the compliance cost to the two unsettled legal questions.

Whether model updates are personal data, and whether encryption takes them out of
scope, are open questions (``REGULATION.md``); a report should not rest on one answer.
:func:`sensitivity` prices a strategy under all four combinations, applied to every
jurisdiction at once, and :func:`sensitivity_table` lays them side by side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product

import pandas as pd

from simulations.compliance.model import (
    ComplianceCost,
    FlagOverrides,
    InstitutionLike,
    Prices,
    Strategy,
    compliance_cost,
)
from simulations.compliance.profiles import Profile

__all__ = ["SensitivityRow", "sensitivity", "sensitivity_table"]


@dataclass(frozen=True)
class SensitivityRow:
    """The cost of a strategy under one answer to each unsettled question."""

    updates_are_personal_data: bool
    encryption_exits_scope: bool
    cost: ComplianceCost


def sensitivity(
    strategy: Strategy,
    institutions: Sequence[InstitutionLike],
    profiles: Mapping[str, Profile],
    *,
    cpu_s: float,
    bytes_sent: float,
    prices: Prices | None = None,
    epsilon: float | None = None,
    hub: str | None = None,
    turnover_usd: Mapping[str, float] | None = None,
) -> list[SensitivityRow]:
    """Price ``strategy`` under each of the four answers to the two unsettled flags.

    Arguments are those of :func:`compliance_cost`, less ``assumptions``. Rows come in
    a fixed order: (False, False), (False, True), (True, False), (True, True) for
    (``updates_are_personal_data``, ``encryption_exits_scope``).
    """
    rows = []
    for personal, exits in product((False, True), repeat=2):
        cost = compliance_cost(
            strategy,
            institutions,
            profiles,
            cpu_s=cpu_s,
            bytes_sent=bytes_sent,
            prices=prices,
            epsilon=epsilon,
            assumptions=FlagOverrides(personal, exits),
            hub=hub,
            turnover_usd=turnover_usd,
        )
        rows.append(SensitivityRow(personal, exits, cost))
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
