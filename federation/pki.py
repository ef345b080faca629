"""Provisioning of the federation's TLS certificates and SuperNode keys.

A federation operator needs three kinds of material, all made here with the
``cryptography`` package (no OpenSSL command line):

- a certificate authority, whose certificate every institution trusts
  (Flower's ``--root-certificates``);
- the SuperLink's server certificate, signed by that CA, naming the
  aggregator's host names and IP addresses as subject alternative names
  (``--ssl-certfile`` / ``--ssl-keyfile``);
- one P-384 key pair per institution for SuperNode authentication. Flower
  1.39 accepts the private key only in OpenSSH format (PKCS8 PEM is refused
  with exit code 302) and registers the public key in OpenSSH format
  (``flwr supernode register KEY.pub``).

Secret and public material are different types: private keys serialise to
:class:`SecretBytes`, which :func:`write_public` refuses, and which
:func:`write_private` writes to a file created with mode 0600 (never widened
later). Files are written atomically: a reader sees the old content or the
new, never a partial key.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from crossfed.protocol import (
    ProvisioningError,
    read_kit_file,
    require_p384_private,
)
from crypto import write_atomically

__all__ = [
    "CertificateAuthority",
    "NodeKeyPair",
    "SecretBytes",
    "ServerCredentials",
    "certificate_to_pem",
    "create_ca",
    "create_node_keypair",
    "create_server_certificate",
    "load_certificate",
    "load_certificate_authority",
    "load_private_key",
    "private_key_to_pem",
    "write_private",
    "write_public",
]

_CURVE = ec.SECP384R1()
_HASH = hashes.SHA384()
# Certificates start a little in the past so a peer whose clock lags still accepts them.
_CLOCK_SKEW = dt.timedelta(minutes=5)
_DNS_NAME = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")


@dataclass(frozen=True)
class SecretBytes:
    """Serialised secret material (a private key); its ``repr`` never shows it."""

    data: bytes = field(repr=False)


class CertificateAuthority(NamedTuple):
    """The federation's CA certificate and its signing key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


class ServerCredentials(NamedTuple):
    """The SuperLink's TLS certificate and private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class NodeKeyPair:
    """An institution's SuperNode authentication keys, both in OpenSSH format."""

    private_openssh: SecretBytes
    public_openssh: bytes

    def write(
        self, private_path: str | os.PathLike[str], public_path: str | os.PathLike[str]
    ) -> None:
        """Write the private key (mode 0600) and the public key (mode 0644)."""
        write_private(private_path, self.private_openssh)
        write_public(public_path, self.public_openssh)


def certificate_to_pem(cert: x509.Certificate) -> bytes:
    """Return a certificate in PEM, as gRPC and Flower read it."""
    return cert.public_bytes(serialization.Encoding.PEM)


def private_key_to_pem(key: ec.EllipticCurvePrivateKey) -> SecretBytes:
    """Return a CA or server private key as unencrypted PKCS8 PEM."""
    return SecretBytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _check_days(valid_days: int) -> None:
    if isinstance(valid_days, bool) or not isinstance(valid_days, int) or valid_days < 1:
        raise ProvisioningError(f"valid_days must be a positive integer, got {valid_days!r}")


def _subject(common_name: str) -> x509.Name:
    if not 1 <= len(common_name) <= 64:
        raise ProvisioningError("common name must be 1 to 64 characters")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_ca(common_name: str, valid_days: int = 3650) -> CertificateAuthority:
    """Create a self-signed certificate authority with a P-384 key.

    The CA may sign end-entity certificates only (path length 0).
    """
    _check_days(valid_days)
    name = _subject(common_name)
    key = ec.generate_private_key(_CURVE)
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
        .sign(key, _HASH)
    )
    return CertificateAuthority(cert=cert, key=key)


def _san_entry(host: str) -> x509.GeneralName:
    """Turn a host name or IP address into a subject alternative name."""
    text = host.strip()
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    name = text.lower().rstrip(".")
    if len(name) > 253 or not _DNS_NAME.match(name):
        raise ProvisioningError(f"{host!r} is neither an IP address nor a valid DNS name")
    return x509.DNSName(name)


def create_server_certificate(
    ca: CertificateAuthority, hosts: Sequence[str], valid_days: int = 365
) -> ServerCredentials:
    """Create the SuperLink's TLS certificate, signed by ``ca``.

    Parameters
    ----------
    ca
        The federation's certificate authority.
    hosts
        Names and addresses clients will dial, e.g. ``["127.0.0.1", "agg.example"]``.
        IP addresses become ``IPAddress`` SANs, names become ``DNSName`` SANs;
        TLS clients match only SANs, never the common name.
    valid_days
        Lifetime; cut to the CA's own expiry if that comes sooner.

    Raises
    ------
    ProvisioningError
        If ``hosts`` is empty or holds an invalid entry, or the CA has expired.
    """
    _check_days(valid_days)
    if isinstance(hosts, str) or not hosts:
        raise ProvisioningError("hosts must be a non-empty list of names or IP addresses")
    sans = list(dict.fromkeys(_san_entry(h) for h in hosts))
    now = dt.datetime.now(dt.UTC)
    not_after = min(now + dt.timedelta(days=valid_days), ca.cert.not_valid_after_utc)
    if not_after <= now:
        raise ProvisioningError("the CA certificate has expired")
    key = ec.generate_private_key(_CURVE)
    first = hosts[0].strip()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_subject(first if len(first) <= 64 else "crossfed aggregator"))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
        )
        .sign(ca.key, _HASH)
    )
    return ServerCredentials(cert=cert, key=key)


def create_node_keypair() -> NodeKeyPair:
    """Create a P-384 SuperNode authentication key pair in OpenSSH formats."""
    key = ec.generate_private_key(_CURVE)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return NodeKeyPair(private_openssh=SecretBytes(private), public_openssh=public + b"\n")


def _write_atomic(path: str | os.PathLike[str], data: bytes, mode: int, overwrite: bool) -> Path:
    """:func:`crypto.write_atomically`, its failures as :class:`ProvisioningError`."""
    try:
        return write_atomically(path, data, mode=mode, overwrite=overwrite)
    except FileExistsError as exc:
        raise ProvisioningError(f"{path} exists; pass overwrite=True to replace it") from exc
    except OSError as exc:
        raise ProvisioningError(f"cannot write {path}: {exc}") from exc


def write_private(
    path: str | os.PathLike[str], data: SecretBytes | bytes, *, overwrite: bool = False
) -> Path:
    """Write secret material atomically to a file created with mode 0600.

    Raises
    ------
    ProvisioningError
        If the file exists and ``overwrite`` is false, or the write fails.
    """
    raw = data.data if isinstance(data, SecretBytes) else data
    return _write_atomic(path, raw, 0o600, overwrite)


def write_public(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False) -> Path:
    """Write public material (certificates, public keys) atomically with mode 0644.

    Raises
    ------
    ProvisioningError
        If handed secret material, if the file exists and ``overwrite`` is
        false, or the write fails.
    """
    if isinstance(data, SecretBytes) or b"PRIVATE KEY-----" in data:
        raise ProvisioningError("refusing to write private key material with mode 0644")
    return _write_atomic(path, data, 0o644, overwrite)


def load_certificate(path: str | os.PathLike[str]) -> x509.Certificate:
    """Load a PEM certificate."""
    try:
        return x509.load_pem_x509_certificate(read_kit_file(path))
    except ValueError as exc:
        raise ProvisioningError(f"{path} is not a PEM certificate") from exc


def load_private_key(path: str | os.PathLike[str]) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted PEM P-384 private key (the CA's or the server's)."""
    try:
        key = serialization.load_pem_private_key(read_kit_file(path), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ProvisioningError(f"{path} is not an unencrypted PEM private key") from exc
    return require_p384_private(key, path)


def load_certificate_authority(
    cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]
) -> CertificateAuthority:
    """Load a CA's certificate and key, checking that they belong together."""
    cert = load_certificate(cert_path)
    key = load_private_key(key_path)
    if cert.public_key() != key.public_key():
        raise ProvisioningError(f"{key_path} is not the key of the certificate {cert_path}")
    return CertificateAuthority(cert=cert, key=key)
