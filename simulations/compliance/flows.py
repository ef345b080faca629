"""Flows, not institutions: what each strategy sends where, and who can read it.

A strategy produces flows between *parties* — the institutions and the hub operator
(the aggregator of a federation, or the pool of centralized training), which sits in
the hub jurisdiction:

- ``pooling`` (centralized): each institution's raw records to the pool;
- ``uplink`` (federated): each institution's model update to the aggregator —
  plaintext, encrypted (the aggregator holds no key), or encrypted with DP noise;
- ``downlink`` (centralized and federated): the trained model or the round's
  aggregate back to every institution. With one shared CKKS key every institution
  can decrypt it, so encryption gives no cover on this leg: an encrypted aggregate
  reaches a key holder as a model (``recipient_can_decrypt``).

``local-only`` has no flows. Every flow names the people whose data it carries in a
year (from the data: one row, one applicant) and, for volume tiers counted per
exporter (China's 2024 Provisions count everything a processor sent abroad since
1 January), the exporter's cumulative people.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from simulations.compliance.profiles import DataGroup
from simulations.errors import StrategyError

__all__ = [
    "AGGREGATOR",
    "DATA_CLASSES",
    "STRATEGIES",
    "DataClass",
    "Direction",
    "Flow",
    "Party",
    "Strategy",
    "build_flows",
]

Strategy = Literal["centralized", "local-only", "fedavg", "he-fedavg", "he-fedavg-dp"]
STRATEGIES: tuple[Strategy, ...] = (
    "centralized",
    "local-only",
    "fedavg",
    "he-fedavg",
    "he-fedavg-dp",
)

Direction = Literal["uplink", "downlink", "pooling"]

DataClass = Literal[
    "raw_records",
    "plaintext_updates",
    "encrypted_updates",
    "encrypted_dp_updates",
    "model",
    "encrypted_model",
    "encrypted_dp_model",
]
DATA_CLASSES: tuple[DataClass, ...] = (
    "raw_records",
    "plaintext_updates",
    "encrypted_updates",
    "encrypted_dp_updates",
    "model",
    "encrypted_model",
    "encrypted_dp_model",
)

#: The hub operator's party name (pass ``turnover_usd={"aggregator": …}`` to set its size).
AGGREGATOR = "aggregator"

_GROUP: dict[DataClass, DataGroup] = {
    "raw_records": "raw_records",
    "plaintext_updates": "updates",
    "encrypted_updates": "updates",
    "encrypted_dp_updates": "updates",
    "model": "model",
    "encrypted_model": "model",
    "encrypted_dp_model": "model",
}

# What goes up and comes down per strategy; the downlink's recipients hold the key.
_LEGS: dict[Strategy, tuple[Direction, DataClass, DataClass] | None] = {
    "centralized": ("pooling", "raw_records", "model"),
    "local-only": None,
    "fedavg": ("uplink", "plaintext_updates", "model"),
    "he-fedavg": ("uplink", "encrypted_updates", "encrypted_model"),
    "he-fedavg-dp": ("uplink", "encrypted_dp_updates", "encrypted_dp_model"),
}


@dataclass(frozen=True)
class Party:
    """An institution or the hub operator.

    Attributes
    ----------
    name, jurisdiction
        Who and where.
    kind
        The institution type a sector rule binds (``bank``, ``nonbank_lender`` …), or
        ``aggregator`` for the hub operator.
    people
        People whose data the party holds and contributes in a year (0 for the hub).
    dpf_certified
        Whether the party is certified under the EU-US Data Privacy Framework (banks
        cannot self-certify; the hub operator's status is a consortium setting).
    """

    name: str
    jurisdiction: str
    kind: str
    people: int
    dpf_certified: bool = False


@dataclass(frozen=True)
class Flow:
    """One flow of one strategy, from an exporter to a recipient."""

    strategy: Strategy
    direction: Direction
    exporter: Party
    recipient: Party
    data_class: DataClass
    people: int
    exporter_people: int
    recipient_can_decrypt: bool

    @property
    def origin(self) -> str:
        """The exporter's jurisdiction, whose rules govern the flow."""
        return self.exporter.jurisdiction

    @property
    def destination(self) -> str:
        """The recipient's jurisdiction."""
        return self.recipient.jurisdiction

    @property
    def cross_border(self) -> bool:
        """Whether the flow leaves the exporter's jurisdiction."""
        return self.origin != self.destination

    @property
    def group(self) -> DataGroup:
        """The data class as sector rules name it."""
        return _GROUP[self.data_class]

    @property
    def key(self) -> str:
        """``direction:exporter->recipient``, unique within a strategy."""
        return f"{self.direction}:{self.exporter.name}->{self.recipient.name}"


def build_flows(strategy: Strategy, institutions: Sequence[Party], hub: Party) -> tuple[Flow, ...]:
    """The flows of ``strategy`` among ``institutions`` and the ``hub`` operator.

    Raises
    ------
    StrategyError
        Unknown strategy, no institutions, or a party name used twice.
    """
    if strategy not in _LEGS:
        raise StrategyError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if not institutions:
        raise StrategyError("no institutions")
    names = [p.name for p in institutions] + [hub.name]
    if len(set(names)) != len(names):
        raise StrategyError(f"party names must be unique, got {names}")
    legs = _LEGS[strategy]
    if legs is None:
        return ()
    direction, up, down = legs
    total = sum(p.people for p in institutions)
    readable = up in ("raw_records", "plaintext_updates")  # the aggregator holds no key
    flows = [
        Flow(strategy, direction, inst, hub, up, inst.people, inst.people, readable)
        for inst in institutions
    ]
    flows += [
        Flow(strategy, "downlink", hub, inst, down, total - inst.people, total, True)
        for inst in institutions
    ]
    return tuple(flows)
