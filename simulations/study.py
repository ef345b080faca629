"""A study: every strategy trained on one scenario, priced, and ranked on a Pareto front.

:func:`run_study` prepares the scenario, trains each strategy
(:mod:`simulations.strategies`), prices each with the compliance-cost model
under the profiles' own answers to the two unsettled legal questions and under
all four combinations of answers (the sensitivity table), and marks the
strategies on the Pareto front of model quality (ROC AUC on the pooled test
splits) against total compliance cost. A strategy that a sector rule forbids is
infeasible: it is trained and reported, but not priced and never on the front.

The federated strategies run one after another in a single Flower simulation
(:mod:`simulations.multirun`): the institutions' Ray actors start once per study.
Ray runs in-process, or on the user's cluster given by address.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulations.compliance import (
    ComplianceCost,
    Prices,
    Profile,
    SensitivityRow,
    compliance_cost,
    load_profiles,
    sensitivity,
)
from simulations.engine import default_backend_config
from simulations.errors import StrategyError
from simulations.evaluation import load_splits
from simulations.pareto import pareto_front
from simulations.scenario import Scenario, ScenarioSpec, prepare_scenario
from simulations.strategies import (
    StrategyPlan,
    StrategyRun,
    plan_strategies,
    run_federated_strategies,
    run_local_strategy,
)

__all__ = ["Progress", "StrategyResult", "StudyResult", "mark_front", "price", "run_study"]

#: Called before each step with (steps done, steps in all, what comes next).
Progress = Callable[[int, int, str], None]


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
    """

    run: StrategyRun
    cost: ComplianceCost
    sensitivity: tuple[SensitivityRow, ...]
    on_front: bool = False

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

    def strategy(self, name: str) -> StrategyResult:
        """The result of the strategy called ``name``."""
        for result in self.strategies:
            if result.name == name:
                return result
        raise KeyError(name)


def price(
    run: StrategyRun,
    scenario: Scenario,
    profiles: Mapping[str, Profile],
    prices: Prices,
) -> tuple[ComplianceCost, list[SensitivityRow]]:
    """Compliance cost of a trained strategy, and its four-way sensitivity.

    The epsilon priced for a DP strategy is the one the accountant reports for
    the run, falling back to the target if the run reported none.
    """
    plan = run.plan
    epsilon = run.epsilon if run.epsilon is not None else plan.epsilon
    kwargs: dict[str, Any] = {
        "cpu_s": run.cpu_s,
        "bytes_sent": float(run.bytes_sent),
        "prices": prices,
        "epsilon": epsilon if plan.kind == "he-fedavg-dp" else None,
        "hub": scenario.hub,
    }
    cost = compliance_cost(plan.kind, scenario.institutions, profiles, **kwargs)
    return cost, sensitivity(plan.kind, scenario.institutions, profiles, **kwargs)


def mark_front(results: list[StrategyResult]) -> list[StrategyResult]:
    """The results with ``on_front`` set: the Pareto front of AUC against total cost."""
    front = set(pareto_front([(r.run.evaluation.overall.auc, r.cost.total_usd) for r in results]))
    return [
        StrategyResult(r.run, r.cost, r.sensitivity, on_front=i in front)
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

    Raises
    ------
    simulations.SimulationError
        A profile is malformed or missing, or the scenario cannot be prepared.
    """
    started = time.perf_counter()
    report = progress or (lambda done, total, what: None)
    profiles = load_profiles(profiles_dir)  # malformed profiles fail before any training
    prices = prices or Prices()
    plans: list[StrategyPlan] = plan_strategies(spec)
    total = len(plans) + 1
    report(0, total, "preparing the scenario")
    scenario = prepare_scenario(spec, work_dir)
    _check_profiles(scenario, profiles)
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
    report(total, total, "pricing")
    results = []
    for plan in plans:
        cost, rows = price(runs[plan.name], scenario, profiles, prices)
        results.append(StrategyResult(runs[plan.name], cost, tuple(rows)))
    return StudyResult(
        scenario=scenario,
        strategies=tuple(mark_front(results)),
        prices=prices,
        profiles=profiles,
        profiles_dir=str(profiles_dir) if profiles_dir is not None else None,
        ray_address=ray_address,
        wall_s=time.perf_counter() - started,
    )
