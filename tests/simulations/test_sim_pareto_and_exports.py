"""Pareto front on constructed inputs, and the packages' public API."""

from __future__ import annotations

import importlib
import math

import pytest

from simulations import pareto_front


def test_front_on_constructed_points() -> None:
    points: list[tuple[float | None, float | None]] = [
        (0.70, 10.0),  # 0: cheapest
        (0.80, 20.0),  # 1: on the front
        (0.75, 25.0),  # 2: dominated by 1
        (0.90, 100.0),  # 3: best quality
        (0.90, 120.0),  # 4: same quality, dearer: dominated by 3
        (0.95, None),  # 5: infeasible, excluded however good
        (0.99, math.inf),  # 6: infeasible
        (0.70, 30.0),  # 7: dominated by 0
    ]
    assert pareto_front(points) == [0, 1, 3]


def test_exact_ties_are_all_kept_and_empty_input() -> None:
    assert pareto_front([(0.8, 5.0), (0.8, 5.0), (0.7, 6.0)]) == [0, 1]
    assert pareto_front([]) == []
    assert pareto_front([(None, 1.0), (float("nan"), 2.0)]) == []


@pytest.mark.parametrize(
    "module", ["simulations", "simulations.compliance", "simulations.generators"]
)
def test_all_is_sorted_and_importable(module: str) -> None:
    mod = importlib.import_module(module)
    names = list(mod.__all__)
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical.
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for name in names:
        assert hasattr(mod, name), name
