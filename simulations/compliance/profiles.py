"""Jurisdiction profiles: the sourced parameters of the compliance-cost model.

A profile is a YAML file describing one exporting jurisdiction:

- ``mechanisms``: what a cross-border flow may need before it happens (adequacy, a
  standard contract, a security assessment, consent, a supervisor's approval), each
  with its one-off, recurring and per-person cost, lead time and validity;
- ``rule``: which dated rule function (:mod:`simulations.compliance.rules`) picks the
  mechanism of a flow from its volume, data class, recipient and date, reading the
  profile's ``facts`` (thresholds), ``dates`` (commencements) and ``lists``
  (countries of concern); ``generic`` uses ``routes`` (a mechanism per destination);
- ``overlays``: sector rules binding named institution types (a central bank's
  localisation rule, banking secrecy) that prohibit a flow or add a mechanism;
- ``penalties``: dated penalty tiers (a statute's maximum from a commencement date);
- ``enforcement``: the annual probability of an enforcement event per exposure class,
  the expected fine as a share of the maximum, and the chance of a suspension order;
- ``flags``: the unsettled (or settled) legal questions.

Every number is a :class:`~simulations.compliance.values.Sourced` value carrying
``source:`` or ``assumption: true`` with a ``rationale:``, and a ``low``/``high``
range when uncertain. Amounts are in the profile's ``currency``; ``usd_per_unit``
converts them. Reading and validating files is :mod:`simulations.compliance.loading`.
"""

from __future__ import annotations

from datetime import date
from itertools import pairwise
from typing import Literal

from pydantic import Field, model_validator

from simulations.compliance.values import (
    Amount,
    Dated,
    Flag,
    Positive,
    Provenanced,
    Share,
    Strict,
)

__all__ = [
    "DATA_GROUPS",
    "EXPOSURES",
    "INSTITUTION_TYPES",
    "REQUIRED_FLAGS",
    "CodeList",
    "DataGroup",
    "Enforcement",
    "Exposure",
    "InstitutionType",
    "Mechanism",
    "Overlay",
    "PenaltyTier",
    "Profile",
    "Routes",
]

#: What an exposure-class probability is given for, from most to least exposed.
Exposure = Literal["raw_records", "plaintext_updates", "encrypted_updates", "model"]
EXPOSURES: tuple[Exposure, ...] = ("raw_records", "plaintext_updates", "encrypted_updates", "model")

#: Institution types a sector rule can bind.
InstitutionType = Literal[
    "bank", "nonbank_lender", "payment_institution", "credit_reporting_agency"
]
INSTITUTION_TYPES: tuple[InstitutionType, ...] = (
    "bank",
    "nonbank_lender",
    "payment_institution",
    "credit_reporting_agency",
)

#: Data classes as sector rules name them: raw records, model updates, (aggregate) models.
DataGroup = Literal["raw_records", "updates", "model"]
DATA_GROUPS: tuple[DataGroup, ...] = ("raw_records", "updates", "model")

#: Flags every profile answers.
REQUIRED_FLAGS = ("updates_are_personal_data", "encryption_exits_scope")


def _in_force(start: date | None, until: date | None, when: date) -> bool:
    return (start is None or start <= when) and (until is None or when < until)


class Mechanism(Strict):
    """A transfer mechanism: what a cross-border flow needs before it may happen.

    Costs: ``fixed_cost`` once when the flow starts (and again at each renewal if
    ``validity_years`` is set, as ``renewal_cost`` when given); ``recurring_cost``
    every year (a transfer impact assessment's review, an audit); ``per_person_cost``
    for each person whose data the flow carries in a year (consent campaigns).
    """

    kind: Literal[
        "none",
        "adequacy",
        "standard_contract",
        "contract",
        "security_assessment",
        "certification",
        "consent",
        "notification",
        "approval",
    ]
    description: str
    citation: str | None = None
    url: str | None = None
    fixed_cost: Amount
    lead_time_days: Amount
    recurring_cost: Amount | None = None
    per_person_cost: Amount | None = None
    validity_years: Positive | None = None
    renewal_cost: Amount | None = None


class Routes(Strict):
    """Mechanism name per destination jurisdiction, with a default for the rest.

    Used by the ``generic`` rule, and by the specific rules for destinations they do
    not decide themselves (an adequacy decision, for example).
    """

    default: str
    destinations: dict[str, str] = Field(default_factory=dict)
    note: str | None = None

    def mechanism_for(self, destination: str) -> str:
        """The mechanism name a flow to ``destination`` needs."""
        return self.destinations.get(destination, self.default)


class PenaltyTier(Strict):
    """A maximum penalty in force between two dates: fixed, a share of turnover, or both."""

    model_config = Strict.model_config | {"populate_by_name": True}

    name: str
    description: str
    combine: Literal["fixed", "share", "max", "min"]
    fixed: Amount | None = None
    turnover_share: Share | None = None
    start: date | None = Field(default=None, alias="from")
    until: date | None = None
    url: str | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _parts_present(self) -> PenaltyTier:
        if self.combine != "share" and self.fixed is None:
            raise ValueError(f"combine={self.combine!r} needs 'fixed'")
        if self.combine != "fixed" and self.turnover_share is None:
            raise ValueError(f"combine={self.combine!r} needs 'turnover_share'")
        return self

    def in_force(self, when: date) -> bool:
        """Whether the tier applies on ``when``."""
        return _in_force(self.start, self.until, when)

    def amount(self, turnover: float) -> float:
        """The cap at base values for an annual ``turnover`` (profile currency)."""
        fixed = self.fixed.value if self.fixed is not None else 0.0
        share = self.turnover_share.value * turnover if self.turnover_share is not None else 0.0
        if self.combine == "fixed":
            return fixed
        if self.combine == "share":
            return share
        return max(fixed, share) if self.combine == "max" else min(fixed, share)

    @property
    def citation(self) -> str:
        """The tier's sources, joined."""
        parts = [p.detail for p in (self.fixed, self.turnover_share) if p is not None]
        return "; ".join(dict.fromkeys(parts))


class Overlay(Strict):
    """A sector rule binding some institution types: it prohibits a flow or adds a mechanism.

    ``outcome``: ``prohibited`` (the flow may not happen: the strategy is infeasible),
    ``mechanism`` (the named mechanism is needed too), or ``note`` (cited on the
    route, priced nowhere: the rule's effect is open).
    """

    model_config = Strict.model_config | {"populate_by_name": True}

    name: str
    description: str
    source: str = Field(min_length=1)
    url: str | None = None
    applies_to: list[InstitutionType] = Field(min_length=1)
    data: list[DataGroup] = Field(min_length=1)
    outcome: Literal["prohibited", "mechanism", "note"]
    mechanism: str | None = None
    start: date | None = Field(default=None, alias="from")
    until: date | None = None

    @model_validator(mode="after")
    def _mechanism_iff_needed(self) -> Overlay:
        if (self.outcome == "mechanism") != (self.mechanism is not None):
            raise ValueError("'mechanism' is given exactly when outcome is 'mechanism'")
        return self

    def applies(self, institution_type: str, group: DataGroup, when: date) -> bool:
        """Whether the overlay binds this exporter type and data on ``when``."""
        return (
            institution_type in self.applies_to
            and group in self.data
            and _in_force(self.start, self.until, when)
        )


class CodeList(Provenanced):
    """A list of jurisdiction codes a rule reads (countries of concern, adequacy)."""

    items: list[str]


class Enforcement(Strict):
    """How likely a regulated flow draws enforcement, and what an event costs.

    The probabilities are annual, per regulated cross-border flow *with its mechanism
    in place*; without the mechanism they are multiplied by
    ``without_mechanism_factor`` (capped at 1). With distributed differential
    privacy at ``epsilon`` the probability of updates or models falls towards
    ``encrypted_dp_floor``::

        p(eps) = floor + (p - floor) * (1 - exp(-eps / dp_epsilon_scale))

    An event costs ``expected_fine_share`` of the penalty cap (a fine is rarely the
    statutory maximum) plus, with ``suspension_probability``, a suspension order
    stopping the federation (its cost is a consortium assumption).
    """

    raw_records: Share
    plaintext_updates: Share
    encrypted_updates: Share
    model: Share
    encrypted_dp_floor: Share
    dp_epsilon_scale: Positive
    without_mechanism_factor: Positive
    expected_fine_share: Share
    suspension_probability: Share

    @model_validator(mode="after")
    def _ordered(self) -> Enforcement:
        chain = [
            self.raw_records.value,
            self.plaintext_updates.value,
            self.encrypted_updates.value,
            self.encrypted_dp_floor.value,
        ]
        if any(a < b for a, b in pairwise(chain)):
            raise ValueError(
                "base probabilities must not increase from raw_records to plaintext_updates "
                "to encrypted_updates to encrypted_dp_floor"
            )
        if self.model.value < self.encrypted_dp_floor.value:
            raise ValueError("the model's base probability must not be below encrypted_dp_floor")
        if self.without_mechanism_factor.bounds[0] < 1:
            raise ValueError("without_mechanism_factor must be at least 1")
        return self


class Profile(Strict):
    """One jurisdiction's compliance parameters (see the module docstring)."""

    jurisdiction: str = Field(pattern=r"^[A-Z]{2}$")
    name: str
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    usd_per_unit: Positive
    reference_turnover: Amount
    rule: str = "generic"
    mechanisms: dict[str, Mechanism]
    routes: Routes
    penalties: list[PenaltyTier] = Field(min_length=1)
    overlays: list[Overlay] = Field(default_factory=list)
    facts: dict[str, Amount] = Field(default_factory=dict)
    dates: dict[str, Dated] = Field(default_factory=dict)
    lists: dict[str, CodeList] = Field(default_factory=dict)
    enforcement: Enforcement
    flags: dict[str, Flag]
    not_modelled: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        named = [self.routes.default, *self.routes.destinations.values()]
        named += [o.mechanism for o in self.overlays if o.mechanism is not None]
        for name in named:
            if name not in self.mechanisms:
                raise ValueError(f"route or overlay names unknown mechanism {name!r}")
        missing = [f for f in REQUIRED_FLAGS if f not in self.flags]
        if missing:
            raise ValueError(f"flags must answer {', '.join(missing)}")
        names = [t.name for t in self.penalties]
        if len(set(names)) != len(names):
            raise ValueError(f"penalty tier names must be unique, got {names}")
        return self

    def penalty(self, name: str) -> PenaltyTier:
        """The penalty tier called ``name``."""
        for tier in self.penalties:
            if tier.name == name:
                return tier
        raise KeyError(name)

    def penalty_at(self, when: date) -> PenaltyTier:
        """The penalty tier in force on ``when`` (the last listed, if several are)."""
        current = [t for t in self.penalties if t.in_force(when)]
        return current[-1] if current else self.penalties[-1]

    def flag(self, name: str) -> Flag | None:
        """The flag called ``name``, if the profile answers it."""
        return self.flags.get(name)
