"""A priced strategy as a report reads it: routes, risks by exporter, provenance.

:func:`breakdown` turns the first column of a :class:`~.model.CostModel`'s
evaluation into a :class:`~.costs.ComplianceCost`: one :class:`~.costs.RouteCost` per
flow (what it needs at ``as_of``, what changes later in the horizon, its costs, risk,
citations and the provenance of every number it read), the expected penalties per
exporter, the technology lines, and where each figure comes from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulations.compliance.costs import (
    ComplianceCost,
    Provenance,
    RiskCost,
    RouteCost,
    TechnologyCost,
)
from simulations.compliance.flows import AGGREGATOR, Flow
from simulations.compliance.parameters import Registry, Values
from simulations.compliance.rules import Decision

if TYPE_CHECKING:  # the model calls breakdown; only its types are needed here
    from simulations.compliance.model import CostModel, Evaluation, FlowEval

__all__ = ["breakdown"]


def breakdown(
    model: CostModel, ev: Evaluation, values: Values, registry: Registry
) -> ComplianceCost:
    """``model`` priced at the first column of ``values`` (``ev``), route by route."""
    feasible = bool(ev.feasible[0])
    routes, reasons = [], []
    risks: dict[str, float] = {p.name: 0.0 for p in model.parties}
    if model.flows:
        risks[AGGREGATOR] = 0.0
    for flow, decisions, fe in zip(model.flows, model.decisions, ev.flows, strict=True):
        routes.append(_route(model, flow, decisions, fe, registry))
        risks[flow.exporter.name] += float(fe.risk[0])
        if fe.infeasible[0]:
            why = next(d.prohibited for d in decisions if d.prohibited)
            reasons.append(
                f"{flow.exporter.name} ({flow.origin} -> {flow.destination}, "
                f"{flow.direction}): {why}"
            )
    jurisdiction = {p.name: p.jurisdiction for p in model.parties} | {AGGREGATOR: model.hub}
    tech = tuple(
        TechnologyCost(
            name,
            model.consortium.technology[name].description,
            count,
            float(one_off[0]),
            float(per_year[0]),
            float(one_off[0] + per_year[0]),
        )
        for name, count, one_off, per_year in ev.technology_lines
    )
    return ComplianceCost(
        strategy=model.strategy,
        hub=model.hub,
        epsilon=model.epsilon,
        feasible=feasible,
        reasons=tuple(dict.fromkeys(reasons)),
        transfer_cost_usd=float(ev.transfer[0]) if feasible else None,
        lead_time_days=float(ev.lead[0]) if feasible else None,
        residual_risk_usd=float(ev.risk[0]) if feasible else None,
        operational_cost_usd=float(ev.operational[0]),
        as_of=model.as_of,
        years=model.years,
        measured_operational_usd=float(ev.measured[0]),
        technology_usd=float(ev.technology[0]),
        technology=tech,
        routes=tuple(routes),
        risks=tuple(RiskCost(name, jurisdiction[name], value) for name, value in risks.items()),
        flags=_flags(model, values),
        provenance=_provenance(model, values, registry),
    )


def _route(
    model: CostModel, flow: Flow, decisions: list[Decision], fe: FlowEval, registry: Registry
) -> RouteCost:
    first = decisions[0]
    changes: list[str] = []
    previous = first.label
    for when, decision in zip(model.dates[1:], decisions[1:], strict=True):
        if decision.label != previous:
            changes.append(f"from {when.isoformat()}: {decision.label}")
            previous = decision.label
    personal = bool(fe.personal[0])
    prohibited = first.prohibited if personal and fe.infeasible[0] else None
    if not flow.cross_border:
        mechanism = "domestic"
    elif not personal:
        mechanism = "none (not personal data under these answers)"
    elif prohibited:
        mechanism = "prohibited"
    else:
        mechanism = " + ".join(first.mechanisms) or "none"
    provenance = tuple(
        f"{key}: {registry.parameters[key].value.provenance}"
        if key in registry.parameters
        else f"{key}: {'yes' if registry.flags[key].flag.value else 'no'} "
        f"({registry.flags[key].flag.provenance})"
        for key in sorted(fe.keys)
    )
    return RouteCost(
        strategy=model.strategy,
        direction=flow.direction,
        exporter=flow.exporter.name,
        recipient=flow.recipient.name,
        origin=flow.origin,
        destination=flow.destination,
        data_class=flow.data_class,
        people=flow.people,
        personal_data=personal,
        regulated=bool(fe.regulated[0]),
        mechanism=mechanism,
        decision=first.label,
        fixed_cost_usd=float(fe.fixed[0]),
        recurring_cost_usd=float(fe.later[0]),
        lead_time_days=float(fe.lead[0]),
        risk_usd=float(fe.risk[0]),
        prohibited=prohibited,
        citations=first.citations,
        provenance=provenance,
        changes=tuple(changes),
        notes=first.notes,
    )


def _flags(model: CostModel, values: Values) -> dict[str, dict[str, bool]]:
    codes = sorted({p.jurisdiction for p in model.parties} | {model.hub})
    return {
        code: {
            name: bool(values.flag(f"{code}.flags.{name}")[0])
            for name in model.profiles[code].flags
        }
        for code in codes
    }


def _provenance(model: CostModel, values: Values, registry: Registry) -> dict[str, Provenance]:
    prov: dict[str, Provenance] = {
        "operational.cpu_s": Provenance("measured", f"{model.cpu_s:g} CPU-seconds per run"),
        "operational.bytes_sent": Provenance("measured", f"{model.bytes_sent:g} bytes per run"),
        "prices.cpu_hour_usd": Provenance("assumed", model.prices.rationale),
        "prices.gb_sent_usd": Provenance("assumed", model.prices.rationale),
        "as_of": Provenance("input", f"law as at {model.as_of.isoformat()}"),
        "years": Provenance("input", f"{model.years}-year horizon"),
    }
    if model.hub != model.parties[0].jurisdiction:
        prov["hub"] = Provenance("input", model.hub)
    for name in model.turnover_usd:
        prov[f"turnover.{name}"] = Provenance("input", "turnover given by caller")
    for key in sorted(values.used):
        if key in registry.parameters:
            value = registry.parameters[key].value
            prov[key] = Provenance("sourced" if value.sourced else "assumed", value.detail)
        elif key in registry.flags:
            flag = registry.flags[key].flag
            answer = bool(values.flag(key)[0])
            code, _, name = key.partition(".flags.")
            if answer != flag.value:
                prov[f"flags.{code}.{name}"] = Provenance("input", f"override of {name} (sweep)")
            else:
                prov[f"flags.{code}.{name}"] = Provenance(
                    "sourced" if flag.sourced else "assumed", flag.detail
                )
    return prov
