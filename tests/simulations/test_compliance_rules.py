"""Golden cases of the shipped rules, computed by hand from REGULATION.md and the profiles.

Each case prices one flow under the shipped profiles and checks the mechanism the law
requires on either side of a threshold or a date, and what that does to cost and risk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest

from simulations.compliance import (
    AGGREGATOR,
    ComplianceCost,
    CostModel,
    FlagOverrides,
    Registry,
    RouteCost,
    compliance_cost,
    jurisdiction_sweep,
    load_consortium,
    load_profiles,
    sensitivity,
)
from simulations.generators import default_institutions
from simulations.generators.common import allocate_rows

PROFILES = load_profiles()
CONSORTIUM = load_consortium()
AS_OF = date(2026, 11, 30)
MEASURED: dict[str, Any] = {"cpu_s": 60.0, "bytes_sent": 1e6}


@dataclass(frozen=True)
class Inst:
    name: str
    jurisdiction: str
    rows: int


def _price(strategy: Any, institutions: list[Inst], **kw: Any) -> ComplianceCost:
    kw.setdefault("as_of", AS_OF)
    kw.setdefault("years", 1)
    return compliance_cost(
        strategy, institutions, PROFILES, **MEASURED, consortium=CONSORTIUM, **kw
    )


def _route(cost: ComplianceCost, exporter: str, direction: str = "uplink") -> RouteCost:
    return next(r for r in cost.routes if r.exporter == exporter and r.direction == direction)


def _default_mix() -> list[Inst]:
    specs = default_institutions(7)
    rows = allocate_rows([s.size_weight for s in specs], 12_000)
    return [Inst(s.name, s.jurisdiction, n) for s, n in zip(specs, rows, strict=True)]


# -- China: the 2024 Provisions' sensitive-PI threshold -------------------------------------


@pytest.mark.parametrize(
    ("people", "route", "lead"),
    [(9_999, "standard_contract", 30.0), (10_000, "security_assessment", 80.0)],
)
def test_cn_sensitive_people_threshold(people: int, route: str, lead: float) -> None:
    cost = _price("fedavg", [Inst("eu", "EU", 100), Inst("cn", "CN", people)])
    up = _route(cost, "cn")
    # 2024 Provisions Arts 7-8: SA at 10,000 sensitive people, standard contract below;
    # separate consent (PIPL Art 39) either way. Lead: SA 80 d; else consent's 30 d > 21 d.
    assert up.mechanism == f"{route} + separate_consent"
    assert f"{people:,}" in up.decision and "10,000" in up.decision
    assert up.lead_time_days == pytest.approx(lead)
    cn = PROFILES["CN"].mechanisms
    fixed = cn[route].fixed_cost.value + cn["separate_consent"].fixed_cost.value
    fixed += cn["separate_consent"].per_person_cost.value * people  # type: ignore[union-attr]
    assert up.fixed_cost_usd == pytest.approx(fixed * 0.14)


def test_cn_before_the_2024_provisions_uses_the_2022_measures() -> None:
    cost = _price(
        "fedavg", [Inst("eu", "EU", 100), Inst("cn", "CN", 10_000)], as_of=date(2024, 3, 21)
    )
    assert "2022 Measures" in _route(cost, "cn").decision
    cost = _price(
        "fedavg", [Inst("eu", "EU", 100), Inst("cn", "CN", 10_000)], as_of=date(2024, 3, 22)
    )
    assert "2024 Provisions" in _route(cost, "cn").decision


def test_cn_localisation_binds_banks_not_platform_lenders() -> None:
    lender = _price("centralized", [Inst("eu", "EU", 100), Inst("cn-platform-lender", "CN", 1_308)])
    assert lender.feasible  # PBoC 2011 binds banking institutions; the 2024 route applies
    assert _route(lender, "cn-platform-lender", "pooling").mechanism.startswith("standard_contract")
    bank = _price("centralized", [Inst("eu", "EU", 100), Inst("cn-bank", "CN", 1_308)])
    assert not bank.feasible and "PBoC 2011" in bank.reasons[0]


# -- United States: 28 CFR 202 bulk threshold -----------------------------------------------


def test_us_bulk_threshold_is_more_than_ten_thousand() -> None:
    below = _price("fedavg", [Inst("eu", "EU", 100), Inst("us", "US", 10_000)])
    up = _route(below, "us")
    assert (up.mechanism, up.regulated, up.risk_usd, up.fixed_cost_usd) == ("none", False, 0, 0)
    above = _price("fedavg", [Inst("eu", "EU", 100), Inst("us", "US", 10_001)])
    up = _route(above, "us")
    # §202.302: brokerage to a non-covered foreign person needs an onward-transfer clause.
    assert up.mechanism == "dsp_302_clause" and up.regulated
    assert up.fixed_cost_usd == pytest.approx(20_000.0)
    ieepa = 377_700.0  # 2025 adjustment (90 FR 3687)
    enforcement = PROFILES["US"].enforcement
    event = enforcement.expected_fine_share.value * ieepa
    event += enforcement.suspension_probability.value * CONSORTIUM.suspension_cost_usd.value
    assert up.risk_usd == pytest.approx(enforcement.plaintext_updates.value * event)


def test_us_bulk_to_a_country_of_concern_is_prohibited_unless_exempt() -> None:
    institutions = [Inst("cn", "CN", 100), Inst("us", "US", 10_001)]
    cost = _price("fedavg", institutions, hub="CN")
    assert not cost.feasible and "§202.301" in cost.reasons[0]
    exempt = _price(
        "fedavg",
        institutions,
        hub="CN",
        flag_answers={"US.flags.dsp_financial_services_exemption": True},
    )
    assert exempt.feasible
    assert _route(exempt, "us").regulated is False
    before = _price("fedavg", institutions, hub="CN", as_of=date(2025, 4, 7))
    assert before.feasible and _route(before, "us").mechanism == "none"


# -- India: the DPDP Act's commencement ---------------------------------------------------


def test_india_spdi_until_12_may_2027_dpdp_from_13_may() -> None:
    institutions = [Inst("eu", "EU", 100), Inst("in-nbfc", "IN", 527)]
    before = _price("fedavg", institutions, as_of=date(2027, 5, 12))
    up = _route(before, "in-nbfc")
    assert up.mechanism == "spdi_r7_contract + spdi_consent" and up.regulated
    assert up.risk_usd > 0
    assert any("IT (SPDI) Rules 2011 r.7" in c.text for c in up.citations)
    assert before.provenance["IN.penalties.it_act_43a.fixed"].kind == "assumed"
    after = _price("fedavg", institutions, as_of=date(2027, 5, 13))
    up = _route(after, "in-nbfc")
    assert up.mechanism == "none" and not up.regulated
    assert (up.fixed_cost_usd, up.risk_usd) == (0.0, 0.0)
    # Over a horizon the change shows on the route, and the later years cost nothing.
    horizon = _price("fedavg", institutions, as_of=date(2027, 5, 12), years=3)
    up = _route(horizon, "in-nbfc")
    assert up.changes[0].startswith("from 2028-05-12: none")
    assert up.recurring_cost_usd == 0.0
    assert up.risk_usd == pytest.approx(_route(before, "in-nbfc").risk_usd)


def test_india_digital_lending_directions_localise_raw_records() -> None:
    cost = _price("centralized", [Inst("eu", "EU", 100), Inst("in-nbfc", "IN", 527)])
    assert not cost.feasible and "Digital Lending" in cost.reasons[0]


# -- The hub, the downlink, the sweep -------------------------------------------------------


def test_hub_institution_flows_carry_no_transfer_risk() -> None:
    cost = _price("fedavg", _default_mix())
    hub_routes = [r for r in cost.routes if "eu-universal-bank" in (r.exporter, r.recipient)]
    assert {r.mechanism for r in hub_routes} == {"domestic"}
    assert all(r.risk_usd == 0 and r.fixed_cost_usd == 0 for r in hub_routes)
    risks = {r.institution: r.residual_risk_usd for r in cost.risks}
    assert risks["eu-universal-bank"] == 0.0
    # The US bank's 2,269 people are below the bulk threshold: no rule, no risk.
    assert risks["us-card-bank"] == 0.0
    assert risks[AGGREGATOR] > 0  # the downlink's exporter carries its risk


def test_downlink_is_priced_and_encryption_gives_no_advantage_there() -> None:
    plain = _price("fedavg", _default_mix())
    encrypted = _price("he-fedavg", _default_mix())
    down_plain = [r for r in plain.routes if r.direction == "downlink" and r.regulated]
    down_he = [r for r in encrypted.routes if r.direction == "downlink" and r.regulated]
    assert len(down_plain) == 6  # every institution outside the EU hub
    scc = 14_500 * 1.08  # EU scc_tia fixed cost, EUR at 1.08
    assert all(r.mechanism == "scc_tia" for r in down_plain)
    assert sum(r.fixed_cost_usd for r in down_plain) == pytest.approx(6 * scc)  # about USD 94k
    # Every institution holds the key: the encrypted aggregate is priced like a model.
    assert [(r.fixed_cost_usd, r.risk_usd) for r in down_he] == [
        (r.fixed_cost_usd, r.risk_usd) for r in down_plain
    ]
    assert {r.data_class for r in down_he} == {"encrypted_model"}


def test_settled_flag_survives_the_sweep() -> None:
    institutions = [Inst("eu", "EU", 100), Inst("cn", "CN", 1_308), Inst("sg", "SG", 891)]
    exits = _price(
        "he-fedavg", institutions, assumptions=FlagOverrides(encryption_exits_scope=True)
    )
    # PIPL Arts 4/73 settle it for CN: encrypted updates stay PI and keep their mechanism;
    # SG leaves it open, so under "yes" its encrypted uplink needs none.
    assert _route(exits, "cn").mechanism.startswith("standard_contract")
    assert _route(exits, "sg").mechanism.startswith("none")
    assert exits.flags["CN"]["encryption_exits_scope"] is False
    registry = Registry(PROFILES, CONSORTIUM)
    model = CostModel(
        "he-fedavg", institutions, PROFILES, CONSORTIUM, **MEASURED, as_of=AS_OF, years=1
    )
    rows = {(r.jurisdiction, r.flag, r.answer): r for r in jurisdiction_sweep(model, registry)}
    cn_yes, cn_no = (
        rows[("CN", "encryption_exits_scope", True)],
        rows[("CN", "encryption_exits_scope", False)],
    )
    assert cn_yes.settled and cn_yes.applied is False and cn_yes.total_usd == cn_no.total_usd
    sg_yes, sg_no = (
        rows[("SG", "encryption_exits_scope", True)],
        rows[("SG", "encryption_exits_scope", False)],
    )
    assert not sg_yes.settled and sg_yes.applied is True
    # Risk moves with the answer, consistently with the mechanism: SG's uplink is the change.
    base = _price("he-fedavg", institutions)
    sg_up = _route(base, "sg")
    assert sg_no.residual_risk_usd is not None and sg_yes.residual_risk_usd is not None
    assert sg_no.transfer_usd is not None and sg_yes.transfer_usd is not None
    assert sg_no.residual_risk_usd - sg_yes.residual_risk_usd == pytest.approx(sg_up.risk_usd)
    assert sg_no.transfer_usd - sg_yes.transfer_usd == pytest.approx(sg_up.fixed_cost_usd)
    # The four-way table keeps CN's answer in every column too.
    four = sensitivity(model, registry)
    assert all(r.cost.flags["CN"]["encryption_exits_scope"] is False for r in four)


def test_eu_dpf_frees_flows_to_a_certified_us_hub_only() -> None:
    certified = load_consortium().model_copy(
        update={"aggregator": CONSORTIUM.aggregator.model_copy(update={"dpf_certified": True})}
    )
    institutions = [Inst("us", "US", 100), Inst("eu", "EU", 100)]
    cost = compliance_cost(
        "fedavg", institutions, PROFILES, **MEASURED, consortium=certified, as_of=AS_OF, years=1
    )
    up = _route(cost, "eu")
    assert up.mechanism == "adequacy" and not up.regulated and up.risk_usd == 0
    before = compliance_cost(
        "fedavg",
        institutions,
        PROFILES,
        **MEASURED,
        consortium=certified,
        as_of=date(2023, 7, 9),
        years=1,
    )
    assert _route(before, "eu").mechanism == "scc_tia"
    banks = _price("fedavg", institutions)  # hub operator not certified
    assert _route(banks, "eu").mechanism == "scc_tia"


def test_default_scenario_overlays() -> None:
    cost = _price("centralized", _default_mix())
    assert not cost.feasible
    assert [r.split(" ")[0] for r in cost.reasons] == ["in-nbfc"]  # only India's directions ban
    routes = {r.exporter: r for r in cost.routes if r.direction == "pooling"}
    assert routes["sg-digital-bank"].mechanism == "contract + bank_secrecy_consent"
    assert routes["id-p2p-lender"].mechanism.endswith("ojk_approval")
    assert routes["br-fintech-lender"].mechanism == "anpd_scc + bcb_notification"
