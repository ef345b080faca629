"""United States (28 CFR 202, the DOJ Data Security Program): bulk data only.

No general federal export rule exists. From 8 Apr 2025 the DSP covers US persons'
personal financial data in bulk: more than 10,000 US persons in a 12-month look-back
(§202.205), "regardless of whether the data is anonymized, pseudonymized,
de-identified, or encrypted" (§202.206). Below the threshold the rule does not apply.
Above it, data brokerage to a country of concern or a covered person is prohibited
(§202.301) unless the financial-services exemption (§202.505) covers it — whether it
covers joint model training is open, a profile flag; brokerage to any other foreign
person needs a contractual onward-transfer clause and reporting (§202.302).
Restricted transactions (§202.401: vendor, employment and investment agreements) do
not describe a consortium's flows.
"""

from __future__ import annotations

from datetime import date

from simulations.compliance.flows import Flow
from simulations.compliance.profiles import Profile
from simulations.compliance.rules.base import Citation, Decision, RuleSpec, mechanism_decision

__all__ = ["US_RULE", "united_states"]

_EXEMPTION = "dsp_financial_services_exemption"


def united_states(profile: Profile, flow: Flow, when: date) -> Decision:
    """None below the bulk threshold; prohibited to a country of concern; else a clause."""
    effective = profile.dates["dsp_effective"]
    if when < effective.date:
        return Decision(
            label="no federal export rule (28 CFR 202 not yet in effect)",
            regulated=False,
            citations=(Citation(effective.detail, effective.url),),
        )
    bulk = profile.facts["bulk_financial_people"]
    limit = int(bulk.value)
    cite = Citation(bulk.detail, bulk.url)
    if flow.people <= limit:
        return Decision(
            label=f"not bulk: {flow.people:,} <= {limit:,} US persons' financial data (§202.205)",
            regulated=False,
            citations=(cite,),
        )
    concern = profile.lists["countries_of_concern"]
    if flow.destination in concern.items:
        reason = (
            f"28 CFR §202.301: data brokerage of {flow.people:,} US persons' financial data "
            f"to {flow.destination}, a country of concern, is prohibited"
        )
        return Decision(
            label=f"prohibited: {flow.people:,} > {limit:,} US persons to {flow.destination}",
            mechanisms=(),
            prohibited=reason,
            unless_flag=_EXEMPTION,
            citations=(cite, Citation(concern.detail, concern.url)),
            notes=("exempt if the §202.505 financial-services exemption covers the consortium",),
        )
    decision = mechanism_decision(
        profile,
        "dsp_302_clause",
        f"onward-transfer clause and reporting: {flow.people:,} > {limit:,} US persons "
        f"to a non-covered foreign person (§202.302)",
    )
    return Decision(
        label=decision.label,
        mechanisms=decision.mechanisms,
        citations=(cite, *decision.citations),
    )


US_RULE = RuleSpec(
    united_states,
    mechanisms=("dsp_302_clause",),
    facts=("bulk_financial_people",),
    dates=("dsp_effective",),
    lists=("countries_of_concern",),
    flags=(_EXEMPTION,),
)
