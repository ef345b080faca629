"""The compliance-cost model: what a strategy costs a federation, in three parts.

For a strategy, a set of institutions (each in a jurisdiction) and a hub (where raw
records are pooled, or where the aggregator runs), :func:`compliance_cost` reports:

1. **Transfer-mechanism cost** — the fixed cost of the mechanism each cross-border
   route needs (origin profile's route to the hub), and the lead time before the
   federation can start (the longest route's). Pooling raw records triggers a
   mechanism on every cross-border route. Model updates trigger one only where the
   origin's flags say so: plaintext updates if ``updates_are_personal_data``, encrypted
   updates if that holds and ``encryption_exits_scope`` does not. A route on which a
   sector rule localises raw personal financial records makes pooling *infeasible*: the
   result says why and carries no price.
2. **Residual-risk cost** — expected penalty per institution: the probability of an
   enforcement event for the exposure class of what leaves it (raw records > plaintext
   updates > encrypted updates > encrypted updates with DP at epsilon) times its
   jurisdiction's penalty cap.
3. **Operational cost** — measured CPU-seconds and bytes sent, times :class:`Prices`.

Everything is converted to USD with each profile's ``usd_per_unit``. Figures are
first-year: one-off mechanism costs plus one year of expected penalties. Every figure's
provenance (measured, sourced, assumed, or an input of the caller) is in
:attr:`ComplianceCost.provenance`. The flags do not change the residual-risk part:
whether or not an update is personal data, the probability of enforcement is the
profile's (a modelling choice stated here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from simulations.compliance.profiles import Exposure, Flag, Profile, Sourced
from simulations.errors import StrategyError

__all__ = [
    "STRATEGIES",
    "ComplianceCost",
    "FlagOverrides",
    "InstitutionLike",
    "Prices",
    "Provenance",
    "RiskCost",
    "RouteCost",
    "Strategy",
    "compliance_cost",
]

Strategy = Literal["centralized", "local-only", "fedavg", "he-fedavg", "he-fedavg-dp"]
STRATEGIES: tuple[Strategy, ...] = (
    "centralized",
    "local-only",
    "fedavg",
    "he-fedavg",
    "he-fedavg-dp",
)
_EXPOSURE: dict[Strategy, Exposure | None] = {
    "centralized": "raw_records",
    "local-only": None,
    "fedavg": "plaintext_updates",
    "he-fedavg": "encrypted_updates",
    "he-fedavg-dp": "encrypted_dp_updates",
}


class InstitutionLike(Protocol):
    """Anything with a name and a jurisdiction code (e.g. an ``InstitutionSpec``)."""

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

    ``None`` keeps each profile's own answer.
    """

    updates_are_personal_data: bool | None = None
    encryption_exits_scope: bool | None = None


@dataclass(frozen=True)
class Provenance:
    """Where a figure comes from: ``kind`` and a human-readable detail."""

    kind: Literal["measured", "sourced", "assumed", "input"]
    detail: str

    @classmethod
    def of(cls, value: Sourced | Flag) -> Provenance:
        """Provenance of a profile value."""
        kind, _, detail = value.provenance.partition(": ")
        return cls("sourced" if kind == "sourced" else "assumed", detail)


@dataclass(frozen=True)
class RouteCost:
    """One institution's cross-border route to the hub and what it needs."""

    institution: str
    origin: str
    destination: str
    mechanism: str
    cost_usd: float
    lead_time_days: float


@dataclass(frozen=True)
class RiskCost:
    """One institution's expected penalty."""

    institution: str
    jurisdiction: str
    exposure: Exposure
    probability: float
    penalty_cap_usd: float
    cost_usd: float


@dataclass(frozen=True)
class ComplianceCost:
    """The compliance cost of one strategy, part by part.

    ``transfer_cost_usd``, ``lead_time_days`` and ``residual_risk_usd`` are ``None``
    when the strategy is infeasible (``feasible`` False, ``reasons`` say why): an
    outright prohibition is not priced.
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
    routes: tuple[RouteCost, ...] = ()
    risks: tuple[RiskCost, ...] = ()
    flags: dict[str, FlagOverrides] = field(default_factory=dict)
    provenance: dict[str, Provenance] = field(default_factory=dict)

    @property
    def total_usd(self) -> float | None:
        """Sum of the three parts, or ``None`` if infeasible."""
        if self.transfer_cost_usd is None or self.residual_risk_usd is None:
            return None
        return self.transfer_cost_usd + self.residual_risk_usd + self.operational_cost_usd


def _flag(profile: Profile, name: str, override: bool | None) -> tuple[bool, Provenance]:
    flag: Flag = getattr(profile.flags, name)
    if override is not None:
        return override, Provenance("input", f"override of {name} (sensitivity)")
    return flag.value, Provenance.of(flag)


def _needs_mechanism(exposure: Exposure | None, personal: bool, exits: bool) -> bool:
    if exposure is None:
        return False
    if exposure == "raw_records":
        return True
    if exposure == "plaintext_updates":
        return personal
    return personal and not exits


def compliance_cost(
    strategy: Strategy,
    institutions: Sequence[InstitutionLike],
    profiles: Mapping[str, Profile],
    *,
    cpu_s: float,
    bytes_sent: float,
    prices: Prices | None = None,
    epsilon: float | None = None,
    assumptions: FlagOverrides | None = None,
    hub: str | None = None,
    turnover_usd: Mapping[str, float] | None = None,
) -> ComplianceCost:
    """Compliance cost of running ``strategy`` over ``institutions``.

    Parameters
    ----------
    strategy
        One of :data:`STRATEGIES`.
    institutions
        The institutions; each jurisdiction needs a profile.
    profiles
        Profiles by jurisdiction code (see :func:`load_profiles`).
    cpu_s, bytes_sent
        Measured CPU-seconds and bytes sent over the whole run.
    prices
        Resource prices; defaults to :class:`Prices` (assumed).
    epsilon
        Differential-privacy epsilon; required for ``he-fedavg-dp``.
    assumptions
        Overrides of the two unsettled flags for every profile.
    hub
        Jurisdiction where raw records are pooled or the aggregator runs; defaults to
        the first institution's.
    turnover_usd
        Annual turnover per institution name, for turnover-based penalty caps; an
        institution not listed gets its profile's ``reference_turnover`` (assumed).

    Raises
    ------
    StrategyError
        Unknown strategy, missing epsilon, no institutions, negative measurements, or a
        jurisdiction without a profile.
    """
    if strategy not in _EXPOSURE:
        raise StrategyError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if not institutions:
        raise StrategyError("no institutions")
    if strategy == "he-fedavg-dp" and (epsilon is None or not epsilon > 0):
        raise StrategyError("he-fedavg-dp needs a positive epsilon")
    if cpu_s < 0 or bytes_sent < 0:
        raise StrategyError("measured cpu_s and bytes_sent must not be negative")
    missing = sorted({i.jurisdiction for i in institutions} - set(profiles))
    if missing:
        raise StrategyError(f"no compliance profile for jurisdiction(s) {', '.join(missing)}")
    prices = prices or Prices()
    overrides = assumptions or FlagOverrides()
    hub = hub or institutions[0].jurisdiction
    exposure = _EXPOSURE[strategy]
    turnover_usd = turnover_usd or {}

    prov: dict[str, Provenance] = {
        "operational.cpu_s": Provenance("measured", f"{cpu_s:g} CPU-seconds"),
        "operational.bytes_sent": Provenance("measured", f"{bytes_sent:g} bytes"),
        "prices.cpu_hour_usd": Provenance("assumed", prices.rationale),
        "prices.gb_sent_usd": Provenance("assumed", prices.rationale),
    }
    if hub != institutions[0].jurisdiction:
        prov["hub"] = Provenance("input", hub)
    operational = cpu_s / 3600.0 * prices.cpu_hour_usd + bytes_sent / 1e9 * prices.gb_sent_usd

    routes: list[RouteCost] = []
    risks: list[RiskCost] = []
    reasons: list[str] = []
    flags: dict[str, FlagOverrides] = {}
    for inst in institutions:
        profile = profiles[inst.jurisdiction]
        code = profile.jurisdiction
        personal, p_prov = _flag(
            profile, "updates_are_personal_data", overrides.updates_are_personal_data
        )
        exits, e_prov = _flag(profile, "encryption_exits_scope", overrides.encryption_exits_scope)
        flags[code] = FlagOverrides(personal, exits)
        prov[f"flags.{code}.updates_are_personal_data"] = p_prov
        prov[f"flags.{code}.encryption_exits_scope"] = e_prov
        if exposure is None:
            continue
        fx = profile.usd_per_unit.value
        prov[f"fx.{code}"] = Provenance.of(profile.usd_per_unit)

        if code != hub and _needs_mechanism(exposure, personal, exits):
            if exposure == "raw_records" and profile.localisation.raw_records_prohibited:
                reasons.append(
                    f"{inst.name}: raw personal financial records may not leave {code} "
                    f"for {hub} ({profile.localisation.source})"
                )
            else:
                name = profile.routes.mechanism_for(hub)
                mech = profile.mechanisms[name]
                routes.append(
                    RouteCost(
                        inst.name,
                        code,
                        hub,
                        name,
                        mech.fixed_cost.value * fx,
                        mech.lead_time_days.value,
                    )
                )
                prov[f"transfer.{inst.name}.fixed_cost"] = Provenance.of(mech.fixed_cost)
                prov[f"transfer.{inst.name}.lead_time_days"] = Provenance.of(mech.lead_time_days)

        if inst.name in turnover_usd:
            turnover = turnover_usd[inst.name] / fx
            prov[f"risk.{inst.name}.turnover"] = Provenance("input", "turnover given by caller")
        else:
            turnover = profile.reference_turnover.value
            prov[f"risk.{inst.name}.turnover"] = Provenance.of(profile.reference_turnover)
        cap = profile.penalty_cap.amount(turnover) * fx
        probability = profile.enforcement_probability.probability(exposure, epsilon)
        risks.append(RiskCost(inst.name, code, exposure, probability, cap, probability * cap))
        cap_parts = [
            p for p in (profile.penalty_cap.fixed, profile.penalty_cap.turnover_share) if p
        ]
        prov[f"risk.{inst.name}.penalty_cap"] = Provenance(
            "sourced" if all(Provenance.of(p).kind == "sourced" for p in cap_parts) else "assumed",
            "; ".join(Provenance.of(p).detail for p in cap_parts),
        )
        prob_value = (
            profile.enforcement_probability.encrypted_dp_floor
            if exposure == "encrypted_dp_updates"
            else getattr(profile.enforcement_probability, exposure)
        )
        prov[f"risk.{inst.name}.probability"] = Provenance.of(prob_value)

    feasible = not reasons
    return ComplianceCost(
        strategy=strategy,
        hub=hub,
        epsilon=epsilon,
        feasible=feasible,
        reasons=tuple(reasons),
        transfer_cost_usd=float(sum(r.cost_usd for r in routes)) if feasible else None,
        lead_time_days=max((r.lead_time_days for r in routes), default=0.0) if feasible else None,
        residual_risk_usd=float(sum(r.cost_usd for r in risks)) if feasible else None,
        operational_cost_usd=operational,
        routes=tuple(routes),
        risks=tuple(risks),
        flags=flags,
        provenance=prov,
    )
