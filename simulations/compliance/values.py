"""Numbers and answers with their provenance: the building blocks of every profile.

Every number the compliance-cost model uses is a :class:`Sourced` value: a base
``value`` with either a ``source:`` (law and article, regulator text, a published
estimate, as ``REGULATION.md`` gives it) or ``assumption: true`` and a ``rationale:``.
An uncertain number also carries ``low`` and ``high``: the Monte Carlo draws it from
a triangular distribution on ``[low, high]`` with its mode at ``value``, and the
tornado chart moves it to each end. A shipped assumption always has a range; a
sourced number may have one too (a published estimate's spread, an observed time
against the statutory one). A value without a range is held fixed.

An unsettled legal question is a :class:`Flag`: the profile's answer, whether the
law settles it, and for an unsettled one the ``probability`` that the answer is
"yes", itself a ranged assumption, for the Monte Carlo.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

__all__ = [
    "Amount",
    "Dated",
    "Flag",
    "Positive",
    "Provenanced",
    "Share",
    "Sourced",
    "Strict",
]


class Strict(BaseModel):
    """A frozen pydantic model refusing unknown fields (a typo is an error, not a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Provenanced(Strict):
    """Carries either a source or an explicit, explained assumption."""

    source: str | None = None
    assumption: bool = False
    rationale: str | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _has_provenance(self) -> Provenanced:
        if self.source and self.source.strip():
            return self
        if self.assumption and self.rationale and self.rationale.strip():
            return self
        raise ValueError("needs a non-empty 'source' or 'assumption: true' with a 'rationale'")

    @property
    def sourced(self) -> bool:
        """Whether a source (not an assumption) backs this value."""
        return bool(self.source and self.source.strip())

    @property
    def provenance(self) -> str:
        """``"sourced: …"`` or ``"assumed: …"``, for reports."""
        if self.sourced:
            return f"sourced: {(self.source or '').strip()}"
        return f"assumed: {(self.rationale or '').strip()}"

    @property
    def detail(self) -> str:
        """The source or the rationale, without the kind."""
        return self.provenance.partition(": ")[2]


class Sourced(Provenanced):
    """A number with its provenance and, when uncertain, its range.

    Subclasses narrow the allowed interval (``_minimum``, ``_maximum``); the bounds
    apply to ``low`` and ``high`` as well as to ``value``.
    """

    _minimum: ClassVar[float | None] = None
    _maximum: ClassVar[float | None] = None
    _strict_minimum: ClassVar[bool] = False

    value: float
    low: float | None = None
    high: float | None = None

    @field_validator("value", "low", "high")
    @classmethod
    def _within_bounds(cls, number: float | None, info: ValidationInfo) -> float | None:
        if number is None:
            return number
        if cls._minimum is not None and (
            number < cls._minimum or (cls._strict_minimum and number == cls._minimum)
        ):
            relation = "greater than" if cls._strict_minimum else "at least"
            raise ValueError(
                f"{info.field_name} must be {relation} {cls._minimum:g}, got {number:g}"
            )
        if cls._maximum is not None and number > cls._maximum:
            raise ValueError(f"{info.field_name} must be at most {cls._maximum:g}, got {number:g}")
        return number

    @model_validator(mode="after")
    def _range(self) -> Sourced:
        if (self.low is None) != (self.high is None):
            raise ValueError("give both 'low' and 'high', or neither")
        if (
            self.low is not None
            and self.high is not None
            and not (self.low <= self.value <= self.high)
        ):
            raise ValueError(
                f"need low <= value <= high, got {self.low:g} <= {self.value:g} <= {self.high:g}"
            )
        return self

    @property
    def uncertain(self) -> bool:
        """Whether the value has a range of more than one point."""
        return self.low is not None and self.high is not None and self.low < self.high

    @property
    def bounds(self) -> tuple[float, float]:
        """``(low, high)``, or ``(value, value)`` for a fixed value."""
        if self.low is None or self.high is None:
            return self.value, self.value
        return self.low, self.high


class Amount(Sourced):
    """A non-negative amount (a cost, a duration, a turnover, a head count)."""

    _minimum: ClassVar[float | None] = 0.0


class Share(Sourced):
    """A probability or a share, in ``[0, 1]``."""

    _minimum: ClassVar[float | None] = 0.0
    _maximum: ClassVar[float | None] = 1.0


class Positive(Sourced):
    """A strictly positive number (an exchange rate, a scale)."""

    _minimum: ClassVar[float | None] = 0.0
    _strict_minimum: ClassVar[bool] = True


class Dated(Provenanced):
    """A date a rule turns on (a law's commencement, the end of a transition)."""

    date: date


class Flag(Provenanced):
    """A yes/no legal reading: the profile's answer and whether the law settles it.

    ``probability`` (unsettled flags only) is the chance that the answer is "yes",
    drawn by the Monte Carlo; without one the profile's answer is held fixed there.
    A settled flag keeps its answer everywhere: in the sweep and in every draw.
    """

    value: bool
    settled: bool
    probability: Share | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _settled_has_no_probability(self) -> Flag:
        if self.settled and self.probability is not None:
            raise ValueError("a settled flag takes no 'probability'")
        return self
