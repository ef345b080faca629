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
.box { border: 1px solid #c90; background: #fff8e6; padding: 0.5em 1em; margin: 1em 0; }
.claim { border: 1px solid #36c; background: #eef3ff; padding: 0.5em 1em; margin: 1em 0; }
td.small, th.small { font-size: 0.85em; text-align: left; max-width: 32em; }
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


def _leak(attacks: Sequence[Mapping[str, Any]], strategy: str, surface: str) -> str:
    """The calibrated membership attack's pooled advantage on one surface, and its worst."""
    rows = [
        a
        for a in attacks
        if a["strategy"] == strategy
        and a["attack"] == "membership-calibrated"
        and a["surface"].startswith(surface)
    ]
    pooled = [a["advantage"] for a in rows if a["target"] == "all"]
    worst = [a["advantage"] for a in rows if a["target"] != "all" and a["advantage"] is not None]
    if not pooled or pooled[0] is None:
        return "n/a"
    return f"{pooled[0]:+.3f}" + (f" (max {max(worst):+.3f})" if worst else "")


_ATTACK_HEADERS = (
    "strategy", "attack", "what the attacker sees", "target", "advantage", "best TPR-FPR",
    "rows", "note",
)  # fmt: skip


def _attacks(attacks: Sequence[Mapping[str, Any]], definition: str) -> str:
    rows = [
        [
            _e(a["strategy"]),
            _e(a["attack"]),
            _e(a["surface"]),
            _e(a["target"]),
            "n/a" if a["advantage"] is None else f"{a['advantage']:+.3f}",
            "—" if a["best_tpr_minus_fpr"] is None else f"{a['best_tpr_minus_fpr']:.3f}",
            f"{a['rows']:,}" if a["rows"] else "—",
            f'<span class="small">{_e(a["note"])}</span>',
        ]
        for a in attacks
        if a["target"] == "all"
    ]
    return (
        f"<p>Advantage: {_e(definition)}. Rows pooled over institutions; every "
        "institution's own row is in results.json (<code>privacy_attacks</code>).</p>"
        + _table(
            [
                "strategy",
                "attack",
                "what the attacker sees",
                "target",
                "advantage",
                "best TPR-FPR",
                "rows",
                "note",
            ],
            rows,
        )
    )


def _strategies(
    strategies: Sequence[Mapping[str, Any]], attacks: Sequence[Mapping[str, Any]] = ()
) -> str:
    headers = [
        "strategy", "AUC", "KS", "Brier", "approval", "mean inst. AUC", "transfer", "residual risk",
        "operational", "total (USD)", "lead time (d)", "bytes sent", "CPU s", "wall s", "ε",
        "MIA adv. final model", "MIA adv. update", "Pareto",
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
                _leak(attacks, s["name"], "final model")
                if s["name"] != "local-only"
                else _leak(attacks, s["name"], "own model"),
                _leak(attacks, s["name"], "plaintext update"),
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
            "personalised AUC",
            "personalised model",
            "local approval",
            f"{strategy} approval",
            "personalised approval",
        ],
        [
            [
                _e(r["name"]),
                _e(r["jurisdiction"]),
                f"{r['n']:,}",
                _fmt(r["local_auc"]),
                _fmt(r["federated_auc"]),
                _fmt(r.get("personalised_auc")),
                _e(r.get("personalised_choice") or "—"),
                _fmt(r["local_approval_rate"], "rate"),
                _fmt(r["federated_approval_rate"], "rate"),
                _fmt(r.get("personalised_approval_rate"), "rate"),
            ]
            for r in rows
        ],
    )


def _list(items: Iterable[str]) -> str:
    return "<ul>" + "".join(f"<li>{_e(x)}</li>" for x in items) + "</ul>"


def _link(text: str, url: str | None) -> str:
    if url and url.startswith(("http://", "https://")):
        return f'<a href="{_e(url)}">{_e(text)}</a>'
    return _e(text)


def _money(value: Any) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _routes(routes: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for name in dict.fromkeys(r["strategy"] for r in routes):
        rows = []
        for r in (x for x in routes if x["strategy"] == name):
            cites = "<br>".join(_link(c["text"], c["url"]) for c in r["citations"])
            extra = [*r["changes"], *r["notes"]]
            if r["prohibited"]:
                extra.insert(0, f"prohibited: {r['prohibited']}")
            decision = _e(r["decision"]) + "".join(f"<br><i>{_e(x)}</i>" for x in extra)
            rows.append(
                [
                    _e(r["direction"]),
                    f"{_e(r['exporter'])} → {_e(r['recipient'])}",
                    f"{_e(r['origin'])} → {_e(r['destination'])}",
                    _e(r["data_class"]),
                    f"{r['people']:,}",
                    _fmt(r["personal_data"]),
                    _e(r["mechanism"]),
                    _money(r["fixed_cost"]),
                    _money(r["recurring_cost"]),
                    f"{r['lead_time_days']:.0f}",
                    _money(r["residual_risk"]),
                    f'<span class="small">{decision}</span>',
                    f'<span class="small">{cites}</span>',
                ]
            )
        parts.append(f"<h3>{_e(name)}</h3>")
        parts.append(
            _table(
                [
                    "direction",
                    "exporter → recipient",
                    "route",
                    "data",
                    "people",
                    "personal data",
                    "mechanism",
                    "fixed $",
                    "recurring $",
                    "lead (d)",
                    "risk $",
                    "decision",
                    "citations",
                ],
                rows,
            )
        )
    return "".join(parts)


def _risks(risks: Sequence[Mapping[str, Any]], strategies: Sequence[str]) -> str:
    parties = list(dict.fromkeys((r["institution"], r["jurisdiction"]) for r in risks))
    index = {(r["strategy"], r["institution"]): r["residual_risk"] for r in risks}
    rows = [
        [_e(f"{name} ({code})")] + [_money(index.get((s, name))) for s in strategies]
        for name, code in parties
    ]
    return _table(["exporter", *strategies], rows)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f} %"


def _monte_carlo(mc: Mapping[str, Any] | None) -> str:
    if not mc:
        return "<p>No Monte Carlo was run.</p>"
    rows = [
        [
            _e(name),
            _money(q["p5"]),
            _money(q["p50"]),
            _money(q["p95"]),
            f"{q['feasible_share']:.0%}",
        ]
        for name, q in mc["strategies"].items()
    ]
    table = _table(["strategy", "p5 $", "p50 $", "p95 $", "feasible in"], rows)
    comparisons = []
    for c in mc["comparisons"]:
        for what, prefix in (("total", ""), ("transfer + risk only", "legal_")):
            q = c[f"{prefix}saving"]
            p = c[f"{prefix}p_saves_claim"]
            comparisons.append(
                [
                    _e(f"{c['candidate']} against {c['baseline']}: {what}"),
                    _pct(c[f"{prefix}saving_base"]),
                    _pct(q["p5"]),
                    _pct(q["p50"]),
                    _pct(q["p95"]),
                    "—" if p is None else f"{p:.1%}",
                    f"{q['defined_share']:.0%}",
                ]
            )
    comp = _table(
        ["saving of", "base case", "p5", "p50", "p95", "P(saving ≥ 40 %)", "defined in"],
        comparisons,
    )
    return (
        f"<p>{mc['draws']:,} draws, seed {mc['seed']}: every ranged number drawn from a "
        "triangular distribution on its low-to-high range (mode at the base value), every "
        "unsettled legal question answered yes with its probability; the same draws price "
        "every strategy. Percentiles over the draws where a strategy is feasible.</p>"
        + table
        + comp
    )


def _claim(mc: Mapping[str, Any] | None) -> str:
    head = (mc or {}).get("comparisons") or []
    if not head:
        verdict = "<p>The study lacks plaintext or encrypted FedAvg: no saving to test.</p>"
    else:
        c = head[0]

        def share(p: float | None) -> str:
            return "—" if p is None else f"{p:.1%}"

        verdict = (
            f"<p>Under the assumptions below, encrypted FedAvg saves <b>"
            f"{_pct(c['saving_base'])}</b> of plaintext FedAvg's total compliance cost in the "
            f"base case (a negative saving is a higher cost), and the probability that it "
            f"saves at least 40 % is <b>{share(c['p_saves_claim'])}</b> over the Monte Carlo "
            f"draws. Counting only the legal parts (transfer mechanisms and residual risk, "
            f"without the operational part and the technology's cost lines), it saves "
            f"<b>{_pct(c['legal_saving_base'])}</b> in the base case, with probability "
            f"<b>{share(c['legal_p_saves_claim'])}</b> of at least 40 %.</p>"
        )
    return (
        '<div class="claim"><p>The paper this project answers reports that a privacy-computing '
        "pilot cut compliance cost by about 40 %. No source states the figure "
        "(REGULATION.md §10: searched in English and Chinese); it is therefore never an "
        "input here, only a question. What decides the answer is in the tornado: the privacy "
        "technology's own costs (integration, key ceremonies, reviews — labelled assumptions), "
        "the residual-risk assumptions, and whether encryption takes updates out of scope, "
        "which lets encrypted flows skip a mechanism. Encryption gives no advantage on the "
        "downlink while every institution holds the key.</p>" + verdict + "</div>"
    )


def _register(rows: Sequence[Mapping[str, Any]]) -> str:
    body = []
    for r in rows:
        if not r["used"]:
            continue
        ranged = r["low"] is not None and r["high"] is not None and r["low"] != r["high"]

        def num(v: Any) -> str:
            if isinstance(v, bool):
                return "yes" if v else "no"
            return "—" if v is None else f"{v:,.6g}"

        body.append(
            [
                _e(r["id"]),
                num(r["value"]),
                num(r["low"]) if ranged else "",
                num(r["high"]) if ranged else "",
                _e(r["unit"]),
                _e(r["kind"]),
                f'<span class="small">{_link(r["provenance"], r["url"])}</span>',
            ]
        )
    return _table(["id", "base", "low", "high", "unit", "kind", "source or rationale"], body)


def _sweep(rows: Sequence[Mapping[str, Any]], strategies: Sequence[str]) -> str:
    keys = list(dict.fromkeys((r["jurisdiction"], r["flag"], r["settled"]) for r in rows))
    index = {(r["strategy"], r["jurisdiction"], r["flag"], r["answer"]): r for r in rows}
    body = []
    for code, flag, settled in keys:
        cells = [_e(code), _e(flag), "settled: kept" if settled else "open"]
        for name in strategies:
            ends = [index.get((name, code, flag, answer)) for answer in (False, True)]
            cells.append(
                " → ".join(
                    "—"
                    if e is None
                    else ("infeasible" if not e["feasible"] else _money(e["total"]))
                    for e in ends
                )
            )
        body.append(cells)
    return _table(
        ["jurisdiction", "question", "status"] + [f"{s}: no → yes" for s in strategies], body
    )


def render_html(results: Mapping[str, Any], images: Mapping[str, bytes]) -> str:
    """The report page for ``results`` (as :func:`~simulations.report.results_dict` builds it).

    ``images`` holds the PNG bytes of ``"pareto"``, ``"uplift"`` and ``"tornado"``.
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
    target = scenario.get("approval_target") or "a bad rate of " + _fmt(
        scenario["settings"]["target_bad_rate"], "rate"
    )
    federated = scenario["federated_strategy_per_institution"]
    compliance = results.get("compliance", {})
    types = compliance.get("institution_types", {})
    sections = [
        "<h1>crossfed: accuracy against compliance cost</h1>",
        f"<p><b>Law as at {_e(results.get('as_of', ''))}</b>; costs in USD over a "
        f"{results.get('years', 1)}-year horizon (undiscounted; each year takes the law in "
        "force on its first day).</p>",
        f"<p class='note'>Quality is {_e(scenario['quality_metric'])}; approval rate is the "
        f"share approved at the largest score cut-off keeping {_e(target)}.</p>",
        "<h2>Scenario</h2>",
        _scenario(scenario),
        "<h2>Strategies</h2>",
        _strategies(strategies, results.get("privacy_attacks", [])),
        "<p class='note'>MIA adv.: the calibrated membership attack's advantage (ROC AUC - "
        "0.5), pooled over institutions, with the worst institution's; on the final model "
        "(which every institution decrypts) and on each institution's plaintext update "
        "(which only plaintext FedAvg shows the aggregator; n/a under encryption). See "
        "Privacy attacks below.</p>",
        "<p class='note'>Operational cost is the measured run (CPU, bytes) times the runs a "
        "year plus the privacy technology's cost lines (assumptions, in the register).</p>",
        _image(images["pareto"], "AUC against total compliance cost, Pareto front marked"),
        "<h2>The 40 % claim</h2>",
        _claim(results.get("monte_carlo")),
        "<h2>Uncertainty: Monte Carlo and tornado</h2>",
        _monte_carlo(results.get("monte_carlo")),
        _image(images["tornado"], "tornado: the assumptions that move the saving most"),
        "<h2>Routes: what each flow needs, and why</h2>",
        "<p>Every flow of every strategy: uplink (institution to aggregator), downlink "
        "(aggregate or model to each institution: with one shared key every recipient can "
        "decrypt it) and pooling (raw records). Institution types: "
        + _e(", ".join(f"{k}: {v}" for k, v in types.items()))
        + f" ({_e(compliance.get('institution_types_provenance') or '')}). Residual risk "
        "falls only on regulated cross-border flows.</p>",
        _routes(results.get("routes", [])),
        "<h3>Expected penalties by exporter (USD over the horizon)</h3>",
        _risks(results.get("risks", []), names),
        "<h2>Unsettled legal questions: sensitivity</h2>",
        "<p>Whether model updates are personal data, and whether encryption takes them out of "
        "a regime's scope, have no settled answer. The table above uses each profile's own "
        "answer:</p>",
        _table(["jurisdiction", "updates are personal data", "encryption exits scope"], flag_rows),
        "<p>Total cost (USD) under each answer, applied at once to every jurisdiction that "
        "leaves the question open (a settled answer is kept):</p>",
        _sensitivity(results["sensitivity"], names),
        "<p>One jurisdiction's question at a time, the rest as profiled (total USD):</p>",
        _sweep(results.get("sweep", []), names),
        "<h2>Privacy attacks: what each party can learn</h2>",
        _attacks(results.get("privacy_attacks", []), results.get("advantage_definition", "")),
        "<h2>Per-institution uplift</h2>",
        f"<p>Each institution's own model (local-only), the federated model "
        f"({_e(federated)}) and its personalised model, on the institution's own test "
        "split. The personalised model is the institution's choice among the federated "
        "model fine-tuned on the institution's rows, the mean log-odds of the federated and "
        "the local model, and the local model, by 3-fold cross-validation on its own "
        "training rows (never its test split), then refitted on all of them. The federated "
        "model as received is not a candidate: it saw those rows in training, so its "
        "cross-validated score there is in-sample.</p>",
        _image(images["uplift"], "per-institution AUC and approval rate, local against federated"),
        _institutions(results["institutions"], federated),
        "<h2>What was measured, what was assumed</h2>",
        "<h3>Measured in this run</h3>",
        _list(provenance["measured"]),
        "<h3>Sourced (from the jurisdiction profiles)</h3>",
        _list(provenance["sourced"]),
        "<h3>Assumed (override with --profiles DIR)</h3>",
        _list(provenance["assumed"]),
        "<h3>Assumption register: every number the pricing read, with its range</h3>",
        _register(results.get("assumptions", [])),
        '<div class="box"><b>Not modelled</b>',
        _list(compliance.get("not_modelled", [])),
        "</div>",
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>crossfed simulation report</title><style>{_CSS}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )
