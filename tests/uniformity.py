"""The statistic the masking attack tests use to call residues uniform (or not)."""

from __future__ import annotations

import numpy as np

#: chi-square with 63 degrees of freedom exceeds this with probability 1e-6.
CHI2_63_P1E6 = 131.37


def chi2(residues: np.ndarray, bits: int) -> float:
    """The larger chi-square statistic of the top six and the low six bits of residues.

    ``residues`` lie in ``[0, 2^bits)``; uniform residues give about 63, and any
    value above :data:`CHI2_63_P1E6` happens by chance once in a million.
    """
    worst = 0.0
    for bins in (residues >> (bits - 6), residues & 63):
        counts = np.bincount(bins.astype(np.int64), minlength=64)
        expected = residues.size / 64
        worst = max(worst, float(np.sum((counts - expected) ** 2) / expected))
    return worst
