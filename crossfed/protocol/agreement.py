"""Agreement public keys as kits list them: one X25519 key per institution.

Masked updates (:mod:`crypto.masked`) need, for every pair of institutions, a
key only those two can derive: each institution holds an X25519 agreement key
(:class:`crypto.AgreementKey`), its private half in its own kit only
(``agreement.key``, 0600) and its public half, 32 raw bytes written as 64
lowercase hex digits, in every kit's ``federation.yaml`` beside its name and
node-key fingerprint. Here both sides parse and check that listing the same
way: well-formed, one key per institution, no key listed twice (two
institutions with one key would share every pair key).

A manifest lists keys for every institution or for none: kits made before
agreement keys list none, which is accepted while the federation's preset does
not mask updates (:meth:`crossfed.protocol.FederationManifest.masked`); a masked
federation needs the kits re-created.
"""

from __future__ import annotations

from collections.abc import Mapping

from crossfed.protocol.errors import ProvisioningError
from crypto import canonical_public_key

__all__ = ["AGREEMENT_KEY_HEX", "agreement_key_hex", "check_agreement_keys"]

#: Length of a listed agreement public key: 32 raw bytes as lowercase hex.
AGREEMENT_KEY_HEX = 64

_HEX_DIGITS = frozenset("0123456789abcdef")


def agreement_key_hex(public: bytes) -> str:
    """How ``federation.yaml`` lists a raw 32-byte agreement public key."""
    if not isinstance(public, bytes) or 2 * len(public) != AGREEMENT_KEY_HEX:
        raise ProvisioningError(f"an agreement public key has {AGREEMENT_KEY_HEX // 2} bytes")
    return public.hex()


def check_agreement_keys(listed: Mapping[str, str], *, required: bool) -> dict[str, bytes]:
    """The raw agreement public keys by institution name, once the listing checks out.

    Parameters
    ----------
    listed
        Each institution's listed key (hex), ``""`` where the manifest lists none.
    required
        Whether the federation masks updates, so that a manifest without keys
        is refused too.

    Returns
    -------
    dict
        Name to raw 32-byte public key; empty when no institution lists one.

    Raises
    ------
    ProvisioningError
        A key is not 64 lowercase hex digits, some institutions list one and
        others none (those are named), two institutions list the same key, or
        none lists one although ``required``.
    """
    present = {name: key for name, key in listed.items() if key}
    if not present:
        if required and listed:
            raise ProvisioningError(
                "federation.yaml lists no agreement keys, which a federation that masks "
                "updates needs: re-create the kits with `crossfed kit create`"
            )
        return {}
    missing = sorted(set(listed) - set(present))
    if missing:
        raise ProvisioningError(
            f"federation.yaml lists no agreement key for {', '.join(missing)}: every "
            "institution needs one (re-create the kits with `crossfed kit create`)"
        )
    keys: dict[str, bytes] = {}
    for name, text in present.items():
        if len(text) != AGREEMENT_KEY_HEX or not set(text) <= _HEX_DIGITS:
            raise ProvisioningError(
                f"federation.yaml: the agreement key of {name!r} is not {AGREEMENT_KEY_HEX} "
                "lowercase hex digits"
            )
        raw = bytes.fromhex(text)
        if not canonical_public_key(raw):
            raise ProvisioningError(
                f"federation.yaml: the agreement key of {name!r} is not a canonical X25519 "
                "public key (the same point can be written with its top bit set: refused, "
                "so that one key cannot be listed twice under two spellings)"
            )
        keys[name] = raw
    owners: dict[bytes, str] = {}
    for name, key in keys.items():
        if key in owners:
            raise ProvisioningError(
                f"federation.yaml lists one agreement key for both {owners[key]!r} and {name!r}"
            )
        owners[key] = name
    return keys
