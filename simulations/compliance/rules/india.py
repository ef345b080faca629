"""India: IT Act s.43A and SPDI Rules r.7 until 13 May 2027, the DPDP Act from then.

The DPDP Rules 2025 were notified in November 2025; most of the Act, s.16 and the
Schedule's penalties included, commences on 13 May 2027. Until then the SPDI Rules
2011 apply: financial information is sensitive personal data (r.3), and a transfer
abroad needs a recipient bound to the same protection and either necessity for a
lawful contract with the individual or the individual's consent (r.7). Training a
shared model is not necessary for the loan contract, so consent is priced. From
commencement, s.16 restricts transfers only to countries the Government notifies
(none yet): a flow to any other country needs no mechanism. Sector localisation (RBI)
is a profile overlay.
"""

from __future__ import annotations

from datetime import date

from simulations.compliance.flows import Flow
from simulations.compliance.profiles import Profile
from simulations.compliance.rules.base import Citation, Decision, RuleSpec

__all__ = ["IN_RULE", "india"]


def india(profile: Profile, flow: Flow, when: date) -> Decision:
    """SPDI r.7 contract and consent before DPDP commencement; s.16 negative list after."""
    commencement = profile.dates["dpdp_commencement"]
    if when >= commencement.date:
        negative = profile.lists["s16_negative_list"]
        cite = (Citation(commencement.detail, commencement.url), Citation(negative.detail))
        if flow.destination in negative.items:
            return Decision(
                label=f"prohibited: {flow.destination} is notified under DPDP s.16",
                prohibited=f"DPDP Act s.16(1): transfers to {flow.destination} are restricted",
                citations=cite,
            )
        return Decision(
            label=f"none: {flow.destination} is not on the DPDP s.16 negative list",
            regulated=False,
            citations=cite,
        )
    contract = profile.mechanisms["spdi_r7_contract"]
    return Decision(
        label=(
            "SPDI Rules r.7: recipient bound to the same protection, and consent "
            f"(DPDP Act not in force until {commencement.date.isoformat()})"
        ),
        mechanisms=("spdi_r7_contract", "spdi_consent"),
        citations=(
            Citation(contract.citation or contract.description, contract.url),
            Citation(commencement.detail, commencement.url),
        ),
    )


IN_RULE = RuleSpec(
    india,
    mechanisms=("spdi_r7_contract", "spdi_consent"),
    dates=("dpdp_commencement",),
    lists=("s16_negative_list",),
)
