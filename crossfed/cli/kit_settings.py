"""The settings ``crossfed kit create`` records, from a study, a settings file and options.

A federation is usually tried first with ``crossfed simulate``; the settings
that study ran with (rounds, epochs, learning rate, batch size, seed, model,
test share, and one DP strategy's clip and noise) should reach the deployment
unchanged. :func:`read_settings_file` reads them from the study's
``results.json``, or from a YAML (or JSON) file of run-config keys written by
hand. :func:`resolve_settings` lays the command line's options over the file
and :class:`~crossfed.protocol.FederationSettings`' defaults (the one set of
defaults of every command), turns a target ε into a noise multiplier, and
checks every value before a kit is written: a value every institution would
fail on after joining is refused here, by name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from crossfed.protocol import (
    ConfigurationError,
    FederationSettings,
    ProvisioningError,
)

__all__ = [
    "FILE_KEYS",
    "KitSettings",
    "read_settings_file",
    "resolve_settings",
]

#: Keys a settings file may hold (run-config spelling; ``_`` is read as ``-``), and their types.
FILE_KEYS: dict[str, type] = {
    "rounds": int,
    "min-institutions": int,
    "round-timeout": float,
    "preset": str,
    "model": str,
    "hidden": str,
    "epochs": int,
    "batch-size": int,
    "learning-rate": float,
    "proximal-mu": float,
    "seed": int,
    "test-fraction": float,
    "max-weight": int,
    "max-update-norm": float,
    "dp-clip": float,
    "dp-noise-multiplier": float,
    "dp-epsilon": float,
    "dp-delta": float,
    "dpsgd-epsilon": float,
    "dpsgd-clip": float,
    "dpsgd-batch-size": int,
    "dpsgd-learning-rate": float,
}
# What a kit's federation.yaml records under `training` (the rest are manifest fields).
_TRAINING = (
    "model",
    "hidden",
    "epochs",
    "batch-size",
    "learning-rate",
    "proximal-mu",
    "seed",
    "test-fraction",
    "max-weight",
    "max-update-norm",
    "dp-clip",
    "dp-noise-multiplier",
    "dp-delta",
    "dpsgd-epsilon",
    "dpsgd-clip",
    "dpsgd-batch-size",
    "dpsgd-learning-rate",
)
# results.json's scenario settings (ScenarioSpec's field names) that a kit takes.
_STUDY_KEYS = {
    "rounds": "rounds",
    "epochs": "epochs",
    "batch_size": "batch-size",
    "learning_rate": "learning-rate",
    "model": "model",
    "seed": "seed",
    "test_fraction": "test-fraction",
    "dp_delta": "dp-delta",
}


@dataclass(frozen=True)
class KitSettings:
    """Checked settings for ``crossfed kit create``.

    Attributes
    ----------
    settings
        The run's settings as every institution will rebuild them from its kit.
    training
        What goes under ``training`` in ``federation.yaml``.
    preset
        The CKKS preset (``None``: the default).
    notes
        Where values came from and what was derived (the noise for a target ε).
    """

    settings: FederationSettings
    training: dict[str, int | float | str]
    preset: str | None
    notes: tuple[str, ...]


_KIND_NAMES = {int: "a whole number", float: "a number", str: "text"}


def _typed(key: str, value: Any, source: str) -> int | float | str:
    kind = FILE_KEYS[key]
    if isinstance(value, bool | Mapping | list):
        raise ProvisioningError(
            f"{source}: {key} must be {_KIND_NAMES[kind]}, got {str(value)[:100]!r}"
        )
    try:
        if kind is int:
            number = float(value)
            if not number.is_integer():
                raise ValueError(value)
            return int(number)
        if kind is float:
            return float(value)
    except (TypeError, ValueError) as exc:
        raise ProvisioningError(
            f"{source}: {key} must be {_KIND_NAMES[kind]}, got {str(value)[:100]!r}"
        ) from exc
    return str(value)


def _study(data: Mapping[str, Any], path: Path, strategy: str | None) -> tuple[dict, list[str]]:
    """Settings of a ``crossfed simulate`` study's ``results.json``."""
    scenario = data.get("scenario")
    settings = scenario.get("settings") if isinstance(scenario, Mapping) else None
    if not isinstance(settings, Mapping):
        raise ProvisioningError(f"{path}: a results.json without scenario settings")
    values: dict[str, Any] = {
        key: settings[name] for name, key in _STUDY_KEYS.items() if settings.get(name) is not None
    }
    strategies = {
        str(s.get("name")): s for s in data.get("strategies") or [] if isinstance(s, Mapping)
    }
    private = sorted(n for n, s in strategies.items() if (s.get("detail") or {}).get("dp_clip"))
    notes = [f"training settings from the study {path}"]
    if strategy is None:
        if private:
            notes.append(
                f"no DP taken from the study (--strategy picks one of {', '.join(private)})"
            )
        return values, notes
    if strategy not in strategies:
        raise ProvisioningError(
            f"{path} has no strategy {strategy[:100]!r}; it has {', '.join(sorted(strategies))}"
        )
    detail = strategies[strategy].get("detail") or {}
    clip, noise = detail.get("dp_clip") or 0.0, detail.get("noise_multiplier") or 0.0
    target = strategies[strategy].get("target_epsilon")
    if detail.get("epsilon_per_institution"):
        values.update(_dpsgd_values(strategy, target, detail))
        notes.append(
            f"record-level DP-SGD of strategy {strategy}: ε {values['dpsgd-epsilon']:g} per "
            "institution, "
            f"clip {float(values['dpsgd-clip']):g}"
        )
        return values, notes
    if clip and target:
        # The target, not the noise: with other --rounds the noise is recomputed for it.
        values.update({"dp-clip": clip, "dp-epsilon": target})
        notes.append(f"DP of strategy {strategy}: clip {clip:g}, target ε {target:g}")
    elif clip and noise:
        values.update({"dp-clip": clip, "dp-noise-multiplier": noise})
        notes.append(f"DP of strategy {strategy}: clip {clip:g}, noise multiplier {noise:.4g}")
    else:
        notes.append(f"strategy {strategy} ran without DP: none recorded")
    return values, notes


def _dpsgd_values(strategy: str, target: object, detail: Mapping[str, Any]) -> dict[str, Any]:
    """A DP-SGD strategy's settings (its target ε, clip, batch size and step)."""
    keys = {
        "dpsgd_clip": "dpsgd-clip",
        "dpsgd_batch_size": "dpsgd-batch-size",
        "dpsgd_learning_rate": "dpsgd-learning-rate",
    }
    if not isinstance(target, int | float) or isinstance(target, bool) or not target > 0:
        raise ProvisioningError(f"strategy {strategy} records DP-SGD but no target ε")
    values: dict[str, Any] = {"dpsgd-epsilon": float(target)}
    for name, key in keys.items():
        if detail.get(name) is None:
            raise ProvisioningError(f"strategy {strategy} records DP-SGD without {name}")
        values[key] = detail[name]
    return values


def read_settings_file(path: Path, strategy: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """Settings from a study's ``results.json`` or a YAML/JSON file of run-config keys.

    Parameters
    ----------
    path
        ``results.json`` of ``crossfed simulate`` (recognised by its ``scenario``
        and ``strategies``), or a mapping of :data:`FILE_KEYS`.
    strategy
        For a study: the strategy whose DP clip and noise multiplier to take
        (e.g. ``he-fedavg-dp-eps4``); without it no DP is taken.

    Returns
    -------
    tuple
        The values (dashed keys, typed) and notes saying where they came from.

    Raises
    ------
    crossfed.protocol.ProvisioningError
        The file cannot be read, is neither kind, names an unknown key or
        strategy, or holds a value of the wrong type.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProvisioningError(f"cannot read the settings file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ProvisioningError(f"{path} is neither YAML nor JSON: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ProvisioningError(f"{path} must hold a mapping of settings")
    if "scenario" in data and "strategies" in data:
        raw, notes = _study(data, path, strategy)
    else:
        if strategy is not None:
            raise ProvisioningError("--strategy needs a study's results.json in --from")
        raw = {str(key).replace("_", "-"): value for key, value in data.items()}
        unknown = sorted(set(raw) - set(FILE_KEYS))
        if unknown:
            raise ProvisioningError(
                f"{path}: unknown setting(s) {', '.join(k[:100] for k in unknown)}; "
                f"known: {', '.join(sorted(FILE_KEYS))}"
            )
        notes = [f"settings from {path}"]
    return {key: _typed(key, value, str(path)) for key, value in raw.items()}, notes


def resolve_settings(
    options: Mapping[str, int | float | str | None],
    from_file: Mapping[str, int | float | str],
    *,
    institutions: int,
    notes: list[str],
) -> KitSettings:
    """Lay the options (None: not given) over the file's values and the defaults; check all.

    Raises
    ------
    crossfed.protocol.ProvisioningError
        Any value out of range (named), a target ε together with a noise
        multiplier, a target ε without a clip or out of reach.
    """
    unknown = sorted(set(options) - set(FILE_KEYS))
    if unknown:  # a programming error in the command, not the user's input
        raise ProvisioningError(f"unknown settings {unknown}")
    values: dict[str, int | float | str] = dict(from_file)
    given = {key: value for key, value in options.items() if value is not None}
    if {"dp-epsilon", "dp-noise-multiplier"} & set(given):  # the options' DP noise wins whole
        values.pop("dp-epsilon", None)
        values.pop("dp-noise-multiplier", None)
    values.update(given)
    defaults = FederationSettings(mode="plaintext").to_run_config()
    for key in ("rounds", "round-timeout", *_TRAINING):
        values.setdefault(key, defaults[key])
    values.setdefault("min-institutions", institutions)
    epsilon = values.pop("dp-epsilon", None)
    if epsilon is not None:
        if float(values["dp-noise-multiplier"]) > 0:
            raise ProvisioningError(
                "give a target ε (--dp-epsilon) or a noise multiplier, not both"
            )
        if not float(values["dp-clip"]) > 0:
            raise ProvisioningError("a target ε needs a clip norm (--dp-clip)")
        if not 0 < float(epsilon) < math.inf:
            raise ProvisioningError(f"the target ε must be positive, got {epsilon}")
        from federation import noise_multiplier_for_epsilon  # dp_accounting: seconds

        try:
            noise = noise_multiplier_for_epsilon(
                float(epsilon), int(values["rounds"]), float(values["dp-delta"])
            )
        except ConfigurationError as exc:
            raise ProvisioningError(str(exc)) from exc
        values["dp-noise-multiplier"] = noise
        notes.append(
            f"noise multiplier {noise:.4g} for ε = {float(epsilon):g} after {values['rounds']} "
            f"rounds at δ = {float(values['dp-delta']):g}"
        )
    try:
        settings = FederationSettings(
            mode="encrypted",
            public_context="(the kit's)",  # paths are the deployment's, not the kit's
            rounds=int(values["rounds"]),
            min_institutions=int(values["min-institutions"]),
            institutions=institutions,
            round_timeout=float(values["round-timeout"]),
            model=str(values["model"]),
            hidden=str(values["hidden"]),
            epochs=int(values["epochs"]),
            batch_size=int(values["batch-size"]),
            learning_rate=float(values["learning-rate"]),
            proximal_mu=float(values["proximal-mu"]),
            seed=int(values["seed"]),
            test_fraction=float(values["test-fraction"]),
            max_weight=int(values["max-weight"]),
            max_update_norm=float(values["max-update-norm"]),
            dp_clip=float(values["dp-clip"]),
            dp_noise_multiplier=float(values["dp-noise-multiplier"]),
            dp_delta=float(values["dp-delta"]),
            dpsgd_epsilon=float(values["dpsgd-epsilon"]),
            dpsgd_clip=float(values["dpsgd-clip"]),
            dpsgd_batch_size=int(values["dpsgd-batch-size"]),
            dpsgd_learning_rate=float(values["dpsgd-learning-rate"]),
        )
    except ConfigurationError as exc:
        raise ProvisioningError(str(exc)) from exc
    if settings.dp_clip > 0 and settings.dp_noise_multiplier == 0:
        raise ProvisioningError(
            "--dp-clip without noise only clips: give --dp-epsilon or --dp-noise-multiplier too"
        )
    if not 1 <= settings.min_institutions <= institutions:
        raise ProvisioningError(
            f"min-institutions must be between 1 and {institutions}, "
            f"got {settings.min_institutions}"
        )
    run = settings.to_run_config()
    training = {key: run[key] for key in _TRAINING}
    if settings.model != "mlp":
        training.pop("hidden")
    if not settings.dp_enabled:
        for key in ("dp-clip", "dp-noise-multiplier"):
            training.pop(key)
    if not settings.dpsgd_enabled:
        for key in ("dpsgd-epsilon", "dpsgd-clip", "dpsgd-batch-size", "dpsgd-learning-rate"):
            training.pop(key)
    if not (settings.dp_enabled or settings.dpsgd_enabled):
        training.pop("dp-delta")
    preset = values.get("preset")
    return KitSettings(settings, training, None if preset is None else str(preset), tuple(notes))
