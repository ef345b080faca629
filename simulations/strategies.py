"""The strategies a study compares, each really trained on the scenario's files.

- ``centralized``: every institution's training rows pooled in one place, one
  model trained on them (the accuracy ceiling, and the compliance worst case);
- ``local-only``: each institution trains alone on its own rows;
- ``fedavg``: Flower's plaintext FedAvg, in the simulation engine;
- ``he-fedavg``: FedAvg over CKKS-encrypted updates (keyless aggregator);
- ``he-fedavg-dpsgd-eps<ε>``: encrypted FedAvg with record-level DP-SGD at each
  institution (:mod:`clients.dpsgd`), each institution's ``ε`` over every local
  step of every round at its own delta below 1/rows; the reported ``ε`` is the
  worst institution's;
- ``he-fedavg-dp-eps<ε>``: encrypted FedAvg with institution-level distributed
  differential privacy calibrated to ``ε`` over the run (delta from the
  scenario), an option for large federations.

All use the same model architecture, initial seed, shuffling seeds and test
splits. Training budgets match: a federated run does ``rounds`` rounds of
``epochs`` local epochs, and centralized and local-only training do
``rounds * epochs`` epochs, reseeding the shuffle each ``epochs`` like a round.

Measured for the cost model: CPU-seconds (the process's for centralized and
local-only training; for a federation, the aggregator thread's plus the
virtual institutions' Ray worker processes', which the harness measures from
outside with psutil around each training round — the institutions report
nothing, see :mod:`simulations.cputime`) and bytes sent (the raw
partition files for pooling, none for local-only, every round's payloads down
and up for a federation). The statistics round's few hundred bytes per
institution are not counted.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from clients import (
    DpSgdTraining,
    ModelSpec,
    Standardizer,
    TrainConfig,
    build_model,
    set_weights,
    train_local,
)
from clients.personalise import Scored
from crossfed.protocol import FederationSettings
from federation import noise_multiplier_for_epsilon
from simulations.compliance import Strategy
from simulations.engine import FederatedRun, with_model_shapes
from simulations.errors import SimulationError
from simulations.evaluation import (
    InstitutionSplit,
    StrategyEvaluation,
    evaluate_strategy,
    federation_standardizer,
)
from simulations.multirun import FederationOutcome, run_federations
from simulations.observer import ObservedUpdate, read_updates, record_updates
from simulations.scenario import Scenario, ScenarioSpec, preset_contexts

__all__ = [
    "MASKED_STRATEGIES",
    "StrategyPlan",
    "StrategyRun",
    "dp_strategy_name",
    "dpsgd_strategy_name",
    "dpsgd_training",
    "federated_run",
    "federation_settings",
    "masked_plan",
    "model_spec",
    "plan_strategies",
    "run_federated_strategies",
    "run_local_strategy",
    "train_alone",
]


@dataclass(frozen=True)
class StrategyPlan:
    """One strategy to run: its report name, cost-model strategy and target epsilon.

    ``dp`` says whom the epsilon protects: ``"institution"`` (distributed DP on
    each institution's update) or ``"record"`` (DP-SGD at each institution, for
    each customer); ``None`` without DP. ``preset`` names the CKKS preset of an
    encrypted run when it is not the scenario's default (``masked16``,
    ``masked8``: masked deltas, :func:`masked_plan`).
    """

    name: str
    kind: Strategy
    epsilon: float | None = None
    dp: str | None = None
    preset: str = ""

    @property
    def federated(self) -> bool:
        """Whether the strategy runs as a federation (in Flower's simulation engine)."""
        return self.kind not in ("centralized", "local-only")


@dataclass(frozen=True)
class StrategyRun:
    """A trained strategy: its quality and what it consumed.

    Attributes
    ----------
    plan
        What was run.
    evaluation
        Quality on the scenario's test splits.
    cpu_s, bytes_sent, wall_s
        Measured CPU-seconds, bytes sent and wall-clock seconds.
    epsilon
        The epsilon the privacy accountant reports for the run (DP only).
    detail
        Per-round measurements and the federation's own weighted evaluation.
    models
        Each institution's model and standardiser, in scenario order (the same
        pair repeated for a single model): what personalisation starts from and
        what the privacy attacks target.
    observed
        The plaintext training replies the aggregator saw (plaintext FedAvg only).
    """

    plan: StrategyPlan
    evaluation: StrategyEvaluation
    cpu_s: float
    bytes_sent: int
    wall_s: float
    epsilon: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    models: tuple[Scored, ...] = field(default=(), repr=False, compare=False)
    observed: tuple[ObservedUpdate, ...] = field(default=(), repr=False, compare=False)


#: The masked encrypted strategies, by report name (not run unless asked for).
MASKED_STRATEGIES = {"he-fedavg-masked16": "masked16", "he-fedavg-masked8": "masked8"}


def masked_plan(name: str) -> StrategyPlan:
    """``he-fedavg-masked16`` or ``he-fedavg-masked8``: encrypted FedAvg of masked deltas.

    Raises
    ------
    ValueError
        Another name.
    """
    if name not in MASKED_STRATEGIES:
        raise ValueError(f"no masked strategy {name!r}: use {', '.join(MASKED_STRATEGIES)}")
    return StrategyPlan(name, "he-fedavg", preset=MASKED_STRATEGIES[name])


def dp_strategy_name(epsilon: float) -> str:
    """``he-fedavg-dp-eps<ε>``, with ``ε`` written without a trailing ``.0``."""
    return f"he-fedavg-dp-eps{epsilon:g}"


def dpsgd_strategy_name(epsilon: float) -> str:
    """``he-fedavg-dpsgd-eps<ε>``: encrypted FedAvg with record-level DP-SGD."""
    return f"he-fedavg-dpsgd-eps{epsilon:g}"


def dpsgd_training(spec: ScenarioSpec, epsilon: float) -> DpSgdTraining:
    """Each institution's DP-SGD local training for a run at target ``epsilon``.

    The same the ClientApp builds from the run's settings (:func:`federation_settings`).
    """
    plan = StrategyPlan(dpsgd_strategy_name(epsilon), "he-fedavg-dp", epsilon, "record")
    settings = FederationSettings(
        mode="plaintext", rounds=spec.rounds, dp_delta=spec.dp_delta, **_dpsgd_settings(plan, spec)
    )
    return DpSgdTraining.from_settings(settings)


def _round_config(spec: ScenarioSpec) -> TrainConfig:
    return TrainConfig(
        epochs=spec.epochs, batch_size=spec.batch_size, learning_rate=spec.learning_rate
    )


def plan_strategies(spec: ScenarioSpec) -> list[StrategyPlan]:
    """The study's strategies, in report order.

    With ``spec.strategies``, centralized and local-only training (the
    report's baselines) and the federated strategies it names only.

    Raises
    ------
    SimulationError
        ``spec.strategies`` names a strategy the study does not have.
    """
    plans = [
        StrategyPlan("centralized", "centralized"),
        StrategyPlan("local-only", "local-only"),
        StrategyPlan("fedavg", "fedavg"),
        StrategyPlan("he-fedavg", "he-fedavg"),
    ]
    plans += [
        StrategyPlan(dpsgd_strategy_name(e), "he-fedavg-dp", e, "record")
        for e in spec.dpsgd_epsilons
    ]
    plans += [
        StrategyPlan(dp_strategy_name(e), "he-fedavg-dp", e, "institution") for e in spec.epsilons
    ]
    if not spec.strategies:
        return plans
    known = [p.name for p in plans if p.federated] + list(MASKED_STRATEGIES)
    unknown = [name for name in spec.strategies if name not in known]
    if unknown:
        raise SimulationError(
            f"unknown federated strategies {', '.join(unknown)}; this study has {', '.join(known)}"
        )
    chosen = [p for p in plans if not p.federated or p.name in spec.strategies]
    at = next((i + 1 for i, p in enumerate(chosen) if p.name == "he-fedavg"), len(chosen))
    masked = [masked_plan(n) for n in MASKED_STRATEGIES if n in spec.strategies]
    return chosen[:at] + masked + chosen[at:]


def model_spec(spec: ScenarioSpec) -> ModelSpec:
    """The architecture every strategy of the study trains."""
    hidden = FederationSettings(mode="plaintext").hidden_sizes()
    return ModelSpec(kind=spec.model, hidden=hidden)  # type: ignore[arg-type]


def _train(model: nn.Module, x: np.ndarray, y: np.ndarray, spec: ScenarioSpec) -> None:
    """``rounds * epochs`` epochs, reseeded per round like the federated runs."""
    for round_ in range(1, spec.rounds + 1):
        train_local(
            model,
            x,
            y,
            TrainConfig(
                epochs=spec.epochs,
                batch_size=spec.batch_size,
                learning_rate=spec.learning_rate,
                seed=spec.seed + round_,
            ),
        )


def train_alone(spec: ScenarioSpec, x: np.ndarray, y: np.ndarray) -> Scored:
    """An institution's own model on raw rows ``(x, y)``: its standardiser, the full budget."""
    scaler = Standardizer.fit(x)
    model = build_model(model_spec(spec), x.shape[1], spec.seed)
    _train(model, scaler.transform(x), y, spec)
    return model, scaler


def _centralized(scenario: Scenario, splits: Sequence[InstitutionSplit]) -> StrategyRun:
    spec = scenario.spec
    started, cpu = time.perf_counter(), time.process_time()
    scaler = federation_standardizer(splits)
    x = np.concatenate([scaler.transform(s.data.x_train) for s in splits])
    y = np.concatenate([s.data.y_train for s in splits])
    model = build_model(model_spec(spec), x.shape[1], spec.seed)
    _train(model, x, y, spec)
    cpu_s, wall_s = time.process_time() - cpu, time.perf_counter() - started
    evaluation = evaluate_strategy(
        splits, [model] * len(splits), [scaler] * len(splits), target_bad_rate=spec.target_bad_rate
    )
    pooled_bytes = sum(s.institution.data_file.stat().st_size for s in splits)
    return StrategyRun(
        StrategyPlan("centralized", "centralized"),
        evaluation,
        cpu_s,
        pooled_bytes,
        wall_s,
        detail={"bytes_sent": "the institutions' partition files (Parquet), pooled at the hub"},
        models=tuple((model, scaler) for _ in splits),
    )


def _local_only(scenario: Scenario, splits: Sequence[InstitutionSplit]) -> StrategyRun:
    spec = scenario.spec
    started, cpu = time.perf_counter(), time.process_time()
    models: list[nn.Module] = []
    scalers: list[Standardizer] = []
    for split in splits:
        model, scaler = train_alone(spec, split.data.x_train, split.data.y_train)
        models.append(model)
        scalers.append(scaler)
    cpu_s, wall_s = time.process_time() - cpu, time.perf_counter() - started
    evaluation = evaluate_strategy(splits, models, scalers, target_bad_rate=spec.target_bad_rate)
    return StrategyRun(
        StrategyPlan("local-only", "local-only"),
        evaluation,
        cpu_s,
        0,
        wall_s,
        models=tuple(zip(models, scalers, strict=True)),
    )


def federation_settings(plan: StrategyPlan, scenario: Scenario) -> FederationSettings:
    """The settings of a federated strategy's run over the scenario's files.

    Its outputs go to ``<work_dir>/runs/<name>``, emptied first: the aggregator
    resumes from a checkpoint it finds there, and a study starts afresh. The
    settings name the institution count (each institution's DP share count) and
    the model's shapes, as a kit would. Updates are normalised by local steps
    (``normalise_steps``) in the runs without DP only, by the ClientApp's own rule
    (a kit's deployment applies the same): under DP-SGD, scaling the
    small institutions' updates up scales their larger noise up too (measured on
    the default scenario, six runs each: mean ROC AUC 0.752 -> 0.714 at epsilon 1,
    though 0.753 -> 0.766 at epsilon 4).
    """
    spec = scenario.spec
    noise = 0.0
    distributed = plan.epsilon is not None and plan.dp == "institution"
    if plan.epsilon is not None and distributed:
        noise = noise_multiplier_for_epsilon(plan.epsilon, spec.rounds, spec.dp_delta)
    out_dir = scenario.work_dir / "runs" / plan.name
    shutil.rmtree(out_dir, ignore_errors=True)
    secret, public = scenario.secret_context, scenario.public_context
    if plan.preset:
        secret, public = preset_contexts(scenario, plan.preset)
    settings = FederationSettings(
        mode="plaintext" if plan.kind == "fedavg" else "encrypted",
        rounds=spec.rounds,
        min_institutions=len(scenario.institutions),
        institutions=len(scenario.institutions),
        public_context=str(public),
        secret_context=str(secret),
        agreement_keys=str(scenario.agreement_keys or "") if plan.preset else "",
        schema=str(scenario.schema_path),
        data_files=scenario.data_files,
        model=spec.model,
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        seed=spec.seed,
        test_fraction=spec.test_fraction,
        out_dir=str(out_dir),
        dp_clip=spec.dp_clip if distributed else 0.0,
        dp_noise_multiplier=noise,
        dp_delta=spec.dp_delta,
        **_dpsgd_settings(plan, spec),
    )
    return with_model_shapes(settings)


def _dpsgd_settings(plan: StrategyPlan, spec: ScenarioSpec) -> dict[str, Any]:
    """Record-level DP-SGD's settings for a ``he-fedavg-dpsgd-eps…`` plan (else none)."""
    if plan.dp != "record" or plan.epsilon is None:
        return {}
    return {
        "dpsgd_epsilon": plan.epsilon,
        "dpsgd_clip": spec.dpsgd_clip,
        "dpsgd_batch_size": spec.dpsgd_batch_size,
        "dpsgd_learning_rate": spec.dpsgd_learning_rate,
    }


def federated_run(
    plan: StrategyPlan,
    scenario: Scenario,
    splits: Sequence[InstitutionSplit],
    run: FederatedRun,
    wall_s: float,
) -> StrategyRun:
    """Evaluate a finished federation's model and collect its measurements."""
    spec = scenario.spec
    model = build_model(model_spec(spec), splits[0].data.n_features, spec.seed)
    set_weights(model, run.weights)
    scaler = federation_standardizer(splits)
    evaluation = evaluate_strategy(
        splits, [model] * len(splits), [scaler] * len(splits), target_bad_rate=spec.target_bad_rate
    )
    rounds = run.metrics.get("rounds_measured", [])
    cpu_s = sum(
        float(r["aggregator_cpu_s"]) + float(r.get("institutions_cpu_s") or 0.0) for r in rounds
    )
    bytes_sent = sum(int(r["bytes_down"]) + int(r["bytes_up"]) for r in rounds)
    epsilon = run.metrics.get("epsilon")
    detail: dict[str, Any] = {}
    if plan.dp == "record" and plan.epsilon is not None:
        training = dpsgd_training(spec, plan.epsilon)
        config = _round_config(spec)
        per_institution: list[dict[str, Any]] = []
        for split in splits:
            rows = len(split.data.y_train)
            spent, delta = training.epsilon(rows, config)
            per_institution.append(
                {
                    "institution": split.institution.name,
                    "rows": rows,
                    "epsilon": spent,
                    "delta": delta,
                    "noise_multiplier": training.noise_multiplier(rows, config),
                }
            )
        epsilon = max(float(p["epsilon"]) for p in per_institution)  # the federation's worst case
        detail = {
            "dp": "record-level DP-SGD (Opacus): each institution's customers",
            "epsilon_per_institution": per_institution,
            "dpsgd_clip": training.max_grad_norm,
            "dpsgd_batch_size": training.batch_size,
            "dpsgd_learning_rate": training.learning_rate,
            "epsilon_scope": "every local step of every round, RDP accountant (Opacus), "
            "at each institution's delta (below 1/rows); epsilon is the worst institution's",
        }
    elif plan.dp == "institution":
        detail = {"dp": "institution-level distributed DP: each institution's participation"}
    return StrategyRun(
        plan,
        evaluation,
        cpu_s,
        bytes_sent,
        wall_s,
        epsilon=float(epsilon) if epsilon is not None else None,
        detail={
            "noise_multiplier": run.settings.dp_noise_multiplier,
            "dp_clip": run.settings.dp_clip,
            "epsilon_scope": run.metrics.get("epsilon_scope"),
            "institutions_cpu_source": run.metrics.get("institutions_cpu_source"),
            "rounds_measured": rounds,
            "federation_wall_s": run.metrics.get("wall_s"),
            "federation_evaluation": run.final_evaluation(),
            **detail,
        },
        models=tuple((model, scaler) for _ in splits),
        observed=tuple(read_updates(run.settings.out_dir)) if plan.kind == "fedavg" else (),
    )


def run_federated_strategies(
    plans: Sequence[StrategyPlan],
    scenario: Scenario,
    splits: Sequence[InstitutionSplit],
    *,
    backend_config: dict[str, Any] | None = None,
    on_start: Callable[[str], None] | None = None,
    on_done: Callable[[StrategyRun], None] | None = None,
) -> list[StrategyRun]:
    """Train the federated strategies in one Flower simulation (:mod:`simulations.multirun`).

    Parameters
    ----------
    plans
        Federated strategies only (``fedavg``, ``he-fedavg``, ``he-fedavg-dp``).
    scenario, splits
        The prepared scenario and its institutions' splits (:func:`load_splits`).
    backend_config
        Flower's Ray backend settings, e.g. the address of a running cluster
        (:func:`simulations.engine.default_backend_config`).
    on_start, on_done
        Called as each strategy starts (with its name) and ends.
    """
    by_name = {plan.name: plan for plan in plans}
    if not all(plan.federated for plan in plans):
        raise ValueError("run_federated_strategies takes federated strategies only")
    runs: list[StrategyRun] = []

    def done(tag: str, outcome: FederationOutcome) -> None:
        run = federated_run(by_name[tag], scenario, splits, outcome.run, outcome.wall_s)
        runs.append(run)
        if on_done is not None:
            on_done(run)

    settings = [(plan.name, federation_settings(plan, scenario)) for plan in plans]
    run_federations(
        settings,
        len(scenario.institutions),
        backend_config=backend_config,
        on_start=on_start,
        on_done=done,
        # What the aggregator sees of plaintext FedAvg, for the update attacks.
        client_mods={
            name: [record_updates(s.out_dir)]
            for name, s in settings
            if by_name[name].kind == "fedavg"
        },
    )
    return runs


def run_local_strategy(
    plan: StrategyPlan, scenario: Scenario, splits: Sequence[InstitutionSplit]
) -> StrategyRun:
    """Train and evaluate ``centralized`` or ``local-only`` in this process."""
    if plan.kind == "centralized":
        return _centralized(scenario, splits)
    if plan.kind == "local-only":
        return _local_only(scenario, splits)
    raise ValueError(f"{plan.name} is a federated strategy: use run_federated_strategies")
