"""Scoring new applicants with the model a ``crossfed client`` run wrote.

:func:`score_file` reads a model folder (``global_model.npz``,
``metrics.json`` and, for logistic regression, ``scorecard.csv``), checks the
applicants' file against the kit's schema exactly as training did (the schema
must be the one the kit's manifest pins, and the model's input columns must
be that schema's), and gives each row:

``score``
    Points on the model's scale (600 at 50:1 odds, 20 points to double the
    odds, unless rescaled), higher for lower risk.
``probability_of_default``
    The model's probability of the bad outcome.
``band``
    The risk grade by probability of default (A for PD below 2 %, ... E from 20 %).
``scorecard_points``
    Logistic regression only: the sum of the row's bin points in
    ``scorecard.csv``, the score a reviewer recomputes by hand (it differs
    from ``score`` only by the binning of numeric characteristics).
``reason_1`` ... ``reason_k`` and ``reason_i_points``
    The characteristics that cost the row most, most first, with the points
    lost. Logistic regression: points below the characteristic's best bin in
    ``scorecard.csv`` (standard adverse-action practice). MLP: gradient x
    input on the standardised inputs, summed per characteristic and put on
    the points scale: how many points the characteristic costs against the
    federation's average applicant (zero input), to first order; it need not
    add up to the score.

and the population stability index of the file's scores against the model's
baseline (:mod:`clients.monitoring`). Columns outside the schema are ignored
and named (an application id can be carried into the output with
``id_columns``); a target column is optional, and when it holds valid labels
of both classes the metrics are computed too. Nothing is sent anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clients.data import encode, load_table
from clients.errors import ConfigError, DataValidationError, ModelFileError
from clients.metrics import BadRateTarget, RiskMetrics, evaluate
from clients.model_file import SavedModel, load_model
from clients.monitoring import ScoreBaseline, federation_mean_logit
from clients.scaling import RiskBands, ScoreScaling
from clients.schema import FederationSchema, canonical_labels, load_schema
from clients.scorecard import DEFAULT_REASONS, Scorecard, characteristics, reason_codes
from crossfed.protocol import SCHEMA, check_schema_pin, load_manifest

__all__ = ["ModelFolder", "ScoringResult", "load_kit_schema", "score_file", "score_table"]

_METRICS = "metrics.json"
_MODEL = "global_model.npz"
_SCORECARD = "scorecard.csv"

REASONS_LOGISTIC = "points below the characteristic's best bin in scorecard.csv"
REASONS_MLP = (
    "gradient x input on the standardised inputs, per characteristic, in points against "
    "the federation's average applicant (first order)"
)


@dataclass(frozen=True)
class ModelFolder:
    """What a ``crossfed client`` run left in its output folder, checked.

    Attributes
    ----------
    model
        The saved model.
    report
        ``metrics.json``.
    scorecard
        ``scorecard.csv`` (logistic regression), else ``None``.
    scaling, bands, baseline
        The recorded points scale, risk bands and score baseline.
    """

    model: SavedModel
    report: dict[str, Any]
    scorecard: Scorecard | None
    scaling: ScoreScaling
    bands: RiskBands
    baseline: ScoreBaseline

    @classmethod
    def load(cls, folder: Path) -> ModelFolder:
        """Read ``global_model.npz``, ``metrics.json`` and ``scorecard.csv``.

        Raises
        ------
        ModelFileError
            A file is missing, unreadable, or from an older crossfed.
        """
        if not folder.is_dir():
            raise ModelFileError(f"{folder} is not a model folder (run `crossfed client` first)")
        model = load_model(folder / _MODEL)
        try:
            report = json.loads((folder / _METRICS).read_text())
        except FileNotFoundError as exc:
            raise ModelFileError(f"{folder / _METRICS} does not exist") from exc
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"{folder / _METRICS} is not readable JSON: {exc}") from exc
        if not isinstance(report, dict) or "scaling" not in report:
            raise ModelFileError(
                f"{folder / _METRICS} records no score scale: written by an older crossfed; "
                "rerun `crossfed client`"
            )
        try:
            recorded = report["scaling"]
            scaling = ScoreScaling(
                float(recorded["pdo"]), float(recorded["base_score"]), float(recorded["base_odds"])
            )
            bands = RiskBands.parse([float(v) for v in report["bands"]["pd_edges"]])
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise ModelFileError(f"{folder / _METRICS}: malformed scale or bands: {exc}") from exc
        baseline = ScoreBaseline.from_dict(report.get("score_baseline") or {})
        card = None
        if model.kind == "logistic":
            path = folder / _SCORECARD
            try:
                frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            except FileNotFoundError as exc:
                raise ModelFileError(f"{path} does not exist (logistic models have one)") from exc
            except (OSError, ValueError, pd.errors.ParserError) as exc:
                raise ModelFileError(f"{path} is not a readable CSV: {exc}") from exc
            card = Scorecard.from_frame(frame, scaling)
        return cls(model, report, card, scaling, bands, baseline)


@dataclass(frozen=True)
class ScoringResult:
    """Scores of one file, and what they say about its population.

    Attributes
    ----------
    table
        One row per input row (see the module docstring for the columns).
    psi
        Population stability index of the file's scores against the baseline.
    baseline
        The baseline it was measured against.
    mean_score
        The file's mean score.
    federation_mean_score
        The federation training rows' mean score (logistic regression only).
    scaling, bands
        The scale and the bands the scores and grades are on.
    reason_method
        How reason codes were found.
    ignored_columns
        Columns of the file outside the schema (and not id columns).
    metrics
        The model's metrics on the file when it held usable labels, else None.
    labels_note
        Why labels were or were not used.
    """

    table: pd.DataFrame
    psi: float
    baseline: ScoreBaseline
    mean_score: float
    federation_mean_score: float | None
    scaling: ScoreScaling
    bands: RiskBands
    reason_method: str
    ignored_columns: tuple[str, ...]
    metrics: RiskMetrics | None
    labels_note: str


def load_kit_schema(kit: Path) -> FederationSchema:
    """The kit's schema, refused unless it is the one the kit's manifest pins.

    Raises
    ------
    crossfed.protocol.ProvisioningError
        The folder is not a kit, or its schema is not the pinned one.
    clients.SchemaError
        The schema does not parse.
    """
    folder = kit.resolve()
    manifest = load_manifest(folder)
    check_schema_pin(folder / SCHEMA, manifest)
    return load_schema(folder / SCHEMA)


def _labels(frame: pd.DataFrame, schema: FederationSchema) -> tuple[bool, str]:
    """Whether the target column holds usable labels, and why (not)."""
    spec = schema.target
    if spec.column not in frame.columns:
        return False, f"no {spec.column!r} column: scores only"
    labels = canonical_labels(frame[spec.column])
    allowed = {spec.positive, *spec.negatives}
    usable = np.array([v in allowed for v in labels], dtype=bool)
    if not usable.all():
        return False, (
            f"{int((~usable).sum())} rows of {spec.column!r} are missing or outside "
            f"{sorted(allowed)}: labels ignored, scores only"
        )
    bad = labels == spec.positive
    if bad.all() or not bad.any():
        return False, f"{spec.column!r} holds one class only: no metrics"
    return True, f"labels in {spec.column!r} used for the metrics"


def _reasons(
    folder: ModelFolder, found: Sequence[Any], x: np.ndarray, scaling: ScoreScaling, top: int
) -> tuple[list[list[str]], np.ndarray, np.ndarray | None, str]:
    names = [c.name for c in found]
    if folder.scorecard is not None:
        card = folder.scorecard.rescaled(scaling)
        card.check_against(found)
        points = card.binned_points(found, x)
        reasons, lost = reason_codes(points, card.best_points(), names, top)
        return reasons, lost, points.sum(axis=1), REASONS_LOGISTIC
    _, grad = folder.model.logit_and_gradient(x)
    attribution = grad * folder.model.standardize(x)
    per_char = np.stack([attribution[:, list(c.columns)].sum(axis=1) for c in found], axis=1)
    reasons, lost = reason_codes(-scaling.factor * per_char, np.zeros(len(found)), names, top)
    return reasons, lost, None, REASONS_MLP


def score_table(
    frame: pd.DataFrame,
    schema: FederationSchema,
    folder: ModelFolder,
    *,
    scaling: ScoreScaling | None = None,
    bands: RiskBands | None = None,
    reasons: int = DEFAULT_REASONS,
    id_columns: Sequence[str] = (),
    target_bad_rate: float | None = None,
) -> ScoringResult:
    """Score a table of applicants (see the module docstring).

    Parameters
    ----------
    frame
        The applicants, with the schema's feature columns; the target and any
        other columns are optional.
    schema
        The kit's schema.
    folder
        The model folder.
    scaling, bands
        Override the recorded points scale and bands (the scorecard is
        rescaled exactly).
    reasons
        Reason codes per row (1 or more).
    id_columns
        Columns copied to the output first (an application id).
    target_bad_rate
        The approval-rate target for the metrics when labels are present;
        default: the one the model's ``metrics.json`` records.

    Raises
    ------
    DataValidationError
        The table does not fit the schema (the column is named), or an id
        column is missing.
    ModelFileError
        The model, its scorecard or its baseline is not for this schema.
    ConfigError
        ``reasons`` is below 1.
    """
    if reasons < 1:
        raise ConfigError(f"ask for at least one reason code, got {reasons}")
    scale = scaling or folder.scaling
    grades = bands or folder.bands
    columns = [str(c) for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    missing_ids = [c for c in id_columns if c not in columns]
    if missing_ids:
        raise DataValidationError(
            f"id column {missing_ids[0]!r} is not in the file", column=missing_ids[0], count=0
        )
    known = set(schema.columns)
    ignored = tuple(c for c in columns if c not in known and c not in id_columns)
    use_labels, labels_note = _labels(frame, schema)
    features = frame[[c for c in columns if c in schema.feature_columns]].copy()
    features[schema.target.column] = (
        frame[schema.target.column].to_numpy() if use_labels else schema.target.positive
    )
    x, y = encode(features, schema, require_both_classes=False)
    found = characteristics(schema, folder.model.feature_names)
    logit = folder.model.logit(x)
    pd_bad = 1.0 / (1.0 + np.exp(-logit))
    score = scale.score_from_logit(logit)
    reason_names, lost, table_points, method = _reasons(folder, found, x, scale, reasons)

    out: dict[str, Any] = {c: frame[c].to_numpy() for c in id_columns}
    out["row"] = np.arange(len(frame))
    out["score"] = np.round(score, 2)
    out["probability_of_default"] = pd_bad
    out["band"] = grades.assign(pd_bad)
    if table_points is not None:
        out["scorecard_points"] = np.round(table_points, 2)
    for k in range(reasons):
        out[f"reason_{k + 1}"] = [r[k] if k < len(r) else "" for r in reason_names]
        out[f"reason_{k + 1}_points"] = np.round(lost[:, k], 2)
    metrics = None
    if use_labels:
        target = (
            BadRateTarget.given(target_bad_rate)
            if target_bad_rate is not None
            else _recorded_target(folder.report)
        )
        metrics = evaluate(y, pd_bad, target)
    fed_logit = federation_mean_logit(folder.model)
    fed_score = None if fed_logit is None else float(scale.score_from_logit(fed_logit))
    return ScoringResult(
        table=pd.DataFrame(out),
        psi=folder.baseline.psi(logit),
        baseline=folder.baseline,
        mean_score=float(np.mean(score)),
        federation_mean_score=fed_score,
        scaling=scale,
        bands=grades,
        reason_method=method,
        ignored_columns=ignored,
        metrics=metrics,
        labels_note=labels_note,
    )


def _recorded_target(report: Mapping[str, Any]) -> BadRateTarget:
    recorded = report.get("approval_target") or {}
    try:
        return BadRateTarget(
            float(recorded["bad_rate"]),
            None if recorded.get("fraction") is None else float(recorded["fraction"]),
            None if recorded.get("observed") is None else float(recorded["observed"]),
            str(recorded.get("source", "given")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"metrics.json records no usable approval target: {exc}") from exc


def score_file(
    kit: Path,
    model_dir: Path,
    data: Path,
    *,
    scaling: ScoreScaling | None = None,
    bands: RiskBands | None = None,
    reasons: int = DEFAULT_REASONS,
    id_columns: Sequence[str] = (),
    target_bad_rate: float | None = None,
) -> ScoringResult:
    """Load the kit's schema, the model folder and the data file; :func:`score_table` them.

    The options are :func:`score_table`'s.

    Raises
    ------
    crossfed.protocol.ProvisioningError
        The kit is not a kit, or its schema is not the pinned one.
    clients.ClientError
        The model folder, the data file or an option is unusable (a
        :class:`ModelFileError`, :class:`DataLoadError`, :class:`DataValidationError`,
        :class:`SchemaError` or :class:`ConfigError`).
    """
    schema = load_kit_schema(kit)
    folder = ModelFolder.load(model_dir)
    return score_table(
        load_table(data),
        schema,
        folder,
        scaling=scaling,
        bands=bands,
        reasons=reasons,
        id_columns=id_columns,
        target_bad_rate=target_bad_rate,
    )
