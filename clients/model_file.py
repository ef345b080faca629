"""``global_model.npz``: the final model with everything needed to use it without crossfed.

One NumPy archive (``numpy.load(path)`` opens it; no pickle) holds:

=====================  ===================================================
array                  what
=====================  ===================================================
``linear.weight`` ...  the model's parameters under their torch names, in
                       ``state_dict`` order (logistic: ``linear.weight``,
                       ``linear.bias``; MLP: ``layers.0.weight``,
                       ``layers.0.bias``, ... one Linear per layer, ReLU
                       between them)
``parameter_names``    those names, in order
``feature_names``      the encoded input columns, in order (numeric columns,
                       then ``column=level`` one-hot columns)
``federation_mean``    the federation-wide mean of each input column
``federation_std``     its federation-wide standard deviation (1 for a
                       constant column)
``model_kind``         ``"logistic"`` or ``"mlp"``
``format_version``     :data:`MODEL_FORMAT_VERSION`
=====================  ===================================================

The model's input is ``(x - federation_mean) / federation_std``; its output is
the log-odds of the bad outcome. :meth:`SavedModel.logit` is that forward pass
in NumPy alone, so scoring needs neither torch nor crossfed's training code.
:meth:`SavedModel.create` and :meth:`SavedModel.to_bytes` write the archive,
:func:`load_model` reads and checks it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from clients.errors import ModelFileError
from clients.standardize import MIN_STD, Standardizer

__all__ = ["MODEL_FORMAT_VERSION", "SavedModel", "load_model"]

MODEL_FORMAT_VERSION: Final = 1
"""Layout version of ``global_model.npz`` written by :func:`model_bytes`."""

_META = ("parameter_names", "feature_names", "federation_mean", "federation_std", "model_kind")
_KINDS = ("logistic", "mlp")


@dataclass(frozen=True)
class SavedModel:
    """A final global model as saved beside its standardisation and feature names.

    Attributes
    ----------
    kind
        ``"logistic"`` or ``"mlp"``.
    parameters
        Parameter arrays by torch name, in ``state_dict`` order.
    feature_names
        The encoded input columns, in order.
    mean, std
        The federation-wide standardisation the model was trained with.
    """

    kind: str
    parameters: dict[str, np.ndarray]
    feature_names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def create(
        cls,
        parameters: Mapping[str, np.ndarray],
        *,
        kind: str,
        feature_names: Sequence[str],
        scaler: Standardizer,
    ) -> SavedModel:
        """A checked model from named parameters, feature names and standardisation.

        Raises
        ------
        ModelFileError
            If the kind is unknown, a name clashes with the archive's own
            arrays, or names, statistics and parameters disagree.
        """
        clash = sorted(set(parameters) & {*_META, "format_version", "allow_pickle", "file"})
        if clash:
            raise ModelFileError(f"parameter names {clash} clash with the archive's own arrays")
        model = cls(
            kind,
            {str(n): np.asarray(a) for n, a in parameters.items()},
            tuple(str(n) for n in feature_names),
            np.asarray(scaler.mean, dtype=np.float64).copy(),
            np.asarray(scaler.std, dtype=np.float64).copy(),
        )
        _check(model)
        return model

    def to_bytes(self) -> bytes:
        """The ``global_model.npz`` archive (uncompressed, no pickled objects)."""
        arrays: dict[str, Any] = {
            **self.parameters,
            "parameter_names": np.array(list(self.parameters), dtype=str),
            "feature_names": np.array(list(self.feature_names), dtype=str),
            "federation_mean": self.mean,
            "federation_std": self.std,
            "model_kind": np.array(self.kind),
            "format_version": np.array(MODEL_FORMAT_VERSION),
        }
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **arrays)
        return buffer.getvalue()

    @property
    def weights(self) -> list[np.ndarray]:
        """The parameter arrays in order (what :func:`clients.set_weights` takes)."""
        return list(self.parameters.values())

    @property
    def hidden(self) -> tuple[int, ...]:
        """Hidden layer widths (empty for logistic regression)."""
        return tuple(int(weight.shape[0]) for weight, _ in self._layers()[:-1])

    @property
    def standardizer(self) -> Standardizer:
        """The federation-wide standardisation, as the training code uses it."""
        return Standardizer(mean=self.mean.copy(), std=self.std.copy())

    def _layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        arrays = self.weights
        return [
            (arrays[i].astype(np.float64), arrays[i + 1].astype(np.float64))
            for i in range(0, len(arrays), 2)
        ]

    def standardize(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / std`` in float64.

        Raises
        ------
        ModelFileError
            If ``x`` does not have one column per feature name.
        """
        matrix = np.asarray(x, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.feature_names):
            raise ModelFileError(
                f"the model takes {len(self.feature_names)} encoded columns, "
                f"got shape {matrix.shape}"
            )
        return (matrix - self.mean) / self.std

    def logit(self, x: np.ndarray) -> np.ndarray:
        """Log-odds of bad for encoded rows ``x`` (raw, not yet standardised)."""
        return self._forward(x)[0]

    def logit_and_gradient(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log-odds of bad and their gradient with respect to the standardised input.

        The MLP is Linear, ReLU, ..., Linear (dropout is off when scoring); the
        gradient is back-propagated by hand through the ReLU masks.
        """
        logit, masks = self._forward(x)
        layers = self._layers()
        grad = np.broadcast_to(layers[-1][0], (logit.size, layers[-1][0].shape[1])).copy()
        for (weight, _), mask in zip(layers[-2::-1], masks[::-1], strict=True):
            grad = (grad * mask) @ weight
        return logit, grad

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        h = self.standardize(x)
        layers = self._layers()
        masks: list[np.ndarray] = []
        for index, (weight, bias) in enumerate(layers):
            h = h @ weight.T + bias
            if index < len(layers) - 1:
                masks.append(h > 0)
                h = np.maximum(h, 0.0)
        return h[:, 0], masks

    def probability(self, x: np.ndarray) -> np.ndarray:
        """Probability of bad for encoded rows ``x``."""
        return 1.0 / (1.0 + np.exp(-self.logit(x)))


def load_model(path: str | Path) -> SavedModel:
    """Read and check a ``global_model.npz`` written by :func:`model_bytes`.

    Raises
    ------
    ModelFileError
        If the file is missing, not an archive of this layout, or inconsistent.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError as exc:
        raise ModelFileError(f"{path} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path} is not a NumPy model archive: {exc}") from exc
    missing = [name for name in (*_META, "format_version") if name not in arrays]
    if missing:
        raise ModelFileError(
            f"{path} lacks {', '.join(missing)}: written by an older crossfed; "
            "rerun `crossfed client` to get a model with its standardisation"
        )
    version = arrays["format_version"]
    if version.shape != () or int(version) != MODEL_FORMAT_VERSION:
        raise ModelFileError(f"{path} has format version {version}, expected 1")
    names = [str(n) for n in arrays["parameter_names"].ravel()]
    absent = [n for n in names if n not in arrays]
    if absent:
        raise ModelFileError(f"{path} names parameters it does not hold: {absent}")
    model = SavedModel(
        str(arrays["model_kind"]),
        {n: arrays[n] for n in names},
        tuple(str(n) for n in arrays["feature_names"].ravel()),
        arrays["federation_mean"].astype(np.float64),
        arrays["federation_std"].astype(np.float64),
    )
    _check(model, where=str(path))
    return model


def _check(model: SavedModel, where: str = "the model") -> None:
    if model.kind not in _KINDS:
        raise ModelFileError(f"{where}: model kind must be one of {_KINDS}, got {model.kind!r}")
    n = len(model.feature_names)
    if n == 0 or model.mean.shape != (n,) or model.std.shape != (n,):
        raise ModelFileError(
            f"{where}: {n} feature names but statistics of shapes "
            f"{model.mean.shape} and {model.std.shape}"
        )
    if not (np.isfinite(model.mean).all() and np.isfinite(model.std).all()):
        raise ModelFileError(f"{where}: the standardisation holds NaN or infinite values")
    if (model.std < MIN_STD).any():
        raise ModelFileError(f"{where}: a standard deviation is below {MIN_STD}")
    arrays = model.weights
    if not arrays or len(arrays) % 2:
        raise ModelFileError(f"{where}: parameters must come in weight/bias pairs")
    width = n
    for index, (weight, bias) in enumerate(zip(arrays[::2], arrays[1::2], strict=True)):
        if weight.ndim != 2 or weight.shape[1] != width or bias.shape != (weight.shape[0],):
            raise ModelFileError(
                f"{where}: layer {index} has shapes {weight.shape} and {bias.shape}, "
                f"expected (k, {width}) and (k,)"
            )
        if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
            raise ModelFileError(f"{where}: layer {index} holds NaN or infinite values")
        width = weight.shape[0]
    if width != 1:
        raise ModelFileError(f"{where}: the last layer must have one output, has {width}")
    if model.kind == "logistic" and len(arrays) != 2:
        raise ModelFileError(f"{where}: logistic regression has one layer, got {len(arrays) // 2}")
