"""Compliance-cost model: jurisdiction profiles, per-strategy costs, sensitivity.

See :mod:`simulations.compliance.model` for the three parts of the cost and
:mod:`simulations.compliance.profiles` for the sourced YAML profiles.
"""

from simulations.compliance.model import (
    STRATEGIES,
    ComplianceCost,
    FlagOverrides,
    InstitutionLike,
    Prices,
    Provenance,
    RiskCost,
    RouteCost,
    Strategy,
    compliance_cost,
)
from simulations.compliance.profiles import (
    EXPOSURES,
    Exposure,
    Flag,
    Profile,
    Sourced,
    load_profile,
    load_profiles,
    shipped_profiles_dir,
)
from simulations.compliance.sensitivity import SensitivityRow, sensitivity, sensitivity_table

__all__ = [
    "EXPOSURES",
    "STRATEGIES",
    "ComplianceCost",
    "Exposure",
    "Flag",
    "FlagOverrides",
    "InstitutionLike",
    "Prices",
    "Profile",
    "Provenance",
    "RiskCost",
    "RouteCost",
    "SensitivityRow",
    "Sourced",
    "Strategy",
    "compliance_cost",
    "load_profile",
    "load_profiles",
    "sensitivity",
    "sensitivity_table",
    "shipped_profiles_dir",
]
