"""The aggregate check: the check key, contributors, check slots and verification.

The attacks themselves (forgeries built with the public context only) are in
``tests/security/test_attack_crypto_integrity.py``; here each part of the
mechanism is held to what :mod:`crypto.check` states: where the key lives,
what an update's header carries, what ``aggregate`` refuses, what the verifier
refuses and in which order, and the algebra (linearity, binding, detection).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import secrets
import struct
from pathlib import Path

import numpy as np
import pytest

from crypto import (
    PRESETS,
    ContextMismatchError,
    EncryptedUpdate,
    HeaderRefusedError,
    IntegrityError,
    MalformedDataError,
    PublicContext,
    SecretContext,
    SecretKeyPresentError,
    aggregate,
    decrypt_average,
    decrypt_sums,
    encrypt_sums,
    encrypt_update,
    generate_secret_context,
    load_context,
)
from crypto.check import (
    CHECK_LANES,
    Binding,
    CheckLayout,
    RoundCheck,
    Segment,
    _coefficients,
    valid_nonce,
)
from crypto.constants import CONTEXT_MAGIC, UPDATE_MAGIC
from crypto.encrypted import AVERAGE, SUM
from crypto.integrity import round_check
from crypto.primitives import largest_prime_below
from crypto.wire import pack_envelope, unpack_envelope

PRESET_NAMES = ("standard", "lean", "packed")

#: A fresh institution name for every update (the check refuses a name twice in a sum).
NAMES = (f"institution-{i}" for i in itertools.count())


def total_for(preset_name: str) -> int | None:
    return 1000 if PRESETS[preset_name].codec == "packed" else None


def one_update(
    secret: SecretContext, rng: np.random.Generator, *, name: str | None = None, **kwargs: object
) -> EncryptedUpdate:
    total = 1000 if secret.preset.codec == "packed" else None
    return encrypt_update(
        secret,
        [rng.uniform(-0.9, 0.9, size=(3, 4)), rng.uniform(-0.9, 0.9, size=5)],
        int(rng.integers(1, 100)),
        contributor=name or next(NAMES),
        total_weight=total,
        **kwargs,  # type: ignore[arg-type]
    )


def split_context(data: bytes) -> tuple[dict[str, object], list[bytes]]:
    return unpack_envelope(CONTEXT_MAGIC, data, max_blobs=1, max_blob_bytes=1 << 26)


def split_update(data: bytes) -> tuple[dict[str, object], list[bytes]]:
    return unpack_envelope(UPDATE_MAGIC, data, max_blobs=64, max_blob_bytes=1 << 22)


# --- the check key -------------------------------------------------------------------------------


def test_the_check_key_is_in_the_secret_file_only(
    lean_secret: SecretContext, lean_public: PublicContext, tmp_path: Path
) -> None:
    key = lean_secret.check_key
    assert isinstance(key, bytes) and len(key) == 32
    secret_bytes = lean_secret.to_bytes()
    assert key.hex().encode() in secret_bytes
    for public_bytes in (lean_public.to_bytes(), lean_secret.public().to_bytes()):
        assert key not in public_bytes and key.hex().encode() not in public_bytes
    lean_public.save(tmp_path / "public.ctx")
    assert key.hex().encode() not in (tmp_path / "public.ctx").read_bytes()
    assert key.hex() not in repr(lean_secret)
    assert SecretContext.from_bytes(secret_bytes).check_key == key
    reloaded = load_context(lean_secret.save(tmp_path / "secret.ctx"))
    assert isinstance(reloaded, SecretContext) and reloaded.check_key == key


def test_each_key_generation_draws_a_new_check_key() -> None:
    keys = {generate_secret_context("lean").check_key for _ in range(3)}
    assert len(keys) == 3


@pytest.mark.parametrize("kind", ["secret", "public"])
def test_a_context_file_of_the_old_format_names_the_remedy(
    kind: str, lean_secret: SecretContext, tmp_path: Path
) -> None:
    current = lean_secret.to_bytes() if kind == "secret" else lean_secret.public().to_bytes()
    old = current[:4] + struct.pack(">H", 1) + current[6:]
    loader = SecretContext if kind == "secret" else PublicContext
    with pytest.raises(MalformedDataError, match="regenerate the federation kit"):
        loader.from_bytes(old)
    (tmp_path / "old.ctx").write_bytes(old)
    with pytest.raises(MalformedDataError, match="regenerate the federation kit"):
        load_context(tmp_path / "old.ctx")


def test_a_secret_file_without_its_check_key_is_refused(lean_secret: SecretContext) -> None:
    header, blobs = split_context(lean_secret.to_bytes())
    del header["check_key"]
    with pytest.raises(MalformedDataError, match="check key"):
        SecretContext.from_bytes(pack_envelope(CONTEXT_MAGIC, header, blobs))
    for wrong in ("00" * 31, "zz" * 32, 7):
        header["check_key"] = wrong
        with pytest.raises(MalformedDataError):
            SecretContext.from_bytes(pack_envelope(CONTEXT_MAGIC, header, blobs))


def test_a_public_file_carrying_a_check_key_is_refused(
    lean_secret: SecretContext, lean_public: PublicContext
) -> None:
    header, blobs = split_context(lean_public.to_bytes())
    header["check_key"] = lean_secret.check_key.hex()
    with pytest.raises(SecretKeyPresentError):
        PublicContext.from_bytes(pack_envelope(CONTEXT_MAGIC, header, blobs))


# --- contributors ---------------------------------------------------------------------------------


def test_the_contributor_is_required_and_checked(
    lean_secret: SecretContext, rng: np.random.Generator
) -> None:
    values = [rng.normal(size=4)]
    with pytest.raises(TypeError):
        encrypt_update(lean_secret, values, 3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        encrypt_sums(lean_secret, values)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        encrypt_update(lean_secret, values, 3, contributor=7)  # type: ignore[arg-type]
    for bad in ("", "x" * 257):
        with pytest.raises(ValueError):
            encrypt_update(lean_secret, values, 3, contributor=bad)
        with pytest.raises(ValueError):
            encrypt_sums(lean_secret, values, contributor=bad)


def test_every_update_names_its_contributor_with_a_fresh_nonce(
    lean_secret: SecretContext, lean_public: PublicContext, rng: np.random.Generator
) -> None:
    first = one_update(lean_secret, rng, name="bank-a")
    second = one_update(lean_secret, rng, name="bank-a")
    stats = encrypt_sums(lean_secret, [rng.normal(size=3)], contributor="bank-a")
    nonces = {u.contributors[0][1] for u in (first, second, stats)}
    assert len(nonces) == 3 and all(valid_nonce(nonce) for nonce in nonces)
    assert first.contributor_names == ("bank-a",) and first.count == 1
    header, _ = split_update(first.to_bytes())
    assert header["contributors"] == [["bank-a", first.contributors[0][1]]]
    parsed = EncryptedUpdate.from_bytes(lean_public, first.to_bytes())
    assert parsed.contributors == first.contributors


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
def test_an_update_carries_its_check_slots_after_the_payload(
    preset_name: str, secret_contexts: dict[str, SecretContext], rng: np.random.Generator
) -> None:
    secret = secret_contexts[preset_name]
    update = one_update(secret, rng)
    for encoding, made in (
        (AVERAGE, update),
        (SUM, encrypt_sums(secret, [rng.normal(size=17)], contributor="x")),
    ):
        codec = secret.preset.build_sum_codec() if encoding == SUM else secret.preset.build_codec()
        payload = codec.slot_count(made.n_values)
        assert sum(v.size() for v in made.vectors) == payload + CHECK_LANES
        slots = np.concatenate(
            [np.asarray(v.decrypt(secret.tenseal_context.secret_key())) for v in made.vectors]
        )
        modulus = largest_prime_below(1 << secret.preset.build_sum_codec().limb_bits)
        checks = slots[payload:]
        assert np.all(checks > -0.01) and np.all(checks < modulus + 0.01)


def test_aggregate_lists_every_contributor_in_order(
    lean_secret: SecretContext, lean_public: PublicContext, rng: np.random.Generator
) -> None:
    updates = [one_update(lean_secret, rng, name=name) for name in ("c", "a", "b")]
    pair = aggregate(lean_public, updates[:2])
    summed = aggregate(lean_public, [pair, updates[2]])
    assert summed.contributor_names == ("c", "a", "b") and summed.count == 3
    assert summed.contributors == tuple(u.contributors[0] for u in updates)
    parsed = EncryptedUpdate.from_bytes(lean_secret, summed.to_bytes())
    assert parsed.contributors == summed.contributors
    _, weight = decrypt_average(lean_secret, parsed, min_contributors=3)
    assert weight > 0


def test_aggregate_refuses_a_repeated_name_or_nonce(
    lean_secret: SecretContext, lean_public: PublicContext, rng: np.random.Generator
) -> None:
    a, b = one_update(lean_secret, rng, name="a"), one_update(lean_secret, rng, name="b")
    a_again = one_update(lean_secret, rng, name="a")
    with pytest.raises(IntegrityError, match="a"):
        aggregate(lean_public, [a, b, a_again])
    same_nonce = dataclasses.replace(b, contributors=(("b2", a.contributors[0][1]),))
    with pytest.raises(IntegrityError):
        aggregate(lean_public, [a, same_nonce])
    miscounted = dataclasses.replace(b, count=2)
    with pytest.raises(MalformedDataError):
        aggregate(lean_public, [a, miscounted])


@pytest.mark.parametrize(
    "contributors",
    [
        "bank-a",
        [["bank-a"]],
        [["bank-a", "0" * 32, "extra"]],
        [["", "0" * 32]],
        [[7, "0" * 32]],
        [["x" * 257, "0" * 32]],
        [["bank-a", "0" * 31]],
        [["bank-a", "G" * 32]],
        [["bank-a", "A" * 32]],
        [["bank-a", 12345]],
        [],
        [["bank-a", "0" * 32], ["bank-b", "1" * 32]],  # two listed, count 1
    ],
)
def test_a_header_with_malformed_contributors_is_refused(
    contributors: object, lean_public: PublicContext, lean_update_bytes: bytes
) -> None:
    header, blobs = split_update(lean_update_bytes)
    header["contributors"] = contributors
    with pytest.raises(MalformedDataError):
        EncryptedUpdate.from_bytes(lean_public, pack_envelope(UPDATE_MAGIC, header, blobs))


# --- verification --------------------------------------------------------------------------------


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
def test_min_contributors_is_enforced_before_decryption(
    preset_name: str,
    secret_contexts: dict[str, SecretContext],
    public_contexts: dict[str, PublicContext],
    rng: np.random.Generator,
) -> None:
    secret, public = secret_contexts[preset_name], public_contexts[preset_name]
    summed = aggregate(public, [one_update(secret, rng) for _ in range(3)])
    for minimum in (1, 2, 3):
        decrypt_average(
            secret, summed, total_weight=total_for(preset_name), min_contributors=minimum
        )
    with pytest.raises(IntegrityError) as caught:
        decrypt_average(secret, summed, total_weight=total_for(preset_name), min_contributors=4)
    assert not any(ch.isdigit() for ch in str(caught.value))
    # Decided from the header alone: a refusal no key decides (crossfed does not count it).
    assert isinstance(caught.value, HeaderRefusedError)
    stats = aggregate(
        public, [encrypt_sums(secret, [np.arange(4.0)], contributor=next(NAMES)) for _ in range(2)]
    )
    sums, count = decrypt_sums(secret, stats, min_contributors=2)
    assert count == 2
    bound = secret.preset.build_sum_codec().error_bound(2, 2.0)
    np.testing.assert_allclose(sums[0], 2 * np.arange(4.0), atol=bound)
    with pytest.raises(IntegrityError):
        decrypt_sums(secret, stats, min_contributors=3)


def test_min_contributors_must_be_a_positive_integer(
    lean_secret: SecretContext, rng: np.random.Generator
) -> None:
    update = one_update(lean_secret, rng)
    for bad in (0, -1):
        with pytest.raises(ValueError):
            decrypt_average(lean_secret, update, min_contributors=bad)
    for wrong in (True, 1.0, "1"):
        with pytest.raises(TypeError):
            decrypt_average(lean_secret, update, min_contributors=wrong)  # type: ignore[arg-type]


def test_contributor_lists_an_institution_would_refuse(
    lean_secret: SecretContext, lean_public: PublicContext, rng: np.random.Generator
) -> None:
    summed = aggregate(lean_public, [one_update(lean_secret, rng) for _ in range(2)])
    (a, na), (b, nb) = summed.contributors
    for contributors, count in (
        (((a, na), (a, nb)), 2),  # a name twice
        (((a, na), (b, na)), 2),  # a nonce twice
        (((a, na), (b, "bad")), 2),  # a malformed nonce
        (((a, na), (b, nb)), 3),  # count disagrees
        ((), 2),
    ):
        forged = dataclasses.replace(summed, contributors=contributors, count=count)
        with pytest.raises(IntegrityError):
            decrypt_average(lean_secret, forged)


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
def test_a_forged_weight_fails_the_check_before_any_decoding_error(
    preset_name: str,
    secret_contexts: dict[str, SecretContext],
    public_contexts: dict[str, PublicContext],
    rng: np.random.Generator,
) -> None:
    """A weight pushed to zero would raise DecryptionError in decode: the check comes first."""
    secret, public = secret_contexts[preset_name], public_contexts[preset_name]
    summed = aggregate(public, [one_update(secret, rng) for _ in range(2)])
    weight_slot = secret.preset.build_codec().slot_count(summed.n_values) - 1
    vector = summed.vectors[0]
    plain = [0.0] * vector.size()
    plain[weight_slot] = -1e6
    forged = dataclasses.replace(summed, vectors=(vector + plain, *summed.vectors[1:]))
    with pytest.raises(IntegrityError):
        decrypt_average(secret, forged, total_weight=total_for(preset_name))


# --- the algebra ----------------------------------------------------------------------------------


LAYOUT = CheckLayout.build(
    (Segment(300, 2.0**26, noisy=True), Segment(200, 2.0**20, noisy=False)),
    modulus_bits=24,
    slot_bound=2.0**26,
    scale_bits=25,
)


def binding(**changes: object) -> Binding:
    base = Binding("f" * 64, "run", 3, AVERAGE, ((500,),), 501, LAYOUT.entries)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def entries(rng: np.random.Generator) -> np.ndarray:
    noisy = rng.uniform(-1e3, 1e3, 300)
    exact = rng.integers(-(2**19), 2**19, 200).astype(np.float64)
    return np.concatenate([noisy, exact])


def test_check_values_add_up_exactly_for_genuine_sums(rng: np.random.Generator) -> None:
    check = RoundCheck(secrets.token_bytes(32), binding(), LAYOUT)
    parts = [entries(rng) for _ in range(5)]
    who = [(f"bank-{i}", secrets.token_hex(16)) for i in range(5)]
    tags = np.sum(
        [check.tags(m, name, nonce) for m, (name, nonce) in zip(parts, who, strict=True)], axis=0
    )
    total = np.sum(parts, axis=0)
    residuals, tolerances = check.residuals(total, tags, who)
    assert np.all(np.abs(residuals) < 1e-6) and np.all(tolerances < 1e-2)
    # The same values declared with one contributor fewer, more, or another: uniform modulo M.
    for declared in (who[:4], [*who, ("bank-x", secrets.token_hex(16))], [*who[:4], who[0]]):
        residuals, tolerances = check.residuals(total, tags, declared)
        assert np.all(np.abs(residuals) > tolerances)


def test_the_check_is_bound_to_every_field_and_key(rng: np.random.Generator) -> None:
    key, values = secrets.token_bytes(32), entries(rng)
    base = RoundCheck(key, binding(), LAYOUT).tags(values, "bank-a", "0" * 32)
    others = [
        RoundCheck(secrets.token_bytes(32), binding(), LAYOUT),
        *(
            RoundCheck(key, binding(**change), LAYOUT)
            for change in (
                {"fingerprint": "e" * 64},
                {"session": "run2"},
                {"round_id": 4},
                {"encoding": SUM},
                {"shapes": ((20, 25),)},
                {"payload_slots": 502},
                {"caller": b"another start"},
            )
        ),
    ]
    for check in others:
        assert np.all(check.tags(values, "bank-a", "0" * 32) != base)
    same = RoundCheck(key, binding(), LAYOUT)
    assert np.array_equal(same.tags(values, "bank-a", "0" * 32), base)
    assert np.all(same.tags(values, "bank-b", "0" * 32) != base)
    assert np.all(same.tags(values, "bank-a", "1" * 32) != base)


def test_a_shift_at_the_stated_threshold_is_caught_as_stated(rng: np.random.Generator) -> None:
    """Detection: a noisy entry shifted by ``sqrt(10) tol / factor`` passes all four lanes
    with probability at most 1 % over keys; twice that, at most 1/16 %. Any change of an
    exact entry below ``M`` passes with probability about ``((2 tol + 1) / M)^4``."""
    count, trials = 3, 400
    noisy_passed = doubled_passed = exact_passed = 0
    for _ in range(trials):
        check = RoundCheck(secrets.token_bytes(32), binding(), LAYOUT)
        values = entries(rng)
        who = [("bank-a", secrets.token_hex(16))]
        tags = check.tags(values, *who[0])
        _, norms = check._dots(values)
        tol = max(check.tolerance(count, norm) for norm in norms)
        threshold = 100 ** (1 / CHECK_LANES) * tol / LAYOUT.factor(LAYOUT.segments[0])
        for factor, j in ((1.0, "noisy"), (2.0, "doubled"), (1.0, "exact")):
            shifted = values.copy()
            if j == "exact":
                shifted[300 + int(rng.integers(0, 200))] += int(rng.choice([-1, 1, 2**20]))
            else:
                shifted[int(rng.integers(0, 300))] += factor * threshold
            residuals, _ = check.residuals(shifted, tags, who)
            passed = bool(np.all(np.abs(residuals) <= tol))
            noisy_passed += passed and j == "noisy"
            doubled_passed += passed and j == "doubled"
            exact_passed += passed and j == "exact"
    assert noisy_passed <= 14  # at most 4 expected (1 %): 14 or more has odds below 1e-4
    assert doubled_passed <= 4  # at most 0.25 expected (1/16 %)
    assert exact_passed == 0


def test_the_modulus_is_the_largest_prime_below_a_power_of_two() -> None:
    assert [(1 << b) - largest_prime_below(1 << b) for b in (16, 21, 24, 32)] == [15, 9, 3, 5]
    for bits in (16, 21, 24, 32):
        m = largest_prime_below(1 << bits)
        assert all(m % p for p in range(2, 1000))


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
@pytest.mark.parametrize("encoding", [AVERAGE, SUM])
def test_check_slots_fit_the_headroom_of_every_preset(preset_name: str, encoding: str) -> None:
    """``max_institutions`` check values below ``M`` sum inside the capacity (2^31, 2^28,
    2^39 against 2^33, 2^50, 2^41), and the check slot's own rounding stays below the noise."""
    preset = PRESETS[preset_name]
    bits = preset.build_sum_codec().limb_bits
    assert 16 <= bits <= 32
    assert math.log2(preset.max_institutions) + bits < preset.params.capacity_bits
    assert 2.0 ** (bits - 52) <= 2.0 ** (9 - preset.params.scale_bits)
    codec = preset.build_sum_codec() if encoding == SUM else preset.build_codec()
    for segment in codec.mac_segments(1000):
        assert segment.bound <= codec.slot_bound


# --- no key-independent period (red team F2) ---------------------------------------------------


def test_the_coefficients_are_uniform_on_the_multiples_of_two_to_the_minus_51() -> None:
    high, low = _coefficients(secrets.token_bytes(8 * 100_000))
    units = (high + low) * 2.0**51
    assert np.array_equal(units, np.round(units))  # multiples of 2^-51, exactly
    assert np.all(np.abs(high + low) <= 1.0)
    assert np.mean(units % 2 == 1) == pytest.approx(0.5, abs=0.01)  # the finest step is used
    for half in (high, low):  # each half has at most 26 significant bits: exact products
        mantissa, _ = np.frexp(half)
        assert np.array_equal(mantissa * 2.0**26, np.round(mantissa * 2.0**26))


def test_no_shift_the_slots_can_hold_passes_for_every_key() -> None:
    """Before: ``r_j`` had 26-bit granularity, so ``d = M 2^25 / f_j`` passed every lane for
    every key (on ``standard`` it fits a slot). Now no ``d = M 2^k / f_j`` with ``k <= 51``
    passes for any of 40 keys, while the range check refuses anything larger."""
    preset = PRESETS["standard"]
    codec = preset.build_codec()
    layout = CheckLayout.build(
        codec.mac_segments(5),
        modulus_bits=preset.build_sum_codec().limb_bits,
        slot_bound=codec.slot_bound,
        scale_bits=preset.params.scale_bits,
    )
    bound = Binding("f" * 64, "run", 3, AVERAGE, ((5,),), 6, layout.entries)
    values = codec.encode(
        np.array([0.71, 0.35, 0.18, 0.52, 0.64]), 250, None, np.random.default_rng(0)
    )
    who = [("bank-a", secrets.token_hex(16))]
    factor = layout.factor(layout.segments[0])
    checks = [RoundCheck(secrets.token_bytes(32), bound, layout) for _ in range(40)]
    tags = [check.tags(values, *who[0]) for check in checks]
    for bits in range(52):
        shifted = values.copy()
        shifted[0] += layout.modulus * 2.0**bits / factor
        passed = 0
        for check, tag in zip(checks, tags, strict=True):
            residuals, tolerances = check.residuals(shifted, tag, who)
            passed += bool(np.all(np.abs(residuals) <= tolerances))
        assert passed == 0, bits
    # 2^51 periods of M / f: beyond the 128 x slot_bound a sum may hold.
    assert layout.modulus * 2.0**51 / factor > 2 * 128 * codec.slot_bound


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
def test_a_slot_beyond_what_its_contributors_can_hold_is_refused(
    preset_name: str, secret_contexts: dict[str, SecretContext]
) -> None:
    """Even with a matching check value (a key holder forged it), a payload slot beyond
    ``count x slot_bound`` is refused before anything is decoded."""
    import tenseal as ts

    secret = secret_contexts[preset_name]
    codec = secret.preset.build_codec()
    honest = one_update(secret, np.random.default_rng(1))
    payload = codec.slot_count(honest.n_values)
    slots = np.zeros(payload)
    slots[0] = 3.0 * codec.slot_bound  # one contribution, three times what it can hold
    slots[-1] = 10.0  # a weight
    check = round_check(
        secret, codec, encoding=AVERAGE, shapes=honest.shapes, session="", round_id=0
    )
    nonce = secrets.token_hex(16)
    tags = check.tags(codec.mac_values(slots, honest.n_values), "bank-a", nonce)
    vector = ts.ckks_vector(secret.tenseal_context, np.concatenate([slots, tags]).tolist())
    forged = dataclasses.replace(
        honest, vectors=(vector,), contributors=(("bank-a", nonce),), count=1
    )
    with pytest.raises(IntegrityError):
        decrypt_average(secret, forged, total_weight=total_for(preset_name))
    # The same forgery inside the range passes: the range check is what refused it.
    slots[0] = 0.5 * codec.slot_bound
    tags = check.tags(codec.mac_values(slots, honest.n_values), "bank-a", nonce)
    vector = ts.ckks_vector(secret.tenseal_context, np.concatenate([slots, tags]).tolist())
    inside = dataclasses.replace(forged, vectors=(vector,))
    decrypt_average(secret, inside, total_weight=total_for(preset_name))


# --- the caller's binding ----------------------------------------------------------------------


def test_a_binding_travels_in_the_header_and_is_held_by_the_check(
    lean_secret: SecretContext, lean_public: PublicContext, rng: np.random.Generator
) -> None:
    start, other = b"\x01" * 32, b"\x02" * 32
    bound = [one_update(lean_secret, rng, binding=start) for _ in range(3)]
    assert all(update.binding == start for update in bound)
    parsed = [EncryptedUpdate.from_bytes(lean_public, u.to_bytes()) for u in bound]
    summed = aggregate(lean_public, parsed)
    assert summed.binding == start
    decrypt_average(lean_secret, summed, binding=start)  # as expected
    decrypt_average(lean_secret, summed)  # None: as the header declares
    with pytest.raises(HeaderRefusedError):  # from the header, before decrypting anything
        decrypt_average(lean_secret, summed, binding=other)
    with pytest.raises(IntegrityError) as caught:  # the header lies: the check value refuses
        decrypt_average(lean_secret, dataclasses.replace(summed, binding=other), binding=other)
    assert not isinstance(caught.value, HeaderRefusedError)  # that one is the key's answer
    # Updates made from different starts are not summed; by hand, the sum never verifies.
    mixed = [*bound[:2], one_update(lean_secret, rng, binding=other)]
    with pytest.raises(ContextMismatchError):
        aggregate(lean_public, mixed)
    vectors = [a + b + c for a, b, c in zip(*(u.vectors for u in mixed), strict=True)]
    by_hand = dataclasses.replace(
        summed,
        vectors=tuple(vectors),
        contributors=tuple(pair for u in mixed for pair in u.contributors),
    )
    for declared in (start, other):
        with pytest.raises(IntegrityError):
            decrypt_average(lean_secret, dataclasses.replace(by_hand, binding=declared))


def test_bindings_are_bytes_of_bounded_length(
    lean_secret: SecretContext, rng: np.random.Generator
) -> None:
    with pytest.raises(TypeError):
        one_update(lean_secret, rng, binding="a digest")
    with pytest.raises(ValueError, match="at most"):
        one_update(lean_secret, rng, binding=bytes(65))
    sums = encrypt_sums(lean_secret, [np.ones(3)], contributor="bank-a", binding=bytes(64))
    assert sums.binding == bytes(64)
    with pytest.raises(TypeError):
        decrypt_sums(lean_secret, sums, binding="00" * 64)  # type: ignore[arg-type]
    assert decrypt_sums(lean_secret, sums, binding=bytes(64))[1] == 1


@pytest.mark.parametrize("written", ["AB", "zz", "a", "00" * 65, 7, None])
def test_a_header_with_a_malformed_binding_is_refused(
    written: object, lean_public: PublicContext, lean_update_bytes: bytes
) -> None:
    header, blobs = split_update(lean_update_bytes)
    data = pack_envelope(UPDATE_MAGIC, {**header, "binding": written}, blobs)
    with pytest.raises(MalformedDataError):
        EncryptedUpdate.from_bytes(lean_public, data)
    del header["binding"]  # an update of the format before bindings
    with pytest.raises(MalformedDataError):
        EncryptedUpdate.from_bytes(lean_public, pack_envelope(UPDATE_MAGIC, header, blobs))
