"""An institution's kit folder, as ``crossfed kit create`` wrote it, checked on load.

=====================  ==========================================  =========
file                   what                                        mode
=====================  ==========================================  =========
ca.crt                 the federation CA's certificate             0644
node.key               the institution's SuperNode key (OpenSSH)   0600
node.pub               its public half                             0644
secret.ctx             the shared secret CKKS context              0600
agreement.key          this institution's X25519 agreement         0600
                       private key (32 raw bytes)
federation.yaml        the federation's manifest                   0644
schema.yaml            the federation schema                       0644
=====================  ==========================================  =========

The agreement key gives this institution a pair key with every other one
(:meth:`crypto.AgreementKey.pair_key`), from which masked updates draw their
masks. On load its public half must be the one ``federation.yaml`` lists for
this institution, and every other listed key must be usable (well-formed,
distinct, not of low order). A kit made before agreement keys (no key listed,
no ``agreement.key``) still loads while the federation's preset does not mask
updates: nothing uses the key then. A masked federation refuses it and asks
for the kits to be re-created (:mod:`crossfed.protocol.agreement`).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path

import crypto
from crossfed.protocol import (
    AGREEMENT_KEY,
    CA_CERT,
    MANIFEST,
    NODE_KEY,
    NODE_PUB,
    SCHEMA,
    SECRET_CONTEXT,
    FederationManifest,
    ProvisioningError,
    check_schema_pin,
    load_manifest,
    load_node_private_key,
    load_node_public_key,
    node_key_fingerprint,
    read_kit_file,
    require_kit_file,
)

__all__ = ["InstitutionKit"]


@dataclass(frozen=True)
class InstitutionKit:
    """One institution's kit folder, checked on load (:meth:`load`).

    ``agreement`` is this institution's agreement private key, ``None`` in a
    kit made before agreement keys (accepted only while updates are not masked).
    """

    path: Path
    name: str
    manifest: FederationManifest
    agreement: crypto.AgreementKey | None = field(default=None, repr=False, compare=False)

    @classmethod
    def load(cls, path: Path) -> InstitutionKit:
        """Load and check: files present, node and agreement keys listed in the manifest.

        Raises
        ------
        ProvisioningError
            A file is missing or its content does not belong to this federation,
            or the manifest's agreement keys are malformed, repeated, incomplete
            or (for a masked federation) absent.
        """
        folder = path.resolve()
        manifest = load_manifest(folder)
        for name in (CA_CERT, NODE_KEY, NODE_PUB, SECRET_CONTEXT, SCHEMA):
            require_kit_file(folder / name)
        check_schema_pin(folder / SCHEMA, manifest)
        private = load_node_private_key(folder / NODE_KEY)
        if private.public_key() != load_node_public_key(folder / NODE_PUB):
            raise ProvisioningError(f"{folder / NODE_KEY} is not the key of {folder / NODE_PUB}")
        fingerprint = node_key_fingerprint((folder / NODE_PUB).read_bytes())
        listed = {i.node_key_sha256: i.name for i in manifest.institutions}
        if fingerprint not in listed:
            raise ProvisioningError(
                f"{folder / NODE_PUB} is not one of the federation's institution keys"
            )
        name = listed[fingerprint]
        return cls(folder, name, manifest, _load_agreement(folder, name, manifest))

    def peer_keys(self) -> dict[str, bytes]:
        """The other institutions' agreement public keys by name (empty without keys)."""
        return {
            peer: key for peer, key in self.manifest.agreement_keys().items() if peer != self.name
        }

    @property
    def ca_cert(self) -> Path:
        """The CA certificate the SuperLink's certificate must chain to."""
        return self.path / CA_CERT

    @property
    def node_key(self) -> Path:
        """The SuperNode's private authentication key (OpenSSH)."""
        return self.path / NODE_KEY

    @property
    def secret_context(self) -> Path:
        """The federation's secret CKKS context."""
        return self.path / SECRET_CONTEXT

    @property
    def schema(self) -> Path:
        """The federation schema."""
        return self.path / SCHEMA


def _load_agreement(
    folder: Path, name: str, manifest: FederationManifest
) -> crypto.AgreementKey | None:
    """This institution's agreement key, checked against every key the manifest lists."""
    listed = manifest.agreement_keys()
    path = folder / AGREEMENT_KEY
    if not listed:
        if path.exists():
            raise ProvisioningError(
                f"{path} exists but {MANIFEST} lists no agreement keys: the kit is "
                "inconsistent; re-create the kits with `crossfed kit create`"
            )
        return None
    try:
        key = crypto.AgreementKey.from_bytes(read_kit_file(require_kit_file(path)))
    except crypto.CryptoError as exc:
        raise ProvisioningError(f"{path} is not an agreement private key: {exc}") from exc
    if not hmac.compare_digest(key.public_bytes(), listed[name]):
        raise ProvisioningError(
            f"{path} is not the agreement key {MANIFEST} lists for {name!r}: the kit's "
            "manifest or key was altered or comes from another kit"
        )
    for peer, public in listed.items():
        if peer == name:
            continue
        try:
            key.pair_key(name, peer, public, manifest.context_fingerprint)
        except crypto.CryptoError as exc:
            raise ProvisioningError(
                f"{MANIFEST}: the agreement key listed for {peer!r} cannot be used: {exc}"
            ) from exc
    return key
