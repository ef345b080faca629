"""The compliance outputs of a report, from a priced study whose runs are stand-ins (no training).

A real scenario is prepared (three generated institutions: EU, US, CN); the trained
runs are replaced by fixed measurements, which is all the pricing reads.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from clients import RiskMetrics
from crossfed.cli import app
from simulations import (
    CompliancePlan,
    Prices,
    ScenarioSpec,
    StrategyPlan,
    StrategyRun,
    StudyResult,
    load_profiles,
    plan_strategies,
    prepare_scenario,
    write_report,
)
from simulations.compliance import load_consortium
from simulations.evaluation import StrategyEvaluation
from simulations.study import price_strategies

PNG = b"\x89PNG\r\n\x1a\n"
ROUTE_KEYS = {
    "strategy", "origin", "destination", "direction", "data_class", "people", "mechanism",
    "fixed_cost", "recurring_cost", "lead_time_days", "citations", "provenance",
}  # fmt: skip


def _run(plan: StrategyPlan, count: int) -> StrategyRun:
    metrics = RiskMetrics(auc=0.75, ks=0.3, brier=0.05, log_loss=0.2, approval_rate=0.5)
    federated = plan.kind not in ("centralized", "local-only")
    return StrategyRun(
        plan,
        StrategyEvaluation(metrics, (metrics,) * count),
        cpu_s=30.0 if federated else 5.0,
        bytes_sent=50_000_000 if plan.kind.startswith("he") else 400_000,
        wall_s=1.0,
        epsilon=plan.epsilon,
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> StudyResult:
    work = tmp_path_factory.mktemp("study")
    spec = ScenarioSpec(institutions=3, total_rows=900, epsilons=(4.0,))
    scenario = prepare_scenario(spec, work)
    profiles = load_profiles()
    consortium = load_consortium()
    plan = CompliancePlan(
        as_of=date(2027, 5, 12), years=2, turnover_usd={"us-card-bank": 1e9}, draws=300
    )
    runs = [_run(p, len(scenario.institutions)) for p in plan_strategies(spec)]
    results, registry, mc = price_strategies(runs, scenario, profiles, Prices(), consortium, plan)
    return StudyResult(
        scenario=scenario,
        strategies=tuple(results),
        prices=Prices(),
        profiles=profiles,
        profiles_dir=None,
        ray_address=None,
        wall_s=1.0,
        compliance=plan,
        consortium=consortium,
        registry=registry,
        monte_carlo=mc,
    )


def test_results_json_gains_the_compliance_keys(study: StudyResult, tmp_path: Path) -> None:
    paths = write_report(study, tmp_path)
    results = json.loads(paths["results.json"].read_text())
    assert results["as_of"] == "2027-05-12" and results["years"] == 2
    names = [s["name"] for s in results["strategies"]]
    # Routes: every flow of every strategy, with the documented keys.
    routes = results["routes"]
    assert {r["strategy"] for r in routes} == set(names) - {"local-only"}
    assert all(set(r) >= ROUTE_KEYS for r in routes)
    assert {r["direction"] for r in routes} == {"uplink", "downlink", "pooling"}
    cn_up = next(
        r
        for r in routes
        if r["strategy"] == "fedavg" and r["origin"] == "CN" and r["direction"] == "uplink"
    )
    assert cn_up["mechanism"] == "standard_contract + separate_consent"
    assert any(c["url"] for c in cn_up["citations"]) and cn_up["provenance"]
    # Risks: one row per exporter and strategy; the hub's bank carries none.
    risks = pd.DataFrame(results["risks"])
    assert set(risks.columns) >= {"strategy", "institution", "jurisdiction", "residual_risk"}
    hub_bank = risks[(risks.institution == "eu-universal-bank") & (risks.strategy == "fedavg")]
    assert hub_bank.residual_risk.tolist() == [0.0]
    # Monte Carlo: the documented shape and a probability.
    mc = results["monte_carlo"]
    assert mc["draws"] == 300 and set(mc["strategies"]) == set(names)
    assert set(mc["strategies"]["fedavg"]) >= {"p5", "p50", "p95"}
    assert 0.0 <= mc["p_he_saves_40pct"] <= 1.0
    assert mc["tornado"] and mc["tornado"][0]["swing"] >= mc["tornado"][-1]["swing"]
    # The assumption register: every used assumption has a range.
    register = [a for a in results["assumptions"] if a["used"] and a["kind"] == "assumed"]
    assert register and all(a["low"] is not None and a["high"] is not None for a in register)
    # Turnover given on the command line is an input, recorded as such.
    assert results["compliance"]["turnover_usd"] == {"us-card-bank": 1e9}
    assert results["compliance"]["institution_types"]["cn-platform-lender"] == "nonbank_lender"
    # Totals are the sum of their parts.
    for s in results["strategies"]:
        cost = s["compliance_cost"]
        if cost["total"] is not None:
            assert cost["total"] == pytest.approx(
                cost["transfer"] + cost["residual_risk"] + cost["operational"]
            )
            detail = s["cost_detail"]
            assert cost["operational"] == pytest.approx(
                detail["measured_operational"] + detail["technology"]
            )


def test_csv_png_and_html_sections(study: StudyResult, tmp_path: Path) -> None:
    paths = write_report(study, tmp_path)
    routes = pd.read_csv(paths["routes.csv"])
    assert {"strategy", "mechanism", "citations", "fixed_cost"} <= set(routes.columns)
    assert len(routes) == len(json.loads(paths["results.json"].read_text())["routes"])
    assert len(pd.read_csv(paths["risks.csv"])) > 0
    assert paths["tornado.png"].read_bytes()[:8] == PNG
    html = paths["report.html"].read_text()
    assert html.count("data:image/png;base64,") == 3
    for needle in (
        "Law as at 2027-05-12",
        "The 40 % claim",
        "REGULATION.md §10",
        "Routes: what each flow needs",
        "Assumption register",
        "Not modelled",
        'href="https://www.cac.gov.cn/',
    ):
        assert needle in html, needle


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--turnover", "nobody=5"], "nobody"),
        (["--turnover", "us-card-bank"], "NAME=USD"),
        (["--as-of", "30/11/2026"], "as-of"),
        (["--years", "0"], "years"),
    ],
)
def test_simulate_refuses_bad_compliance_options(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(
        app, ["simulate", "--out", str(tmp_path / "out"), "--institutions", "3", *args]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out" / "results.json").exists()
