"""What an institution keeps at the end of a run, written to its own disk.

When the final global model arrives (decrypted by the encryption mod),
:func:`write_final_outputs` writes into the node's ``out-dir``:

``global_model.npz``
    The decrypted global model's arrays, in the model's parameter order.
``scorecard.csv``
    Logistic regression only: one row per encoded feature with its
    coefficient (change in log-odds of default per federation-wide standard
    deviation), odds ratio, and the federation-wide mean and standard deviation
    used to standardise it, so a coefficient can be read in raw units; the
    intercept last.
``metrics.json``
    The model on this institution's held-out split (ROC AUC, KS, Brier…),
    example counts and the run's settings. Written last, atomically: its
    presence means the other files are complete.

Every institution decrypts the same ciphertext with the same key, so all of
them write the same model.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from clients.data import feature_names
from clients.institution import LocalDataset
from clients.metrics import evaluate
from clients.models import LogisticRegression, get_weights, predict_proba, scorecard
from clients.standardize import Standardizer

__all__ = ["METRICS_FILE", "MODEL_FILE", "SCORECARD_FILE", "write_final_outputs"]

MODEL_FILE = "global_model.npz"
SCORECARD_FILE = "scorecard.csv"
METRICS_FILE = "metrics.json"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def write_final_outputs(
    out_dir: Path,
    model: nn.Module,
    data: LocalDataset,
    scaler: Standardizer,
    run: dict[str, Any],
    *,
    federation: dict[str, float] | None = None,
) -> dict[str, float]:
    """Write the model, the scorecard (logistic only) and local metrics to ``out_dir``.

    Parameters
    ----------
    out_dir
        The institution's output folder (created if missing).
    model
        The final global model, already decrypted and loaded.
    data
        This institution's encoded data; metrics use its held-out split.
    scaler
        The federation-wide standardisation the model was trained with.
    run
        Facts about the run recorded in ``metrics.json`` (settings, mode).
    federation
        The last round's mean metrics over every institution's held-out split,
        weighted by its size (decrypted here in encrypted mode), if sent.

    Returns
    -------
    dict[str, float]
        The held-out metrics.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = get_weights(model)
    buffer = io.BytesIO()
    np.savez(buffer, *weights)
    _write_atomic(out_dir / MODEL_FILE, buffer.getvalue())

    names = feature_names(data.schema)
    if isinstance(model, LogisticRegression):
        table = scorecard(model, names)
        stats = pd.DataFrame(
            {"feature": names, "federation_mean": scaler.mean, "federation_std": scaler.std}
        )
        table = table.merge(stats, on="feature", how="left")
        _write_atomic(out_dir / SCORECARD_FILE, table.to_csv(index=False).encode())

    scores = predict_proba(model, scaler.transform(data.x_test))
    metrics = evaluate(data.y_test, scores).as_dict()
    report = {
        **run,
        "test": metrics,
        "federation_test": federation,
        "n_train": len(data.y_train),
        "n_test": len(data.y_test),
        "n_features": data.n_features,
        "arrays": [list(w.shape) for w in weights],
    }
    _write_atomic(out_dir / METRICS_FILE, json.dumps(report, indent=2, default=float).encode())
    return metrics
