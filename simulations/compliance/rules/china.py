"""China (PIPL Art 38; CAC 2024 Provisions): the route follows the exporter's volume.

Credit and fraud records hold financial account information, sensitive personal
information under PIPL Art 28, so the sensitive-PI thresholds apply to every flow
that carries personal information at all (an assumption for model updates, which are
derived from it). From the 2024 Provisions (CAC Order No. 16, 22 Mar 2024), Arts 7-8:
a non-CIIO that has sent abroad sensitive PI of 10,000 people or more since
1 January needs the CAC security assessment; fewer, the standard contract (or, from
1 Jan 2026, certification: same eligibility, not priced separately). Before them, the
2022 Measures Art 4 put the same 10,000 sensitive-people threshold on the previous
year's count. Every export needs the individual's separate consent (Art 39) and a
PIPIA (Art 55), priced with the route.
"""

from __future__ import annotations

from datetime import date

from simulations.compliance.flows import Flow
from simulations.compliance.profiles import Profile
from simulations.compliance.rules.base import Citation, Decision, RuleSpec

__all__ = ["CN_RULE", "china"]


def china(profile: Profile, flow: Flow, when: date) -> Decision:
    """Security assessment at or above the sensitive-PI threshold, else standard contract."""
    provisions = profile.dates["provisions_2024"]
    if when >= provisions.date:
        threshold = profile.facts["sa_sensitive_people"]
        where = "2024 Provisions Arts 7-8"
        cite = Citation(threshold.detail, provisions.url)
    else:
        threshold = profile.facts["sa_sensitive_people_2022"]
        where = "2022 Measures Art 4"
        cite = Citation(threshold.detail, threshold.url)
    limit = int(threshold.value)
    people = flow.exporter_people
    consent = profile.mechanisms["separate_consent"]
    citations = [cite, Citation(consent.citation or consent.description, consent.url)]
    notes = []
    if people >= limit:
        route = "security_assessment"
        label = f"CAC security assessment: sensitive PI of {people:,} >= {limit:,} people ({where})"
    else:
        route = "standard_contract"
        label = f"CAC standard contract: sensitive PI of {people:,} < {limit:,} people ({where})"
        certification = profile.dates.get("certification_measures")
        if certification is not None and when >= certification.date:
            notes.append("certification (CAC/SAMR Order No. 20) is an equivalent route, not priced")
    mechanism = profile.mechanisms[route]
    citations.append(Citation(mechanism.citation or mechanism.description, mechanism.url))
    return Decision(
        label=label,
        mechanisms=(route, "separate_consent"),
        citations=tuple(citations),
        notes=tuple(notes),
    )


CN_RULE = RuleSpec(
    china,
    mechanisms=("security_assessment", "standard_contract", "separate_consent"),
    facts=("sa_sensitive_people", "sa_sensitive_people_2022"),
    dates=("provisions_2024",),
)
