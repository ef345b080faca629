"""The model's array shapes, from the schema and the model settings alone.

In encrypted mode the aggregator must know the shapes of the model's arrays
before it parses any reply (run setting ``model-shapes``): taking them from the
first reply would let one institution decide them for everyone. The shapes
depend only on the federation schema (how many encoded features) and the model
(kind, hidden widths), so whoever provisions the federation computes them once
here and records them in every kit; the simulation harness does the same.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from clients.data import feature_names
from clients.models import ModelSpec, build_model, get_weights
from clients.schema import FederationSchema

__all__ = ["model_shapes", "model_shapes_json"]


def model_shapes(schema: FederationSchema, model: str, hidden: Sequence[int]) -> list[list[int]]:
    """Shapes of the arrays :func:`clients.get_weights` returns for this federation's model.

    Parameters
    ----------
    schema
        The federation schema; its encoded feature count is the model's input width.
    model
        ``"logistic"`` or ``"mlp"``.
    hidden
        Hidden layer widths of the MLP (ignored for logistic regression).

    Raises
    ------
    clients.ConfigError
        An unknown model kind or bad hidden widths.
    """
    spec = ModelSpec(kind=model, hidden=tuple(int(h) for h in hidden))  # type: ignore[arg-type]
    built = build_model(spec, len(feature_names(schema)), seed=0)
    return [list(array.shape) for array in get_weights(built)]


def model_shapes_json(schema: FederationSchema, model: str, hidden: Sequence[int]) -> str:
    """:func:`model_shapes` as the run setting ``model-shapes`` holds it (compact JSON)."""
    return json.dumps(model_shapes(schema, model, hidden), separators=(",", ":"))
