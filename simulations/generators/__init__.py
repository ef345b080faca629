"""Synthetic cross-border data: the harness's embedded default, no downloads.

Two generators, each documented in its own module: ``sme-credit``
(:mod:`simulations.generators.sme_credit`) and ``payment-fraud``
(:mod:`simulations.generators.payment_fraud`). Both give institutions in different
jurisdictions quantity skew, label skew, feature shift and jurisdiction-specific signal,
deterministically from a seed.
"""

from simulations.generators.common import (
    JURISDICTIONS,
    GeneratedFederation,
    InstitutionData,
    InstitutionSpec,
    default_institutions,
)
from simulations.generators.registry import DEFAULT_TOTAL_ROWS, GENERATORS, generate

__all__ = [
    "DEFAULT_TOTAL_ROWS",
    "GENERATORS",
    "JURISDICTIONS",
    "GeneratedFederation",
    "InstitutionData",
    "InstitutionSpec",
    "default_institutions",
    "generate",
]
