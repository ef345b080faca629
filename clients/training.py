"""Local training at one institution, with an optional FedProx proximal term.

One call of :func:`train_local` is what an institution does in one federated
round: start from the global weights it received, run a few epochs of
mini-batch SGD on its own rows with binary cross-entropy on logits, and hand
back the new weights with its example count (the FedAvg weighting).

With ``proximal_mu > 0`` the loss gains ``mu / 2 * ||w - w_global||^2``
(Li et al. 2020, "Federated Optimization in Heterogeneous Networks",
MLSys), which keeps institutions with very different data (cross-border
feature and label skew) from drifting far from the global model.

Shuffling and dropout draw from torch's generator seeded by the
configuration, inside :func:`torch.random.fork_rng`: a run repeats exactly
and the caller's global random state is untouched.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from clients.errors import ConfigError, DataValidationError, TrainingDivergedError
from clients.models import get_weights, set_weights

__all__ = ["TrainConfig", "TrainResult", "binary_cross_entropy", "train_local"]


@dataclass(frozen=True)
class TrainConfig:
    """How one institution trains in one round.

    Attributes
    ----------
    epochs
        Passes over the local data.
    batch_size
        Rows per SGD step.
    learning_rate
        SGD step size.
    momentum
        SGD momentum, in ``[0, 1)``; the optimiser state is not kept between rounds.
    proximal_mu
        FedProx coefficient ``mu >= 0``; 0 is plain FedAvg local training.
    pos_weight
        Weight of positive (bad) rows in the loss, for rare-event problems
        such as fraud; 1.0 is the unweighted loss.
    seed
        Seed of the shuffling (and dropout) generator.

    Raises
    ------
    ConfigError
        If any value is out of range.
    """

    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.05
    momentum: float = 0.0
    proximal_mu: float = 0.0
    pos_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (math.isfinite(self.proximal_mu) and self.proximal_mu >= 0):
            raise ConfigError(f"proximal_mu must be non-negative, got {self.proximal_mu}")
        if not (math.isfinite(self.pos_weight) and self.pos_weight > 0):
            raise ConfigError(f"pos_weight must be positive, got {self.pos_weight}")
        if not 0 <= self.seed <= 2**63 - 1:
            raise ConfigError(f"seed must be in [0, 2**63 - 1], got {self.seed}")


@dataclass(frozen=True)
class TrainResult:
    """What an institution returns after local training.

    Attributes
    ----------
    weights
        The trained weights, in :func:`~clients.models.get_weights` order.
    num_examples
        Rows trained on: the institution's FedAvg weight.
    epoch_losses
        Mean data loss (without the proximal term) of each epoch.
    """

    weights: list[np.ndarray]
    num_examples: int
    epoch_losses: tuple[float, ...]


def _as_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    features = np.asarray(x, dtype=np.float32)
    labels = np.asarray(y, dtype=np.float32).ravel()
    if features.ndim != 2:
        raise DataValidationError(
            f"expected a 2-D feature matrix, got {features.ndim} dimensions",
            column=None,
            count=len(labels),
        )
    if features.shape[0] != labels.shape[0]:
        raise DataValidationError(
            f"features have {features.shape[0]} rows but labels have {labels.shape[0]}",
            column=None,
            count=features.shape[0],
        )
    if features.shape[0] == 0:
        raise DataValidationError("no rows to train on", column=None, count=0)
    not_binary = int(((labels != 0.0) & (labels != 1.0)).sum())
    if not_binary:
        raise DataValidationError(
            f"{not_binary} labels are not 0 or 1", column=None, count=not_binary
        )
    return torch.from_numpy(features), torch.from_numpy(labels)


def binary_cross_entropy(
    model: nn.Module, x: np.ndarray, y: np.ndarray, *, pos_weight: float = 1.0
) -> float:
    """Mean binary cross-entropy of a model on a dataset, in evaluation mode."""
    features, labels = _as_tensors(x, y)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            loss = nn.functional.binary_cross_entropy_with_logits(
                model(features), labels, pos_weight=torch.tensor(pos_weight)
            )
    finally:
        model.train(was_training)
    return float(loss.item())


def train_local(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    *,
    global_weights: Sequence[np.ndarray] | None = None,
) -> TrainResult:
    """Train ``model`` in place on one institution's rows.

    Parameters
    ----------
    model
        The model, already holding the weights to start from.
    x, y
        Standardised float features and 0/1 labels.
    config
        Epochs, batch size, learning rate, FedProx ``mu``, seed.
    global_weights
        Anchor of the proximal term; by default the model's weights at the
        start of the call (the global model just received, as in FedProx).

    Returns
    -------
    TrainResult
        New weights, the example count and per-epoch mean losses.

    Raises
    ------
    DataValidationError
        If ``x`` and ``y`` disagree in shape or ``y`` is not 0/1.
    InvalidWeightsError
        If ``global_weights`` does not fit the model.
    TrainingDivergedError
        If the loss becomes NaN or infinite (lower the learning rate, check
        the standardisation).
    """
    features, labels = _as_tensors(x, y)
    if global_weights is not None:
        anchor_model = copy.deepcopy(model)
        set_weights(anchor_model, global_weights)
        anchors = [p.detach().clone() for p in anchor_model.parameters()]
    else:
        anchors = [p.detach().clone() for p in model.parameters()]
    optimiser = torch.optim.SGD(
        model.parameters(), lr=config.learning_rate, momentum=config.momentum
    )
    pos_weight = torch.tensor(config.pos_weight)
    rows = features.shape[0]
    epoch_losses: list[float] = []
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        for epoch in range(config.epochs):
            order = torch.randperm(rows, generator=generator)
            total = 0.0
            for batch, start in enumerate(range(0, rows, config.batch_size)):
                index = order[start : start + config.batch_size]
                data_loss = nn.functional.binary_cross_entropy_with_logits(
                    model(features[index]), labels[index], pos_weight=pos_weight
                )
                loss = data_loss
                if config.proximal_mu > 0.0:
                    loss = loss + 0.5 * config.proximal_mu * _squared_distance(model, anchors)
                if not torch.isfinite(loss):
                    raise TrainingDivergedError(
                        f"loss became {loss.item()} in epoch {epoch}, batch {batch}; "
                        "lower the learning rate or check the feature scaling",
                        epoch=epoch,
                        batch=batch,
                    )
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(data_loss.item()) * len(index)
            epoch_losses.append(total / rows)
    return TrainResult(
        weights=get_weights(model), num_examples=rows, epoch_losses=tuple(epoch_losses)
    )


def _squared_distance(model: nn.Module, anchors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``||w - w_global||^2`` over all parameters, differentiable in ``w``."""
    total = torch.zeros(())
    for parameter, anchor in zip(model.parameters(), anchors, strict=True):
        total = total + torch.sum((parameter - anchor) ** 2)
    return total
