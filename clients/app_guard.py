"""What an institution checks before its ClientApp touches a message from the aggregator.

A malicious aggregator chooses the app bundle (FAB) and the run configuration
Flower hands to a SuperNode. The institution's runner (:mod:`clients.app_runner`)
therefore runs, for every task, three checks that need no process and are
tested here without one:

* :func:`check_bundle`: the bundle's content digest
  (:func:`crossfed.protocol.fab_digest`) must equal the kit's app pin; nothing
  of the bundle is installed or imported either way;
* :func:`check_run_config`: every setting that shapes what leaves the bank
  (:data:`SOVEREIGN_KEYS`) must agree with the kit; the ClientApp then runs on
  :func:`kit_settings`, never on the wire's values.

A refusal raises a :class:`RefusalError` whose message (the digest, the key
that differed, the values) goes to the bank's local log only; the aggregator
gets :func:`clients.error_mod.error_reply`: the error code and its fixed text.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

from clients.errors import ClientError
from clients.kit import InstitutionKit
from crossfed.protocol import (
    BundleError,
    ConfigurationError,
    ErrorCode,
    FederationSettings,
    fab_digest,
)

__all__ = [
    "SOVEREIGN_KEYS",
    "BundleRefusedError",
    "RefusalError",
    "RunConfigMismatchError",
    "check_bundle",
    "check_run_config",
    "kit_expectations",
    "kit_settings",
]

#: Run-config keys that shape what leaves the bank: each must agree with the kit.
#: ``preset``, ``schema-sha256`` and ``federation`` are no run setting today; they
#: are compared whenever a run configuration carries them.
SOVEREIGN_KEYS: tuple[str, ...] = (
    "batch-size",
    "dp-clip",
    "dp-delta",
    "dp-noise-multiplier",
    "dp-shares",
    "dpsgd-batch-size",
    "dpsgd-clip",
    "dpsgd-epsilon",
    "dpsgd-learning-rate",
    "epochs",
    "federation",
    "hidden",
    "institutions",
    "learning-rate",
    "max-update-norm",
    "max-weight",
    "min-institutions",
    "mode",
    "model",
    "model-shapes",
    "normalise-steps",
    "preset",
    "proximal-mu",
    "rounds",
    "schema-sha256",
    "seed",
    "test-fraction",
)

_SETTING_KEYS = frozenset(f.name.replace("_", "-") for f in fields(FederationSettings))


class RefusalError(ClientError):
    """The institution refused a task; the message is for the bank's local log only.

    Attributes
    ----------
    code
        The fixed code the aggregator is told.
    """

    code: ErrorCode = ErrorCode.INTERNAL


class BundleRefusedError(RefusalError):
    """The app bundle the aggregator shipped is not the one the kit pins."""

    code = ErrorCode.BUNDLE_REFUSED


class RunConfigMismatchError(RefusalError):
    """The run configuration disagrees with the kit on a setting that shapes the reply.

    Parameters
    ----------
    keys
        The run-config keys that differed (dashed), named in the local log only;
        empty when the run configuration is invalid as a whole.
    message
        What the run said and what the kit says.
    """

    code = ErrorCode.CONFIG_MISMATCH

    def __init__(self, keys: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.keys = keys


def check_bundle(fab: bytes, pin: str) -> str:
    """The bundle's digest, if it is the pinned one.

    Raises
    ------
    BundleRefusedError
        The kit pins no bundle, the bundle cannot be read, or its digest differs.
    """
    if not pin:
        raise BundleRefusedError("the kit pins no app bundle (recreate it with `crossfed kit`)")
    try:
        digest = fab_digest(fab)
    except BundleError as exc:
        raise BundleRefusedError(f"unreadable app bundle ({len(fab)} B): {exc}") from exc
    if not hmac.compare_digest(digest.encode(), pin.encode()):
        raise BundleRefusedError(f"app bundle {digest} is not the kit's pin {pin}")
    return digest


def kit_settings(kit: InstitutionKit, *, out_dir: Path) -> FederationSettings:
    """The run's settings as this institution's kit gives them (paths are the bank's).

    Raises
    ------
    crossfed.protocol.ConfigurationError
        The kit's training settings are invalid.
    """
    config = kit.manifest.run_config(public_context="", schema=str(kit.schema), out_dir="")
    config["secret-context"] = str(kit.secret_context)
    config["out-dir"] = str(out_dir)
    return FederationSettings.from_run_config(config)


def kit_expectations(kit: InstitutionKit) -> dict[str, object]:
    """What the kit says for the :data:`SOVEREIGN_KEYS` that are no run setting."""
    expected: dict[str, object] = {
        "federation": kit.manifest.name,
        "preset": kit.manifest.preset,
    }
    if kit.manifest.schema_sha256:
        expected["schema-sha256"] = kit.manifest.schema_sha256
    return expected


def check_run_config(
    run_config: Mapping[str, object],
    settings: FederationSettings,
    expected: Mapping[str, object],
) -> None:
    """Refuse a run configuration that disagrees with the kit.

    A run setting is compared with ``settings`` as the aggregator's ServerApp
    reads it (:meth:`FederationSettings.from_run_config`: a key the run omits
    takes its default); any other sovereign key with ``expected``
    (:func:`kit_expectations`) when the run carries it.

    Raises
    ------
    RunConfigMismatchError
        Keys differ (each named, with both values), or the run's settings are invalid.
    """
    known = {key: value for key, value in run_config.items() if key in _SETTING_KEYS}
    try:
        wire = FederationSettings.from_run_config(known).to_run_config()
    except ConfigurationError as exc:
        raise RunConfigMismatchError((), f"the run configuration is invalid: {exc}") from exc
    kit = settings.to_run_config()
    differences: dict[str, str] = {}
    for key in SOVEREIGN_KEYS:
        if key in _SETTING_KEYS:
            said, wanted = wire[key], kit[key]
        elif key in run_config:
            said, wanted = run_config[key], expected.get(key, "(not set by the kit)")
        else:
            continue
        if said != wanted or type(said) is not type(wanted):
            differences[key] = f"run config key {key!r} is {said!r}; the kit says {wanted!r}"
    if differences:
        raise RunConfigMismatchError(tuple(differences), "; ".join(differences.values()))
