"""An institution's kit folder, as ``crossfed kit create`` wrote it, checked on load.

=====================  ==========================================  =========
file                   what                                        mode
=====================  ==========================================  =========
ca.crt                 the federation CA's certificate             0644
node.key               the institution's SuperNode key (OpenSSH)   0600
node.pub               its public half                             0644
secret.ctx             the shared secret CKKS context              0600
federation.yaml        the federation's manifest                   0644
schema.yaml            the federation schema                       0644
=====================  ==========================================  =========
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crossfed.protocol import (
    CA_CERT,
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
    require_kit_file,
)

__all__ = ["InstitutionKit"]


@dataclass(frozen=True)
class InstitutionKit:
    """One institution's kit folder, checked on load (:meth:`load`)."""

    path: Path
    name: str
    manifest: FederationManifest

    @classmethod
    def load(cls, path: Path) -> InstitutionKit:
        """Load and check: files present, node key listed in the manifest, context matches.

        Raises
        ------
        ProvisioningError
            A file is missing or its content does not belong to this federation.
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
        return cls(folder, listed[fingerprint], manifest)

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
