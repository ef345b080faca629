"""SuperNode authentication keys as kits hold them: loading and fingerprints.

Flower authenticates each institution's SuperNode with a P-384 key pair in
OpenSSH format. The aggregator's kit lists every institution's public key and
the manifest its fingerprint; an institution's kit holds its own pair. Both
sides load and fingerprint them the same way, here.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from crossfed.protocol.errors import ProvisioningError

__all__ = [
    "load_node_private_key",
    "load_node_public_key",
    "node_key_fingerprint",
    "read_kit_file",
    "require_p384_private",
]

_CURVE_NAME = ec.SECP384R1().name


def read_kit_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a kit file; an unreadable one is a :class:`ProvisioningError`."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ProvisioningError(f"cannot read {path}: {exc}") from exc


def require_p384_private(key: object, path: str | os.PathLike[str]) -> ec.EllipticCurvePrivateKey:
    """``key`` if it is a P-384 private key, else a :class:`ProvisioningError` naming ``path``."""
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != _CURVE_NAME:
        raise ProvisioningError(f"{path} does not hold a P-384 (secp384r1) private key")
    return key


def load_node_private_key(path: str | os.PathLike[str]) -> ec.EllipticCurvePrivateKey:
    """Load a SuperNode private key in OpenSSH format, as Flower requires."""
    try:
        key = serialization.load_ssh_private_key(read_kit_file(path), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ProvisioningError(f"{path} is not an unencrypted OpenSSH private key") from exc
    return require_p384_private(key, path)


def load_node_public_key(path: str | os.PathLike[str]) -> ec.EllipticCurvePublicKey:
    """Load a SuperNode public key in OpenSSH format (``ecdsa-sha2-nistp384 …``)."""
    try:
        key = serialization.load_ssh_public_key(read_kit_file(path))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ProvisioningError(f"{path} is not an OpenSSH public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != _CURVE_NAME:
        raise ProvisioningError(f"{path} does not hold a P-384 (secp384r1) public key")
    return key


def node_key_fingerprint(public_openssh: bytes) -> str:
    """``SHA256:…`` fingerprint of an OpenSSH public key, as ``ssh-keygen -l`` prints it."""
    try:
        blob = base64.b64decode(public_openssh.split()[1], validate=True)
    except (IndexError, ValueError) as exc:
        raise ProvisioningError("not an OpenSSH public key line") from exc
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"
