"""Real data for the harness: any CSV or Parquet table, split into institutions.

Two splits, both with flwr-datasets' partitioners (Flower's own pieces, not a
second implementation):

- **by column** (:class:`~flwr_datasets.partitioner.NaturalIdPartitioner`): one
  institution per distinct value of a column — a branch, a region, a product
  line standing in for a lender;
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

import datasets
import pandas as pd
from flwr_datasets.partitioner import DirichletPartitioner, NaturalIdPartitioner, Partitioner

from simulations.errors import SimulationError

__all__ = ["Partition", "partition_by_column", "partition_dirichlet"]


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


def partition_by_column(frame: pd.DataFrame, column: str) -> list[Partition]:
    """One institution per distinct value of ``column``, in sorted order of the values.

    Raises
    ------
    SimulationError
        The column is absent, has missing values, or has a single value.
    """
    if column not in frame.columns:
        raise SimulationError(f"partition column {column!r} is not in the table")
    if frame[column].isna().any():
        raise SimulationError(f"partition column {column!r} has missing values")
    if frame[column].nunique() < 2:
        raise SimulationError(f"partition column {column!r} has a single value: one institution")
    partitioner = NaturalIdPartitioner(partition_by=column)
    partitioner.dataset = _dataset(frame)
    frames = _load_all(partitioner)
    names = [
        f"{_slug(column)}-{_slug(partitioner.partition_id_to_natural_id[pid])}"
        for pid in range(len(frames))
    ]
    if len(set(names)) != len(names):  # two values with the same slug
        names = [f"{name}-{pid}" for pid, name in enumerate(names)]
    return [Partition(name, part) for name, part in zip(names, frames, strict=True)]


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
