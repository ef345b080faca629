"""Jurisdiction profiles: the sourced parameters of the compliance-cost model.

A profile is a YAML file describing one exporting jurisdiction: which transfer
mechanism each destination needs and what it costs, whether raw personal financial
records are localised, the penalty cap, the probability of an enforcement event per
exposure class, and the two unsettled legal questions as flags. Every number is a
:class:`Sourced` value carrying either ``source:`` (law and article or regulator text,
from ``REGULATION.md``) or ``assumption: true`` with a ``rationale:``. All amounts are in
the profile's ``currency``; ``usd_per_unit`` converts them for the report.

Profiles ship inside the package (``simulations/compliance/profiles/*.yaml``);
:func:`load_profiles` reads them and lets a user directory replace any of them, file by
file. A malformed profile is refused with a :class:`~simulations.errors.ProfileError`
naming the file and the field.
"""

from __future__ import annotations

import math
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simulations.errors import ProfileError

__all__ = [
    "EXPOSURES",
    "EnforcementProbability",
    "Exposure",
    "Flag",
    "Flags",
    "Localisation",
    "Mechanism",
    "PenaltyCap",
    "Profile",
    "Routes",
    "Sourced",
    "load_profile",
    "load_profiles",
    "shipped_profiles_dir",
]

#: What leaves an institution, from most to least exposed.
Exposure = Literal["raw_records", "plaintext_updates", "encrypted_updates", "encrypted_dp_updates"]
EXPOSURES: tuple[Exposure, ...] = (
    "raw_records",
    "plaintext_updates",
    "encrypted_updates",
    "encrypted_dp_updates",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Provenanced(_Strict):
    """Carries either a source or an explicit, explained assumption."""

    source: str | None = None
    assumption: bool = False
    rationale: str | None = None

    @model_validator(mode="after")
    def _has_provenance(self) -> _Provenanced:
        if self.source and self.source.strip():
            return self
        if self.assumption and self.rationale and self.rationale.strip():
            return self
        raise ValueError("needs a non-empty 'source' or 'assumption: true' with a 'rationale'")

    @property
    def provenance(self) -> str:
        """``"sourced: …"`` or ``"assumed: …"``, for reports."""
        if self.source and self.source.strip():
            return f"sourced: {self.source.strip()}"
        return f"assumed: {(self.rationale or '').strip()}"


class Sourced(_Provenanced):
    """A number with its provenance."""

    value: float


class _Amount(Sourced):
    """A non-negative amount (a cost, a duration, a turnover)."""

    value: float = Field(ge=0)


class _Share(Sourced):
    """A probability or a share of turnover, in ``[0, 1]``."""

    value: float = Field(ge=0, le=1)


class _Positive(Sourced):
    value: float = Field(gt=0)


class Flag(_Provenanced):
    """A yes/no legal reading, with its provenance and whether the law is settled."""

    value: bool
    settled: bool


class Mechanism(_Strict):
    """A transfer mechanism: what a cross-border flow needs before it may happen."""

    kind: Literal[
        "none", "adequacy", "standard_contract", "security_assessment", "security_requirements"
    ]
    description: str
    fixed_cost: _Amount
    lead_time_days: _Amount


class Routes(_Strict):
    """Mechanism name per destination jurisdiction, with a default for the rest."""

    default: str
    destinations: dict[str, str] = Field(default_factory=dict)
    note: str | None = None

    def mechanism_for(self, destination: str) -> str:
        """The mechanism name a flow to ``destination`` needs."""
        return self.destinations.get(destination, self.default)


class Localisation(_Strict):
    """Whether a sector rule keeps raw personal financial records in the jurisdiction."""

    raw_records_prohibited: bool
    source: str = Field(min_length=1)
    note: str | None = None


class PenaltyCap(_Strict):
    """Maximum penalty: a fixed amount, a share of turnover, or their max or min."""

    combine: Literal["fixed", "share", "max", "min"]
    fixed: _Amount | None = None
    turnover_share: _Share | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _parts_present(self) -> PenaltyCap:
        if self.combine != "share" and self.fixed is None:
            raise ValueError(f"combine={self.combine!r} needs 'fixed'")
        if self.combine != "fixed" and self.turnover_share is None:
            raise ValueError(f"combine={self.combine!r} needs 'turnover_share'")
        return self

    def amount(self, turnover: float) -> float:
        """The cap for an institution with this annual turnover (profile currency)."""
        fixed = self.fixed.value if self.fixed is not None else 0.0
        share = self.turnover_share.value * turnover if self.turnover_share is not None else 0.0
        if self.combine == "fixed":
            return fixed
        if self.combine == "share":
            return share
        return max(fixed, share) if self.combine == "max" else min(fixed, share)


class EnforcementProbability(_Strict):
    """Annual probability of an enforcement event, per exposure class.

    With distributed differential privacy at ``epsilon`` the probability falls from the
    encrypted-updates level towards ``encrypted_dp_floor`` as epsilon shrinks::

        p(eps) = floor + (p_encrypted - floor) * (1 - exp(-eps / dp_epsilon_scale))
    """

    raw_records: _Share
    plaintext_updates: _Share
    encrypted_updates: _Share
    encrypted_dp_floor: _Share
    dp_epsilon_scale: _Positive

    @model_validator(mode="after")
    def _ordered(self) -> EnforcementProbability:
        chain = [
            self.raw_records.value,
            self.plaintext_updates.value,
            self.encrypted_updates.value,
            self.encrypted_dp_floor.value,
        ]
        if any(a < b for a, b in pairwise(chain)):
            raise ValueError(
                "probabilities must not increase from raw_records to plaintext_updates "
                "to encrypted_updates to encrypted_dp_floor"
            )
        return self

    def probability(self, exposure: Exposure, epsilon: float | None = None) -> float:
        """Probability for ``exposure``; ``epsilon`` is required for DP updates."""
        if exposure == "raw_records":
            return self.raw_records.value
        if exposure == "plaintext_updates":
            return self.plaintext_updates.value
        if exposure == "encrypted_updates":
            return self.encrypted_updates.value
        if epsilon is None or not epsilon > 0:
            raise ValueError("encrypted_dp_updates needs a positive epsilon")
        floor, top = self.encrypted_dp_floor.value, self.encrypted_updates.value
        return floor + (top - floor) * (1.0 - math.exp(-epsilon / self.dp_epsilon_scale.value))


class Flags(_Strict):
    """The two unsettled legal questions, answered per jurisdiction."""

    updates_are_personal_data: Flag
    encryption_exits_scope: Flag


class Profile(_Strict):
    """One jurisdiction's compliance parameters (see the module docstring)."""

    jurisdiction: str = Field(pattern=r"^[A-Z]{2}$")
    name: str
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    usd_per_unit: _Positive
    reference_turnover: _Amount
    mechanisms: dict[str, Mechanism]
    routes: Routes
    localisation: Localisation
    penalty_cap: PenaltyCap
    enforcement_probability: EnforcementProbability
    flags: Flags

    @model_validator(mode="after")
    def _routes_name_mechanisms(self) -> Profile:
        for name in [self.routes.default, *self.routes.destinations.values()]:
            if name not in self.mechanisms:
                raise ValueError(f"route names unknown mechanism {name!r}")
        return self


def _describe(exc: ValidationError) -> tuple[str, str]:
    """First offending field (dotted) and a message listing every error."""
    errors = exc.errors()
    fields = [".".join(str(p) for p in e["loc"]) or "<root>" for e in errors]
    message = "; ".join(f"{f}: {e['msg']}" for f, e in zip(fields, errors, strict=True))
    return fields[0], f"invalid profile: {message}"


def load_profile(path: str | Path) -> Profile:
    """Read and validate one profile file.

    Raises
    ------
    ProfileError
        The file cannot be read, is not YAML, or fails validation; the error names the
        file and the first offending field.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ProfileError(f"cannot read profile: {exc}", path=str(path)) from exc
    if not isinstance(raw, dict):
        raise ProfileError("profile must be a YAML mapping", path=str(path))
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        field, message = _describe(exc)
        raise ProfileError(message, path=str(path), field=field) from exc


def _load_dir(files: list[Path]) -> dict[str, Profile]:
    profiles: dict[str, Profile] = {}
    for path in sorted(files):
        profile = load_profile(path)
        if profile.jurisdiction in profiles:
            raise ProfileError(
                f"second profile for jurisdiction {profile.jurisdiction}",
                path=str(path),
                field="jurisdiction",
            )
        profiles[profile.jurisdiction] = profile
    return profiles


def shipped_profiles_dir() -> Path:
    """Folder of the profiles shipped with the package."""
    return Path(str(resources.files("simulations.compliance") / "profiles"))


def load_profiles(directory: str | Path | None = None) -> dict[str, Profile]:
    """Shipped profiles, each replaced by the user's profile for the same jurisdiction.

    Parameters
    ----------
    directory
        Optional folder of ``*.yaml`` profiles (``--profiles DIR``). A file there
        replaces the shipped profile of the jurisdiction it names, whole; jurisdictions
        it does not name keep the shipped profile; new jurisdictions are added.

    Returns
    -------
    dict[str, Profile]
        Profiles by jurisdiction code, sorted by code.
    """
    profiles = _load_dir(list(shipped_profiles_dir().glob("*.yaml")))
    if directory is not None:
        folder = Path(directory)
        if not folder.is_dir():
            raise ProfileError("profiles directory does not exist", path=str(folder))
        profiles.update(_load_dir(list(folder.glob("*.yaml"))))
    return dict(sorted(profiles.items()))
