"""Compliance-cost model: flows, dated rules per jurisdiction, uncertainty.

- :mod:`.flows`: what each strategy sends where (uplink, downlink, pooling);
- :mod:`.rules`: which mechanism each flow needs on a date, or that it is prohibited;
- :mod:`.profiles`, :mod:`.consortium`, :mod:`.loading`: the sourced YAML parameters;
- :mod:`.model`: the three parts of the cost over a horizon (:func:`compliance_cost`),
  returned as :mod:`.costs`;
- :mod:`.sensitivity`: the unsettled legal questions, all at once and one by one;
- :mod:`.monte_carlo`: cost distributions, the 40 % claim's probability, the tornado.
"""

from simulations.compliance.consortium import Consortium
from simulations.compliance.costs import (
    ComplianceCost,
    FlagOverrides,
    InstitutionLike,
    Prices,
    Provenance,
    RiskCost,
    RouteCost,
    TechnologyCost,
)
from simulations.compliance.flows import AGGREGATOR, STRATEGIES, Flow, Party, Strategy, build_flows
from simulations.compliance.loading import (
    load_consortium,
    load_profile,
    load_profiles,
    shipped_profiles_dir,
)
from simulations.compliance.model import DEFAULT_YEARS, CostModel, compliance_cost
from simulations.compliance.monte_carlo import (
    CLAIM,
    DEFAULT_DRAWS,
    Comparison,
    MonteCarloResult,
    Quantiles,
    TornadoBar,
    run_monte_carlo,
)
from simulations.compliance.parameters import Registry, Values
from simulations.compliance.profiles import (
    EXPOSURES,
    INSTITUTION_TYPES,
    Exposure,
    Profile,
)
from simulations.compliance.rules import Citation, Decision, decide
from simulations.compliance.sensitivity import (
    SensitivityRow,
    SweepRow,
    jurisdiction_sweep,
    sensitivity,
    sensitivity_table,
    sweep_table,
)
from simulations.compliance.values import Flag, Sourced

__all__ = [
    "AGGREGATOR",
    "CLAIM",
    "DEFAULT_DRAWS",
    "DEFAULT_YEARS",
    "EXPOSURES",
    "INSTITUTION_TYPES",
    "STRATEGIES",
    "Citation",
    "Comparison",
    "ComplianceCost",
    "Consortium",
    "CostModel",
    "Decision",
    "Exposure",
    "Flag",
    "FlagOverrides",
    "Flow",
    "InstitutionLike",
    "MonteCarloResult",
    "Party",
    "Prices",
    "Profile",
    "Provenance",
    "Quantiles",
    "Registry",
    "RiskCost",
    "RouteCost",
    "SensitivityRow",
    "Sourced",
    "Strategy",
    "SweepRow",
    "TechnologyCost",
    "TornadoBar",
    "Values",
    "build_flows",
    "compliance_cost",
    "decide",
    "jurisdiction_sweep",
    "load_consortium",
    "load_profile",
    "load_profiles",
    "run_monte_carlo",
    "sensitivity",
    "sensitivity_table",
    "shipped_profiles_dir",
    "sweep_table",
]
