"""Consortium-wide assumptions: institution types, the hub operator, privacy technology.

What is not a jurisdiction's law but shapes the cost: which institution types the
scenario's institutions are (a sector rule binds banks, not platform lenders), the
hub operator's size and Data Privacy Framework status, how often the model is
retrained (the measured run's CPU and bytes recur), what a suspension order costs
the federation, and the privacy technology's own costs (integration, key
ceremonies, reviews), priced per strategy. Shipped as ``consortium.yaml`` beside the
profiles; a ``consortium.yaml`` in ``--profiles DIR`` replaces it whole.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from simulations.compliance.flows import Strategy
from simulations.compliance.profiles import InstitutionType
from simulations.compliance.values import Amount, Provenanced, Strict

__all__ = ["Aggregator", "Consortium", "InstitutionTypes", "Technology"]


class InstitutionTypes(Provenanced):
    """Each institution's type by name; ``default`` for names not listed."""

    default: InstitutionType
    types: dict[str, InstitutionType] = Field(default_factory=dict)

    def of(self, name: str) -> InstitutionType:
        """The type of the institution called ``name`` (``bank-2`` takes ``bank``'s type)."""
        if name in self.types:
            return self.types[name]
        base, _, suffix = name.rpartition("-")
        if suffix.isdigit() and base in self.types:
            return self.types[base]
        return self.default


class Aggregator(Strict):
    """The hub operator (the aggregator, or the pool of centralized training)."""

    dpf_certified: bool
    dpf_rationale: str = Field(min_length=1)
    turnover_usd: Amount


class Technology(Strict):
    """A cost line of the privacy technology a strategy needs (labelled assumption).

    ``per``: ``institution`` lines are counted once per institution, ``federation``
    lines once. ``one_off`` is paid at the start, ``per_year`` every year.
    """

    description: str
    strategies: list[Strategy] = Field(min_length=1)
    per: Literal["institution", "federation"]
    one_off: Amount
    per_year: Amount


class Consortium(Strict):
    """The consortium's assumptions (see the module docstring).

    ``turnover_usd`` is an input, not an assumption: each institution's annual turnover
    from its own accounts, by name (``aggregator`` for the hub operator); ``--turnover``
    overrides it name by name.
    """

    institutions: InstitutionTypes
    aggregator: Aggregator
    runs_per_year: Amount
    suspension_cost_usd: Amount
    turnover_usd: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    technology: dict[str, Technology] = Field(default_factory=dict)
    not_modelled: list[str] = Field(default_factory=list)
