"""Every number the cost model reads, by id, and the values it reads them at.

:class:`Registry` walks the profiles and the consortium file and names each number by
its path (``EU.mechanisms.scc_tia.fixed_cost``, ``consortium.runs_per_year``) and each
flag by ``CODE.flags.NAME``. :class:`Values` holds one array per id: a single column
for the base case, one column per draw for the Monte Carlo, one column per end of each
range for the tornado — the cost model computes with whatever it is given, so every
case runs the same code.

Thresholds (``facts``) and validity periods decide *which* rule applies; they are law,
not estimates, and are never varied. Every other ranged number is drawn from a
triangular distribution on ``[low, high]`` with its mode at the base ``value``. An
unsettled flag with a ``probability`` is drawn "yes" with that probability (itself
drawn from its range); a settled flag keeps its answer in every draw.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

from simulations.compliance.consortium import Consortium
from simulations.compliance.profiles import Profile
from simulations.compliance.values import Flag, Sourced

__all__ = ["FlagParameter", "Parameter", "Registry", "Swing", "Values"]

# Sections whose numbers are never varied: they decide structure, not amounts.
_STRUCTURAL = ("facts", "validity_years")


@dataclass(frozen=True)
class Parameter:
    """A number of the model, with its provenance and range."""

    id: str
    value: Sourced
    unit: str
    sampled: bool

    @property
    def kind(self) -> str:
        """``sourced`` or ``assumed``."""
        return "sourced" if self.value.sourced else "assumed"


@dataclass(frozen=True)
class FlagParameter:
    """A legal question of one jurisdiction."""

    id: str
    jurisdiction: str
    name: str
    flag: Flag

    @property
    def varied(self) -> bool:
        """Whether the Monte Carlo and the tornado vary it (unsettled, with a probability)."""
        return not self.flag.settled and self.flag.probability is not None


@dataclass(frozen=True)
class Swing:
    """One column pair of a tornado: the id moved to each end, the others at base."""

    id: str
    low: float
    high: float
    is_flag: bool


class Values:
    """One array per number id and per flag id, all of length ``n``."""

    def __init__(self, n: int, numbers: dict[str, np.ndarray], flags: dict[str, np.ndarray]):
        self.n = n
        self._numbers = numbers
        self._flags = flags
        self.used: set[str] = set()

    def num(self, key: str) -> np.ndarray:
        """The values of number ``key`` (recorded as used)."""
        self.used.add(key)
        return self._numbers[key]

    def flag(self, key: str) -> np.ndarray:
        """The answers (booleans) of flag ``key`` (recorded as used)."""
        self.used.add(key)
        return self._flags[key]

    def has_flag(self, key: str) -> bool:
        """Whether flag ``key`` exists."""
        return key in self._flags


_UNITS = {
    "lead_time_days": "days",
    "validity_years": "years",
    "turnover_share": "share of turnover",
    "expected_fine_share": "share of the cap",
    "suspension_probability": "probability per event",
    "probability": "probability of yes",
    "dp_epsilon_scale": "epsilon",
    "without_mechanism_factor": "multiple",
    "runs_per_year": "runs per year",
}


def _unit(path: str, currency: str) -> str:
    """A readable unit for the number at ``path`` (for the assumption register)."""
    last = path.rsplit(".", 1)[-1]
    if last in _UNITS:
        return _UNITS[last]
    if last == "usd_per_unit":
        return f"USD per {currency}"
    if path.startswith("enforcement."):
        return "annual probability"
    if path.startswith("facts."):
        return "people"
    suffix = {
        "per_person_cost": " per person",
        "recurring_cost": " per year",
        "per_year": " per year",
    }
    return currency + suffix.get(last, "")


def _walk(node: object, path: str) -> Iterator[tuple[str, Sourced]]:
    if isinstance(node, Sourced):
        yield path, node
    elif isinstance(node, Flag):
        if node.probability is not None:
            yield f"{path}.probability", node.probability
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _walk(getattr(node, name), f"{path}.{name}" if path else name)
    elif isinstance(node, dict):
        for key, child in node.items():
            yield from _walk(child, f"{path}.{key}")
    elif isinstance(node, list):
        for child in node:
            label = getattr(child, "name", None)
            if isinstance(label, str):
                yield from _walk(child, f"{path}.{label}")


class Registry:
    """The numbers and flags of some profiles and a consortium file."""

    def __init__(self, profiles: Mapping[str, Profile], consortium: Consortium) -> None:
        self.parameters: dict[str, Parameter] = {}
        self.flags: dict[str, FlagParameter] = {}
        for code, profile in sorted(profiles.items()):
            for path, value in _walk(profile, ""):
                structural = any(part in _STRUCTURAL for part in path.split("."))
                self._add(f"{code}.{path}", value, _unit(path, profile.currency), not structural)
            for name, flag in profile.flags.items():
                key = f"{code}.flags.{name}"
                self.flags[key] = FlagParameter(key, code, name, flag)
        for path, value in _walk(consortium, ""):
            self._add(f"consortium.{path}", value, _unit(path, "USD"), True)

    def _add(self, key: str, value: Sourced, unit: str, sampled: bool) -> None:
        self.parameters[key] = Parameter(key, value, unit, sampled and value.uncertain)

    def base(self, n: int = 1, flags: Mapping[str, bool] | None = None) -> Values:
        """Every number at its base value and every flag at its answer, ``n`` columns.

        ``flags`` overrides answers by id; a settled flag keeps its answer regardless.
        """
        overrides = flags or {}
        numbers = {k: np.full(n, p.value.value) for k, p in self.parameters.items()}
        answers = {}
        for key, fp in self.flags.items():
            answer = fp.flag.value
            if key in overrides and not fp.flag.settled:
                answer = overrides[key]
            answers[key] = np.full(n, answer, dtype=bool)
        return Values(n, numbers, answers)

    def draw(self, rng: np.random.Generator, n: int) -> Values:
        """``n`` joint draws: triangular numbers, Bernoulli flags, in a fixed id order."""
        values = self.base(n)
        for key in sorted(self.parameters):
            p = self.parameters[key]
            if p.sampled:
                low, high = p.value.bounds
                values._numbers[key] = rng.triangular(low, p.value.value, high, size=n)
        for key in sorted(self.flags):
            fp = self.flags[key]
            if fp.varied:
                chance = values._numbers[f"{key}.probability"]
                values._flags[key] = rng.random(n) < chance
        return values

    def swings(self, keys: set[str] | None = None) -> tuple[Values, list[Swing]]:
        """Two columns per varied number and flag (low, high; no, yes), the rest at base.

        ``keys`` restricts the swings to those ids (the ones a model reads).
        """
        swings: list[Swing] = []
        for key in sorted(self.parameters):
            p = self.parameters[key]
            if p.sampled and (keys is None or key in keys):
                low, high = p.value.bounds
                swings.append(Swing(key, low, high, False))
        for key in sorted(self.flags):
            if self.flags[key].varied and (keys is None or key in keys):
                swings.append(Swing(key, 0.0, 1.0, True))
        values = self.base(max(2 * len(swings), 1))
        for index, swing in enumerate(swings):
            columns = [2 * index, 2 * index + 1]
            if swing.is_flag:
                values._flags[swing.id][columns] = [False, True]
            else:
                values._numbers[swing.id][columns] = [swing.low, swing.high]
        return values, swings
