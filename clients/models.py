"""Torch risk models, built identically at every institution from a seed.

Round 1 of the protocol sends no weights, only a seed and an architecture
(:class:`ModelSpec`); every institution calls :func:`build_model` and obtains
bit-identical initial weights. Initialisation draws from torch's random
generator inside :func:`torch.random.fork_rng`, so building a model neither
depends on nor disturbs the caller's global random state.

Logistic regression is the default: it is what credit-risk teams validate and
explain (a table of coefficients, :func:`coefficient_table`). The multilayer
perceptron is there for fraud-style problems with interactions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from clients.errors import ConfigError, InvalidWeightsError

__all__ = [
    "MLP",
    "LogisticRegression",
    "ModelSpec",
    "build_model",
    "coefficient_table",
    "get_weights",
    "predict_proba",
    "set_weights",
]

_MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class ModelSpec:
    """The architecture every institution builds.

    Attributes
    ----------
    kind
        ``"logistic"`` (default) or ``"mlp"``.
    hidden
        Hidden layer widths of the MLP; ignored for logistic regression.
    dropout
        Dropout probability after each hidden layer of the MLP, in ``[0, 1)``.

    Raises
    ------
    ConfigError
        On an unknown kind, an MLP without hidden layers, a non-positive
        width, or a dropout outside ``[0, 1)``.
    """

    kind: Literal["logistic", "mlp"] = "logistic"
    hidden: tuple[int, ...] = (32, 16)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("logistic", "mlp"):
            raise ConfigError(f"model kind must be 'logistic' or 'mlp', got {self.kind!r}")
        if self.kind == "mlp":
            if not self.hidden:
                raise ConfigError("an MLP needs at least one hidden layer")
            if any(not isinstance(w, int) or w < 1 for w in self.hidden):
                raise ConfigError(f"hidden widths must be positive integers, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")


class LogisticRegression(nn.Module):
    """Logistic regression: one linear layer producing the log-odds of default.

    Parameters
    ----------
    n_features
        Number of input features.
    """

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(rows,)``."""
        return self.linear(x).squeeze(-1)

    @property
    def coefficients(self) -> np.ndarray:
        """Per-feature coefficients (log-odds per unit of the model's input)."""
        return self.linear.weight.detach().cpu().numpy().ravel().copy()

    @property
    def intercept(self) -> float:
        """The intercept (log-odds at the all-zero input)."""
        return float(self.linear.bias.detach().cpu().item())


class MLP(nn.Module):
    """A multilayer perceptron with ReLU activations producing logits.

    Parameters
    ----------
    n_features
        Number of input features.
    hidden
        Widths of the hidden layers.
    dropout
        Dropout probability after each hidden layer.
    """

    def __init__(self, n_features: int, hidden: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for size in hidden:
            layers.append(nn.Linear(width, size))
            layers.append(nn.ReLU())
            if dropout > 0.0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(rows,)``."""
        return self.layers(x).squeeze(-1)


def build_model(spec: ModelSpec, n_features: int, seed: int) -> nn.Module:
    """Build a model whose initial weights depend only on ``(spec, n_features, seed)``.

    Raises
    ------
    ConfigError
        If ``n_features`` is not positive or ``seed`` is not an integer in
        ``[0, 2**63 - 1]``.
    """
    if isinstance(n_features, bool) or not isinstance(n_features, int | np.integer):
        raise ConfigError(f"n_features must be an integer, got {n_features!r}")
    if n_features < 1:
        raise ConfigError(f"n_features must be positive, got {n_features}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    if not 0 <= seed <= _MAX_SEED:
        raise ConfigError(f"seed must be in [0, 2**63 - 1], got {seed}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model: nn.Module
        if spec.kind == "logistic":
            model = LogisticRegression(int(n_features))
        else:
            model = MLP(int(n_features), spec.hidden, spec.dropout)
    return model


def get_weights(model: nn.Module) -> list[np.ndarray]:
    """Copy a model's parameters and buffers, in ``state_dict`` order, as numpy arrays."""
    return [tensor.detach().cpu().numpy().copy() for tensor in model.state_dict().values()]


def set_weights(model: nn.Module, weights: Sequence[np.ndarray]) -> None:
    """Load arrays made by :func:`get_weights` (or their federated average) into a model.

    Raises
    ------
    InvalidWeightsError
        If the number of arrays, any shape, or any value (NaN, infinity) does
        not fit the model; the model is left unchanged.
    """
    state = model.state_dict()
    if len(weights) != len(state):
        raise InvalidWeightsError(
            f"model has {len(state)} weight tensors, got {len(weights)} arrays"
        )
    new_state: dict[str, torch.Tensor] = {}
    for (name, current), array in zip(state.items(), weights, strict=True):
        values = np.asarray(array)
        if tuple(values.shape) != tuple(current.shape):
            raise InvalidWeightsError(
                f"weight {name!r} has shape {tuple(current.shape)}, got {tuple(values.shape)}"
            )
        if values.dtype.kind in "fc" and not np.isfinite(values).all():
            raise InvalidWeightsError(f"weight {name!r} contains NaN or infinite values")
        new_state[name] = torch.as_tensor(values.copy(), dtype=current.dtype)
    model.load_state_dict(new_state, strict=True)


def predict_proba(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Predicted probability of the positive (bad) class for each row, as float64.

    Runs in evaluation mode (no dropout) without gradients, and restores the
    model's previous mode.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(torch.as_tensor(np.asarray(x, dtype=np.float32)))
            return torch.sigmoid(logits).double().cpu().numpy()
    finally:
        model.train(was_training)


def coefficient_table(model: LogisticRegression, names: Sequence[str]) -> pd.DataFrame:
    """A coefficient table for a credit committee, sorted by absolute effect.

    Coefficients refer to the model's inputs: with standardised features, a
    coefficient is the change in log-odds of default per standard deviation.

    Returns
    -------
    pandas.DataFrame
        Columns ``feature``, ``coefficient`` and ``odds_ratio``, with the
        intercept as the last row.

    Raises
    ------
    ConfigError
        If the number of names differs from the number of coefficients.
    """
    coefficients = model.coefficients
    if len(names) != coefficients.size:
        raise ConfigError(
            f"model has {coefficients.size} coefficients but {len(names)} names were given"
        )
    table = pd.DataFrame({"feature": list(names), "coefficient": coefficients})
    table = table.reindex(table["coefficient"].abs().sort_values(ascending=False).index)
    intercept = pd.DataFrame({"feature": ["(intercept)"], "coefficient": [model.intercept]})
    table = pd.concat([table, intercept], ignore_index=True)
    table["odds_ratio"] = np.exp(table["coefficient"].to_numpy())
    return table
