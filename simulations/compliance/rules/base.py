"""What a rule decides for a flow, and the generic rule every profile can fall back on.

A rule is a small dated function ``rule(profile, flow, when) -> Decision``: given the
exporter's profile, one flow and a date, it says which mechanisms the flow needs if it
carries personal data, whether a transfer rule applies at all (a flow that needs no
mechanism carries no transfer-enforcement risk), or that the flow is prohibited. It
reads thresholds, dates and lists from the profile, never from constants, so a user's
profile can move them. Whether the flow carries personal data at all (the unsettled
flags) is the cost model's business, not the rule's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from simulations.compliance.flows import Flow
from simulations.compliance.profiles import Mechanism, Profile

__all__ = ["Citation", "Decision", "Rule", "RuleSpec", "generic", "mechanism_decision"]


@dataclass(frozen=True)
class Citation:
    """A text the decision rests on, with a link where ``REGULATION.md`` gives one."""

    text: str
    url: str | None = None


@dataclass(frozen=True)
class Decision:
    """What one flow needs on one date, assuming it carries personal data.

    Attributes
    ----------
    label
        The decision in words, with the figures it turned on.
    mechanisms
        Names of the exporter profile's mechanisms the flow needs (all of them).
    regulated
        Whether a transfer rule applies (the flow draws transfer-enforcement risk);
        ``False`` for domestic flows, free routes and adequacy.
    prohibited
        Why the flow may not happen, if it may not.
    unless_flag
        A flag of the exporter's profile that, answered "yes", exempts the flow
        (no mechanism, no prohibition, no transfer risk).
    penalty
        The penalty tier to apply; ``None`` for the tier in force on the date.
    citations, notes
        What the decision rests on; what it leaves open.
    """

    label: str
    mechanisms: tuple[str, ...] = ()
    regulated: bool = True
    prohibited: str | None = None
    unless_flag: str | None = None
    penalty: str | None = None
    citations: tuple[Citation, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


Rule = Callable[[Profile, Flow, date], Decision]


@dataclass(frozen=True)
class RuleSpec:
    """A rule and what it reads from a profile (checked when the profile loads)."""

    rule: Rule
    mechanisms: tuple[str, ...] = ()
    facts: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    lists: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    penalties: tuple[str, ...] = ()


def _cite(mechanism: Mechanism) -> tuple[Citation, ...]:
    text = mechanism.citation or mechanism.fixed_cost.detail
    return (Citation(text, mechanism.url),) if text else ()


def mechanism_decision(profile: Profile, name: str, label: str | None = None) -> Decision:
    """The decision for a flow that needs the profile's mechanism ``name``.

    A mechanism of kind ``none`` or ``adequacy`` means no transfer rule bites: the
    flow is not regulated (an adequacy decision's cost, usually zero, is still shown).
    """
    mechanism = profile.mechanisms[name]
    free = mechanism.kind in ("none", "adequacy")
    return Decision(
        label=label or mechanism.description,
        mechanisms=() if mechanism.kind == "none" else (name,),
        regulated=not free,
        citations=_cite(mechanism),
    )


def generic(profile: Profile, flow: Flow, when: date) -> Decision:
    """The profile's ``routes``: one mechanism per destination, a default for the rest."""
    del when  # the generic rule is undated; penalties still follow their dates
    return mechanism_decision(profile, profile.routes.mechanism_for(flow.destination))
