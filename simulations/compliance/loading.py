"""Reading profiles and the consortium file: validated, with the offending field named.

Profiles ship inside the package (``simulations/compliance/profiles/*.yaml``) with
``consortium.yaml`` beside them; :func:`load_profiles` reads them and lets a user
directory replace any of them, file by file (a ``consortium.yaml`` there replaces the
consortium file). A malformed file is refused with a
:class:`~simulations.errors.ProfileError` naming the file and the field, before any
training starts.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from simulations.compliance.consortium import Consortium
from simulations.compliance.profiles import Profile
from simulations.compliance.rules import rule_problems
from simulations.errors import ProfileError

__all__ = [
    "CONSORTIUM_FILE",
    "load_consortium",
    "load_profile",
    "load_profiles",
    "shipped_profiles_dir",
]

#: The consortium file's name, in the shipped folder or a user's ``--profiles DIR``.
CONSORTIUM_FILE = "consortium.yaml"

_Model = TypeVar("_Model", bound=BaseModel)


def _describe(exc: ValidationError) -> tuple[str, str]:
    """First offending field (dotted) and a message listing every error."""
    errors = exc.errors()
    fields = [".".join(str(p) for p in e["loc"]) or "<root>" for e in errors]
    message = "; ".join(f"{f}: {e['msg']}" for f, e in zip(fields, errors, strict=True))
    return fields[0], f"invalid profile: {message}"


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ProfileError(f"cannot read profile: {exc}", path=str(path)) from exc
    if not isinstance(raw, dict):
        raise ProfileError("profile must be a YAML mapping", path=str(path))
    return raw


def _validate(model: type[_Model], raw: dict[str, Any], path: Path) -> _Model:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        field, message = _describe(exc)
        raise ProfileError(message, path=str(path), field=field) from exc


def load_profile(path: str | Path) -> Profile:
    """Read and validate one profile file, including what its rule needs.

    Raises
    ------
    ProfileError
        The file cannot be read, is not YAML, fails validation, or lacks a
        mechanism, fact, date, list or flag its rule reads; the error names the file
        and the first offending field.
    """
    path = Path(path)
    profile = _validate(Profile, _read(path), path)
    problems = rule_problems(profile)
    if problems:
        field, _ = problems[0]
        raise ProfileError(
            "invalid profile: " + "; ".join(m for _, m in problems), path=str(path), field=field
        )
    return profile


def load_consortium(directory: str | Path | None = None) -> Consortium:
    """The consortium file: the user's (``DIR/consortium.yaml``) if any, else the shipped one."""
    path = shipped_profiles_dir().parent / CONSORTIUM_FILE
    if directory is not None and (Path(directory) / CONSORTIUM_FILE).is_file():
        path = Path(directory) / CONSORTIUM_FILE
    return _validate(Consortium, _read(path), path)


def _load_dir(files: list[Path]) -> dict[str, Profile]:
    profiles: dict[str, Profile] = {}
    for path in sorted(files):
        if path.name == CONSORTIUM_FILE:
            continue
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
        ``consortium.yaml`` there is read by :func:`load_consortium`, not here.

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
