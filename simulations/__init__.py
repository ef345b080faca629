"""Simulation harness: synthetic cross-border data, the compliance-cost model, Pareto fronts.

Public API, importable from ``simulations``:

- data: :func:`generate`, :func:`default_institutions`, :class:`InstitutionSpec`,
  :class:`InstitutionData`, :class:`GeneratedFederation`;
- compliance cost: :func:`load_profiles`, :func:`compliance_cost`, :func:`sensitivity`,
  :func:`sensitivity_table`, :class:`Prices`, :class:`FlagOverrides`,
  :class:`ComplianceCost`;
- :func:`pareto_front`;
- errors: :class:`SimulationError` and its subclasses.
"""

from simulations.compliance import (
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

__all__ = [
    "GENERATORS",
    "JURISDICTIONS",
    "STRATEGIES",
    "ComplianceCost",
    "FlagOverrides",
    "GeneratedFederation",
    "GeneratorError",
    "InstitutionData",
    "InstitutionSpec",
    "Prices",
    "Profile",
    "ProfileError",
    "Provenance",
    "SensitivityRow",
    "SimulationError",
    "Strategy",
    "StrategyError",
    "compliance_cost",
    "default_institutions",
    "generate",
    "load_profile",
    "load_profiles",
    "pareto_front",
    "sensitivity",
    "sensitivity_table",
]
