"""``report.html``: one self-contained page (inline CSS, PNGs as base64 data URIs).

Rendered from the ``results.json`` data alone, so the page and the JSON can
never disagree. Every value is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping, Sequence
from itertools import product
from typing import Any

__all__ = ["render_html"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
tr.front td { background: #eef8ee; } .infeasible { color: #b00; }
img { max-width: 100%; } .note { color: #555; font-size: 0.9em; }
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and kind == "bytes":
        return f"{value:,}"
    if isinstance(value, int | float):
        if kind == "usd":
            return f"{value:,.0f}"
        if kind == "rate":
            return f"{value:.1%}"
        if kind == "s":
            return f"{value:.1f}"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    return _e(value)


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], classes: Iterable[str] = ()
) -> str:
    head = "".join(
        f'<th class="{"l" if i == 0 else ""}">{_e(h)}</th>' for i, h in enumerate(headers)
    )
    body = []
    row_classes = list(classes)
    for index, row in enumerate(rows):
        css = row_classes[index] if index < len(row_classes) else ""
        cells = "".join(f'<td class="{"l" if i == 0 else ""}">{c}</td>' for i, c in enumerate(row))
        body.append(f'<tr class="{css}">{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _scenario(scenario: Mapping[str, Any]) -> str:
    settings = scenario["settings"]
    keys = (
        "seed", "rounds", "epochs", "batch_size", "learning_rate", "model", "test_fraction",
        "epsilons", "dp_clip", "dp_delta", "target_bad_rate",
    )  # fmt: skip
    parts = [
        f"<p>Data: {_e(scenario['source'])}. Target <code>{_e(scenario['target'])}</code>, "
        f"bad label <code>{_e(scenario['positive'])}</code>, {scenario['features']} features. "
        f"Pool and aggregator in <b>{_e(scenario['hub'])}</b>. Study wall time "
        f"{scenario['wall_s']:.1f} s; Ray: {_e(scenario['ray_address'])}.</p>",
        _table(["setting", "value"], [[_e(k), _e(settings[k])] for k in keys]),
        _table(
            ["institution", "jurisdiction", "rows", "bad rows"],
            [
                [_e(i["name"]), _e(i["jurisdiction"]), f"{i['rows']:,}", f"{i['positives']:,}"]
                for i in scenario["institutions"]
            ],
        ),
    ]
    for title, items in (("Excluded", scenario["excluded"]), ("Assumed", scenario["assumed"])):
        if items:
            parts.append(f"<p>{title}:</p><ul>{''.join(f'<li>{_e(x)}</li>' for x in items)}</ul>")
    return "".join(parts)


def _strategies(strategies: Sequence[Mapping[str, Any]]) -> str:
    headers = [
        "strategy", "AUC", "KS", "Brier", "approval", "mean inst. AUC", "transfer", "residual risk",
        "operational", "total (USD)", "lead time (d)", "bytes sent", "CPU s", "wall s", "ε",
        "Pareto",
    ]  # fmt: skip
    rows, classes = [], []
    for s in strategies:
        cost = s["compliance_cost"]
        total = (
            _fmt(cost["total"], "usd")
            if s["feasible"]
            else '<span class="infeasible">infeasible</span>'
        )
        rows.append(
            [
                _e(s["name"]),
                _fmt(s["auc"]),
                _fmt(s["ks"]),
                _fmt(s["brier"]),
                _fmt(s["approval_rate"], "rate"),
                _fmt(s["mean_institution_auc"]),
                _fmt(cost["transfer"], "usd"),
                _fmt(cost["residual_risk"], "usd"),
                f"{cost['operational']:.4f}",
                total,
                _fmt(s["lead_time_days"], "s"),
                _fmt(s["bytes_sent"], "bytes"),
                _fmt(s["cpu_s"], "s"),
                _fmt(s["wall_s"], "s"),
                _fmt(s["epsilon"], "s") if s["epsilon"] is not None else "—",
                "on front" if s["on_pareto_front"] else "",
            ]
        )
        classes.append("front" if s["on_pareto_front"] else "")
    reasons = [
        f"<li><b>{_e(s['name'])}</b>: {_e('; '.join(s['infeasible_reasons']))}</li>"
        for s in strategies
        if not s["feasible"]
    ]
    notes = f"<p>Infeasible (not priced):</p><ul>{''.join(reasons)}</ul>" if reasons else ""
    return _table(headers, rows, classes) + notes


def _sensitivity(rows: Sequence[Mapping[str, Any]], strategies: Sequence[str]) -> str:
    combos = list(product((False, True), repeat=2))
    headers = ["strategy"] + [
        f"personal data: {'yes' if p else 'no'} / encryption exits scope: {'yes' if e else 'no'}"
        for p, e in combos
    ]
    index = {
        (r["strategy"], r["updates_are_personal_data"], r["encryption_exits_scope"]): r
        for r in rows
    }
    body = []
    for name in strategies:
        cells = [_e(name)]
        for p, e in combos:
            row = index.get((name, p, e))
            if row is None:
                cells.append("—")
            elif not row["feasible"]:
                cells.append('<span class="infeasible">infeasible</span>')
            else:
                cells.append(
                    f"{row['total']:,.0f} <span class='note'>(transfer "
                    f"{row['transfer']:,.0f}, {row['lead_time_days']:.0f} d)</span>"
                )
        body.append(cells)
    return _table(headers, body)


def _institutions(rows: Sequence[Mapping[str, Any]], strategy: str) -> str:
    return _table(
        [
            "institution",
            "jurisdiction",
            "rows",
            "local AUC",
            f"{strategy} AUC",
            "local approval",
            f"{strategy} approval",
        ],
        [
            [
                _e(r["name"]),
                _e(r["jurisdiction"]),
                f"{r['n']:,}",
                _fmt(r["local_auc"]),
                _fmt(r["federated_auc"]),
                _fmt(r["local_approval_rate"], "rate"),
                _fmt(r["federated_approval_rate"], "rate"),
            ]
            for r in rows
        ],
    )


def _list(items: Iterable[str]) -> str:
    return "<ul>" + "".join(f"<li>{_e(x)}</li>" for x in items) + "</ul>"


def render_html(results: Mapping[str, Any], images: Mapping[str, bytes]) -> str:
    """The report page for ``results`` (as :func:`~simulations.report.results_dict` builds it).

    ``images`` holds the PNG bytes of ``"pareto"`` and ``"uplift"``.
    """
    scenario = results["scenario"]
    strategies = results["strategies"]
    names = [s["name"] for s in strategies]
    provenance = results["provenance"]
    flags = scenario["flags"]
    flag_rows = [
        [_e(code), _fmt(f["updates_are_personal_data"]), _fmt(f["encryption_exits_scope"])]
        for code, f in sorted(flags.items())
    ]
    target = scenario["settings"]["target_bad_rate"]
    federated = scenario["federated_strategy_per_institution"]
    sections = [
        "<h1>crossfed: accuracy against compliance cost</h1>",
        f"<p class='note'>Quality is {_e(scenario['quality_metric'])}; approval rate is the "
        f"share approved at a {target:.0%} observed bad rate. Costs are first-year, in USD.</p>",
        "<h2>Scenario</h2>",
        _scenario(scenario),
        "<h2>Strategies</h2>",
        _strategies(strategies),
        _image(images["pareto"], "AUC against total compliance cost, Pareto front marked"),
        "<h2>Unsettled legal questions: sensitivity</h2>",
        "<p>Whether model updates are personal data, and whether encryption takes them out of "
        "a regime's scope, have no settled answer. The table above uses each profile's own "
        "answer:</p>",
        _table(["jurisdiction", "updates are personal data", "encryption exits scope"], flag_rows),
        "<p>Total cost (USD) under each answer, applied to every jurisdiction at once:</p>",
        _sensitivity(results["sensitivity"], names),
        "<h2>Per-institution uplift</h2>",
        f"<p>Each institution's own model (local-only) against the federated model "
        f"({_e(federated)}), on the institution's own test split.</p>",
        _image(images["uplift"], "per-institution AUC and approval rate, local against federated"),
        _institutions(results["institutions"], federated),
        "<h2>What was measured, what was assumed</h2>",
        "<h3>Measured in this run</h3>",
        _list(provenance["measured"]),
        "<h3>Sourced (from the jurisdiction profiles)</h3>",
        _list(provenance["sourced"]),
        "<h3>Assumed (override with --profiles DIR)</h3>",
        _list(provenance["assumed"]),
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>crossfed simulation report</title><style>{_CSS}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )
