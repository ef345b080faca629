"""A study: every strategy trained on one scenario, priced, and ranked on a Pareto front.

:func:`run_study` prepares the scenario, trains each strategy
(:mod:`simulations.strategies`), prices each with the compliance-cost model
(:mod:`simulations.compliance`: flows, dated rules, the law as at a date, over a
horizon of years) under the profiles' own answers to the unsettled legal
questions, under all four combinations of answers (the sensitivity table) and
one jurisdiction's flag at a time (the sweep); runs the seeded Monte Carlo over
every ranged assumption (cost distributions, the probability that encrypted
FedAvg saves 40 % against plaintext FedAvg, the tornado); and marks the
strategies on the Pareto front of model quality (ROC AUC on the pooled test
splits) against total compliance cost. A strategy that a rule forbids is
infeasible: it is trained and reported, but not priced and never on the front.

The federated strategies run one after another in a single Flower simulation
(:mod:`simulations.multirun`): the institutions' Ray actors start once per study.
Ray runs in-process, or on the user's cluster given by address.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import torch

from simulations.attacks import AttackResult, run_attacks
from simulations.compliance import (
    AGGREGATOR,
    DEFAULT_DRAWS,
    DEFAULT_YEARS,
    ComplianceCost,
    Consortium,
    CostModel,
    MonteCarloResult,
    Prices,
    Profile,
    Registry,
    SensitivityRow,
    SweepRow,
    jurisdiction_sweep,
    load_consortium,
    load_profiles,
    run_monte_carlo,
    sensitivity,
)
from simulations.engine import default_backend_config
from simulations.errors import StrategyError
from simulations.evaluation import load_splits
from simulations.pareto import pareto_front
from simulations.personalisation import PersonalisedRun, personalise_institutions
from simulations.scenario import Scenario, ScenarioSpec, prepare_scenario
from simulations.strategies import (
    StrategyPlan,
    StrategyRun,
    plan_strategies,
    run_federated_strategies,
    run_local_strategy,
)

__all__ = [
    "CompliancePlan",
    "Progress",
    "StrategyResult",
    "StudyResult",
    "cost_model",
    "mark_front",
    "price",
    "price_strategies",
    "run_study",
]

#: Called before each step with (steps done, steps in all, what comes next).
Progress = Callable[[int, int, str], None]

#: The federated strategy each institution personalises, first present wins.
PERSONALISED_FROM = ("he-fedavg", "fedavg")

#: Comparisons the Monte Carlo reports, headline first: (baseline, candidate).
COMPARISONS = (("fedavg", "he-fedavg"), ("centralized", "he-fedavg"))


@dataclass(frozen=True)
class CompliancePlan:
    """How a study prices its strategies.

    Attributes
    ----------
    as_of
        The law as at this date (default: today) for the first year of the horizon.
    years
        The horizon: recurring costs, renewals and expected penalties over it.
    turnover_usd
        Annual turnover per institution name (``aggregator`` for the hub operator),
        for turnover-based penalty caps; others use their profile's reference.
    draws, seed
        Monte Carlo draws, and its seed (default: the scenario's).
    """

    as_of: date | None = None
    years: int = DEFAULT_YEARS
    turnover_usd: Mapping[str, float] = field(default_factory=dict)
    draws: int = DEFAULT_DRAWS
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.years < 1:
            raise StrategyError(f"--years must be at least 1, got {self.years}")
        if self.draws < 1:
            raise StrategyError(f"Monte Carlo draws must be at least 1, got {self.draws}")
        bad = sorted(n for n, v in self.turnover_usd.items() if not v >= 0)
        if bad:
            raise StrategyError(f"turnover must be a non-negative amount: {', '.join(bad)}")

    @property
    def date(self) -> date:
        """The ``as_of`` date, today if not given."""
        return self.as_of or date.today()


@dataclass(frozen=True)
class StrategyResult:
    """A trained strategy with its compliance cost.

    Attributes
    ----------
    run
        Quality and measurements (:class:`~simulations.strategies.StrategyRun`).
    cost
        Cost under the profiles' own answers to the unsettled questions.
    sensitivity
        Cost under each of the four combinations of answers.
    on_front
        Whether the strategy is on the Pareto front of AUC against total cost.
    sweep
        Cost with one jurisdiction's flag answered each way, the rest as profiled.
    """

    run: StrategyRun
    cost: ComplianceCost
    sensitivity: tuple[SensitivityRow, ...]
    on_front: bool = False
    sweep: tuple[SweepRow, ...] = ()

    @property
    def name(self) -> str:
        """The strategy's report name."""
        return self.run.plan.name


@dataclass(frozen=True)
class StudyResult:
    """Everything a report shows."""

    scenario: Scenario
    strategies: tuple[StrategyResult, ...]
    prices: Prices
    profiles: Mapping[str, Profile]
    profiles_dir: str | None
    ray_address: str | None
    wall_s: float
    compliance: CompliancePlan = field(default_factory=CompliancePlan)
    consortium: Consortium | None = None
    registry: Registry | None = None
    monte_carlo: MonteCarloResult | None = None
    personalised: PersonalisedRun | None = None
    privacy_attacks: tuple[AttackResult, ...] = ()

    def strategy(self, name: str) -> StrategyResult:
        """The result of the strategy called ``name``."""
        for result in self.strategies:
            if result.name == name:
                return result
        raise KeyError(name)


def cost_model(
    run: StrategyRun,
    scenario: Scenario,
    profiles: Mapping[str, Profile],
    prices: Prices,
    *,
    consortium: Consortium | None = None,
    plan: CompliancePlan | None = None,
) -> CostModel:
    """The cost model of a trained strategy (its flows and dated decisions).

    The epsilon priced for a DP strategy is the one the accountant reports for
    the run, falling back to the target if the run reported none.
    """
    plan = plan or CompliancePlan()
    consortium = consortium or load_consortium()
    kind = run.plan.kind
    epsilon = run.epsilon if run.epsilon is not None else run.plan.epsilon
    return CostModel(
        kind,
        scenario.institutions,
        profiles,
        consortium,
        cpu_s=run.cpu_s,
        bytes_sent=float(run.bytes_sent),
        hub=scenario.hub,
        as_of=plan.date,
        years=plan.years,
        epsilon=epsilon if kind == "he-fedavg-dp" else None,
        prices=prices,
        turnover_usd={**consortium.turnover_usd, **plan.turnover_usd},
    )


def price(
    run: StrategyRun,
    scenario: Scenario,
    profiles: Mapping[str, Profile],
    prices: Prices,
    *,
    consortium: Consortium | None = None,
    plan: CompliancePlan | None = None,
    registry: Registry | None = None,
) -> tuple[ComplianceCost, list[SensitivityRow]]:
    """Compliance cost of a trained strategy at base values, and its four-way sensitivity."""
    consortium = consortium or load_consortium()
    registry = registry or Registry(profiles, consortium)
    model = cost_model(run, scenario, profiles, prices, consortium=consortium, plan=plan)
    return model.cost(registry.base(), registry), sensitivity(model, registry)


def mark_front(results: list[StrategyResult]) -> list[StrategyResult]:
    """The results with ``on_front`` set: the Pareto front of AUC against total cost."""
    front = set(pareto_front([(r.run.evaluation.overall.auc, r.cost.total_usd) for r in results]))
    return [
        StrategyResult(r.run, r.cost, r.sensitivity, on_front=i in front, sweep=r.sweep)
        for i, r in enumerate(results)
    ]


def _check_profiles(scenario: Scenario, profiles: Mapping[str, Profile]) -> None:
    missing = sorted({i.jurisdiction for i in scenario.institutions} | {scenario.hub})
    missing = [code for code in missing if code not in profiles]
    if missing:
        raise StrategyError(
            f"no compliance profile for jurisdiction(s) {', '.join(missing)}: "
            "add one with --profiles DIR"
        )


def _check_turnover(scenario: Scenario, plan: CompliancePlan) -> None:
    known = {i.name for i in scenario.institutions} | {AGGREGATOR}
    unknown = sorted(set(plan.turnover_usd) - known)
    if unknown:
        raise StrategyError(
            f"--turnover names no institution: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )


def price_strategies(
    runs: Sequence[StrategyRun],
    scenario: Scenario,
    profiles: Mapping[str, Profile],
    prices: Prices,
    consortium: Consortium,
    compliance: CompliancePlan,
) -> tuple[list[StrategyResult], Registry, MonteCarloResult]:
    """Price trained strategies: base case, sensitivity, sweep, Monte Carlo, Pareto front.

    The Monte Carlo's seed is the plan's, or the scenario's seed.
    """
    registry = Registry(profiles, consortium)
    results, models = [], {}
    for run in runs:
        model = cost_model(run, scenario, profiles, prices, consortium=consortium, plan=compliance)
        models[run.plan.name] = model
        results.append(
            StrategyResult(
                run,
                model.cost(registry.base(), registry),
                tuple(sensitivity(model, registry)),
                sweep=tuple(jurisdiction_sweep(model, registry)),
            )
        )
    monte_carlo = run_monte_carlo(
        models,
        registry,
        draws=compliance.draws,
        seed=scenario.spec.seed if compliance.seed is None else compliance.seed,
        comparisons=COMPARISONS,
    )
    return mark_front(results), registry, monte_carlo


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Torch on one thread for the many small trainings of personalisation and attacks.

    Measured on two shared cores after the simulation: torch's default two threads
    took 37 s and 52 s for them, one thread 2 s and 3 s (thread contention on tiny
    matrices). The caller's setting is restored.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_study(
    spec: ScenarioSpec,
    work_dir: str | Path,
    *,
    profiles_dir: str | Path | None = None,
    prices: Prices | None = None,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    progress: Progress | None = None,
    log_to_driver: bool = True,
    compliance: CompliancePlan | None = None,
) -> StudyResult:
    """Prepare the scenario, train and price every strategy, mark the Pareto front.

    Parameters
    ----------
    spec
        The scenario.
    work_dir
        Folder for the scenario's files and each federated run's outputs.
    profiles_dir
        User profiles replacing the shipped ones (``--profiles``).
    prices
        CPU and transfer prices; :class:`Prices` defaults (assumed) if absent.
    ray_address
        An existing Ray cluster for the federated runs; without one, Ray starts
        in-process with ``num_cpus`` CPUs (default: all).
    progress
        Called before each step.
    log_to_driver
        Whether the Ray actors' logs are shown in this process.
    compliance
        The compliance side: law as at, horizon, turnovers, Monte Carlo draws.

    Raises
    ------
    simulations.SimulationError
        A profile is malformed or missing, or the scenario cannot be prepared.
    """
    started = time.perf_counter()
    report = progress or (lambda done, total, what: None)
    profiles = load_profiles(profiles_dir)  # malformed profiles fail before any training
    consortium = load_consortium(profiles_dir)
    compliance = compliance or CompliancePlan()
    prices = prices or Prices()
    plans: list[StrategyPlan] = plan_strategies(spec)
    total = len(plans) + 1
    report(0, total, "preparing the scenario")
    scenario = prepare_scenario(spec, work_dir)
    _check_profiles(scenario, profiles)
    _check_turnover(scenario, compliance)
    splits = load_splits(scenario)
    runs: dict[str, StrategyRun] = {}
    for plan in (p for p in plans if not p.federated):
        report(len(runs) + 1, total, f"training {plan.name}")
        runs[plan.name] = run_local_strategy(plan, scenario, splits)
    federated = [p for p in plans if p.federated]
    if federated:
        report(len(runs) + 1, total, "starting the simulation engine (Ray)")

        def starting(name: str) -> None:
            report(len(runs) + 1, total, f"training {name}")

        def finished(run: StrategyRun) -> None:
            runs[run.plan.name] = run

        backend_config = default_backend_config(address=ray_address, num_cpus=num_cpus)
        backend_config["init_args"]["log_to_driver"] = log_to_driver
        run_federated_strategies(
            federated,
            scenario,
            splits,
            backend_config=backend_config,
            on_start=starting,
            on_done=finished,
        )
    personalised = None
    federated_name = next((n for n in PERSONALISED_FROM if n in runs), None)
    with _one_torch_thread():
        if federated_name is not None and "local-only" in runs:
            personalised = personalise_institutions(
                spec, splits, runs[federated_name], runs["local-only"]
            )
        report(total, total, "attacking what each party sees")
        attacks = run_attacks(spec, splits, [runs[p.name] for p in plans])
    report(total, total, "pricing")
    results, registry, monte_carlo = price_strategies(
        [runs[p.name] for p in plans], scenario, profiles, prices, consortium, compliance
    )
    return StudyResult(
        scenario=scenario,
        strategies=tuple(results),
        prices=prices,
        profiles=profiles,
        profiles_dir=str(profiles_dir) if profiles_dir is not None else None,
        ray_address=ray_address,
        wall_s=time.perf_counter() - started,
        compliance=compliance,
        consortium=consortium,
        registry=registry,
        monte_carlo=monte_carlo,
        personalised=personalised,
        privacy_attacks=tuple(attacks),
    )
