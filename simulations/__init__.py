"""Simulation harness: synthetic cross-border data, the compliance-cost model, Pareto fronts.

Public API, importable from ``simulations``:

- data: :func:`generate`, :func:`default_institutions`, :class:`InstitutionSpec`,
  :class:`InstitutionData`, :class:`GeneratedFederation`;
- compliance cost: :func:`load_profiles`, :func:`compliance_cost`, :func:`sensitivity`,
  :func:`sensitivity_table`, :class:`Prices`, :class:`FlagOverrides`,
  :class:`ComplianceCost`;
- :func:`pareto_front`;
- studies (``crossfed simulate``): :class:`ScenarioSpec` and :func:`prepare_scenario`
  (generator or real table, split by column or Dirichlet: :func:`partition_by_column`,
  :func:`partition_dirichlet`), :func:`plan_strategies`, :func:`run_study` (every
  strategy trained, priced and ranked), :func:`write_report` and :func:`results_dict`;
- errors: :class:`SimulationError` and its subclasses.
"""

from simulations.compliance import (
    DEFAULT_DRAWS,
    DEFAULT_YEARS,
    STRATEGIES,
    ComplianceCost,
    FlagOverrides,
    Prices,
    Profile,
    Provenance,
    SensitivityRow,
    Strategy,
    compliance_cost,
    load_profile,
    load_profiles,
    sensitivity,
    sensitivity_table,
)
from simulations.errors import GeneratorError, ProfileError, SimulationError, StrategyError
from simulations.generators import (
    GENERATORS,
    JURISDICTIONS,
    GeneratedFederation,
    InstitutionData,
    InstitutionSpec,
    default_institutions,
    generate,
)
from simulations.pareto import pareto_front
from simulations.realdata import Partition, partition_by_column, partition_dirichlet
from simulations.report import results_dict, write_report
from simulations.scenario import (
    DEFAULT_ROWS,
    Institution,
    Scenario,
    ScenarioSpec,
    prepare_scenario,
)
from simulations.strategies import StrategyPlan, StrategyRun, plan_strategies
from simulations.study import (
    CompliancePlan,
    StrategyResult,
    StudyResult,
    mark_front,
    run_study,
)

__all__ = [
    "DEFAULT_DRAWS",
    "DEFAULT_ROWS",
    "DEFAULT_YEARS",
    "GENERATORS",
    "JURISDICTIONS",
    "STRATEGIES",
    "ComplianceCost",
    "CompliancePlan",
    "FlagOverrides",
    "GeneratedFederation",
    "GeneratorError",
    "Institution",
    "InstitutionData",
    "InstitutionSpec",
    "Partition",
    "Prices",
    "Profile",
    "ProfileError",
    "Provenance",
    "Scenario",
    "ScenarioSpec",
    "SensitivityRow",
    "SimulationError",
    "Strategy",
    "StrategyError",
    "StrategyPlan",
    "StrategyResult",
    "StrategyRun",
    "StudyResult",
    "compliance_cost",
    "default_institutions",
    "generate",
    "load_profile",
    "load_profiles",
    "mark_front",
    "pareto_front",
    "partition_by_column",
    "partition_dirichlet",
    "plan_strategies",
    "prepare_scenario",
    "results_dict",
    "run_study",
    "sensitivity",
    "sensitivity_table",
    "write_report",
]
