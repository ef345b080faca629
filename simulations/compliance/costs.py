"""What the cost model returns: a strategy's cost, part by part, route by route.

:class:`ComplianceCost` is one strategy priced at base values over a horizon, with
every flow's :class:`RouteCost` (mechanism, costs, lead time, risk, citations and the
provenance of each number), each exporter's :class:`RiskCost`, and the privacy
technology's :class:`TechnologyCost` lines. :class:`Prices` and
:class:`FlagOverrides` are inputs; :class:`InstitutionLike` is what an institution
must offer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Literal, Protocol

from simulations.compliance.flows import Strategy
from simulations.compliance.profiles import Profile
from simulations.compliance.rules import Citation
from simulations.errors import StrategyError

__all__ = [
    "ComplianceCost",
    "FlagOverrides",
    "InstitutionLike",
    "Prices",
    "Provenance",
    "RiskCost",
    "RouteCost",
    "TechnologyCost",
]


class InstitutionLike(Protocol):
    """Anything with a name and a jurisdiction code (e.g. a scenario's ``Institution``).

    Its people per year come from a ``rows`` attribute (one row, one applicant) unless
    the caller gives them.
    """

    @property
    def name(self) -> str: ...

    @property
    def jurisdiction(self) -> str: ...


@dataclass(frozen=True)
class Prices:
    """Prices of measured resources, in USD.

    The defaults are assumptions, not sources: about the on-demand price of one cloud
    vCPU-hour and of one GB of internet egress at large public clouds (2025). Override
    them with the operator's own prices.
    """

    cpu_hour_usd: float = 0.05
    gb_sent_usd: float = 0.09
    rationale: str = "approximate 2025 public-cloud on-demand vCPU-hour and egress-GB prices"

    def __post_init__(self) -> None:
        if self.cpu_hour_usd < 0 or self.gb_sent_usd < 0:
            raise StrategyError("prices must not be negative")


@dataclass(frozen=True)
class FlagOverrides:
    """Answers to the two unsettled legal questions, applied to every profile.

    ``None`` keeps each profile's own answer. A profile that marks a question
    *settled* keeps its answer whatever is asked here.
    """

    updates_are_personal_data: bool | None = None
    encryption_exits_scope: bool | None = None

    def answers(self, profiles: Mapping[str, Profile]) -> dict[str, bool]:
        """The overrides as flag ids (``CODE.flags.NAME``) for every profile."""
        answers = {}
        for code in profiles:
            for name in ("updates_are_personal_data", "encryption_exits_scope"):
                value = getattr(self, name)
                if value is not None:
                    answers[f"{code}.flags.{name}"] = bool(value)
        return answers


@dataclass(frozen=True)
class Provenance:
    """Where a figure comes from: ``kind`` and a human-readable detail."""

    kind: Literal["measured", "sourced", "assumed", "input"]
    detail: str


@dataclass(frozen=True)
class RouteCost:
    """One flow of one strategy, what it needs at ``as_of`` and what it costs over the horizon.

    ``fixed_cost_usd`` is paid at the start (set-up, and the first year's per-person
    costs); ``recurring_cost_usd`` is everything after it over the horizon (reviews,
    renewals, later years' consent, a mechanism a later law requires).
    """

    strategy: str
    direction: str
    exporter: str
    recipient: str
    origin: str
    destination: str
    data_class: str
    people: int
    personal_data: bool
    regulated: bool
    mechanism: str
    decision: str
    fixed_cost_usd: float
    recurring_cost_usd: float
    lead_time_days: float
    risk_usd: float
    prohibited: str | None
    citations: tuple[Citation, ...]
    provenance: tuple[str, ...]
    changes: tuple[str, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class RiskCost:
    """One party's expected penalties over the horizon, from the flows it exports."""

    institution: str
    jurisdiction: str
    residual_risk_usd: float


@dataclass(frozen=True)
class TechnologyCost:
    """One privacy-technology cost line over the horizon (an assumption)."""

    name: str
    description: str
    count: int
    one_off_usd: float
    per_year_usd: float
    total_usd: float


@dataclass(frozen=True)
class ComplianceCost:
    """The compliance cost of one strategy over the horizon, part by part.

    ``transfer_cost_usd``, ``lead_time_days`` and ``residual_risk_usd`` are ``None``
    when the strategy is infeasible (``feasible`` False, ``reasons`` say why): an
    outright prohibition is not priced. ``operational_cost_usd`` is the measured part
    plus the privacy technology's lines.
    """

    strategy: Strategy
    hub: str
    epsilon: float | None
    feasible: bool
    reasons: tuple[str, ...]
    transfer_cost_usd: float | None
    lead_time_days: float | None
    residual_risk_usd: float | None
    operational_cost_usd: float
    as_of: date
    years: int
    measured_operational_usd: float = 0.0
    technology_usd: float = 0.0
    technology: tuple[TechnologyCost, ...] = ()
    routes: tuple[RouteCost, ...] = ()
    risks: tuple[RiskCost, ...] = ()
    flags: dict[str, dict[str, bool]] = field(default_factory=dict)
    provenance: dict[str, Provenance] = field(default_factory=dict)

    @property
    def total_usd(self) -> float | None:
        """Sum of the three parts, or ``None`` if infeasible."""
        if self.transfer_cost_usd is None or self.residual_risk_usd is None:
            return None
        return self.transfer_cost_usd + self.residual_risk_usd + self.operational_cost_usd
