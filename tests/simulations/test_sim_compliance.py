"""Compliance-cost model: hand-computed small cases, infeasibility, sensitivity."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest

from simulations import (
    STRATEGIES,
    FlagOverrides,
    Prices,
    Profile,
    StrategyError,
    compliance_cost,
    default_institutions,
    load_profiles,
    sensitivity,
    sensitivity_table,
)


@dataclass(frozen=True)
class Inst:
    name: str
    jurisdiction: str


def _s(value: float) -> dict[str, Any]:
    return {"value": value, "source": "test fixture"}


def _profile(code: str, *, usd: float, localise: bool, penalty: dict[str, Any]) -> Profile:
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
                    "lead_time_days": _s(30),
                },
            },
            "routes": {"default": "scc", "destinations": {"ZZ": "none"}},
            "localisation": {"raw_records_prohibited": localise, "source": "test rule"},
            "penalty_cap": penalty,
            "enforcement_probability": {
                "raw_records": _s(0.1),
                "plaintext_updates": _s(0.05),
                "encrypted_updates": _s(0.01),
                "encrypted_dp_floor": _s(0.001),
                "dp_epsilon_scale": _s(2.0),
            },
            "flags": {
                "updates_are_personal_data": {"value": True, "settled": False, "source": "t"},
                "encryption_exits_scope": {"value": False, "settled": False, "source": "t"},
            },
        }
    )


# AA: hub, USD 1 per unit, cap 10% of turnover 5M = 0.5M.
# BB: USD 2 per unit, fixed cap 1M units = USD 2M; route BB->AA costs 1,000 units = USD 2,000.
PROFILES = {
    "AA": _profile(
        "AA", usd=1.0, localise=False, penalty={"combine": "share", "turnover_share": _s(0.1)}
    ),
    "BB": _profile(
        "BB", usd=2.0, localise=False, penalty={"combine": "fixed", "fixed": _s(1_000_000)}
    ),
}
TWO = [Inst("a", "AA"), Inst("b", "BB")]
MEASURED: dict[str, Any] = {"cpu_s": 3_600.0, "bytes_sent": 2e9}  # 1 CPU-hour, 2 GB
OPERATIONAL = 0.05 + 2 * 0.09


def _cost(strategy: Any, **kw: Any) -> Any:
    return compliance_cost(strategy, TWO, PROFILES, **MEASURED, **kw)


@pytest.mark.parametrize(
    ("strategy", "transfer", "lead", "risk"),
    [
        ("centralized", 2_000.0, 30.0, 0.1 * 500_000 + 0.1 * 2_000_000),
        ("local-only", 0.0, 0.0, 0.0),
        ("fedavg", 2_000.0, 30.0, 0.05 * 500_000 + 0.05 * 2_000_000),
        ("he-fedavg", 2_000.0, 30.0, 0.01 * 500_000 + 0.01 * 2_000_000),
    ],
)
def test_hand_computed_two_institutions(
    strategy: str, transfer: float, lead: float, risk: float
) -> None:
    cost = _cost(strategy)
    assert cost.feasible and cost.reasons == ()
    assert cost.transfer_cost_usd == pytest.approx(transfer)
    assert cost.lead_time_days == pytest.approx(lead)
    assert cost.residual_risk_usd == pytest.approx(risk)
    assert cost.operational_cost_usd == pytest.approx(OPERATIONAL)
    assert cost.total_usd == pytest.approx(transfer + risk + OPERATIONAL)


def test_dp_probability_depends_on_epsilon() -> None:
    p = 0.001 + (0.01 - 0.001) * (1 - math.exp(-2.0 / 2.0))
    cost = _cost("he-fedavg-dp", epsilon=2.0)
    assert cost.residual_risk_usd == pytest.approx(p * 2_500_000)
    assert cost.transfer_cost_usd == pytest.approx(2_000.0)
    small = _cost("he-fedavg-dp", epsilon=0.5).residual_risk_usd
    assert small < cost.residual_risk_usd < _cost("he-fedavg").residual_risk_usd


def test_flags_decide_whether_updates_need_a_mechanism() -> None:
    off = FlagOverrides(updates_are_personal_data=False)
    assert _cost("fedavg", assumptions=off).transfer_cost_usd == 0.0
    assert _cost("centralized", assumptions=off).transfer_cost_usd == pytest.approx(2_000.0)
    exits = FlagOverrides(encryption_exits_scope=True)
    assert _cost("he-fedavg", assumptions=exits).transfer_cost_usd == 0.0
    assert _cost("fedavg", assumptions=exits).transfer_cost_usd == pytest.approx(2_000.0)


def test_hub_and_destination_specific_route() -> None:
    # Hub BB: a's route AA->BB uses AA's default mechanism (1,000 units at USD 1).
    assert _cost("centralized", hub="BB").transfer_cost_usd == pytest.approx(1_000.0)
    # Hub ZZ: both routes use the free mechanism named for ZZ.
    cost = _cost("centralized", hub="ZZ")
    assert cost.transfer_cost_usd == 0.0
    assert {r.mechanism for r in cost.routes} == {"none"}


def test_turnover_override_changes_share_based_cap() -> None:
    cost = _cost("centralized", turnover_usd={"a": 10_000_000.0})
    assert cost.residual_risk_usd == pytest.approx(0.1 * 1_000_000 + 0.1 * 2_000_000)
    assert cost.provenance["risk.a.turnover"].kind == "input"


def test_localised_raw_records_make_pooling_infeasible() -> None:
    profiles = {
        **PROFILES,
        "BB": _profile("BB", usd=2.0, localise=True, penalty={"combine": "fixed", "fixed": _s(1)}),
    }
    cost = compliance_cost("centralized", TWO, profiles, **MEASURED)
    assert not cost.feasible
    assert cost.total_usd is None and cost.transfer_cost_usd is None
    assert len(cost.reasons) == 1 and "b:" in cost.reasons[0] and "BB" in cost.reasons[0]
    # Localisation bans raw records only; updates may still flow.
    assert compliance_cost("fedavg", TWO, profiles, **MEASURED).feasible
    # Pooling where the localised institution sits is feasible.
    assert compliance_cost("centralized", TWO, profiles, **MEASURED, hub="BB").feasible


def test_provenance_marks_measured_and_assumed() -> None:
    cost = _cost("he-fedavg")
    assert cost.provenance["operational.cpu_s"].kind == "measured"
    assert cost.provenance["operational.bytes_sent"].kind == "measured"
    assert cost.provenance["prices.cpu_hour_usd"].kind == "assumed"
    assert cost.provenance["transfer.b.fixed_cost"].kind == "sourced"
    swept = _cost("he-fedavg", assumptions=FlagOverrides(True, True))
    assert swept.provenance["flags.BB.encryption_exits_scope"].kind == "input"


def test_prices_are_configurable() -> None:
    cost = _cost("local-only", prices=Prices(cpu_hour_usd=1.0, gb_sent_usd=0.0))
    assert cost.operational_cost_usd == pytest.approx(1.0)


def test_sensitivity_has_four_combinations_side_by_side() -> None:
    rows = sensitivity("he-fedavg", TWO, PROFILES, **MEASURED)
    assert [(r.updates_are_personal_data, r.encryption_exits_scope) for r in rows] == [
        (False, False),
        (False, True),
        (True, False),
        (True, True),
    ]
    transfer = [r.cost.transfer_cost_usd for r in rows]
    assert transfer == [0.0, 0.0, pytest.approx(2_000.0), 0.0]
    table = sensitivity_table(rows + sensitivity("fedavg", TWO, PROFILES, **MEASURED))
    assert len(table) == 8
    assert set(table["strategy"]) == {"he-fedavg", "fedavg"}


def test_errors_are_typed() -> None:
    with pytest.raises(StrategyError, match="epsilon"):
        _cost("he-fedavg-dp")
    with pytest.raises(StrategyError, match="unknown strategy"):
        _cost("gossip")
    with pytest.raises(StrategyError, match="CC"):
        compliance_cost("fedavg", [Inst("c", "CC")], PROFILES, **MEASURED)
    with pytest.raises(StrategyError, match="negative"):
        compliance_cost("fedavg", TWO, PROFILES, cpu_s=-1.0, bytes_sent=0.0)


def test_shipped_profiles_price_the_default_federation() -> None:
    profiles = load_profiles()
    institutions = default_institutions()
    costs = {
        s: compliance_cost(s, institutions, profiles, cpu_s=10.0, bytes_sent=1e6, epsilon=1.0)
        for s in STRATEGIES
    }
    # CN, ID and IN localise raw financial records: pooling in the EU is not an option.
    assert not costs["centralized"].feasible
    assert len(costs["centralized"].reasons) == 3
    risk = [costs[s].residual_risk_usd or 0.0 for s in ("fedavg", "he-fedavg", "he-fedavg-dp")]
    assert risk[0] > risk[1] > risk[2] > 0
    assert costs["local-only"].total_usd == pytest.approx(costs["local-only"].operational_cost_usd)
