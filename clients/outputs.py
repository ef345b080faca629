"""What an institution keeps at the end of a run, written to its own disk.

When the final global model arrives (decrypted by the encryption mod),
:func:`write_final_outputs` writes into the node's ``out-dir``:

``global_model.npz``
    The decrypted global model under named arrays, with its feature names and
    the federation-wide mean and standard deviation it standardises with, so
    it can be used without crossfed (:mod:`clients.model_file`).
``scorecard.csv``
    Logistic regression only: the points-based scorecard, one row per bin of
    every characteristic (:mod:`clients.scorecard`). An MLP gets none, and a
    stale one from an earlier run in the same folder is removed.
``model_card.md``
    Data, training, metrics, ε, what was measured and what assumed
    (:mod:`clients.model_card`).
``metrics.json``
    The model on this institution's held-out split (ROC AUC, KS, Brier…) and
    the federation's, the approval-rate target used, the score scale, the
    bands, the scorecard's facts, the score baseline for PSI, example counts
    and the run's settings. Written last, atomically: its presence means the
    other files are complete.

Every institution decrypts the same ciphertext with the same key, so all of
them write the same model; the scorecard's bins and the score baseline come
from each institution's own training split, and stay on its disk.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score
from torch import nn

from clients.data import feature_names
from clients.institution import LocalDataset
from clients.metrics import DEFAULT_TARGET_FRACTION, BadRateTarget, evaluate
from clients.model_card import MODEL_CARD_FILE, render_model_card
from clients.model_file import SavedModel
from clients.models import LogisticRegression, predict_proba
from clients.monitoring import ScoreBaseline, federation_mean_logit
from clients.output_names import METRICS_FILE, MODEL_FILE, SCORECARD_FILE
from clients.scaling import RiskBands, ScoreScaling
from clients.scorecard import binning_error, build_scorecard, characteristics
from clients.standardize import Standardizer
from crypto import write_atomically

__all__ = [
    "METRICS_FILE",
    "MODEL_CARD_FILE",
    "MODEL_FILE",
    "SCORECARD_FILE",
    "write_final_outputs",
]


FEDERATION_TARGET = (
    f"each institution's approval rate at {DEFAULT_TARGET_FRACTION:g} x its own training "
    "split's bad rate, averaged with weights by test-split size"
)
"""How the federation-wide approval rate's targets were set (the ClientApp's evaluate)."""

_MLP_NO_SCORECARD = (
    "the model is an MLP, whose log-odds are not a sum of one term per characteristic, so "
    "points per bin that add up to the score do not exist; crossfed score still gives the "
    "probability, the score and the band"
)


def _version() -> str:
    try:
        return metadata.version("crossfed")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def write_final_outputs(
    out_dir: Path,
    model: nn.Module,
    data: LocalDataset,
    scaler: Standardizer,
    run: dict[str, Any],
    *,
    federation: dict[str, float] | None = None,
    scaling: ScoreScaling | None = None,
    bands: RiskBands | None = None,
) -> dict[str, float]:
    """Write the model, the scorecard (logistic only), the model card and metrics to ``out_dir``.

    Parameters
    ----------
    out_dir
        The institution's output folder (created if missing).
    model
        The final global model, already decrypted and loaded.
    data
        This institution's encoded data; metrics use its held-out split, the
        scorecard's bins and the score baseline its training split.
    scaler
        The federation-wide standardisation the model was trained with.
    run
        Facts about the run recorded in ``metrics.json`` and the model card
        (settings, mode, institution, the federation's training row count).
    federation
        The last round's mean metrics over every institution's held-out split,
        weighted by its size (decrypted here in encrypted mode), if sent.
    scaling, bands
        The points scale and risk bands (defaults: 600 points at 50:1, 20
        points to double the odds; bands A-E at PD 2, 5, 10, 20 %).

    Returns
    -------
    dict[str, float]
        The held-out metrics.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    scale = scaling or ScoreScaling()
    grades = bands or RiskBands()
    names = feature_names(data.schema)
    kind = "logistic" if isinstance(model, LogisticRegression) else "mlp"
    parameters = {n: t.detach().cpu().numpy().copy() for n, t in model.state_dict().items()}
    saved = SavedModel.create(parameters, kind=kind, feature_names=names, scaler=scaler)
    write_atomically(out_dir / MODEL_FILE, saved.to_bytes())

    target = BadRateTarget.relative(data.y_train)
    scores = predict_proba(model, scaler.transform(data.x_test))
    measured = evaluate(data.y_test, scores, target)
    metrics = measured.as_dict()

    if kind == "logistic":
        card = build_scorecard(saved, data.schema, data.x_train, data.y_train, scaling=scale)
        write_atomically(out_dir / SCORECARD_FILE, card.to_csv())
        found = characteristics(data.schema, names)
        binned = card.binned_points(found, data.x_test).sum(axis=1)
        scorecard_facts: dict[str, Any] = {
            "produced": True,
            "file": SCORECARD_FILE,
            "characteristics": len(found),
            "bins": len(card.bins),
            "bins_from": "the deciles of this institution's training split (ties merged)",
            **binning_error(card, saved, found, data.x_test),
            # Higher points, lower risk: the AUC of bad against minus the points.
            "binned_auc": float(roc_auc_score(data.y_test, -binned)),
        }
    else:
        (out_dir / SCORECARD_FILE).unlink(missing_ok=True)
        scorecard_facts = {"produced": False, "why": _MLP_NO_SCORECARD}

    train_logits = saved.logit(data.x_train)
    baseline = ScoreBaseline.from_logits(train_logits)
    fed_logit = federation_mean_logit(saved)
    report = {
        **run,
        "crossfed_version": _version(),
        "test": metrics,
        "approval_target": target.as_dict(),
        "federation_test": federation,
        "federation_approval_target": FEDERATION_TARGET,
        "n_train": len(data.y_train),
        "n_test": len(data.y_test),
        "train_bad_rate": float(np.mean(data.y_train)),
        "test_bad_rate": float(np.mean(data.y_test)),
        "n_features": data.n_features,
        "arrays": [list(w.shape) for w in saved.weights],
        "parameter_names": list(saved.parameters),
        "scaling": {**scale.as_dict(), "description": scale.describe()},
        "bands": {
            "pd_edges": list(grades.pd_edges),
            "names": list(grades.names),
            "description": grades.describe(scale),
        },
        "scorecard": scorecard_facts,
        "score_baseline": baseline.as_dict(),
        "psi_test_vs_baseline": baseline.psi(saved.logit(data.x_test)),
        "train_mean_score": float(np.mean(scale.score_from_logit(train_logits))),
        "federation_mean_score": (
            None if fed_logit is None else float(scale.score_from_logit(fed_logit))
        ),
        "model_card": MODEL_CARD_FILE,
    }
    card_text = render_model_card(report, data.schema, saved)
    write_atomically(out_dir / MODEL_CARD_FILE, card_text.encode())
    write_atomically(out_dir / METRICS_FILE, json.dumps(report, indent=2, default=float).encode())
    return metrics
