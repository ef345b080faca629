"""Exceptions raised by the simulation harness.

Every error the harness raises on purpose derives from :class:`SimulationError`, so a
caller (the command-line interface, a notebook) can catch the whole family at once and
still tell the outcomes apart by subclass.
"""

from __future__ import annotations

__all__ = [
    "GeneratorError",
    "ProfileError",
    "SimulationError",
    "StrategyError",
]


class SimulationError(Exception):
    """Base class of every error raised on purpose by :mod:`simulations`."""


class GeneratorError(SimulationError):
    """A synthetic-data request cannot be served.

    Raised for an unknown generator name, an unknown jurisdiction code, or sizes that
    cannot be met (for example fewer rows than institutions).
    """


class ProfileError(SimulationError):
    """A jurisdiction profile is missing, malformed or inconsistent.

    Parameters
    ----------
    message
        What is wrong, in words.
    path
        The YAML file the problem was found in, if any.
    field
        The dotted name of the offending field, if the problem is tied to one.
    """

    def __init__(self, message: str, *, path: str | None = None, field: str | None = None) -> None:
        self.path = path
        self.field = field
        where = []
        if path is not None:
            where.append(f"file {path}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)


class StrategyError(SimulationError):
    """A compliance-cost request names an unknown strategy or lacks a required input.

    For example ``he-fedavg-dp`` without an epsilon, or an institution whose jurisdiction
    has no profile.
    """
