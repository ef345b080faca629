"""Brazil (LGPD Art 33): ANPD standard clauses from Res. CD/ANPD 19/2024.

From 23 Aug 2024 the ANPD's standard contractual clauses (Res. 19/2024 Annex II),
adopted verbatim, are the route for a flow without adequacy (no ANPD adequacy
decision exists); existing contracts had to adopt them by 23 Aug 2025. Before, no
standard clauses existed: specific clauses needed the ANPD's approval. Central-bank
rules for contracting processing abroad (CMN 4,893/2021, BCB 85/2021) are profile
overlays.
"""

from __future__ import annotations

from datetime import date

from simulations.compliance.flows import Flow
from simulations.compliance.profiles import Profile
from simulations.compliance.rules.base import Citation, Decision, RuleSpec, mechanism_decision

__all__ = ["BR_RULE", "brazil"]


def brazil(profile: Profile, flow: Flow, when: date) -> Decision:
    """ANPD SCCs from Res. 19/2024; specific clauses approved by the ANPD before."""
    resolution = profile.dates["res_19_2024"]
    if when < resolution.date:
        decision = mechanism_decision(profile, "specific_clauses")
        return Decision(
            label=f"{decision.label} (Res. 19/2024 from {resolution.date.isoformat()})",
            mechanisms=decision.mechanisms,
            citations=(*decision.citations, Citation(resolution.detail, resolution.url)),
        )
    return mechanism_decision(profile, profile.routes.mechanism_for(flow.destination))


BR_RULE = RuleSpec(brazil, mechanisms=("specific_clauses",), dates=("res_19_2024",))
