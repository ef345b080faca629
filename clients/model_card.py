"""``model_card.md``: what a bank's model-risk reviewer asks first, written beside the model.

The card (after Mitchell et al., "Model Cards for Model Reporting", FAT* 2019,
cut to what a credit model validation needs) states the data, the training,
the metrics, what was measured and what was assumed, the intended use and the
limits. It is rendered from the facts :func:`clients.outputs.write_final_outputs`
records in ``metrics.json``, so the two never disagree; every number in it is
this institution's own or one it legitimately decrypted (the federation-wide
row count from the standardisation round, the federation-wide evaluation).

ε is the one figure computed here rather than measured: the institution knows
its kit's noise multiplier, rounds and δ, but not how many replies entered
each encrypted sum (the aggregator's accountant, :mod:`federation.dp`, does).
The card gives ε as if every institution's noise share entered every round,
and says that fewer contributors mean a larger ε.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from clients.model_file import SavedModel
from clients.schema import FederationSchema

__all__ = ["MODEL_CARD_FILE", "planned_epsilon", "render_model_card"]

MODEL_CARD_FILE = "model_card.md"

_METRIC_NAMES = {
    "auc": "ROC AUC",
    "ks": "KS statistic",
    "brier": "Brier score",
    "log_loss": "log loss",
    "approval_rate": "approval rate at the target bad rate",
}


def planned_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """ε after ``rounds`` Gaussian releases at ``noise_multiplier`` (RDP accountant).

    The same accountant the aggregator uses (Google's ``dp_accounting``,
    Mironov 2017), imported only when a card reports DP.
    """
    if noise_multiplier <= 0:
        return math.inf
    from dp_accounting import dp_event, rdp

    accountant = rdp.RdpAccountant()
    for _ in range(rounds):
        accountant.compose(dp_event.GaussianDpEvent(noise_multiplier))
    return float(accountant.get_epsilon(delta))


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _bullets(lines: Sequence[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def _data(report: Mapping[str, Any], schema: FederationSchema) -> str:
    numeric = ", ".join(f"`{c.name}`" for c in schema.numeric) or "none"
    categorical = (
        ", ".join(f"`{c.name}` ({len(c.levels)} levels)" for c in schema.categorical) or "none"
    )
    target = schema.target
    fed_rows = report.get("federation_train_rows")
    institutions = report.get("institutions") or None
    federation = (
        f"{fed_rows:,} training rows over all institutions (the summed row count of the "
        "standardisation round, which every institution decrypts)"
        if fed_rows
        else "not known to this institution"
    )
    if institutions:
        federation += f"; {institutions} institutions in the kit"
    return _bullets(
        [
            f"Target: `{target.column}`, bad = `{target.positive}`, good = "
            + ", ".join(f"`{v}`" for v in target.negatives),
            f"Numeric characteristics: {numeric}",
            f"Categorical characteristics: {categorical}",
            f"Encoded input columns: {report['n_features']} (one-hot categories; the order is "
            "`feature_names` in `global_model.npz`)",
            f"This institution: {report['n_train']:,} training and {report['n_test']:,} test "
            f"rows (test fraction {report.get('test_fraction', '-')}, stratified, seed "
            f"{report.get('seed', '-')}); bad rate {report['train_bad_rate']:.2%} in training, "
            f"{report['test_bad_rate']:.2%} in test"
            + (f"; file `{report['data_file']}`" if report.get("data_file") else ""),
            "Federation: " + federation + ". Other institutions' sizes, bad rates and "
            "rows are not known here.",
        ]
    )


def _dp(report: Mapping[str, Any]) -> list[str]:
    clip = float(report.get("dp_clip") or 0.0)
    if float(report.get("dpsgd_epsilon") or 0.0) > 0:
        return _dpsgd(report)
    if clip <= 0:
        return ["Differential privacy: off (no ε: the final model carries no formal guarantee)"]
    z = float(report.get("dp_noise_multiplier") or 0.0)
    delta = float(report.get("dp_delta") or 1e-5)
    rounds = int(report.get("rounds") or 0)
    shares = int(report.get("institutions") or 0)
    lines = [
        f"Differential privacy: distributed Gaussian noise, update clip {clip:g}, "
        f"noise multiplier {z:g}, δ = {delta:g}, {shares or 'unknown'} noise shares"
    ]
    if z > 0 and rounds:
        eps = planned_epsilon(z, rounds, delta)
        lines.append(
            f"ε = {eps:.2f} at δ = {delta:g} over {rounds} rounds, if every institution's "
            "noise share entered every round (fewer contributors: a larger ε; the "
            "aggregator's accountant counts them)"
        )
        if shares > 1:
            colluding = planned_epsilon(z / math.sqrt(shares), rounds, delta)
            lines.append(
                f"Against the aggregator with one colluding institution: ε = {colluding:.2f} "
                "(the colluder can decrypt a single reply, which carries one noise share)"
            )
    return lines


def _dpsgd(report: Mapping[str, Any]) -> list[str]:
    spent = report.get("dpsgd_epsilon_spent")
    lines = [
        "Differential privacy: record-level DP-SGD (Opacus) at every institution: each "
        f"example's gradient clipped to {float(report.get('dpsgd_clip') or 0):g}, Gaussian "
        f"noise per Poisson-sampled batch of about {report.get('dpsgd_batch_size', '-')} rows; "
        f"target ε = {float(report['dpsgd_epsilon']):g} per customer over the whole run"
    ]
    if isinstance(spent, int | float):
        lines.append(
            f"This institution's accountant (RDP, every local step of every round): "
            f"ε = {float(spent):.2f} at δ = {float(report.get('dpsgd_delta') or 0):.3g} "
            f"(noise multiplier {float(report.get('dpsgd_noise_multiplier') or 0):.3g}) for "
            "each of its customers, against anyone who sees its updates or the final model"
        )
    return lines


def _training(report: Mapping[str, Any], model: SavedModel) -> str:
    kind = (
        "logistic regression"
        if model.kind == "logistic"
        else "multilayer perceptron, hidden layers " + ", ".join(str(w) for w in model.hidden)
    )
    mode = (
        "encrypted FedAvg (CKKS; the aggregator held no key)"
        if report.get("mode") == "encrypted"
        else f"{report.get('mode', '-')} FedAvg"
    )
    parameters = sum(int(a.size) for a in model.weights)
    lines = [
        f"Model: {kind}, {parameters:,} parameters, inputs standardised with the federation's "
        "mean and standard deviation (saved in `global_model.npz`)",
        f"Aggregation: {mode}; {report.get('rounds', '-')} rounds of "
        f"{report.get('epochs', '-')} local epochs, batch size {report.get('batch_size', '-')}, "
        f"learning rate {report.get('learning_rate', '-')}"
        + (f", FedProx μ {report['proximal_mu']}" if report.get("proximal_mu") else "")
        + f", seed {report.get('seed', '-')}",
        *_dp(report),
    ]
    return _bullets(lines)


def _metrics(report: Mapping[str, Any]) -> str:
    local = report["test"]
    federation = report.get("federation_test") or {}
    rows = ["| metric | this institution's test split | federation (all test splits) |"]
    rows.append("| --- | ---: | ---: |")
    for key, label in _METRIC_NAMES.items():
        rows.append(f"| {label} | {_fmt(local.get(key))} | {_fmt(federation.get(key))} |")
    target = report["approval_target"]
    notes = [
        f"Approval rate, this institution: {target['description']}.",
        f"Approval rate, federation: {report['federation_approval_target']}.",
    ]
    if not federation:
        notes.append("The federation-wide evaluation did not arrive with the final model.")
    return "\n".join(rows) + "\n\n" + _bullets(notes)


def _scores(report: Mapping[str, Any]) -> str:
    scaling = report["scaling"]
    lines = [
        f"Scale: {scaling['description']} (factor {scaling['factor']:.4f}, offset "
        f"{scaling['offset']:.2f}); a higher score is a lower risk",
        f"Bands by probability of default: {report['bands']['description']}",
    ]
    card = report["scorecard"]
    if card.get("produced"):
        lines += [
            f"`scorecard.csv`: {card['bins']} bins over {card['characteristics']} "
            f"characteristics; numeric bins at {card['bins_from']}",
            f"Binning, measured on the test split: the table's points differ from the exact "
            f"score by {card['mean_abs_points']:.2f} points on average, at most "
            f"{card['max_abs_points']:.2f}; ROC AUC of the table's points "
            f"{_fmt(card.get('binned_auc'))} against {_fmt(report['test'].get('auc'))} exact",
        ]
    else:
        lines.append(f"No points-based scorecard: {card['why']}")
    baseline = report["score_baseline"]
    lines.append(
        f"Score baseline for PSI: this institution's {baseline['source']} "
        f"({baseline['rows']:,} rows, {len(baseline['shares'])} bins); PSI of its test split "
        f"against it {report['psi_test_vs_baseline']:.4f}"
    )
    if report.get("federation_mean_score") is not None:
        lines.append(
            f"Mean score over the federation's training rows {report['federation_mean_score']:.1f}"
            f" (exact for logistic regression: the intercept on the points scale); this "
            f"institution's {report['train_mean_score']:.1f}"
        )
    return _bullets(lines)


def _coefficients(model: SavedModel, top: int = 15) -> str:
    if model.kind != "logistic":
        return ""
    weight = model.weights[0].ravel().astype(float)
    order = sorted(range(weight.size), key=lambda i: -abs(weight[i]))[:top]
    rows = [
        "| input column | coefficient (log-odds of bad per federation SD) | odds ratio | "
        "federation mean | federation SD |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for i in order:
        rows.append(
            f"| `{model.feature_names[i]}` | {weight[i]:+.4f} | {math.exp(weight[i]):.3f} | "
            f"{model.mean[i]:.4g} | {model.std[i]:.4g} |"
        )
    bias = float(model.weights[1].ravel()[0])
    shown = f"the {len(order)} largest of {weight.size}" if weight.size > len(order) else "all"
    return f"\n\n### Coefficients ({shown}; intercept {bias:+.4f})\n\n" + "\n".join(rows)


def render_model_card(
    report: Mapping[str, Any], schema: FederationSchema, model: SavedModel
) -> str:
    """The Markdown model card for one institution's copy of the final model.

    Parameters
    ----------
    report
        What ``metrics.json`` holds (see :func:`clients.outputs.write_final_outputs`).
    schema
        The federation schema.
    model
        The saved model.
    """
    who = report.get("institution") or "this institution"
    reasons = (
        "the characteristics whose scorecard bin earns the fewest points against their best bin"
        if model.kind == "logistic"
        else "gradient x input on the standardised inputs, summed per characteristic: the "
        "characteristics that push the log-odds of bad up most against the federation's "
        "average applicant (a first-order attribution; it need not add up to the score)"
    )
    measured = [
        "the metrics on this institution's test split, with the final model",
        "the federation's metrics: the size-weighted mean of every institution's own "
        "test-split metrics, decrypted here from the last round's encrypted sum",
        "the training bad rate behind the approval-rate target; the score baseline and the "
        "test split's PSI against it",
    ]
    if model.kind == "logistic":
        measured.append("how far the scorecard's bin points stray from the exact score")
    assumed = [
        "this institution's test split is a fair sample of its future applicants "
        "(a random, stratified split of the same file, not a later period)",
        "the other institutions ran the same pinned code and reported their genuine metrics; "
        "the federation figures cannot be checked here beyond the sum's integrity check",
        "labels mean the same at every institution (the schema's target definition)",
        "the score scale, the bands and the approval-rate target are conventions, not "
        "measurements: change them to the bank's credit policy",
    ]
    version = report.get("crossfed_version", "")
    card_file = "`scorecard.csv`" if model.kind == "logistic" else "no scorecard (an MLP)"
    return f"""# Model card: {who}'s copy of the federation's final model

Written by crossfed {version} when the run ended. Files beside it:
`global_model.npz` (named parameters, feature names, the federation's standardisation),
`metrics.json` (every figure below), {card_file}. Score new applicants with
`crossfed score --kit KIT --model FOLDER --data FILE --out FILE` (FOLDER: this card's).

## Data

{_data(report, schema)}

## Training

{_training(report, model)}

## Metrics

{_metrics(report)}

## Scores, bands and monitoring

{_scores(report)}{_coefficients(model)}

## What was measured, what was assumed

Measured:

{_bullets(measured)}

Assumed:

{_bullets(assumed)}

## Intended use and limits

{
        _bullets(
            [
                "Intended use: ranking and pricing applicants of the population this "
                "institution's data describes, by its credit team, after its own validation "
                "and under its own credit policy.",
                f"Reason codes (`crossfed score`): {reasons}.",
                "Not validated for other products, populations or periods; recalibrate if the "
                "bad rate of new business differs from the training split's.",
                "The model is shared: every institution in the federation holds the same "
                "weights. Membership inference against it is not prevented by encryption"
                + (
                    "; differential privacy bounds it per the ε above."
                    if float(report.get("dp_clip") or 0) > 0
                    or float(report.get("dpsgd_epsilon") or 0) > 0
                    else " (no differential privacy in this run)."
                ),
                "Monitor PSI on new applications (`crossfed score` prints it): above 0.25 the "
                "population has moved and the model should be reviewed before it is relied on.",
            ]
        )
    }
"""
