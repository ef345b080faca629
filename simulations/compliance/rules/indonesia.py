"""Indonesia (PDP Law No. 27/2022 Art 56; MOCI Reg. 20/2016 in the meantime).

The PDP Law's two-year transition ended on 17 Oct 2024. From then, a transfer to a
country without equal protection (no adequacy decisions exist) needs adequate and
binding safeguards (Art 56(3)); until the implementing regulation and the PDP agency
exist, the MOCI Reg. 20/2016 notification still applies. Before, only the MOCI
notification did. Bank and non-bank data-centre rules (OJK) are profile overlays.
"""

from __future__ import annotations

from datetime import date

from simulations.compliance.flows import Flow
from simulations.compliance.profiles import Profile
from simulations.compliance.rules.base import Citation, Decision, RuleSpec

__all__ = ["ID_RULE", "indonesia"]


def indonesia(profile: Profile, flow: Flow, when: date) -> Decision:
    """Binding safeguards plus MOCI notification after the transition; notification before."""
    del flow  # no volume tier or destination list applies yet
    end = profile.dates["pdp_transition_end"]
    notice = profile.mechanisms["moci_notification"]
    cite_notice = Citation(notice.citation or notice.description, notice.url)
    if when < end.date:
        return Decision(
            label="MOCI Reg. 20/2016 notification (PDP Law transition until "
            f"{end.date.isoformat()})",
            mechanisms=("moci_notification",),
            citations=(cite_notice, Citation(end.detail, end.url)),
        )
    safeguards = profile.mechanisms["safeguards"]
    return Decision(
        label="binding safeguards (PDP Law Art 56(3)) and MOCI Reg. 20/2016 notification",
        mechanisms=("safeguards", "moci_notification"),
        citations=(
            Citation(safeguards.citation or safeguards.description, safeguards.url),
            cite_notice,
        ),
    )


ID_RULE = RuleSpec(
    indonesia, mechanisms=("safeguards", "moci_notification"), dates=("pdp_transition_end",)
)
