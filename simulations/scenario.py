"""A study's scenario: who takes part, with what data, trained how.

:class:`ScenarioSpec` is what the user asks for — a synthetic generator or a
real table, the institutions and their jurisdictions, seeds, rounds, the DP
epsilons. :func:`prepare_scenario` turns it into files in a work folder, the
same files a real federation would hold: one Parquet table per institution
(partition ids in order), the federation schema, and the CKKS contexts (the
institutions' secret one and the aggregator's public one). Every strategy of
the study then reads those files, so all train the same model on the same
rows from the same seeds and are tested on the same held-out splits.

An institution that cannot be trained and tested — fewer than
:data:`MIN_ROWS_PER_CLASS` rows of either class — is left out and listed in
:attr:`Scenario.excluded`, never silently: a stratified test split needs both
classes, and a Dirichlet split or a long tail of tiny lenders can produce one
without.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

import crypto
from clients import FederationSchema, infer_schema, load_schema, save_schema
from clients.schema import canonical_labels, schema_from_dict
from clients.tables import read_table
from crossfed.protocol import FederationSettings
from simulations.errors import SimulationError
from simulations.generators import (
    JURISDICTIONS,
    InstitutionSpec,
    default_institutions,
    generate,
)
from simulations.realdata import (
    Partition,
    partition_by_column,
    partition_dirichlet,
    rows_without_value,
)

__all__ = [
    "DEFAULT_ROWS",
    "MIN_ROWS_PER_CLASS",
    "Institution",
    "Scenario",
    "ScenarioSpec",
    "prepare_scenario",
    "preset_contexts",
    "write_agreement_keys",
]

#: DP-SGD's defaults, the kits' too: per-example clip, expected batch and step size
#: (measured on the default scenario; larger batches drown less signal in each step's noise).
DPSGD_CLIP = FederationSettings.dpsgd_clip
DPSGD_BATCH_SIZE = FederationSettings.dpsgd_batch_size
DPSGD_LEARNING_RATE = FederationSettings.dpsgd_learning_rate

#: Fewest rows of each class an institution needs to be trained and tested.
MIN_ROWS_PER_CLASS = 4

#: Generated rows in a default study: small enough for a study in minutes on two cores,
#: and small lenders small enough (a few hundred rows) that pooling matters.
DEFAULT_ROWS = 12_000

# Rows per institution when a generated federation outgrows the default size, so
# that the long tail of small lenders still has defaults to learn from.
_ROWS_PER_INSTITUTION = 400

# Institutions of the default mix sized by the generator's Zipf weights; later ones
# are floored at the last of these.
_SMALLEST_SIZED = 7

# Jurisdictions assigned in turn to a real table's institutions unless given.
_DEFAULT_JURISDICTIONS = tuple(spec.jurisdiction for spec in default_institutions(7))


@dataclass(frozen=True)
class ScenarioSpec:
    """What a study runs on and how it trains.

    Attributes
    ----------
    generator
        Synthetic generator (``sme-credit`` or ``payment-fraud``), used when
        ``data`` is not given.
    institutions
        Number of generated institutions.
    total_rows
        Generated rows over all institutions; ``None`` is :data:`DEFAULT_ROWS`,
        raised to 400 rows per institution for large federations. Beyond the seven
        institutions of the default mix, institutions are sized like the seventh
        (the Zipf tail would leave lenders with a handful of defaults).
    data
        A CSV or Parquet table to split into institutions instead.
    target, positive
        The real table's label column and its bad (positive) value. Rows
        without a label are dropped and counted (:attr:`Scenario.assumed`).
    negatives
        The good labels, needed when the target holds more than two labels.
    partition_by
        Split the real table one institution per value of this column ...
    partition_missing
        ... rows without a value there dropped and counted (``"drop"``), or
        one institution of their own (``"own"``) ...
    partitions, alpha
        ... or into ``partitions`` institutions with Dirichlet(``alpha``) label skew.
    schema
        A reviewed federation schema (YAML); inferred from the table if absent.
    jurisdictions
        Jurisdiction codes assigned to the institutions in turn. Generated
        institutions default to the generator's realistic mix; a real table's
        to the same cycle of codes (an assumption, stated in the report).
    hub
        Jurisdiction of the pool and the aggregator; defaults to the first
        institution's.
    seed
        Seed of the data, the split, the initial model and the shuffling.
    rounds, epochs, batch_size, learning_rate, model
        Training: federated strategies run ``rounds`` rounds of ``epochs`` local
        epochs; centralized and local-only training run ``rounds * epochs`` epochs.
        The defaults are :class:`~crossfed.protocol.FederationSettings`' (one set
        for simulation and deployment).
    test_fraction
        Share of each institution's rows held out for testing.
    epsilons
        Target epsilons of the institution-level distributed-DP runs (delta
        ``dp_delta``); none by default: with a handful of institutions their
        noise swamps the model (an option for large federations).
    dp_clip
        L2 clipping norm of each institution's update in the DP runs. The default
        is about 1.5 times the median update norm measured on the default
        scenario (0.33-0.37 over four seeds); in an offline sweep of 0.1-1.0 it
        gave the best AUC at every epsilon.
    dpsgd_epsilons
        Target epsilons of the record-level DP-SGD runs, each institution's over
        the whole run at its own delta below 1/rows (:mod:`clients.dpsgd`).
    dpsgd_clip, dpsgd_batch_size, dpsgd_learning_rate
        DP-SGD's per-example gradient clip, expected (Poisson) batch and step size.
    target_bad_rate
        Tolerated bad rate among approved applicants, for the approval rate.
        ``None`` (default): half the observed bad rate of the training split
        (:data:`clients.metrics.DEFAULT_TARGET_FRACTION`), each institution's
        own for its rate, the pooled training rows' for the overall one; a fixed
        2 % on a table whose bad rate is 28 % approved 1.7 % of applicants, and
        on a 1 % book it approves everyone. A number: that target everywhere.
    strategies
        The federated strategies to run, by report name; empty (default):
        fedavg, he-fedavg and the DP runs the epsilons ask for. Centralized and
        local-only training, the report's baselines, always run. The masked
        encrypted runs (``he-fedavg-masked16``, ``he-fedavg-masked8``) run only
        when named here.
    """

    generator: str = "sme-credit"
    institutions: int = 7
    total_rows: int | None = None
    data: str | None = None
    target: str | None = None
    positive: str | None = None
    negatives: tuple[str, ...] = ()
    partition_by: str | None = None
    partition_missing: str = "drop"
    partitions: int | None = None
    alpha: float = 0.5
    schema: str | None = None
    jurisdictions: tuple[str, ...] = ()
    hub: str | None = None
    seed: int = FederationSettings.seed
    rounds: int = FederationSettings.rounds
    epochs: int = FederationSettings.epochs
    batch_size: int = FederationSettings.batch_size
    learning_rate: float = FederationSettings.learning_rate
    model: str = FederationSettings.model
    test_fraction: float = FederationSettings.test_fraction
    epsilons: tuple[float, ...] = ()
    dp_clip: float = 0.5
    dpsgd_epsilons: tuple[float, ...] = (1.0, 4.0, 8.0)
    dpsgd_clip: float = DPSGD_CLIP
    dpsgd_batch_size: int = DPSGD_BATCH_SIZE
    dpsgd_learning_rate: float = DPSGD_LEARNING_RATE
    dp_delta: float = FederationSettings.dp_delta
    target_bad_rate: float | None = None
    strategies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.data is None and self.institutions < 2:
            raise SimulationError(
                f"a federation needs at least 2 institutions, got {self.institutions}"
            )
        if self.data is not None:
            if not self.target or self.positive is None:
                raise SimulationError("a data file needs --target and --positive")
            if (self.partition_by is None) == (self.partitions is None):
                raise SimulationError("a data file needs either --partition-by or --partitions")
        if self.partition_missing not in ("drop", "own"):
            raise SimulationError(
                f"partition-missing must be drop or own, got {self.partition_missing!r}"
            )
        if self.rounds < 1 or self.epochs < 1:
            raise SimulationError("rounds and epochs must be at least 1")
        if any(not eps > 0 for eps in self.epsilons):
            raise SimulationError(f"epsilons must be positive, got {list(self.epsilons)}")
        if any(not eps > 0 for eps in self.dpsgd_epsilons):
            raise SimulationError(f"epsilons must be positive, got {list(self.dpsgd_epsilons)}")
        if not (
            self.dpsgd_clip > 0 and self.dpsgd_batch_size >= 1 and self.dpsgd_learning_rate > 0
        ):
            raise SimulationError("DP-SGD needs a positive clip, batch size and step size")
        if not self.dp_clip > 0:
            raise SimulationError(f"dp_clip must be positive, got {self.dp_clip}")
        unknown = sorted(set(self.jurisdictions) - set(JURISDICTIONS)) if self.data is None else []
        if unknown:
            raise SimulationError(
                f"unknown jurisdiction(s) {', '.join(unknown)}; known: {', '.join(JURISDICTIONS)}"
            )
        if self.target_bad_rate is not None and not 0 < self.target_bad_rate < 1:
            raise SimulationError(f"target bad rate must be in (0, 1), got {self.target_bad_rate}")

    @property
    def approval_target(self) -> str:
        """The approval rate's target bad rate, in words (printed beside every approval rate)."""
        if self.target_bad_rate is None:
            return (
                "bad rate <= 0.5 x the training split's bad rate (each institution's own; "
                "the pooled training rows' for the overall rate)"
            )
        return f"bad rate <= {self.target_bad_rate:.1%} (given)"


@dataclass(frozen=True)
class Institution:
    """One institution of a prepared scenario (its data file is partition ``index``)."""

    name: str
    jurisdiction: str
    data_file: Path
    rows: int
    positives: int


@dataclass(frozen=True)
class Scenario:
    """A prepared scenario: files in ``work_dir`` that every strategy reads."""

    spec: ScenarioSpec
    work_dir: Path
    source: str
    institutions: tuple[Institution, ...]
    schema: FederationSchema
    schema_path: Path
    secret_context: Path
    public_context: Path
    hub: str
    excluded: tuple[str, ...] = ()
    assumed: tuple[str, ...] = field(default_factory=tuple)
    agreement_keys: Path | None = None

    @property
    def data_files(self) -> str:
        """The partition files, comma-separated, as ``FederationSettings`` takes them."""
        return ",".join(str(i.data_file) for i in self.institutions)

    def describe(self) -> dict[str, Any]:
        """The scenario as plain data, for ``results.json`` and the report."""
        spec = asdict(self.spec)
        spec["jurisdictions"] = list(self.spec.jurisdictions)
        spec["epsilons"] = list(self.spec.epsilons)
        spec["dpsgd_epsilons"] = list(self.spec.dpsgd_epsilons)
        return {
            "source": self.source,
            "hub": self.hub,
            "institutions": [
                {
                    "name": i.name,
                    "jurisdiction": i.jurisdiction,
                    "rows": i.rows,
                    "positives": i.positives,
                }
                for i in self.institutions
            ],
            "excluded": list(self.excluded),
            "assumed": list(self.assumed),
            "target": self.schema.target.column,
            "positive": self.schema.target.positive,
            "features": len(self.schema.feature_columns),
            "approval_target": self.spec.approval_target,
            "settings": spec,
        }


def _generated(
    spec: ScenarioSpec,
) -> tuple[str, list[tuple[str, str, pd.DataFrame]], FederationSchema]:
    specs = default_institutions(spec.institutions)
    if len(specs) > _SMALLEST_SIZED:
        # Beyond the default mix the Zipf tail would leave lenders with a handful of
        # defaults; they are sized like the smallest of the mix instead.
        floor = specs[_SMALLEST_SIZED - 1].size_weight
        specs = [InstitutionSpec(s.name, s.jurisdiction, max(s.size_weight, floor)) for s in specs]
    if spec.jurisdictions:
        specs = [
            InstitutionSpec(
                f"{spec.jurisdictions[k % len(spec.jurisdictions)].lower()}-institution-{k + 1}",
                spec.jurisdictions[k % len(spec.jurisdictions)],
                s.size_weight,
            )
            for k, s in enumerate(specs)
        ]
    rows = spec.total_rows or max(DEFAULT_ROWS, _ROWS_PER_INSTITUTION * spec.institutions)
    federation = generate(spec.generator, specs, spec.seed, total_rows=rows)
    schema = schema_from_dict(
        {
            "target": {
                "column": federation.target,
                "positive": federation.positive,
                "negatives": [federation.negative],
            },
            "numeric": [{"name": c} for c in federation.numeric_columns],
            "categorical": [
                {"name": c, "categories": levels}
                for c, levels in federation.categorical_columns.items()
            ],
        }
    )
    parts = [(d.name, d.jurisdiction, d.frame) for d in federation.institutions]
    return f"generator {spec.generator} ({rows} rows, seed {spec.seed})", parts, schema


def _real(
    spec: ScenarioSpec,
) -> tuple[str, list[tuple[str, str, pd.DataFrame]], FederationSchema, list[str]]:
    if spec.data is None or spec.target is None:
        raise SimulationError("a real-data scenario needs a data file and a target column")
    read = read_table(spec.data)
    frame, notes = read.frame, [f"{spec.data}: {note}" for note in read.notes]
    if spec.target in frame.columns and (unlabelled := rows_without_value(frame, spec.target)):
        frame = frame.loc[frame[spec.target].notna()]
        notes.append(f"{unlabelled} rows without a label in {spec.target!r} dropped")
    if spec.schema:
        schema = load_schema(spec.schema)
    else:
        schema = infer_schema(
            frame,
            spec.target,
            str(spec.positive),
            negatives=spec.negatives or None,
            impute="median",
        )
    partitions: list[Partition]
    if spec.partition_by is not None:
        missing: Literal["drop", "own"] = "own" if spec.partition_missing == "own" else "drop"
        partitions = partition_by_column(frame, spec.partition_by, missing=missing)
        how = f"one institution per value of {spec.partition_by!r}"
        if without := rows_without_value(frame, spec.partition_by):
            notes.append(
                f"{without} rows without a value in {spec.partition_by!r} "
                + ("form an institution of their own" if missing == "own" else "dropped")
            )
    else:
        partitions = partition_dirichlet(
            frame, spec.target, int(spec.partitions or 0), spec.alpha, seed=spec.seed
        )
        how = f"{spec.partitions} institutions, Dirichlet(alpha={spec.alpha}) label skew"
    codes = spec.jurisdictions or _DEFAULT_JURISDICTIONS
    parts = [(p.name, codes[k % len(codes)], p.frame) for k, p in enumerate(partitions)]
    return f"data {spec.data} ({len(frame)} rows; {how})", parts, schema, notes


def _positives(frame: pd.DataFrame, schema: FederationSchema) -> int:
    labels = canonical_labels(frame[schema.target.column])
    return int(np.sum(labels == schema.target.positive))


def prepare_scenario(spec: ScenarioSpec, work_dir: str | Path) -> Scenario:
    """Write the scenario's partitions, schema and CKKS contexts into ``work_dir``.

    Raises
    ------
    SimulationError
        The data cannot be split, or fewer than two institutions can be trained
        and tested.
    """
    work = Path(work_dir)
    (work / "data").mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    if spec.data is not None:
        source, parts, schema, notes = _real(spec)
    else:
        source, parts, schema = _generated(spec)
    assumed = list(notes)
    if spec.data is not None and not spec.jurisdictions:
        assumed.append(
            "jurisdictions assigned to the table's institutions in turn (no --jurisdictions)"
        )
    institutions: list[Institution] = []
    excluded: list[str] = []
    for name, jurisdiction, frame in parts:
        positives = _positives(frame, schema)
        negatives = len(frame) - positives
        if min(positives, negatives) < MIN_ROWS_PER_CLASS:
            excluded.append(
                f"{name} ({jurisdiction}): {len(frame)} rows, {positives} positive — fewer than "
                f"{MIN_ROWS_PER_CLASS} rows of a class to train and test on"
            )
            continue
        path = work / "data" / f"{len(institutions):04d}-{name}.parquet"
        try:
            frame.reset_index(drop=True).to_parquet(path, index=False)
        except (TypeError, ValueError) as exc:
            raise SimulationError(f"cannot write {name}'s partition as Parquet: {exc}") from exc
        institutions.append(Institution(name, jurisdiction, path, len(frame), positives))
    if len(institutions) < 2:
        raise SimulationError(
            f"only {len(institutions)} institution(s) can be trained and tested; excluded: "
            + "; ".join(excluded)
        )
    schema_path = work / "schema.yaml"
    save_schema(schema, schema_path)
    secret = crypto.generate_secret_context("lean")
    secret_path = secret.save(work / "institutions.secret.ctx")
    public_path = secret.public().save(work / "aggregator.public.ctx")
    agreement = write_agreement_keys(work / "agreement", len(institutions))
    return Scenario(
        spec=spec,
        work_dir=work,
        source=source,
        institutions=tuple(institutions),
        schema=schema,
        schema_path=schema_path,
        secret_context=Path(secret_path),
        public_context=Path(public_path),
        hub=spec.hub or institutions[0].jurisdiction,
        excluded=tuple(excluded),
        assumed=tuple(assumed),
        agreement_keys=agreement,
    )


def write_agreement_keys(folder: Path, count: int) -> Path:
    """Agreement keys for ``count`` virtual institutions ``partition-<id>``, as masked presets need.

    Each private key is written alone (``<name>.key``, mode 0600), the public
    list beside them (``public.json``): the layout
    :func:`clients.masking_keys.masking_keys` reads when the run setting
    ``agreement-keys`` names the folder. The harness plays every institution.
    """
    folder.mkdir(parents=True, exist_ok=True)
    listed: dict[str, str] = {}
    for partition in range(count):
        name = f"partition-{partition}"
        key = crypto.AgreementKey.generate()
        crypto.write_atomically(folder / f"{name}.key", key.private_bytes(), mode=0o600)
        listed[name] = key.public_bytes().hex()
    crypto.write_atomically(folder / "public.json", json.dumps(listed, indent=1).encode())
    return folder


def preset_contexts(scenario: Scenario, preset: str) -> tuple[Path, Path]:
    """``(secret, public)`` context files of ``preset`` in the scenario's folder, made once."""
    secret_path = scenario.work_dir / f"institutions.{preset}.secret.ctx"
    public_path = scenario.work_dir / f"aggregator.{preset}.public.ctx"
    if not secret_path.exists() or not public_path.exists():
        secret = crypto.generate_secret_context(preset)
        secret.save(secret_path)
        secret.public().save(public_path)
    return secret_path, public_path
