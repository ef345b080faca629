"""The rule registry and :func:`decide`: a flow's decision, sector overlays applied.

:func:`decide` runs the exporter profile's rule for a cross-border flow (a domestic
flow needs nothing), then every overlay of the profile in force on the date that
binds the exporter's institution type and the flow's data class: a ``prohibited``
overlay makes the flow impossible, a ``mechanism`` overlay adds a mechanism (and makes
the flow regulated), a ``note`` overlay is cited and left unpriced.
"""

from __future__ import annotations

from datetime import date

from simulations.compliance.flows import Flow
from simulations.compliance.profiles import Profile
from simulations.compliance.rules.base import Citation, Decision, RuleSpec, generic
from simulations.compliance.rules.brazil import BR_RULE
from simulations.compliance.rules.china import CN_RULE
from simulations.compliance.rules.eu import EU_RULE
from simulations.compliance.rules.india import IN_RULE
from simulations.compliance.rules.indonesia import ID_RULE
from simulations.compliance.rules.united_states import US_RULE

__all__ = ["DOMESTIC", "RULES", "decide", "rule_problems"]

#: Rules by the name a profile's ``rule:`` gives.
RULES: dict[str, RuleSpec] = {
    "generic": RuleSpec(generic),
    "eu": EU_RULE,
    "china": CN_RULE,
    "united_states": US_RULE,
    "india": IN_RULE,
    "indonesia": ID_RULE,
    "brazil": BR_RULE,
}

#: The decision for a flow that stays in its jurisdiction.
DOMESTIC = Decision(label="domestic: not a cross-border flow", regulated=False)


def rule_problems(profile: Profile) -> list[tuple[str, str]]:
    """What the profile's rule needs and the profile lacks, as ``(field, message)``."""
    spec = RULES.get(profile.rule)
    if spec is None:
        return [("rule", f"unknown rule {profile.rule!r}; known: {', '.join(sorted(RULES))}")]
    problems = []
    for section, names, have in (
        ("mechanisms", spec.mechanisms, profile.mechanisms),
        ("facts", spec.facts, profile.facts),
        ("dates", spec.dates, profile.dates),
        ("lists", spec.lists, profile.lists),
        ("flags", spec.flags, profile.flags),
    ):
        problems += [
            (f"{section}.{name}", f"rule {profile.rule!r} needs {section}.{name}")
            for name in names
            if name not in have
        ]
    return problems


def decide(profile: Profile, flow: Flow, when: date) -> Decision:
    """What ``flow`` needs on ``when`` under its exporter's ``profile``, overlays applied."""
    if not flow.cross_border:
        return DOMESTIC
    decision = RULES[profile.rule].rule(profile, flow, when)
    mechanisms = list(decision.mechanisms)
    citations = list(decision.citations)
    notes = list(decision.notes)
    prohibited = decision.prohibited
    unless = decision.unless_flag
    regulated = decision.regulated
    labels = [decision.label]
    for overlay in profile.overlays:
        if not overlay.applies(flow.exporter.kind, flow.group, when):
            continue
        citations.append(Citation(overlay.source, overlay.url))
        if overlay.outcome == "prohibited":
            reason = f"{overlay.description} ({overlay.source})"
            # A sector ban admits no exemption flag of the transfer rule.
            prohibited = f"{prohibited}; {reason}" if prohibited else reason
            unless = None
            labels.append(f"prohibited by {overlay.name}")
        elif overlay.outcome == "mechanism" and overlay.mechanism is not None:
            if overlay.mechanism not in mechanisms:
                mechanisms.append(overlay.mechanism)
            regulated = True
            labels.append(f"+ {overlay.name}")
        else:
            notes.append(f"{overlay.name}: {overlay.description}")
    return Decision(
        label="; ".join(labels),
        mechanisms=tuple(mechanisms),
        regulated=regulated,
        prohibited=prohibited,
        unless_flag=unless,
        penalty=decision.penalty,
        citations=tuple(dict.fromkeys(citations)),
        notes=tuple(notes),
    )
