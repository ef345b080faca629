"""Where an institution's masking keys come from: its own kit, or the simulation's folder.

A masked preset needs, at each institution, its agreement private key and every
other institution's public key (:class:`MaskingKeys`).

* **Deployment**: the runner names the institution's kit in the node config
  (``kit``); the keys are the kit's (:meth:`MaskingKeys.from_kit`), checked on
  load against the list every kit carries.
* **Simulation**: every virtual institution is ``partition-<id>``; the harness
  writes one folder (the run setting ``agreement-keys``) holding each virtual
  institution's private key as ``<name>.key`` (32 raw bytes, mode 0600) and the
  public list ``public.json`` (name to 64 hex digits). The harness plays every
  institution, as it does with the shared secret context.

Nothing here comes from a message.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from flwr.app import Context

import crypto
from clients.errors import KeyMaterialError
from clients.kit import InstitutionKit
from crossfed.protocol import FederationSettings, ProvisioningError
from crossfed.protocol.agreement import check_agreement_keys

__all__ = ["PUBLIC_KEYS_FILE", "MaskingKeys", "is_masked", "masking_keys"]

#: The simulation folder's list of public agreement keys.
PUBLIC_KEYS_FILE = "public.json"


@dataclass(frozen=True)
class MaskingKeys:
    """What an institution masks and unmasks with (all from its own kit).

    Attributes
    ----------
    secret:
        The federation's secret context (a masked preset).
    agreement:
        This institution's agreement private key.
    name:
        This institution's name, as every kit lists it.
    peers:
        The other institutions' agreement public keys, by name.
    """

    secret: crypto.SecretContext = field(repr=False)
    agreement: crypto.AgreementKey = field(repr=False)
    name: str
    peers: Mapping[str, bytes] = field(repr=False)

    @classmethod
    def from_kit(cls, kit: InstitutionKit, secret: crypto.SecretContext) -> MaskingKeys:
        """The kit's keys, if the kit masks updates and ``secret`` is its context.

        Raises
        ------
        KeyMaterialError
            The kit's preset does not mask updates, the kit holds no agreement
            key, or ``secret`` is not the federation's.
        """
        if not kit.manifest.masked or kit.agreement is None:
            raise KeyMaterialError(
                f"kit {kit.path} does not mask updates (preset {kit.manifest.preset}) or holds "
                "no agreement key"
            )
        if secret.fingerprint != kit.manifest.context_fingerprint:
            raise KeyMaterialError("the secret context is not this federation's")
        return cls(secret, kit.agreement, kit.name, kit.peer_keys())


def is_masked(secret: crypto.SecretContext) -> bool:
    """Whether the federation's preset masks updates (``masked16``, ``masked8``)."""
    return secret.preset.codec == "masked"


def masking_keys(
    context: Context, settings: FederationSettings, secret: crypto.SecretContext, name: str
) -> MaskingKeys:
    """This institution's masking keys: from its kit (node config ``kit``) or the folder.

    Raises
    ------
    KeyMaterialError
        Neither a kit nor a simulation folder is configured, or the keys found
        do not check out (not listed for ``name``, malformed, repeated).
    """
    kit = context.node_config.get("kit")
    if isinstance(kit, str) and kit:
        return _from_kit(kit, secret)
    if settings.agreement_keys:
        return _from_folder(settings.agreement_keys, name, secret)
    raise KeyMaterialError(
        "a masked preset needs this institution's agreement key: no kit and no agreement-keys"
    )


def _from_kit(path: str, secret: crypto.SecretContext) -> MaskingKeys:
    try:
        kit = _load_kit(path)
    except (OSError, ProvisioningError) as exc:
        raise KeyMaterialError(f"cannot load the kit {path}: {exc}") from exc
    return MaskingKeys.from_kit(kit, secret)


@lru_cache(maxsize=4)
def _load_kit(path: str) -> InstitutionKit:
    return InstitutionKit.load(Path(path))


def _from_folder(folder: str, name: str, secret: crypto.SecretContext) -> MaskingKeys:
    agreement, listed = _load_folder(folder, name)
    return MaskingKeys(secret, agreement, name, {p: k for p, k in listed.items() if p != name})


@lru_cache(maxsize=64)
def _load_folder(folder: str, name: str) -> tuple[crypto.AgreementKey, dict[str, bytes]]:
    root = Path(folder)
    try:
        listed_hex = json.loads((root / PUBLIC_KEYS_FILE).read_text())
        if not isinstance(listed_hex, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in listed_hex.items()
        ):
            raise KeyMaterialError(f"{root / PUBLIC_KEYS_FILE} is not a name-to-key map")
        listed = check_agreement_keys(listed_hex, required=True)
        agreement = crypto.AgreementKey.from_bytes((root / f"{name}.key").read_bytes())
    except (OSError, ValueError, ProvisioningError, crypto.CryptoError) as exc:
        raise KeyMaterialError(f"cannot load the agreement keys in {root}: {exc}") from exc
    if name not in listed or not hmac.compare_digest(agreement.public_bytes(), listed[name]):
        raise KeyMaterialError(f"{root}: the key of {name!r} is not the one listed for it")
    return agreement, listed
