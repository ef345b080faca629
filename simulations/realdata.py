"""Real data for the harness: any CSV or Parquet table, split into institutions.

Two splits, both with flwr-datasets' partitioners (Flower's own pieces, not a
second implementation):

- **by column** (:class:`~flwr_datasets.partitioner.NaturalIdPartitioner`): one
  institution per distinct value of a column — a branch, a region, a product
  line standing in for a lender; rows without a value are dropped (and counted
  by the caller) or form an institution of their own;
- **Dirichlet** (:class:`~flwr_datasets.partitioner.DirichletPartitioner`): ``N``
  institutions whose label mixes are drawn from ``Dirichlet(alpha)`` (Hsu et al.,
  2019, "Measuring the Effects of Non-Identical Data Distribution for Federated
  Visual Classification"); a small ``alpha`` gives strong label skew.

The table travels through a Hugging Face ``datasets.Dataset`` (Arrow), which is
what the partitioners take, and comes back as pandas frames.
"""

from __future__ import annotations

import io
import re
from contextlib import redirect_stderr
from dataclasses import dataclass
from typing import Literal

import datasets
import pandas as pd
from flwr_datasets.partitioner import DirichletPartitioner, NaturalIdPartitioner, Partitioner

from clients.tables import quote
from simulations.errors import SimulationError

__all__ = ["Partition", "partition_by_column", "partition_dirichlet", "rows_without_value"]


@dataclass(frozen=True)
class Partition:
    """One institution's share of a real table.

    Attributes
    ----------
    name
        The institution's name: ``<column>-<value>`` for a column split,
        ``institution-<k>`` for a Dirichlet split.
    frame
        Its rows, every column of the source table kept.
    """

    name: str
    frame: pd.DataFrame


def _dataset(frame: pd.DataFrame) -> datasets.Dataset:
    try:
        return datasets.Dataset.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    except (TypeError, ValueError) as exc:  # pyarrow cannot type a mixed column
        raise SimulationError(f"cannot convert the table for partitioning: {exc}") from exc


def _slug(value: object) -> str:
    text = re.sub(r"[^0-9A-Za-z]+", "-", str(value)).strip("-").lower()
    return text or "blank"


def _load_all(partitioner: Partitioner) -> list[pd.DataFrame]:
    frames = []
    with redirect_stderr(io.StringIO()):  # the partitioners' tqdm bars
        count = partitioner.num_partitions
    for pid in range(count):
        part = partitioner.load_partition(pid).to_pandas()
        if not isinstance(part, pd.DataFrame):  # to_pandas may stream batches
            part = pd.concat(list(part), ignore_index=True)
        frames.append(part)
    return frames


def partition_by_column(
    frame: pd.DataFrame, column: str, *, missing: Literal["drop", "own"] = "drop"
) -> list[Partition]:
    """One institution per distinct value of ``column``, in sorted order of the values.

    Rows without a value in ``column`` belong to no institution: with
    ``missing="drop"`` they are left out (the caller counts and reports them:
    :func:`rows_without_value`); with ``missing="own"`` they form one more
    institution, ``<column>-missing``, last.

    Raises
    ------
    SimulationError
        The column is absent, or fewer than two institutions result.
    """
    if column not in frame.columns:
        raise SimulationError(f"partition column {quote(column)} is not in the table")
    absent = frame[column].isna()
    present = frame.loc[~absent]
    distinct = present[column].nunique()
    if distinct + (1 if missing == "own" and absent.any() else 0) < 2:
        without = f" ({int(absent.sum())} rows without a value)" if absent.any() else ""
        raise SimulationError(
            f"partition column {quote(column)} has {distinct} value(s){without}: "
            "a federation needs at least two institutions"
        )
    partitions: list[Partition] = []
    if distinct:
        partitioner = NaturalIdPartitioner(partition_by=column)
        partitioner.dataset = _dataset(present)
        frames = _load_all(partitioner)
        names = [
            f"{_slug(column)}-{_slug(partitioner.partition_id_to_natural_id[pid])}"
            for pid in range(len(frames))
        ]
        partitions = [Partition(name, part) for name, part in zip(names, frames, strict=True)]
    if missing == "own" and absent.any():
        rows = frame.loc[absent].reset_index(drop=True)
        partitions.append(Partition(f"{_slug(column)}-missing", rows))
    names = [p.name for p in partitions]
    if len(set(names)) != len(names):  # two values with the same slug
        partitions = [Partition(f"{p.name}-{pid}", p.frame) for pid, p in enumerate(partitions)]
    return partitions


def rows_without_value(frame: pd.DataFrame, column: str) -> int:
    """Rows of ``frame`` with no value in ``column`` (0 if the column is absent)."""
    return int(frame[column].isna().sum()) if column in frame.columns else 0


def partition_dirichlet(
    frame: pd.DataFrame,
    target: str,
    partitions: int,
    alpha: float,
    *,
    seed: int,
    min_partition_size: int = 20,
) -> list[Partition]:
    """``partitions`` institutions with label mixes drawn from ``Dirichlet(alpha)``.

    Parameters
    ----------
    frame
        The whole table.
    target
        The label column the Dirichlet draw skews.
    partitions
        Number of institutions, at least 2.
    alpha
        Concentration, positive: 100 is close to an even split, 0.1 is extreme skew.
    seed
        Seed of the draw (flwr-datasets uses its own ``numpy`` generator from it).
    min_partition_size
        Every institution gets at least this many rows (the partitioner redraws).

    Raises
    ------
    SimulationError
        Bad arguments, or no draw met ``min_partition_size``.
    """
    if target not in frame.columns:
        raise SimulationError(f"target column {target!r} is not in the table")
    if partitions < 2:
        raise SimulationError(f"a Dirichlet split needs at least 2 partitions, got {partitions}")
    if not alpha > 0:
        raise SimulationError(f"alpha must be positive, got {alpha}")
    if len(frame) < partitions * min_partition_size:
        raise SimulationError(
            f"{len(frame)} rows cannot give {partitions} institutions "
            f"{min_partition_size} rows each"
        )
    # The label must be hashable and comparable in Arrow: use its text.
    prepared = frame.assign(**{target: frame[target].astype(str)})
    partitioner = DirichletPartitioner(
        num_partitions=partitions,
        partition_by=target,
        alpha=alpha,
        min_partition_size=min_partition_size,
        self_balancing=False,
        shuffle=True,
        seed=seed,
    )
    partitioner.dataset = _dataset(prepared)
    try:
        frames = _load_all(partitioner)
    except ValueError as exc:
        raise SimulationError(f"Dirichlet split failed: {exc}") from exc
    # Give the target back its original values (and so its dtype).
    labels = dict(zip(prepared[target], frame[target], strict=True))
    restored = [part.assign(**{target: part[target].map(labels)}) for part in frames]
    width = len(str(partitions - 1))
    return [Partition(f"institution-{pid:0{width}d}", part) for pid, part in enumerate(restored)]
