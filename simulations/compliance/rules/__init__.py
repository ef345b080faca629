"""Dated rules per jurisdiction: which mechanism a flow needs, or that it is prohibited.

:func:`decide` is the entry point; :data:`RULES` maps a profile's ``rule:`` name to
its function (:mod:`.eu`, :mod:`.china`, :mod:`.united_states`, :mod:`.india`,
:mod:`.indonesia`, :mod:`.brazil`, and :func:`generic` for the rest).
"""

from simulations.compliance.rules.base import Citation, Decision, Rule, RuleSpec, generic
from simulations.compliance.rules.registry import DOMESTIC, RULES, decide, rule_problems

__all__ = [
    "DOMESTIC",
    "RULES",
    "Citation",
    "Decision",
    "Rule",
    "RuleSpec",
    "decide",
    "generic",
    "rule_problems",
]
