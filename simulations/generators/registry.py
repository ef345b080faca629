"""The generator registry and the one entry point, :func:`generate`.

Kept apart from :mod:`simulations.generators.common` so that the generator modules
depend on the common types and this module depends on them, never the other way round.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from simulations.errors import GeneratorError
from simulations.generators.common import (
    GeneratedFederation,
    GeneratorDef,
    InstitutionData,
    InstitutionSpec,
    allocate_rows,
    default_institutions,
)
from simulations.generators.payment_fraud import PAYMENT_FRAUD
from simulations.generators.sme_credit import SME_CREDIT

__all__ = ["DEFAULT_TOTAL_ROWS", "GENERATORS", "generate"]

#: Registered generators by name.
GENERATORS: dict[str, GeneratorDef] = {g.name: g for g in (PAYMENT_FRAUD, SME_CREDIT)}

#: Rows in a default run: enough to train on, small enough to train quickly.
DEFAULT_TOTAL_ROWS = 30_000


def generate(
    name: str,
    institutions: Sequence[InstitutionSpec] | int,
    seed: int,
    total_rows: int = DEFAULT_TOTAL_ROWS,
) -> GeneratedFederation:
    """Generate a synthetic federation.

    Parameters
    ----------
    name
        Generator name: ``"sme-credit"`` or ``"payment-fraud"``.
    institutions
        The institutions, or a count for :func:`default_institutions`.
    seed
        Seed of the data. The same ``(name, institutions, seed, total_rows)`` always
        gives identical frames; each institution draws from its own child of a
        ``numpy.random.SeedSequence`` built from the seed and the generator name.
    total_rows
        Rows over all institutions, split by the institutions' size weights (quantity
        skew); every institution gets at least 50.

    Returns
    -------
    GeneratedFederation
        One frame per institution plus the shared schema.

    Raises
    ------
    GeneratorError
        Unknown generator, duplicate institution names, or too few rows.
    """
    try:
        gen = GENERATORS[name]
    except KeyError:
        raise GeneratorError(
            f"unknown generator {name!r}; known: {', '.join(sorted(GENERATORS))}"
        ) from None
    specs = (
        default_institutions(institutions) if isinstance(institutions, int) else list(institutions)
    )
    if not specs:
        raise GeneratorError("a federation needs at least one institution")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise GeneratorError(f"institution names must be unique, got {names}")

    counts = allocate_rows([s.size_weight for s in specs], total_rows)
    # crc32 is a stable hash of the name (Python's hash() is salted per process).
    root = np.random.SeedSequence([seed, zlib.crc32(name.encode())])
    data = [
        InstitutionData(
            s.name, s.jurisdiction, gen.sample(s.jurisdiction, n, np.random.default_rng(child))
        )
        for s, n, child in zip(specs, counts, root.spawn(len(specs)), strict=True)
    ]
    return GeneratedFederation(
        name=gen.name,
        seed=seed,
        institutions=data,
        target=gen.target,
        positive=gen.positive,
        negative=gen.negative,
        numeric_columns=list(gen.numeric_columns),
        categorical_columns={k: sorted(v) for k, v in sorted(gen.categorical_columns.items())},
    )
