"""The compliance-cost model: what a strategy costs a federation over a horizon, in three parts.

For a strategy, its institutions (each in a jurisdiction, of an institution type,
with its people) and a hub, :class:`CostModel` builds the strategy's flows
(:mod:`simulations.compliance.flows`) and, for each year of the horizon, decides
what each flow needs under the law in force at the start of that year
(:func:`~simulations.compliance.rules.decide`). Then, at any :class:`Values`:

1. **Transfer-mechanism cost**: each mechanism's one-off cost when a flow first
   needs it (again at each renewal), its recurring cost in later years, and its
   per-person cost for each year's people; only for flows that carry personal data
   under the exporter's answers to the unsettled questions. The lead time is the
   longest mechanism's at the start. A prohibited flow that carries personal data
   makes the strategy infeasible: it is not priced.
2. **Residual-risk cost**: only on *regulated cross-border flows* (a domestic flow,
   a free route, an adequacy decision or a flow that is not personal data under the
   answers carries none): each year, the probability of an enforcement event for the
   flow's exposure class (with the mechanism in place, or without it), times the
   expected fine (a share of the exporter's penalty cap in force that year) plus the
   chance and cost of a suspension order. It falls on the exporter: an institution,
   or the hub operator for the downlink.
3. **Operational cost**: the measured CPU-seconds and bytes of one training run times
   :class:`Prices`, times the runs a year and the years; plus the privacy technology's
   own cost lines (consortium assumptions), which is what makes encrypted FedAvg
   dearer than plaintext in some worlds.

All amounts are USD over the horizon (``years``, undiscounted). The same code prices
the base case (one column of values), each Monte Carlo draw and each end of each
tornado bar (many columns). :func:`compliance_cost` is the one-call base case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from simulations.compliance.breakdown import breakdown
from simulations.compliance.consortium import Consortium
from simulations.compliance.costs import (
    ComplianceCost,
    FlagOverrides,
    InstitutionLike,
    Prices,
)
from simulations.compliance.flows import (
    AGGREGATOR,
    STRATEGIES,
    Flow,
    Party,
    Strategy,
    build_flows,
)
from simulations.compliance.loading import load_consortium
from simulations.compliance.parameters import Registry, Values
from simulations.compliance.profiles import PenaltyTier, Profile
from simulations.compliance.rules import Decision, decide
from simulations.errors import StrategyError

__all__ = [
    "DEFAULT_YEARS",
    "CostModel",
    "Evaluation",
    "FlowEval",
    "add_years",
    "compliance_cost",
]

#: Default horizon: the validity of a CAC security assessment or certificate, so one
#: renewal cycle and the recurring costs show.
DEFAULT_YEARS = 3


@dataclass
class FlowEval:
    """One flow's arrays over the columns of a :class:`Values`."""

    personal: np.ndarray
    regulated: np.ndarray
    infeasible: np.ndarray
    fixed: np.ndarray
    later: np.ndarray
    risk: np.ndarray
    lead: np.ndarray
    keys: set[str]


@dataclass
class Evaluation:
    """A strategy priced at every column of a :class:`Values` (arrays of length ``n``)."""

    transfer: np.ndarray
    risk: np.ndarray
    measured: np.ndarray
    technology: np.ndarray
    lead: np.ndarray
    feasible: np.ndarray
    flows: list[FlowEval]
    technology_lines: list[tuple[str, int, np.ndarray, np.ndarray]]

    @property
    def operational(self) -> np.ndarray:
        """Measured operational cost plus the technology lines."""
        return self.measured + self.technology

    @property
    def total(self) -> np.ndarray:
        """Total cost, ``nan`` where infeasible."""
        return np.where(self.feasible, self.transfer + self.risk + self.operational, np.nan)


def add_years(start: date, years: int) -> date:
    """``start`` plus whole years (29 February falls back to the 28th)."""
    try:
        return start.replace(year=start.year + years)
    except ValueError:
        return start.replace(year=start.year + years, day=28)


def _cap_usd(
    tier: PenaltyTier, code: str, tier_id: str, turnover_usd: np.ndarray, read: _Reader
) -> np.ndarray:
    """The tier's cap in USD, per column (the turnover share on the exporter's turnover)."""
    fx = read(f"{code}.usd_per_unit")
    zeros = np.zeros_like(turnover_usd)
    fixed = read(f"{tier_id}.fixed") * fx if tier.fixed is not None else zeros
    share = read(f"{tier_id}.turnover_share") * turnover_usd if tier.turnover_share else zeros
    if tier.combine == "fixed":
        return np.asarray(fixed)
    if tier.combine == "share":
        return np.asarray(share)
    return np.maximum(fixed, share) if tier.combine == "max" else np.minimum(fixed, share)


class _Reader:
    """Reads numbers from a :class:`Values`, recording the ids one flow used."""

    def __init__(self, values: Values, keys: set[str]) -> None:
        self.values = values
        self.keys = keys

    def __call__(self, key: str) -> np.ndarray:
        self.keys.add(key)
        return self.values.num(key)

    def flag(self, key: str) -> np.ndarray:
        self.keys.add(key)
        return self.values.flag(key)


class CostModel:
    """A strategy's flows and their dated decisions, ready to price at any values.

    Parameters
    ----------
    strategy
        One of :data:`~simulations.compliance.flows.STRATEGIES`.
    institutions
        The institutions; each jurisdiction (and the hub's) needs a profile.
    profiles, consortium
        Jurisdiction profiles by code, and the consortium assumptions.
    cpu_s, bytes_sent
        Measured CPU-seconds and bytes sent by one training run.
    hub
        Jurisdiction of the pool or aggregator; defaults to the first institution's.
    as_of, years
        The law as at ``as_of`` (default: today) applies to the first year; each later
        year of the horizon takes the law in force at its start.
    epsilon
        Differential-privacy epsilon; required for ``he-fedavg-dp``.
    prices
        Resource prices (defaults: :class:`Prices`, assumed).
    turnover_usd
        Annual turnover per institution name (``aggregator`` for the hub operator);
        others get their profile's ``reference_turnover`` (the consortium's for the hub).
    people
        People per year per institution name; default each institution's ``rows``.
    institution_types
        Institution type per name; default the consortium file's.
    mechanisms_in_place
        Whether each regulated flow's mechanism is in place (as priced). ``False``
        prices the risk of running the flows without them.

    Raises
    ------
    StrategyError
        Unknown strategy, missing epsilon, no institutions, negative measurements,
        a jurisdiction without a profile, or unknown people.
    """

    def __init__(
        self,
        strategy: Strategy,
        institutions: Sequence[InstitutionLike],
        profiles: Mapping[str, Profile],
        consortium: Consortium,
        *,
        cpu_s: float,
        bytes_sent: float,
        hub: str | None = None,
        as_of: date | None = None,
        years: int = DEFAULT_YEARS,
        epsilon: float | None = None,
        prices: Prices | None = None,
        turnover_usd: Mapping[str, float] | None = None,
        people: Mapping[str, int] | None = None,
        institution_types: Mapping[str, str] | None = None,
        mechanisms_in_place: bool = True,
    ) -> None:
        if strategy not in STRATEGIES:
            raise StrategyError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
        if not institutions:
            raise StrategyError("no institutions")
        if strategy == "he-fedavg-dp" and (epsilon is None or not epsilon > 0):
            raise StrategyError("he-fedavg-dp needs a positive epsilon")
        if cpu_s < 0 or bytes_sent < 0:
            raise StrategyError("measured cpu_s and bytes_sent must not be negative")
        if years < 1:
            raise StrategyError(f"the horizon needs at least one year, got {years}")
        self.hub = hub or institutions[0].jurisdiction
        missing = sorted(({i.jurisdiction for i in institutions} | {self.hub}) - set(profiles))
        if missing:
            raise StrategyError(f"no compliance profile for jurisdiction(s) {', '.join(missing)}")
        negative = sorted(n for n, v in (turnover_usd or {}).items() if not v >= 0)
        if negative:
            raise StrategyError(f"turnover must not be negative: {', '.join(negative)}")
        self.strategy = strategy
        self.profiles = profiles
        self.consortium = consortium
        self.epsilon = epsilon if strategy == "he-fedavg-dp" else None
        self.cpu_s, self.bytes_sent = cpu_s, bytes_sent
        self.prices = prices or Prices()
        self.as_of = as_of or date.today()
        self.years = years
        self.turnover_usd = dict(turnover_usd or {})
        self.in_place = mechanisms_in_place
        types = dict(institution_types or {})
        self.parties = [
            Party(
                inst.name,
                inst.jurisdiction,
                types.get(inst.name, consortium.institutions.of(inst.name)),
                self._people(inst, people),
            )
            for inst in institutions
        ]
        self.aggregator = Party(
            AGGREGATOR, self.hub, "aggregator", 0, consortium.aggregator.dpf_certified
        )
        self.flows = build_flows(strategy, self.parties, self.aggregator)
        self.dates = [add_years(self.as_of, k) for k in range(years)]
        self.decisions: list[list[Decision]] = [
            [decide(profiles[f.origin], f, when) for when in self.dates] for f in self.flows
        ]

    @staticmethod
    def _people(inst: InstitutionLike, people: Mapping[str, int] | None) -> int:
        if people is not None and inst.name in people:
            count = people[inst.name]
        else:
            rows = getattr(inst, "rows", None)
            if rows is None:
                raise StrategyError(
                    f"people per year unknown for {inst.name!r}: "
                    "give `people` or a `rows` attribute"
                )
            count = int(rows)
        if count < 0:
            raise StrategyError(f"people must not be negative for {inst.name!r}")
        return int(count)

    # -- pricing -------------------------------------------------------------------------

    def _turnover_usd(self, party: Party, read: _Reader) -> np.ndarray:
        n = read.values.n
        if party.name in self.turnover_usd:
            return np.full(n, float(self.turnover_usd[party.name]))
        if party.name == AGGREGATOR:
            return read("consortium.aggregator.turnover_usd")
        code = party.jurisdiction
        return read(f"{code}.reference_turnover") * read(f"{code}.usd_per_unit")

    def _probability(self, flow: Flow, read: _Reader) -> np.ndarray:
        base = f"{flow.origin}.enforcement"
        cls = flow.data_class
        readable = flow.recipient_can_decrypt
        if cls == "raw_records":
            return read(f"{base}.raw_records")
        if cls == "plaintext_updates":
            return read(f"{base}.plaintext_updates")
        if cls == "encrypted_updates" or (cls == "encrypted_model" and not readable):
            return read(f"{base}.encrypted_updates")
        if cls in ("model", "encrypted_model"):
            return read(f"{base}.model")
        top = read(
            f"{base}.model"
            if readable and cls == "encrypted_dp_model"
            else f"{base}.encrypted_updates"
        )
        floor = np.minimum(read(f"{base}.encrypted_dp_floor"), top)
        scale = read(f"{base}.dp_epsilon_scale")
        epsilon = float(self.epsilon or 0.0)
        return floor + (top - floor) * (1.0 - np.exp(-epsilon / scale))

    def _personal(self, flow: Flow, read: _Reader) -> np.ndarray:
        code = flow.origin
        if flow.data_class == "raw_records":
            return np.ones(read.values.n, dtype=bool)
        personal = read.flag(f"{code}.flags.updates_are_personal_data")
        encrypted_to_keyless = (
            flow.data_class.startswith("encrypted") and not flow.recipient_can_decrypt
        )
        if encrypted_to_keyless:
            return personal & ~read.flag(f"{code}.flags.encryption_exits_scope")
        return personal

    def _flow(self, flow: Flow, decisions: list[Decision], values: Values) -> FlowEval:
        keys: set[str] = set()
        read = _Reader(values, keys)
        n = values.n
        zeros = np.zeros(n)
        profile = self.profiles[flow.origin]
        code = flow.origin
        personal = self._personal(flow, read) if flow.cross_border else np.zeros(n, dtype=bool)
        fixed, later, risk = zeros.copy(), zeros.copy(), zeros.copy()
        lead = zeros.copy()
        regulated0 = np.zeros(n, dtype=bool)
        infeasible = np.zeros(n, dtype=bool)
        first: dict[str, int] = {}
        if not flow.cross_border:
            return FlowEval(personal, regulated0, infeasible, fixed, later, risk, lead, keys)
        fx = read(f"{code}.usd_per_unit")
        turnover = self._turnover_usd(flow.exporter, read)
        for k, (when, decision) in enumerate(zip(self.dates, decisions, strict=True)):
            active = personal.copy()
            if decision.unless_flag is not None and values.has_flag(
                f"{code}.flags.{decision.unless_flag}"
            ):
                active &= ~read.flag(f"{code}.flags.{decision.unless_flag}")
            if decision.prohibited is not None:
                infeasible |= active
                continue  # a prohibited flow is not priced
            cost = zeros.copy()
            for name in decision.mechanisms:
                mech = profile.mechanisms[name]
                mid = f"{code}.mechanisms.{name}"
                if name not in first:
                    first[name] = k
                    cost = cost + read(f"{mid}.fixed_cost")
                    if k == 0:
                        lead = np.maximum(
                            lead, np.where(active, read(f"{mid}.lead_time_days"), 0.0)
                        )
                else:
                    age = k - first[name]
                    validity = mech.validity_years
                    if validity is not None and age % max(1, round(validity.value)) == 0:
                        renewal = "renewal_cost" if mech.renewal_cost is not None else "fixed_cost"
                        cost = cost + read(f"{mid}.{renewal}")
                    if mech.recurring_cost is not None:
                        cost = cost + read(f"{mid}.recurring_cost")
                if mech.per_person_cost is not None:
                    cost = cost + read(f"{mid}.per_person_cost") * flow.people
            cost = np.where(active, cost * fx, 0.0)
            if k == 0:
                fixed += cost
            else:
                later += cost
            regulated = active & decision.regulated
            if k == 0:
                regulated0 = regulated
            if decision.regulated:
                annual = self._annual_risk(flow, profile, decision, when, turnover, read)
                risk += np.where(regulated, annual, 0.0)
        return FlowEval(personal, regulated0, infeasible, fixed, later, risk, lead, keys)

    def _annual_risk(
        self,
        flow: Flow,
        profile: Profile,
        decision: Decision,
        when: date,
        turnover: np.ndarray,
        read: _Reader,
    ) -> np.ndarray:
        code = flow.origin
        enforcement = f"{code}.enforcement"
        probability = self._probability(flow, read)
        if not self.in_place:
            probability = np.minimum(
                probability * read(f"{enforcement}.without_mechanism_factor"), 1.0
            )
        tier = profile.penalty(decision.penalty) if decision.penalty else profile.penalty_at(when)
        cap = _cap_usd(tier, code, f"{code}.penalties.{tier.name}", turnover, read)
        event = read(f"{enforcement}.expected_fine_share") * cap + read(
            f"{enforcement}.suspension_probability"
        ) * read("consortium.suspension_cost_usd")
        return probability * event

    def evaluate(self, values: Values) -> Evaluation:
        """The strategy priced at every column of ``values``."""
        n = values.n
        flows = [self._flow(f, d, values) for f, d in zip(self.flows, self.decisions, strict=True)]
        feasible = np.ones(n, dtype=bool)
        transfer, risk, lead = np.zeros(n), np.zeros(n), np.zeros(n)
        for fe in flows:
            feasible &= ~fe.infeasible
            transfer += fe.fixed + fe.later
            risk += fe.risk
            lead = np.maximum(lead, fe.lead)
        runs = values.num("consortium.runs_per_year")
        per_run = (
            self.cpu_s / 3600.0 * self.prices.cpu_hour_usd
            + self.bytes_sent / 1e9 * self.prices.gb_sent_usd
        )
        measured = per_run * runs * self.years
        technology = np.zeros(n)
        lines = []
        for name, item in self.consortium.technology.items():
            if self.strategy not in item.strategies:
                continue
            count = len(self.parties) if item.per == "institution" else 1
            tid = f"consortium.technology.{name}"
            one_off = values.num(f"{tid}.one_off") * count
            per_year = values.num(f"{tid}.per_year") * count * self.years
            technology = technology + one_off + per_year
            lines.append((name, count, one_off, per_year))
        return Evaluation(transfer, risk, measured, technology, lead, feasible, flows, lines)

    def cost(self, values: Values, registry: Registry) -> ComplianceCost:
        """The priced strategy at the first column of ``values``, with routes and provenance."""
        return breakdown(self, self.evaluate(values), values, registry)


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
    flag_answers: Mapping[str, bool] | None = None,
    hub: str | None = None,
    turnover_usd: Mapping[str, float] | None = None,
    as_of: date | None = None,
    years: int = DEFAULT_YEARS,
    consortium: Consortium | None = None,
    people: Mapping[str, int] | None = None,
    institution_types: Mapping[str, str] | None = None,
    mechanisms_in_place: bool = True,
    registry: Registry | None = None,
) -> ComplianceCost:
    """Compliance cost of running ``strategy`` over ``institutions``, at base values.

    Arguments are :class:`CostModel`'s, plus the answers to the legal questions:
    ``assumptions`` for the two unsettled questions in every profile, ``flag_answers``
    by flag id (``CN.flags.updates_are_personal_data``) for one jurisdiction. A
    settled flag keeps its profile's answer. ``consortium`` defaults to the shipped
    file; ``registry`` may be passed to save rebuilding it.
    """
    consortium = consortium or load_consortium()
    registry = registry or Registry(profiles, consortium)
    answers = (assumptions or FlagOverrides()).answers(profiles) | dict(flag_answers or {})
    model = CostModel(
        strategy,
        institutions,
        profiles,
        consortium,
        cpu_s=cpu_s,
        bytes_sent=bytes_sent,
        hub=hub,
        as_of=as_of,
        years=years,
        epsilon=epsilon,
        prices=prices,
        turnover_usd=turnover_usd,
        people=people,
        institution_types=institution_types,
        mechanisms_in_place=mechanisms_in_place,
    )
    return model.cost(registry.base(flags=answers), registry)
