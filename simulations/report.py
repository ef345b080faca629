"""A study's outputs: ``results.json``, CSV tables, the two plots and ``report.html``.

``results.json`` holds::

    {"scenario": {...},
     "strategies": [{"name", "auc", "ks", "brier", "approval_rate",
                     "compliance_cost": {"transfer", "residual_risk", "operational",
                                         "total", "currency"},
                     "lead_time_days", "bytes_sent", "cpu_s", "wall_s", "epsilon", ...}],
     "institutions": [{"name", "jurisdiction", "n", "local_auc", "federated_auc",
                       "local_approval_rate", "federated_approval_rate"}],
     "sensitivity": [{"strategy", "updates_are_personal_data", "encryption_exits_scope",
                      "feasible", "transfer", "residual_risk", "operational", "total",
                      "lead_time_days"}],
     "provenance": {"measured": [...], "sourced": [...], "assumed": [...]}}

Quality figures are on the union of the institutions' test splits (AUC there is
the Pareto plot's quality axis); costs are first-year USD. An infeasible
strategy has ``null`` transfer, residual-risk and total costs and lists its
reasons. The federated model of the per-institution table is ``he-fedavg``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from simulations.compliance import ComplianceCost
from simulations.plots import InstitutionPoint, StrategyPoint, pareto_figure, uplift_figure
from simulations.report_html import render_html
from simulations.study import StrategyResult, StudyResult

__all__ = ["FEDERATED_STRATEGY", "results_dict", "write_report"]

#: The strategy whose per-institution results stand for "federated" in the uplift table.
FEDERATED_STRATEGY = "he-fedavg"

_MEASURED = (
    "auc, ks, brier, log_loss, approval_rate: each strategy trained and scored on the "
    "institutions' held-out test splits",
    "cpu_s: process CPU for centralized and local-only training; for federated runs the "
    "aggregator thread's CPU plus the CPU of the Ray worker processes playing the "
    "institutions, measured from outside with psutil around each training round "
    "(institutions report nothing)",
    "bytes_sent: partition files pooled for centralized; every round's payloads down and "
    "up for federated runs (statistics round excluded)",
    "wall_s: wall-clock seconds of each strategy's training",
    "epsilon: spent by the RDP accountant over the run's rounds, counting only replies "
    "that entered each aggregate; it covers the model updates, not the statistics "
    "round or the evaluation metrics (exact sums released only to key holders)",
)


def _number(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _cost(cost: ComplianceCost) -> dict[str, Any]:
    return {
        "transfer": _number(cost.transfer_cost_usd),
        "residual_risk": _number(cost.residual_risk_usd),
        "operational": _number(cost.operational_cost_usd),
        "total": _number(cost.total_usd),
        "currency": "USD",
    }


def _strategy(result: StrategyResult) -> dict[str, Any]:
    run, overall = result.run, result.run.evaluation.overall
    return {
        "name": result.name,
        "cost_model_strategy": run.plan.kind,
        "auc": overall.auc,
        "ks": overall.ks,
        "brier": overall.brier,
        "log_loss": overall.log_loss,
        "approval_rate": overall.approval_rate,
        "mean_institution_auc": _number(run.evaluation.mean_institution_auc),
        "compliance_cost": _cost(result.cost),
        "feasible": result.cost.feasible,
        "infeasible_reasons": list(result.cost.reasons),
        "lead_time_days": _number(result.cost.lead_time_days),
        "bytes_sent": run.bytes_sent,
        "cpu_s": run.cpu_s,
        "wall_s": run.wall_s,
        "epsilon": run.epsilon,
        "target_epsilon": run.plan.epsilon,
        "on_pareto_front": result.on_front,
        "detail": run.detail,
    }


def _institutions(study: StudyResult) -> list[dict[str, Any]]:
    local = study.strategy("local-only").run.evaluation.institutions
    names = [r.name for r in study.strategies]
    federated_name = FEDERATED_STRATEGY if FEDERATED_STRATEGY in names else "fedavg"
    federated = study.strategy(federated_name).run.evaluation.institutions
    rows = []
    for inst, mine, fed in zip(study.scenario.institutions, local, federated, strict=True):
        rows.append(
            {
                "name": inst.name,
                "jurisdiction": inst.jurisdiction,
                "n": inst.rows,
                "positives": inst.positives,
                "local_auc": mine.auc if mine else None,
                "federated_auc": fed.auc if fed else None,
                "local_approval_rate": mine.approval_rate if mine else None,
                "federated_approval_rate": fed.approval_rate if fed else None,
            }
        )
    return rows


def _sensitivity(study: StudyResult) -> list[dict[str, Any]]:
    rows = []
    for result in study.strategies:
        for row in result.sensitivity:
            cost = _cost(row.cost)
            rows.append(
                {
                    "strategy": result.name,
                    "updates_are_personal_data": row.updates_are_personal_data,
                    "encryption_exits_scope": row.encryption_exits_scope,
                    "feasible": row.cost.feasible,
                    "transfer": cost["transfer"],
                    "residual_risk": cost["residual_risk"],
                    "operational": cost["operational"],
                    "total": cost["total"],
                    "lead_time_days": _number(row.cost.lead_time_days),
                }
            )
    return rows


def _provenance(study: StudyResult) -> dict[str, list[str]]:
    sourced: set[str] = set()
    assumed: set[str] = set()
    for result in study.strategies:
        for key, prov in result.cost.provenance.items():
            field = key.split(".")[0] if key.startswith(("risk.", "transfer.")) else key
            if prov.kind == "sourced":
                sourced.add(prov.detail)
            elif prov.kind == "assumed":
                assumed.add(f"{field}: {prov.detail}")
    return {"measured": list(_MEASURED), "sourced": sorted(sourced), "assumed": sorted(assumed)}


def results_dict(study: StudyResult) -> dict[str, Any]:
    """The study as ``results.json`` holds it (see the module docstring)."""
    scenario = study.scenario.describe()
    scenario.update(
        {
            "quality_metric": "ROC AUC on the union of the institutions' test splits",
            "federated_strategy_per_institution": FEDERATED_STRATEGY,
            "profiles_dir": study.profiles_dir,
            "prices": {
                "cpu_hour_usd": study.prices.cpu_hour_usd,
                "gb_sent_usd": study.prices.gb_sent_usd,
                "rationale": study.prices.rationale,
            },
            "ray_address": study.ray_address or "Ray started in-process for the study",
            "wall_s": study.wall_s,
            "flags": {
                code: {
                    "updates_are_personal_data": profile.flags.updates_are_personal_data.value,
                    "encryption_exits_scope": profile.flags.encryption_exits_scope.value,
                }
                for code, profile in study.profiles.items()
                if code in {i.jurisdiction for i in study.scenario.institutions}
            },
        }
    )
    return {
        "scenario": scenario,
        "strategies": [_strategy(r) for r in study.strategies],
        "institutions": _institutions(study),
        "sensitivity": _sensitivity(study),
        "provenance": _provenance(study),
    }


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)


def _flat(strategy: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in strategy.items() if k not in ("compliance_cost", "detail")}
    row["infeasible_reasons"] = "; ".join(strategy["infeasible_reasons"])
    for part, value in strategy["compliance_cost"].items():
        row[f"cost_{part}"] = value
    return row


def write_report(study: StudyResult, out_dir: str | Path) -> dict[str, Path]:
    """Write every output file into ``out_dir``; return their paths by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = results_dict(study)
    points = [
        StrategyPoint(s["name"], s["auc"], s["compliance_cost"]["total"], s["on_pareto_front"])
        for s in results["strategies"]
    ]
    pareto_png = pareto_figure(points)
    uplift_png = uplift_figure(
        [
            InstitutionPoint(
                i["name"],
                i["local_auc"],
                i["federated_auc"],
                i["local_approval_rate"],
                i["federated_approval_rate"],
            )
            for i in results["institutions"]
        ],
        study.scenario.spec.target_bad_rate,
    )
    paths = {
        "results.json": out / "results.json",
        "results.csv": out / "results.csv",
        "institutions.csv": out / "institutions.csv",
        "sensitivity.csv": out / "sensitivity.csv",
        "pareto.png": out / "pareto.png",
        "uplift.png": out / "uplift.png",
        "report.html": out / "report.html",
    }
    paths["results.json"].write_text(json.dumps(results, indent=2, default=float), encoding="utf-8")
    _write_csv(paths["results.csv"], [_flat(s) for s in results["strategies"]])
    _write_csv(paths["institutions.csv"], results["institutions"])
    _write_csv(paths["sensitivity.csv"], results["sensitivity"])
    paths["pareto.png"].write_bytes(pareto_png)
    paths["uplift.png"].write_bytes(uplift_png)
    paths["report.html"].write_text(
        render_html(results, {"pareto": pareto_png, "uplift": uplift_png}), encoding="utf-8"
    )
    return paths
