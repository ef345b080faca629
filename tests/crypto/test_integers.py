"""Exact integer sums through the masked codec: limbs that never lose a carry, fixed point.

The limb arithmetic is checked on many random federations without CKKS (the
masked lanes give each summed limb modulo ``2^B``, played here by reducing the
plain sum), the whole path — integer_update, MaskedRound, aggregate,
decrypt_masked, integer_sum — on a few with real CKKS, including the largest
federation at the extreme values.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crypto
from crypto import (
    INTEGER_BITS,
    AgreementKey,
    IntegrityError,
    MaskedSum,
    NonFiniteInputError,
    OverflowRiskError,
    QuantisedUpdate,
    SecretContext,
    ShapeMismatchError,
    fixed_point,
    from_fixed_point,
    integer_sum,
    integer_update,
)
from crypto.lanes import MaskedCodec

PRESETS = ("masked16", "masked8")
SESSION, ROUND = "run-5", 0
_CONTEXTS: dict[str, SecretContext] = {}


def _context(preset: str) -> SecretContext:
    if preset not in _CONTEXTS:
        _CONTEXTS[preset] = crypto.generate_secret_context(preset)
    return _CONTEXTS[preset]


def _codec(context: SecretContext) -> MaskedCodec:
    codec = context.preset.build_masked_codec()
    assert codec is not None
    return codec


@st.composite
def federations(draw: st.DrawFn, most: int = 16) -> tuple[int, list[list[int]]]:
    """``(bits, values per institution)``: 3..``most`` institutions, one vector length."""
    bits = draw(st.sampled_from([INTEGER_BITS, draw(st.integers(1, 200))]))
    bound = (1 << bits) - 1
    length = draw(st.integers(1, 6))
    vector = st.lists(st.integers(-bound, bound), min_size=length, max_size=length)
    return bits, draw(st.lists(vector, min_size=3, max_size=most))


def _plain_sum(context: SecretContext, updates: list[QuantisedUpdate]) -> MaskedSum:
    """What decrypt_masked returns for these updates: limb sums known only modulo ``2^B``."""
    codec = _codec(context)
    total = sum(update.values for update in updates)
    residues = np.asarray(total) % (1 << codec.value_bits)
    names = tuple(f"bank-{i:02d}" for i in range(len(updates)))
    return MaskedSum(
        updates[0].shapes,
        codec.signed(residues),
        sum(update.weight for update in updates),
        codec.step,
        codec.weight_headroom,
        names,
        codec.integer_limb_bits,
    )


@pytest.mark.parametrize("preset", PRESETS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(federation=federations())
def test_limb_sums_recombine_to_the_exact_sum(
    preset: str, federation: tuple[int, list[list[int]]]
) -> None:
    context = _context(preset)
    bits, vectors = federation
    updates = [integer_update(context, vector, bits=bits) for vector in vectors]
    radix = _codec(context).integer_limb_bits
    for update in updates:
        assert update.weight == 1
        assert update.values.min() >= -(1 << (radix - 1))
        assert update.values.max() < 1 << (radix - 1)
    exact = [sum(column) for column in zip(*vectors, strict=True)]
    assert integer_sum(_plain_sum(context, updates), len(exact)) == exact


def _masked_sum(context: SecretContext, vectors: list[list[int]], bits: int) -> MaskedSum:
    return _open(context, [integer_update(context, vector, bits=bits) for vector in vectors])


def _open(context: SecretContext, updates: list[QuantisedUpdate]) -> MaskedSum:
    names = tuple(f"bank-{i:02d}" for i in range(len(updates)))
    keys = {name: AgreementKey.generate() for name in names}
    public = {name: key.public_bytes() for name, key in keys.items()}
    rounds = [
        crypto.MaskedRound(
            context,
            keys[name],
            name,
            {peer: pk for peer, pk in public.items() if peer != name},
            update,
            session=SESSION,
            round_id=ROUND,
            purpose="stats",
        )
        for name, update in zip(names, updates, strict=True)
    ]
    summed = crypto.aggregate(context.public(), [r.encrypt(names) for r in rounds])
    seeds = {name: r.reveal(names) for name, r in zip(names, rounds, strict=True)}
    return crypto.decrypt_masked(context, summed, self_seeds=seeds, purpose="stats")


@pytest.mark.parametrize("preset", PRESETS)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(federation=federations())
def test_a_masked_sum_of_big_integers_is_exact(
    preset: str, federation: tuple[int, list[list[int]]]
) -> None:
    context = _context(preset)
    bits, vectors = federation
    result = _masked_sum(context, vectors, bits)
    exact = [sum(column) for column in zip(*vectors, strict=True)]
    assert integer_sum(result, len(exact)) == exact
    assert result.total_weight == len(vectors)


@pytest.mark.parametrize("preset", PRESETS)
def test_the_largest_federation_at_the_extremes_sums_exactly(preset: str) -> None:
    context = _context(preset)
    most = _codec(context).max_institutions
    top = (1 << INTEGER_BITS) - 1
    vectors = [[top, -top, top if i % 2 else -top, 0, 1] for i in range(most)]
    result = _masked_sum(context, vectors, INTEGER_BITS)
    assert integer_sum(result, 5) == [most * top, -most * top, 0, 0, most]

    # Every limb at its extreme, in every institution: the lanes still hold the sums.
    radix = _codec(context).integer_limb_bits
    limbs = integer_update(context, [0]).shapes[0][1]
    low, high = -(1 << (radix - 1)), (1 << (radix - 1)) - 1
    extreme = np.array([low] * limbs + [high] * limbs, dtype=np.int64)
    update = QuantisedUpdate(((2, limbs),), extreme, 1)
    expected = [sum(d << (radix * k) for k in range(limbs)) for d in (low, high)]
    assert integer_sum(_open(context, [update] * most), 2) == [most * v for v in expected]


def test_values_beyond_the_bound_and_non_integers_are_refused() -> None:
    context = _context("masked16")
    with pytest.raises(OverflowRiskError):
        integer_update(context, [1 << INTEGER_BITS])
    with pytest.raises(OverflowRiskError):
        integer_update(context, [-(1 << 20)], bits=20)
    assert integer_update(context, [(1 << 20) - 1], bits=20).values.size > 0
    for bad in ([1.0], [True], ["3"]):
        with pytest.raises(TypeError):
            integer_update(context, bad)  # type: ignore[arg-type]
    with pytest.raises(ShapeMismatchError):
        integer_update(context, [])
    with pytest.raises(OverflowRiskError):
        integer_update(context, [1], bits=0)
    lean = crypto.generate_secret_context("lean")
    with pytest.raises(OverflowRiskError):
        integer_update(lean, [1])


def test_a_sum_that_is_not_one_of_integers_or_miscounts_its_contributors_is_refused() -> None:
    context = _context("masked16")
    updates = [integer_update(context, [5, -7]) for _ in range(3)]
    genuine = _plain_sum(context, updates)
    assert integer_sum(genuine, 2) == [15, -21]
    with pytest.raises(ShapeMismatchError):
        integer_sum(genuine, 3)
    with pytest.raises(ShapeMismatchError):  # a training sum
        integer_sum(replace(genuine, shapes=((22,),)), 22)
    with pytest.raises(ShapeMismatchError):  # not from decrypt_masked
        integer_sum(replace(genuine, integer_limb_bits=0), 2)
    with pytest.raises(IntegrityError):  # one contributor declared weight 2
        integer_sum(replace(genuine, total_weight=4), 2)


def test_fixed_point_rounds_half_to_even_and_refuses_what_it_cannot_hold() -> None:
    halves = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5])
    assert fixed_point(halves, 0) == [0, 2, 2, 0, -2, -2]
    assert fixed_point(np.array([[0.25], [-0.375]]), 3) == [2, -3]
    assert fixed_point(np.array([1e300]), 0) == [int(1e300)]
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(NonFiniteInputError):
            fixed_point(np.array([1.0, bad]), 8)
    with pytest.raises(OverflowRiskError):
        fixed_point(np.array([1e300]), 256)
    with pytest.raises(OverflowRiskError):
        fixed_point(np.array([1.0]), -1)
    with pytest.raises(OverflowRiskError):
        from_fixed_point([1 << 2000], 8)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.floats(-1e12, 1e12, allow_nan=False), min_size=1, max_size=8),
    frac_bits=st.integers(0, 64),
)
def test_fixed_point_round_trips_within_half_a_unit(values: list[float], frac_bits: int) -> None:
    integers = fixed_point(np.array(values), frac_bits)
    assert all(type(v) is int for v in integers)
    unit = Fraction(1, 1 << frac_bits)
    for value, integer in zip(values, integers, strict=True):
        assert abs(integer * unit - Fraction(value)) <= unit / 2  # exactly, not in floats
    # Back: each integer over 2^frac_bits, correctly rounded to a double.
    back = from_fixed_point(integers, frac_bits)
    assert back.tolist() == [float(integer * unit) for integer in integers]
