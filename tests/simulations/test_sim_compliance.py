"""Compliance-cost model on constructed profiles: hand-computed flows, years, risk, overlays.

Two jurisdictions: AA (the hub, USD 1 per unit, penalty cap 10 % of turnover) and BB
(USD 2 per unit, fixed cap 1M units = USD 2M). Every mechanism costs units; an
enforcement event costs the whole cap (fine share 1, no suspension), so each
regulated flow's annual risk is ``p * cap``. The consortium has no technology lines
and one run a year, so operational cost is the measured run's price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from simulations import CompliancePlan, StrategyError, StrategyPlan, StrategyRun
from simulations.compliance import (
    Consortium,
    CostModel,
    FlagOverrides,
    Prices,
    Profile,
    Registry,
    compliance_cost,
    sensitivity,
    sensitivity_table,
)
from simulations.evaluation import StrategyEvaluation
from simulations.scenario import Institution, Scenario, ScenarioSpec
from simulations.study import cost_model

AS_OF = date(2026, 11, 30)


@dataclass(frozen=True)
class Inst:
    name: str
    jurisdiction: str
    rows: int


def _s(value: float, **extra: Any) -> dict[str, Any]:
    return {"value": value, "source": "test fixture", **extra}


def _profile(
    code: str, *, usd: float, penalty: dict[str, Any], overlays: list[dict[str, Any]] | None = None
) -> Profile:
    return Profile.model_validate(
        {
            "jurisdiction": code,
            "name": f"test {code}",
            "currency": "XTS",
            "usd_per_unit": _s(usd),
            "reference_turnover": _s(5_000_000),
            "mechanisms": {
                "none": {
                    "kind": "none",
                    "description": "-",
                    "fixed_cost": _s(0),
                    "lead_time_days": _s(0),
                },
                "scc": {
                    "kind": "standard_contract",
                    "description": "-",
                    "fixed_cost": _s(1_000),
                    "recurring_cost": _s(100),
                    "lead_time_days": _s(30),
                },
                "renewing": {
                    "kind": "security_assessment",
                    "description": "-",
                    "fixed_cost": _s(500),
                    "renewal_cost": _s(200),
                    "validity_years": _s(2),
                    "lead_time_days": _s(80),
                },
                "consent": {
                    "kind": "consent",
                    "description": "-",
                    "fixed_cost": _s(10),
                    "per_person_cost": _s(2),
                    "lead_time_days": _s(40),
                },
            },
            "routes": {"default": "scc", "destinations": {"ZZ": "none", "RR": "renewing"}},
            "penalties": [{"name": "cap", "description": "-", **penalty}],
            "overlays": overlays or [],
            "enforcement": {
                "raw_records": _s(0.1),
                "plaintext_updates": _s(0.05),
                "encrypted_updates": _s(0.01),
                "model": _s(0.02),
                "encrypted_dp_floor": _s(0.001),
                "dp_epsilon_scale": _s(2.0),
                "without_mechanism_factor": _s(4.0),
                "expected_fine_share": _s(1.0),
                "suspension_probability": _s(0.0),
            },
            "flags": {
                "updates_are_personal_data": {"value": True, "settled": False, "source": "t"},
                "encryption_exits_scope": {"value": False, "settled": False, "source": "t"},
            },
        }
    )


AA = _profile("AA", usd=1.0, penalty={"combine": "share", "turnover_share": _s(0.1)})
BB = _profile("BB", usd=2.0, penalty={"combine": "fixed", "fixed": _s(1_000_000)})
PROFILES = {"AA": AA, "BB": BB, "ZZ": AA.model_copy(update={"jurisdiction": "ZZ"})}
CONSORTIUM = Consortium.model_validate(
    {
        "institutions": {"default": "bank", "types": {"b-lender": "nonbank_lender"}, "source": "t"},
        "aggregator": {"dpf_certified": False, "dpf_rationale": "t", "turnover_usd": _s(5e6)},
        "runs_per_year": _s(1),
        "suspension_cost_usd": _s(0),
    }
)
TWO = [Inst("a", "AA", 100), Inst("b", "BB", 50)]
MEASURED: dict[str, Any] = {"cpu_s": 3_600.0, "bytes_sent": 2e9}  # 1 CPU-hour, 2 GB
OPERATIONAL = 0.05 + 2 * 0.09
CAP_BB = 2_000_000.0  # 1M units at USD 2
CAP_HUB = 500_000.0  # 10 % of the aggregator's USD 5M


def _cost(strategy: Any, institutions: Any = TWO, profiles: Any = PROFILES, **kw: Any) -> Any:
    kw.setdefault("years", 1)
    kw.setdefault("as_of", AS_OF)
    return compliance_cost(
        strategy, institutions, profiles, **MEASURED, consortium=CONSORTIUM, **kw
    )


# b's flow BB->AA costs 1,000 units = USD 2,000; the downlink AA->BB costs 1,000 units = USD 1,000.
@pytest.mark.parametrize(
    ("strategy", "risk"),
    [
        ("centralized", 0.1 * CAP_BB + 0.02 * CAP_HUB),
        ("fedavg", 0.05 * CAP_BB + 0.02 * CAP_HUB),
        ("he-fedavg", 0.01 * CAP_BB + 0.02 * CAP_HUB),  # the downlink is a model to a key holder
    ],
)
def test_hand_computed_flows_one_year(strategy: str, risk: float) -> None:
    cost = _cost(strategy)
    assert cost.feasible and cost.reasons == ()
    assert cost.transfer_cost_usd == pytest.approx(2_000.0 + 1_000.0)
    assert cost.lead_time_days == pytest.approx(30.0)
    assert cost.residual_risk_usd == pytest.approx(risk)
    assert cost.operational_cost_usd == pytest.approx(OPERATIONAL)
    assert cost.total_usd == pytest.approx(3_000.0 + risk + OPERATIONAL)
    by_key = {(r.direction, r.exporter): r for r in cost.routes}
    assert len(cost.routes) == 4
    # The hub institution's flows are domestic: no mechanism, no risk.
    up = "pooling" if strategy == "centralized" else "uplink"
    assert by_key[(up, "a")].mechanism == "domestic" and by_key[(up, "a")].risk_usd == 0
    risks = {r.institution: r.residual_risk_usd for r in cost.risks}
    assert risks["a"] == 0.0
    assert risks["aggregator"] == pytest.approx(0.02 * CAP_HUB)  # the downlink's exporter


def test_local_only_has_no_flows() -> None:
    cost = _cost("local-only")
    assert cost.routes == () and cost.transfer_cost_usd == 0 and cost.residual_risk_usd == 0
    assert cost.total_usd == pytest.approx(OPERATIONAL)


def test_horizon_recurring_renewal_and_per_person_costs() -> None:
    # Three years: scc recurs (100 units a year after the first).
    cost = _cost("fedavg", years=3)
    uplink = next(r for r in cost.routes if r.direction == "uplink" and r.exporter == "b")
    assert uplink.fixed_cost_usd == pytest.approx(2_000.0)
    assert uplink.recurring_cost_usd == pytest.approx(2 * 100 * 2.0)
    assert cost.residual_risk_usd == pytest.approx(3 * (0.05 * CAP_BB + 0.02 * CAP_HUB))
    assert cost.operational_cost_usd == pytest.approx(3 * OPERATIONAL)
    # A mechanism valid two years is renewed at the start of year three.
    renewing = {**PROFILES, "RR": PROFILES["ZZ"].model_copy(update={"jurisdiction": "RR"})}
    route = next(
        r
        for r in _cost("fedavg", hub="RR", profiles=renewing, years=3).routes
        if r.direction == "uplink" and r.exporter == "a"
    )
    assert route.mechanism == "renewing"
    assert route.fixed_cost_usd == pytest.approx(500.0)
    assert route.recurring_cost_usd == pytest.approx(200.0)
    assert route.lead_time_days == pytest.approx(80.0)


def test_per_person_cost_and_mechanism_overlay() -> None:
    overlay = {
        "name": "consent-rule",
        "description": "banks need consent",
        "source": "test rule",
        "applies_to": ["bank"],
        "data": ["raw_records"],
        "outcome": "mechanism",
        "mechanism": "consent",
    }
    profiles = {
        **PROFILES,
        "BB": _profile(
            "BB", usd=2.0, penalty={"combine": "fixed", "fixed": _s(1e6)}, overlays=[overlay]
        ),
    }
    bank = [Inst("a", "AA", 100), Inst("b", "BB", 50)]
    cost = _cost("centralized", bank, profiles)
    route = next(r for r in cost.routes if r.direction == "pooling" and r.exporter == "b")
    assert route.mechanism == "scc + consent"
    assert route.fixed_cost_usd == pytest.approx((1_000 + 10 + 2 * 50) * 2.0)
    assert route.lead_time_days == pytest.approx(40.0)
    assert any(c.text == "test rule" for c in route.citations)
    # The overlay binds banks only: a lender of the same data needs the contract alone.
    lender = [Inst("a", "AA", 100), Inst("b-lender", "BB", 50)]
    route = next(
        r
        for r in _cost("centralized", lender, profiles).routes
        if r.direction == "pooling" and r.exporter == "b-lender"
    )
    assert route.mechanism == "scc"
    # Updates are not raw records: no consent there.
    up = next(r for r in _cost("fedavg", bank, profiles).routes if r.exporter == "b")
    assert up.mechanism == "scc"


def test_prohibiting_overlay_makes_pooling_infeasible_not_priced() -> None:
    ban = {
        "name": "localise",
        "description": "records stay in BB",
        "source": "test localisation rule",
        "applies_to": ["bank"],
        "data": ["raw_records"],
        "outcome": "prohibited",
    }
    profiles = {
        **PROFILES,
        "BB": _profile("BB", usd=2.0, penalty={"combine": "fixed", "fixed": _s(1)}, overlays=[ban]),
    }
    cost = _cost("centralized", TWO, profiles)
    assert not cost.feasible
    assert cost.total_usd is None and cost.transfer_cost_usd is None
    assert len(cost.reasons) == 1 and cost.reasons[0].startswith("b (BB -> AA, pooling)")
    assert "test localisation rule" in cost.reasons[0]
    pooled = next(r for r in cost.routes if r.exporter == "b" and r.direction == "pooling")
    assert pooled.mechanism == "prohibited" and pooled.fixed_cost_usd == 0
    # Localisation bans raw records only; updates may still flow.
    assert _cost("fedavg", TWO, profiles).feasible
    # Pooling where the localised institution sits is feasible.
    assert _cost("centralized", TWO, profiles, hub="BB").feasible


def test_dp_probability_depends_on_epsilon() -> None:
    p_up = 0.001 + (0.01 - 0.001) * (1 - math.exp(-2.0 / 2.0))
    p_down = 0.001 + (0.02 - 0.001) * (1 - math.exp(-2.0 / 2.0))
    cost = _cost("he-fedavg-dp", epsilon=2.0)
    assert cost.residual_risk_usd == pytest.approx(p_up * CAP_BB + p_down * CAP_HUB)
    small = _cost("he-fedavg-dp", epsilon=0.5).residual_risk_usd
    assert small < cost.residual_risk_usd < _cost("he-fedavg").residual_risk_usd


def test_flags_decide_mechanism_and_risk_together() -> None:
    off = FlagOverrides(updates_are_personal_data=False)
    fedavg = _cost("fedavg", assumptions=off)
    assert fedavg.transfer_cost_usd == 0.0 and fedavg.residual_risk_usd == 0.0
    pooled = _cost("centralized", assumptions=off)  # raw records are personal data regardless
    assert pooled.transfer_cost_usd == pytest.approx(2_000.0)
    assert pooled.residual_risk_usd == pytest.approx(0.1 * CAP_BB)
    exits = FlagOverrides(encryption_exits_scope=True)
    he = _cost("he-fedavg", assumptions=exits)
    # The keyless uplink leaves scope; the downlink reaches key holders and stays in it.
    assert he.transfer_cost_usd == pytest.approx(1_000.0)
    assert he.residual_risk_usd == pytest.approx(0.02 * CAP_HUB)
    assert _cost("fedavg", assumptions=exits).transfer_cost_usd == pytest.approx(3_000.0)


def test_mechanisms_not_in_place_multiply_the_risk() -> None:
    cost = _cost("fedavg", mechanisms_in_place=False)
    assert cost.residual_risk_usd == pytest.approx(4 * (0.05 * CAP_BB + 0.02 * CAP_HUB))


def test_hub_with_free_route_and_turnover_override() -> None:
    # Hub ZZ: every route to ZZ is free (mechanism none): no cost, no transfer risk; the
    # downlinks from ZZ (priced by ZZ's profile, a copy of AA's) still need the contract.
    cost = _cost("fedavg", hub="ZZ")
    uplinks = [r for r in cost.routes if r.direction == "uplink"]
    assert {(r.mechanism, r.regulated, r.fixed_cost_usd, r.risk_usd) for r in uplinks} == {
        ("none", False, 0.0, 0.0)
    }
    assert cost.transfer_cost_usd == pytest.approx(2 * 1_000.0)
    assert cost.residual_risk_usd == pytest.approx(2 * 0.02 * CAP_HUB)
    bigger = _cost("fedavg", turnover_usd={"aggregator": 10e6})
    assert bigger.residual_risk_usd == pytest.approx(0.05 * CAP_BB + 0.02 * 1e6)
    assert bigger.provenance["turnover.aggregator"].kind == "input"


def test_study_takes_turnover_from_the_consortium_file_and_the_command_line(
    tmp_path: Path,
) -> None:
    scenario = Scenario(
        spec=ScenarioSpec(),
        work_dir=tmp_path,
        source="constructed",
        institutions=tuple(Institution(i.name, i.jurisdiction, tmp_path, i.rows, 1) for i in TWO),
        schema=None,  # type: ignore[arg-type]  # pricing does not read the schema
        schema_path=tmp_path,
        secret_context=tmp_path,
        public_context=tmp_path,
        hub="AA",
    )
    quality = StrategyEvaluation(None, ())  # type: ignore[arg-type]  # pricing reads no quality
    run = StrategyRun(StrategyPlan("fedavg", "fedavg"), quality, 3_600.0, 2_000_000_000, 1.0)
    accounts = CONSORTIUM.model_copy(update={"turnover_usd": {"aggregator": 10e6}})
    plan = CompliancePlan(as_of=AS_OF, years=1)
    registry = Registry(PROFILES, accounts)
    model = cost_model(run, scenario, PROFILES, Prices(), consortium=accounts, plan=plan)
    assert model.cost(registry.base(), registry).residual_risk_usd == pytest.approx(
        0.05 * CAP_BB + 0.02 * 1e6
    )
    plan = CompliancePlan(as_of=AS_OF, years=1, turnover_usd={"aggregator": 20e6})
    model = cost_model(run, scenario, PROFILES, Prices(), consortium=accounts, plan=plan)
    assert model.cost(registry.base(), registry).residual_risk_usd == pytest.approx(
        0.05 * CAP_BB + 0.02 * 2e6
    )


def test_provenance_marks_measured_sourced_and_overridden() -> None:
    cost = _cost("he-fedavg")
    assert cost.provenance["operational.cpu_s"].kind == "measured"
    assert cost.provenance["prices.cpu_hour_usd"].kind == "assumed"
    assert cost.provenance["BB.mechanisms.scc.fixed_cost"].kind == "sourced"
    assert cost.provenance["as_of"].detail == "law as at 2026-11-30"
    swept = _cost("he-fedavg", assumptions=FlagOverrides(True, True))
    assert swept.provenance["flags.BB.encryption_exits_scope"].kind == "input"
    route = next(r for r in cost.routes if r.exporter == "b")
    assert any(p.startswith("BB.mechanisms.scc.fixed_cost: sourced") for p in route.provenance)


def test_prices_are_configurable() -> None:
    cost = _cost("local-only", prices=Prices(cpu_hour_usd=1.0, gb_sent_usd=0.0))
    assert cost.operational_cost_usd == pytest.approx(1.0)


def test_sensitivity_has_four_combinations_side_by_side() -> None:
    registry = Registry(PROFILES, CONSORTIUM)
    model = CostModel("he-fedavg", TWO, PROFILES, CONSORTIUM, **MEASURED, as_of=AS_OF, years=1)
    rows = sensitivity(model, registry)
    assert [(r.updates_are_personal_data, r.encryption_exits_scope) for r in rows] == [
        (False, False),
        (False, True),
        (True, False),
        (True, True),
    ]
    transfer = [r.cost.transfer_cost_usd for r in rows]
    assert transfer == [0.0, 0.0, pytest.approx(3_000.0), pytest.approx(1_000.0)]
    table = sensitivity_table(rows)
    assert len(table) == 4 and set(table["strategy"]) == {"he-fedavg"}


def test_errors_are_typed() -> None:
    with pytest.raises(StrategyError, match="epsilon"):
        _cost("he-fedavg-dp")
    with pytest.raises(StrategyError, match="unknown strategy"):
        _cost("gossip")
    with pytest.raises(StrategyError, match="CC"):
        _cost("fedavg", [Inst("c", "CC", 1)])
    with pytest.raises(StrategyError, match="negative"):
        compliance_cost("fedavg", TWO, PROFILES, cpu_s=-1.0, bytes_sent=0.0, consortium=CONSORTIUM)
    with pytest.raises(StrategyError, match="people per year unknown"):
        _cost("fedavg", [Inst("a", "AA", 1), type("X", (), {"name": "x", "jurisdiction": "BB"})()])
    with pytest.raises(StrategyError, match="at least one year"):
        _cost("fedavg", years=0)
