"""Tests for federation.pki: CA, server certificate, node keys and key files."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from crossfed.protocol import (
    ProvisioningError,
    load_node_private_key,
    load_node_public_key,
)
from federation import (
    CertificateAuthority,
    SecretBytes,
    certificate_to_pem,
    create_ca,
    create_node_keypair,
    create_server_certificate,
    load_certificate,
    load_certificate_authority,
    load_private_key,
    private_key_to_pem,
    write_private,
    write_public,
)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return create_ca("crossfed test CA", valid_days=30)


def _verify_server(ca_cert: x509.Certificate, leaf: x509.Certificate, host: str) -> None:
    """Verify ``leaf`` for ``host`` with cryptography's web-PKI path validation."""
    try:
        subject: x509.DNSName | x509.IPAddress = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        subject = x509.DNSName(host)
    verifier = PolicyBuilder().store(Store([ca_cert])).build_server_verifier(subject)
    verifier.verify(leaf, [])


def test_server_certificate_verifies_against_ca_with_ip_and_dns_sans(
    ca: CertificateAuthority,
) -> None:
    server = create_server_certificate(ca, ["127.0.0.1", "Aggregator.Example", "::1"])
    sans = server.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("::1") in sans.get_values_for_type(x509.IPAddress)
    assert sans.get_values_for_type(x509.DNSName) == ["aggregator.example"]
    for host in ("127.0.0.1", "::1", "aggregator.example"):
        _verify_server(ca.cert, server.cert, host)
    assert server.cert.not_valid_after_utc <= ca.cert.not_valid_after_utc


def test_server_certificate_fails_for_other_host_and_other_ca(ca: CertificateAuthority) -> None:
    server = create_server_certificate(ca, ["127.0.0.1"])
    with pytest.raises(VerificationError):
        _verify_server(ca.cert, server.cert, "127.0.0.2")
    other = create_ca("another CA", valid_days=30)
    with pytest.raises(VerificationError):
        _verify_server(other.cert, server.cert, "127.0.0.1")


@pytest.mark.parametrize("hosts", [[], ["bad host name"], ["-leading.dash"], "127.0.0.1"])
def test_server_certificate_rejects_bad_hosts(ca: CertificateAuthority, hosts: list[str]) -> None:
    with pytest.raises(ProvisioningError):
        create_server_certificate(ca, hosts)


def test_ca_rejects_bad_lifetime_and_name() -> None:
    with pytest.raises(ProvisioningError):
        create_ca("ca", valid_days=0)
    with pytest.raises(ProvisioningError):
        create_ca("x" * 65)


def test_server_certificate_lifetime_capped_by_ca() -> None:
    short = create_ca("short CA", valid_days=2)
    server = create_server_certificate(short, ["localhost"], valid_days=365)
    assert server.cert.not_valid_after_utc == short.cert.not_valid_after_utc
    assert server.cert.not_valid_before_utc < dt.datetime.now(dt.UTC)


def test_node_keypair_files_formats_and_modes(tmp_path: Path) -> None:
    pair = create_node_keypair()
    private_path, public_path = tmp_path / "node.key", tmp_path / "node.key.pub"
    pair.write(private_path, public_path)

    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(public_path.stat().st_mode) == 0o644
    assert private_path.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert public_path.read_bytes().startswith(b"ecdsa-sha2-nistp384 ")

    private = load_node_private_key(private_path)
    public = load_node_public_key(public_path)
    assert isinstance(private.curve, ec.SECP384R1)
    assert private.public_key().public_numbers() == public.public_numbers()
    # Flower's own loader, the one flower-supernode calls, accepts the private file.
    flower_view = serialization.load_ssh_private_key(private_path.read_bytes(), None)
    assert isinstance(flower_view, ec.EllipticCurvePrivateKey)


def test_node_keypairs_are_fresh() -> None:
    first, second = create_node_keypair(), create_node_keypair()
    assert first.public_openssh != second.public_openssh


def test_secret_bytes_hidden_from_repr_and_refused_as_public(tmp_path: Path) -> None:
    pair = create_node_keypair()
    assert pair.private_openssh.data.decode() not in repr(pair)
    with pytest.raises(ProvisioningError):
        write_public(tmp_path / "leak.pub", pair.private_openssh)  # type: ignore[arg-type]
    with pytest.raises(ProvisioningError):
        write_public(tmp_path / "leak.pub", pair.private_openssh.data)
    assert not (tmp_path / "leak.pub").exists()


def test_private_file_mode_holds_under_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = write_private(tmp_path / "secret", SecretBytes(os.urandom(32)))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_writes_refuse_to_clobber_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "ca.crt"
    write_public(path, b"first")
    with pytest.raises(ProvisioningError, match="exists"):
        write_public(path, b"second")
    assert path.read_bytes() == b"first"
    write_public(path, b"second", overwrite=True)
    assert path.read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.crt"]  # no temporary left


def test_write_into_missing_directory_is_typed(tmp_path: Path) -> None:
    with pytest.raises(ProvisioningError):
        write_private(tmp_path / "absent" / "key", b"x")


def test_ca_and_server_material_round_trip_through_files(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    write_public(tmp_path / "ca.crt", certificate_to_pem(ca.cert))
    write_private(tmp_path / "ca.key", private_key_to_pem(ca.key))
    loaded = load_certificate_authority(tmp_path / "ca.crt", tmp_path / "ca.key")
    assert loaded.cert == ca.cert
    assert loaded.key.private_numbers() == ca.key.private_numbers()

    server = create_server_certificate(loaded, ["127.0.0.1"])
    write_private(tmp_path / "server.key", private_key_to_pem(server.key))
    assert load_private_key(tmp_path / "server.key").public_key() == server.cert.public_key()
    _verify_server(load_certificate(tmp_path / "ca.crt"), server.cert, "127.0.0.1")


def test_loaders_translate_errors(tmp_path: Path, ca: CertificateAuthority) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(os.urandom(64))
    for loader in (load_certificate, load_private_key, load_node_private_key, load_node_public_key):
        with pytest.raises(ProvisioningError):
            loader(garbage)
        with pytest.raises(ProvisioningError):
            loader(tmp_path / "missing")

    # A PKCS8 PEM key is refused where Flower needs OpenSSH format.
    write_private(tmp_path / "pkcs8.key", private_key_to_pem(ca.key))
    with pytest.raises(ProvisioningError):
        load_node_private_key(tmp_path / "pkcs8.key")

    # A P-256 key is refused: the federation uses P-384 throughout.
    p256 = ec.generate_private_key(ec.SECP256R1())
    ssh = p256.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    write_private(tmp_path / "p256.key", ssh)
    with pytest.raises(ProvisioningError, match="P-384"):
        load_node_private_key(tmp_path / "p256.key")

    other = create_ca("mismatch", valid_days=1)
    write_public(tmp_path / "ca.crt", certificate_to_pem(ca.cert))
    write_private(tmp_path / "other.key", private_key_to_pem(other.key))
    with pytest.raises(ProvisioningError, match="not the key"):
        load_certificate_authority(tmp_path / "ca.crt", tmp_path / "other.key")


def test_private_file_is_created_0600_not_chmodded_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes: list[int] = []
    real_open = os.open

    def spy(path: str | os.PathLike[str], flags: int, mode: int = 0o777, **kw: Any) -> int:
        if flags & os.O_CREAT:
            modes.append(mode)
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(os, "open", spy)
    write_private(tmp_path / "node.key", create_node_keypair().private_openssh)
    assert modes == [0o600]
