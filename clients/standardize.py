"""Feature standardisation from federation-wide statistics.

Each institution scaling features by its own mean and standard deviation
would give the same raw value a different meaning at every institution, and
the averaged model would fit none of them. Instead every institution computes
its raw moments (row count, per-feature sum, per-feature sum of squares) with
:func:`local_moments`; these are encrypted and summed across the federation
(by ``crypto``/``federation``, not here); each institution then builds the
same :class:`Standardizer` from the summed moments with
:meth:`Standardizer.from_moments`.

Only the three sums leave an institution, never a row, and under encryption
the aggregator sees only their ciphertexts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from clients.errors import DataValidationError

__all__ = ["Moments", "Standardizer", "local_moments", "sum_moments"]

MIN_STD = 1e-8
"""Below this standard deviation a feature counts as constant and is only centred."""


class Moments(NamedTuple):
    """Raw moments of a feature matrix, in a form that adds up across parties.

    Attributes
    ----------
    n_rows
        Shape ``(1,)``: number of rows (named so as not to shadow ``tuple.count``).
    sums
        Shape ``(n_features,)``: per-feature sum.
    sums_sq
        Shape ``(n_features,)``: per-feature sum of squares.
    """

    n_rows: np.ndarray
    sums: np.ndarray
    sums_sq: np.ndarray

    def to_vector(self) -> np.ndarray:
        """Pack as one flat float64 vector ``[count, sums..., sums_sq...]`` for encryption."""
        return np.concatenate([self.n_rows, self.sums, self.sums_sq]).astype(np.float64)

    @classmethod
    def from_vector(cls, vector: np.ndarray) -> Moments:
        """Unpack a vector made by :meth:`to_vector` (or a sum of such vectors).

        Raises
        ------
        DataValidationError
            If the length is not ``1 + 2 * n_features``.
        """
        flat = np.asarray(vector, dtype=np.float64).ravel()
        if flat.size < 3 or (flat.size - 1) % 2:
            raise DataValidationError(
                f"a moments vector has length 1 + 2 * n_features, got {flat.size}",
                column=None,
                count=flat.size,
            )
        n = (flat.size - 1) // 2
        return cls(flat[:1].copy(), flat[1 : 1 + n].copy(), flat[1 + n :].copy())


def local_moments(x: np.ndarray) -> Moments:
    """Compute an institution's raw moments of its encoded feature matrix.

    Accumulates in float64: sums of squares of amounts in the thousands over
    many rows lose precision in float32.

    Raises
    ------
    DataValidationError
        If ``x`` is not a 2-D matrix of finite numbers.
    """
    matrix = np.asarray(x, dtype=np.float64)
    if matrix.ndim != 2:
        raise DataValidationError(
            f"expected a 2-D feature matrix, got {matrix.ndim} dimensions",
            column=None,
            count=int(matrix.shape[0]) if matrix.ndim else 0,
        )
    bad_rows = int((~np.isfinite(matrix)).any(axis=1).sum())
    if bad_rows:
        raise DataValidationError(
            f"feature matrix has {bad_rows} rows with NaN or infinite values",
            column=None,
            count=bad_rows,
        )
    return Moments(
        n_rows=np.array([matrix.shape[0]], dtype=np.float64),
        sums=matrix.sum(axis=0),
        sums_sq=np.square(matrix).sum(axis=0),
    )


def sum_moments(parts: Iterable[Moments]) -> Moments:
    """Add the moments of several parties (the plaintext analogue of the encrypted sum).

    Raises
    ------
    DataValidationError
        If there are no parts or their feature counts differ.
    """
    vectors = [part.to_vector() for part in parts]
    if not vectors:
        raise DataValidationError("no moments to sum", column=None, count=0)
    if len({v.size for v in vectors}) != 1:
        raise DataValidationError(
            "moments have different numbers of features", column=None, count=len(vectors)
        )
    return Moments.from_vector(np.sum(vectors, axis=0))


@dataclass(frozen=True)
class Standardizer:
    """Centre and scale features with federation-wide mean and standard deviation.

    Attributes
    ----------
    mean
        Per-feature mean, float64.
    std
        Per-feature population standard deviation (``ddof=0``), float64; a
        feature whose deviation is below :data:`MIN_STD` gets 1.0, so it is
        centred but not blown up.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_moments(
        cls, count: np.ndarray | float, sums: np.ndarray, sums_sq: np.ndarray
    ) -> Standardizer:
        """Derive mean and standard deviation from summed raw moments.

        The variance ``E[x^2] - E[x]^2`` is clipped at zero: approximate
        (CKKS-decrypted) sums can make it slightly negative for a constant
        feature.

        Raises
        ------
        DataValidationError
            If the count is not positive, the shapes disagree, or a moment is
            not finite.
        """
        n = float(np.asarray(count, dtype=np.float64).ravel()[0])
        total = np.asarray(sums, dtype=np.float64).ravel()
        total_sq = np.asarray(sums_sq, dtype=np.float64).ravel()
        # The moments may be a decrypted federation-wide sum: no message below
        # carries a value of them (an error's text can end up in a shared log).
        if not np.isfinite(n) or n <= 0:
            raise DataValidationError(
                "the summed row count is not a positive number", column=None, count=0
            )
        if total.shape != total_sq.shape:
            raise DataValidationError(
                f"sums have {total.size} features but sums of squares {total_sq.size}",
                column=None,
                count=0,
            )
        if not (np.isfinite(total).all() and np.isfinite(total_sq).all()):
            raise DataValidationError(
                "moments contain NaN or infinite values", column=None, count=0
            )
        mean = total / n
        variance = np.clip(total_sq / n - np.square(mean), 0.0, None)
        std = np.sqrt(variance)
        std = np.where(std < MIN_STD, 1.0, std)
        return cls(mean=mean, std=std)

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        """Standardise on one table's own statistics (local-only or pooled baselines)."""
        return cls.from_moments(*local_moments(x))

    @property
    def n_features(self) -> int:
        """Number of features this standardiser expects."""
        return int(self.mean.size)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Return ``(x - mean) / std`` as float32.

        Raises
        ------
        DataValidationError
            If ``x`` does not have :attr:`n_features` columns.
        """
        matrix = np.asarray(x, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != self.n_features:
            raise DataValidationError(
                f"expected a matrix with {self.n_features} features, got shape {matrix.shape}",
                column=None,
                count=int(matrix.shape[0]) if matrix.ndim else 0,
            )
        return ((matrix - self.mean) / self.std).astype(np.float32)
