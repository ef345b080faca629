"""A study's outputs: ``results.json``, CSV tables, the plots and ``report.html``.

``results.json`` holds::

    {"scenario": {...},
     "as_of": "YYYY-MM-DD", "years": N,
     "strategies": [{"name", "auc", "ks", "brier", "approval_rate",
                     "compliance_cost": {"transfer", "residual_risk", "operational",
                                         "total", "currency"},
                     "cost_detail": {"measured_operational", "technology", "technology_lines"},
                     "lead_time_days", "bytes_sent", "cpu_s", "wall_s", "epsilon", ...}],
     "institutions": [{"name", "jurisdiction", "n", "local_auc", "federated_auc",
                       "personalised_auc", "local_approval_rate", "federated_approval_rate",
                       "personalised_approval_rate", "personalised_choice"}],
     "privacy_attacks": [{"strategy", "attack", "target", "surface", "advantage",
                          "best_tpr_minus_fpr", "rows", "note"}],
     "advantage_definition": "...",
     "sensitivity": [{"strategy", "updates_are_personal_data", "encryption_exits_scope",
                      "feasible", "transfer", "residual_risk", "operational", "total",
                      "lead_time_days"}],
     "sweep": [{"strategy", "jurisdiction", "flag", "answer", "applied", "settled", ...}],
     "routes": [{"strategy", "origin", "destination", "direction", "data_class", "people",
                 "mechanism", "fixed_cost", "recurring_cost", "lead_time_days",
                 "citations", "provenance", ...}],
     "risks": [{"strategy", "institution", "jurisdiction", "residual_risk"}],
     "monte_carlo": {"draws", "seed", "strategies": {name: {"p5", "p50", "p95", ...}},
                     "p_he_saves_40pct", "claim", "comparisons", "tornado"},
     "assumptions": [{"id", "value", "low", "high", "unit", "kind", "provenance", ...}],
     "compliance": {"hub", "institution_types", "turnover_usd", "not_modelled", ...},
     "provenance": {"measured": [...], "sourced": [...], "assumed": [...]}}

Quality figures are on the union of the institutions' test splits (AUC there is
the Pareto plot's quality axis); costs are USD over the horizon (``years``, from
``as_of``), undiscounted. An infeasible strategy has ``null`` transfer,
residual-risk and total costs and lists its reasons. The federated model of the
per-institution table is ``he-fedavg``; the personalised one is each institution's
choice among it fine-tuned, its mixture with the local model and the local
model, by cross-validation on its own training rows
(:mod:`simulations.personalisation`). Routes carry the study's strategy names.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from simulations.compliance import (
    ComplianceCost,
    MonteCarloResult,
    Quantiles,
    Registry,
    RouteCost,
)
from simulations.plots import (
    InstitutionPoint,
    StrategyPoint,
    TornadoPoint,
    pareto_figure,
    tornado_figure,
    uplift_figure,
)
from simulations.report_html import render_html
from simulations.study import StrategyResult, StudyResult

__all__ = ["FEDERATED_STRATEGY", "results_dict", "write_report"]

#: How ``privacy_attacks[].advantage`` is defined (also in the report and docs/privacy.md).
ADVANTAGE = (
    "membership attacks: ROC AUC of the attack's member scores minus 0.5, on equal numbers "
    "of training rows (members) and held-out test rows (non-members) per institution, "
    "pooled for target 'all' (0: nothing learnt; 0.5: every member told apart); "
    "best_tpr_minus_fpr: the best TPR - FPR over thresholds. bad-rate inference: 1 - the "
    "attack's mean absolute error / the prior guess's (0: no better than the prior)"
)

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
        "cost_detail": {
            "measured_operational": result.cost.measured_operational_usd,
            "technology": result.cost.technology_usd,
            "technology_lines": [
                {
                    "name": t.name,
                    "description": t.description,
                    "count": t.count,
                    "one_off": t.one_off_usd,
                    "per_year_over_horizon": t.per_year_usd,
                    "total": t.total_usd,
                }
                for t in result.cost.technology
            ],
        },
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
    personal = study.personalised
    own = personal.evaluation.institutions if personal else (None,) * len(local)
    choices = [c.choice for c in personal.choices] if personal else [None] * len(local)
    rows = []
    for inst, mine, fed, pers, choice in zip(
        study.scenario.institutions, local, federated, own, choices, strict=True
    ):
        rows.append(
            {
                "name": inst.name,
                "jurisdiction": inst.jurisdiction,
                "n": inst.rows,
                "positives": inst.positives,
                "local_auc": mine.auc if mine else None,
                "federated_auc": fed.auc if fed else None,
                "personalised_auc": pers.auc if pers else None,
                "local_approval_rate": mine.approval_rate if mine else None,
                "federated_approval_rate": fed.approval_rate if fed else None,
                "personalised_approval_rate": pers.approval_rate if pers else None,
                "personalised_choice": choice,
            }
        )
    return rows


def _attacks(study: StudyResult) -> list[dict[str, Any]]:
    return [
        {
            "strategy": a.strategy,
            "attack": a.attack,
            "target": a.target,
            "surface": a.surface,
            "advantage": _number(a.advantage) if a.advantage is not None else None,
            "best_tpr_minus_fpr": a.best_tpr_minus_fpr,
            "rows": a.rows,
            "note": a.note,
        }
        for a in study.privacy_attacks
    ]


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


def _sweep(study: StudyResult) -> list[dict[str, Any]]:
    return [
        {
            "strategy": result.name,
            "jurisdiction": row.jurisdiction,
            "flag": row.flag,
            "answer": row.answer,
            "applied": row.applied,
            "settled": row.settled,
            "feasible": row.feasible,
            "transfer": _number(row.transfer_usd),
            "residual_risk": _number(row.residual_risk_usd),
            "operational": _number(row.operational_usd),
            "total": _number(row.total_usd),
        }
        for result in study.strategies
        for row in result.sweep
    ]


def _route(name: str, route: RouteCost) -> dict[str, Any]:
    return {
        "strategy": name,
        "origin": route.origin,
        "destination": route.destination,
        "direction": route.direction,
        "data_class": route.data_class,
        "people": route.people,
        "mechanism": route.mechanism,
        "fixed_cost": route.fixed_cost_usd,
        "recurring_cost": route.recurring_cost_usd,
        "lead_time_days": route.lead_time_days,
        "citations": [{"text": c.text, "url": c.url} for c in route.citations],
        "provenance": list(route.provenance),
        "exporter": route.exporter,
        "recipient": route.recipient,
        "personal_data": route.personal_data,
        "regulated": route.regulated,
        "decision": route.decision,
        "residual_risk": route.risk_usd,
        "prohibited": route.prohibited,
        "changes": list(route.changes),
        "notes": list(route.notes),
    }


def _routes(study: StudyResult) -> list[dict[str, Any]]:
    return [_route(r.name, route) for r in study.strategies for route in r.cost.routes]


def _risks(study: StudyResult) -> list[dict[str, Any]]:
    return [
        {
            "strategy": r.name,
            "institution": risk.institution,
            "jurisdiction": risk.jurisdiction,
            "residual_risk": risk.residual_risk_usd if r.cost.feasible else None,
        }
        for r in study.strategies
        for risk in r.cost.risks
    ]


def _quantiles(q: Quantiles) -> dict[str, Any]:
    return {
        "p5": q.p5,
        "p50": q.p50,
        "p95": q.p95,
        "mean": q.mean,
        "defined_share": q.defined_share,
    }


def _monte_carlo(mc: MonteCarloResult | None) -> dict[str, Any] | None:
    if mc is None:
        return None
    return {
        "draws": mc.draws,
        "seed": mc.seed,
        "strategies": {
            name: {**_quantiles(q), "feasible_share": q.defined_share}
            for name, q in mc.strategies.items()
        },
        "p_he_saves_40pct": mc.p_he_saves_40pct,
        "claim": mc.claim,
        "comparisons": [
            {
                "baseline": c.baseline,
                "candidate": c.candidate,
                "saving_base": c.saving_base,
                "saving": _quantiles(c.saving),
                "p_saves_claim": c.p_saves_claim,
                "legal_saving_base": c.legal_saving_base,
                "legal_saving": _quantiles(c.legal_saving),
                "legal_p_saves_claim": c.legal_p_saves_claim,
            }
            for c in mc.comparisons
        ],
        "tornado": [
            {
                "id": b.id,
                "unit": b.unit,
                "kind": b.kind,
                "base": b.base,
                "low": b.low,
                "high": b.high,
                "saving_at_low": b.saving_at_low,
                "saving_at_high": b.saving_at_high,
                "swing": b.swing,
            }
            for b in mc.tornado
        ],
    }


def _assumptions(registry: Registry | None, used: set[str]) -> list[dict[str, Any]]:
    if registry is None:
        return []
    rows: list[dict[str, Any]] = [
        {
            "id": key,
            "value": p.value.value,
            "low": p.value.bounds[0],
            "high": p.value.bounds[1],
            "unit": p.unit,
            "kind": p.kind,
            "provenance": p.value.detail,
            "url": p.value.url,
            "varied": p.sampled,
            "used": key in used,
        }
        for key, p in registry.parameters.items()
    ]
    for key, fp in registry.flags.items():
        chance = fp.flag.probability
        rows.append(
            {
                "id": key,
                "value": fp.flag.value,
                "low": chance.bounds[0] if chance else None,
                "high": chance.bounds[1] if chance else None,
                "unit": "settled answer" if fp.flag.settled else "answer; low/high: P(yes)",
                "kind": "sourced" if fp.flag.sourced else "assumed",
                "provenance": fp.flag.detail,
                "url": fp.flag.url,
                "varied": fp.varied,
                "used": key in used,
            }
        )
    return rows


def _used(study: StudyResult) -> set[str]:
    keys: set[str] = set()
    for r in study.strategies:
        keys |= set(r.cost.provenance)
        keys |= {f"{c}.flags.{n}" for c, flags in r.cost.flags.items() for n in flags}
    return keys


def _compliance(study: StudyResult) -> dict[str, Any]:
    consortium = study.consortium
    codes = sorted({i.jurisdiction for i in study.scenario.institutions} | {study.scenario.hub})
    not_modelled = list(consortium.not_modelled) if consortium else []
    for code in codes:
        not_modelled += [f"{code}: {item}" for item in study.profiles[code].not_modelled]
    types = (
        {i.name: consortium.institutions.of(i.name) for i in study.scenario.institutions}
        if consortium
        else {}
    )
    return {
        "as_of": study.compliance.date.isoformat(),
        "years": study.compliance.years,
        "hub": study.scenario.hub,
        "institution_types": types,
        "institution_types_provenance": consortium.institutions.detail if consortium else None,
        "aggregator_dpf_certified": consortium.aggregator.dpf_certified if consortium else None,
        "turnover_usd": {
            **(consortium.turnover_usd if consortium else {}),
            **study.compliance.turnover_usd,
        },
        "people": {i.name: i.rows for i in study.scenario.institutions},
        "not_modelled": not_modelled,
        "profiles": {code: study.profiles[code].name for code in codes},
    }


def _provenance(study: StudyResult) -> dict[str, list[str]]:
    sourced: set[str] = set()
    assumed: set[str] = set()
    for result in study.strategies:
        for key, prov in result.cost.provenance.items():
            if prov.kind == "sourced":
                sourced.add(prov.detail)
            elif prov.kind == "assumed":
                assumed.add(f"{key}: {prov.detail}")
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
                code: {name: flag.value for name, flag in profile.flags.items()}
                for code, profile in study.profiles.items()
                if code in {i.jurisdiction for i in study.scenario.institutions}
            },
            "flags_settled": {
                code: {name: flag.settled for name, flag in profile.flags.items()}
                for code, profile in study.profiles.items()
                if code in {i.jurisdiction for i in study.scenario.institutions}
            },
        }
    )
    return {
        "scenario": scenario,
        "as_of": study.compliance.date.isoformat(),
        "years": study.compliance.years,
        "strategies": [_strategy(r) for r in study.strategies],
        "institutions": _institutions(study),
        "privacy_attacks": _attacks(study),
        "advantage_definition": ADVANTAGE,
        "sensitivity": _sensitivity(study),
        "sweep": _sweep(study),
        "routes": _routes(study),
        "risks": _risks(study),
        "monte_carlo": _monte_carlo(study.monte_carlo),
        "assumptions": _assumptions(study.registry, _used(study)),
        "compliance": _compliance(study),
        "provenance": _provenance(study),
    }


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)


def _flat(strategy: dict[str, Any]) -> dict[str, Any]:
    row = {
        k: v for k, v in strategy.items() if k not in ("compliance_cost", "detail", "cost_detail")
    }
    row["infeasible_reasons"] = "; ".join(strategy["infeasible_reasons"])
    for part, value in strategy["compliance_cost"].items():
        row[f"cost_{part}"] = value
    row["cost_measured_operational"] = strategy["cost_detail"]["measured_operational"]
    row["cost_technology"] = strategy["cost_detail"]["technology"]
    return row


def _flat_route(route: dict[str, Any]) -> dict[str, Any]:
    row = dict(route)
    row["citations"] = "; ".join(
        c["text"] + (f" <{c['url']}>" if c["url"] else "") for c in route["citations"]
    )
    for key in ("provenance", "changes", "notes"):
        row[key] = "; ".join(route[key])
    return row


def _tornado_points(results: dict[str, Any]) -> list[TornadoPoint]:
    mc = results["monte_carlo"] or {}
    return [
        TornadoPoint(b["id"], b["low"], b["high"], b["saving_at_low"], b["saving_at_high"])
        for b in mc.get("tornado", [])
    ]


def write_report(study: StudyResult, out_dir: str | Path) -> dict[str, Path]:
    """Write every output file into ``out_dir``; return their paths by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = results_dict(study)
    points = [
        StrategyPoint(s["name"], s["auc"], s["compliance_cost"]["total"], s["on_pareto_front"])
        for s in results["strategies"]
    ]
    pareto_png = pareto_figure(points, years=study.compliance.years)
    uplift_png = uplift_figure(
        [
            InstitutionPoint(
                i["name"],
                i["local_auc"],
                i["federated_auc"],
                i["local_approval_rate"],
                i["federated_approval_rate"],
                i["personalised_auc"],
                i["personalised_approval_rate"],
            )
            for i in results["institutions"]
        ],
        study.scenario.spec.target_bad_rate,
    )
    mc = results["monte_carlo"] or {}
    head = (mc.get("comparisons") or [None])[0]
    tornado_png = tornado_figure(
        _tornado_points(results),
        head["saving_base"] if head else None,
        f"{head['candidate']} against {head['baseline']}" if head else "",
        claim=mc.get("claim", 0.4),
    )
    paths = {
        "results.json": out / "results.json",
        "results.csv": out / "results.csv",
        "institutions.csv": out / "institutions.csv",
        "sensitivity.csv": out / "sensitivity.csv",
        "routes.csv": out / "routes.csv",
        "risks.csv": out / "risks.csv",
        "pareto.png": out / "pareto.png",
        "uplift.png": out / "uplift.png",
        "tornado.png": out / "tornado.png",
        "report.html": out / "report.html",
    }
    paths["results.json"].write_text(json.dumps(results, indent=2, default=float), encoding="utf-8")
    _write_csv(paths["results.csv"], [_flat(s) for s in results["strategies"]])
    _write_csv(paths["institutions.csv"], results["institutions"])
    _write_csv(paths["sensitivity.csv"], results["sensitivity"])
    pd.DataFrame([_flat_route(r) for r in results["routes"]]).to_csv(
        paths["routes.csv"], index=False
    )
    pd.DataFrame(results["risks"]).to_csv(paths["risks.csv"], index=False)
    paths["pareto.png"].write_bytes(pareto_png)
    paths["uplift.png"].write_bytes(uplift_png)
    paths["tornado.png"].write_bytes(tornado_png)
    paths["report.html"].write_text(
        render_html(results, {"pareto": pareto_png, "uplift": uplift_png, "tornado": tornado_png}),
        encoding="utf-8",
    )
    return paths
