"""EU (GDPR Chapter V): adequacy where the Commission decided it, else SCCs with a TIA.

The EU-US Data Privacy Framework (adequacy decision of 10 July 2023, upheld by the
General Court in Latombe v Commission, T-553/23, 3 Sep 2025; appeal C-703/25 P
pending) covers only US organisations that self-certified. Banks cannot self-certify,
so a flow to a US bank uses SCCs; a flow to a certified non-bank (the hub operator,
when the consortium says so) is free. Other adequacy decisions are listed in the
profile's ``routes``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from simulations.compliance.flows import Flow
from simulations.compliance.profiles import Profile
from simulations.compliance.rules.base import Citation, Decision, RuleSpec, mechanism_decision

__all__ = ["EU_RULE", "eu"]


def eu(profile: Profile, flow: Flow, when: date) -> Decision:
    """Adequacy (incl. the DPF for a certified US recipient) or SCCs plus a TIA."""
    dpf = profile.dates["dpf_adequacy"]
    if flow.destination == "US" and flow.recipient.dpf_certified and when >= dpf.date:
        decision = mechanism_decision(
            profile, "adequacy", "adequacy: EU-US Data Privacy Framework, recipient certified"
        )
        return replace(decision, citations=(*decision.citations, Citation(dpf.detail, dpf.url)))
    decision = mechanism_decision(profile, profile.routes.mechanism_for(flow.destination))
    if flow.destination == "US" and decision.regulated:
        why = (
            "banks cannot self-certify under the EU-US DPF"
            if flow.recipient.kind == "bank"
            else "recipient not DPF-certified"
        )
        decision = replace(decision, notes=(*decision.notes, why))
    return decision


EU_RULE = RuleSpec(eu, mechanisms=("adequacy",), dates=("dpf_adequacy",))
