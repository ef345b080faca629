"""Agreement keys and mask streams: pair keys agree, bind, refuse weak points; no numpy RNG."""

from __future__ import annotations

import numpy as np
import pytest

from crypto import AgreementKey, InvalidPeerKeyError, MalformedDataError, MaskingRefusedError
from crypto.masks import MaskShape, contributor_set, mask_entries, set_digest

FINGERPRINT = "f" * 64
SHAPE = MaskShape(values=5_000, value_bits=16, weights=1, tags=4, tag_modulus=4294967291)


def _stream(key: bytes, **overrides: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    binding: dict[str, object] = {
        "session": "run-1",
        "round_id": 3,
        "digest": set_digest(("a", "b", "c")),
        "purpose": "train",
        "kind": "pair",
    }
    binding.update(overrides)
    return mask_entries(key, SHAPE, **binding)  # type: ignore[arg-type]


def test_both_ends_derive_one_pair_key_bound_to_names_and_federation() -> None:
    alice, bob, carol = AgreementKey.generate(), AgreementKey.generate(), AgreementKey.generate()
    k_ab = alice.pair_key("alice", "bob", bob.public_bytes(), FINGERPRINT)
    assert k_ab == bob.pair_key("bob", "alice", alice.public_bytes(), FINGERPRINT)
    assert len(k_ab) == 32
    assert k_ab != alice.pair_key("alice", "carol", carol.public_bytes(), FINGERPRINT)
    assert k_ab != alice.pair_key("alice", "bob", bob.public_bytes(), "e" * 64)
    assert k_ab != alice.pair_key("alice", "bobby", bob.public_bytes(), FINGERPRINT)
    # The private key round-trips through its raw bytes.
    again = AgreementKey.from_bytes(alice.private_bytes())
    assert again.pair_key("alice", "bob", bob.public_bytes(), FINGERPRINT) == k_ab


@pytest.mark.parametrize("point", [bytes(32), b"\x01" + bytes(31)])
def test_a_low_order_public_key_is_refused_by_type(point: bytes) -> None:
    with pytest.raises(InvalidPeerKeyError, match="low order"):
        AgreementKey.generate().pair_key("alice", "mallory", point, FINGERPRINT)


def test_malformed_keys_and_self_pairs_are_refused() -> None:
    key = AgreementKey.generate()
    with pytest.raises(InvalidPeerKeyError):
        key.pair_key("alice", "bob", b"short", FINGERPRINT)
    with pytest.raises(MaskingRefusedError):
        key.pair_key("alice", "alice", key.public_bytes(), FINGERPRINT)
    with pytest.raises(MalformedDataError):
        AgreementKey.from_bytes(b"\x00" * 31)


def test_masks_are_reproducible_only_with_the_pair_key_and_binding() -> None:
    alice, bob = AgreementKey.generate(), AgreementKey.generate()
    key = alice.pair_key("alice", "bob", bob.public_bytes(), FINGERPRINT)
    same = bob.pair_key("bob", "alice", alice.public_bytes(), FINGERPRINT)
    first = _stream(key)
    for part, again in zip(first, _stream(same), strict=True):
        np.testing.assert_array_equal(part, again)
    other_key = AgreementKey.generate().pair_key("alice", "bob", bob.public_bytes(), FINGERPRINT)
    variants = [
        _stream(other_key),
        _stream(key, round_id=4),
        _stream(key, session="run-2"),
        _stream(key, digest=set_digest(("a", "b", "d"))),
        _stream(key, kind="self"),
        _stream(key, purpose="evaluate"),
        _stream(key, purpose="stats"),
    ]
    for variant in variants:
        # Independent streams agree on about 2^-16 of the 16-bit entries, never on most.
        assert np.mean(variant[0] == first[0]) < 0.01
    values, weights, tags = first
    assert values.min() >= 0 and values.max() < 1 << 16
    assert 0 <= weights[0] < 1 << 32
    assert np.all((tags >= 0) & (tags < SHAPE.tag_modulus))


def test_contributor_sets_are_canonical_and_need_three_distinct_names() -> None:
    assert contributor_set(["c", "a", "b"]) == ("a", "b", "c")
    assert set_digest(("c", "a", "b")) == set_digest(("a", "b", "c"))
    for bad in (["a", "b"], ["a", "a", "b"], ["a", "b", ""]):
        with pytest.raises(MaskingRefusedError):
            contributor_set(bad)
