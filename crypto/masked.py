"""Masked updates: no single party, nor the aggregator with one institution, reads one.

All institutions share one CKKS key, so encryption alone hides an update only
from the aggregator. Under it, every quantised update is masked (pairwise masks
that cancel in the sum, and a self mask; :mod:`crypto.masks`), so a ciphertext
decrypted alone, or stripped of every mask a colluding institution can compute,
is uniform modulo ``2^B``. The recipe, per run and round:

1. An institution quantises once: :func:`quantise_update` (its weighted,
   clipped delta and its example count; :class:`~crypto.lanes.MaskedCodec`).
2. It opens a :class:`MaskedRound` and, for the contributor set ``S`` the
   aggregator declares, sends :meth:`MaskedRound.encrypt` ``(S)``. If a member
   of ``S`` vanishes, the aggregator declares the survivors ``S'`` and each
   sends ``encrypt(S')``: the same quantised update under fresh masks.
3. The aggregator sums the replies of one set (:func:`crypto.aggregate`) and
   asks each member for its self-mask seed of that set,
   :meth:`MaskedRound.reveal` ``(S)``: given for one set per round only, so
   the aggregator and a colluding institution can never open two sums that
   differ by one institution (``S`` and ``S'``).
4. Institutions decrypt with :func:`decrypt_masked`: integers only, verified
   against the masked check values (:meth:`crypto.check.RoundCheck.exact_tags`)
   to be exactly this round's sum of the declared contributors, then
   :meth:`MaskedSum.average` gives FedAvg's average delta.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import tenseal as ts

from crypto.check import CHECK_LANES, NONCE_BYTES, RoundCheck
from crypto.encrypted import MASKED, EncryptedUpdate, decrypted_slots
from crypto.errors import (
    ContextMismatchError,
    IntegrityError,
    InvalidWeightError,
    MaskingRefusedError,
    NonFiniteInputError,
    OverflowRiskError,
    SecretKeyRequiredError,
    ShapeMismatchError,
)
from crypto.integrity import round_check, valid_binding
from crypto.keys import SecretContext
from crypto.lanes import WEIGHT_BITS, MaskedCodec
from crypto.masks import (
    MIN_CONTRIBUTORS,
    AgreementKey,
    MaskShape,
    contributor_set,
    mask_entries,
    set_digest,
)

__all__ = ["MaskedRound", "MaskedSum", "QuantisedUpdate", "decrypt_masked", "quantise_update"]

Shapes = tuple[tuple[int, ...], ...]

_REFUSED = "aggregate refused: it is not exactly this round's sum of its declared contributors"


@dataclass(frozen=True)
class QuantisedUpdate:
    """One institution's update for one round, quantised once (signed integers).

    Keep it for the whole round: a re-request after a dropout re-sends these
    same integers under new masks; two different quantisations of one round
    would let their difference, rounding noise, be read.
    """

    shapes: Shapes
    values: np.ndarray
    weight: int


@dataclass(frozen=True)
class MaskedSum:
    """A verified, unmasked sum: integers only.

    Attributes
    ----------
    shapes:
        Array shapes.
    values:
        ``sum_i q_i``, the summed signed integers.
    total_weight:
        ``sum_i n_i``, the summed example counts.
    step:
        The value of one integer unit (:attr:`~crypto.lanes.MaskedCodec.step`).
    weight_headroom:
        ``h``: how far the summed count may exceed the normaliser
        (:attr:`~crypto.lanes.MaskedCodec.weight_headroom`).
    """

    shapes: Shapes
    values: np.ndarray
    total_weight: int
    step: float
    weight_headroom: int = 2

    def average(self, normaliser: int) -> list[np.ndarray]:
        """FedAvg's average delta, ``sum(q) step N / max(sum(n), N / h)``, for the normaliser used.

        ``sum(n)`` is what the contributors *declared*: one malicious
        institution can declare any count and tag it consistently. Dividing by
        it unguarded would let a count that makes ``sum(n)`` tiny multiply the
        average a thousandfold. So a total above ``h N`` (``h`` the codec's
        weight headroom: the honest sum could have wrapped) is refused, and the
        divisor is at least ``N / h``: a declared count can scale the average
        by at most ``h``. An honest set whose counts sum below ``N / h`` (a few
        small institutions) moves the model by a proportionally smaller step.

        Raises
        ------
        InvalidWeightError
            ``normaliser`` is not a positive integer.
        IntegrityError
            The summed count exceeds ``h`` times the normaliser.
        """
        if isinstance(normaliser, bool) or not isinstance(normaliser, int) or normaliser < 1:
            raise InvalidWeightError(f"normaliser must be a positive integer, got {normaliser!r}")
        if self.total_weight > self.weight_headroom * normaliser:
            raise IntegrityError(_REFUSED)
        divisor = max(self.total_weight, normaliser / self.weight_headroom)
        flat = self.values.astype(np.float64) * (self.step * normaliser / divisor)
        arrays, offset = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            arrays.append(flat[offset : offset + size].reshape(shape))
            offset += size
        return arrays


def quantise_update(
    context: SecretContext, arrays: Sequence[np.ndarray], weight: int, *, normaliser: int
) -> QuantisedUpdate:
    """Clip, weight by ``weight / normaliser`` and quantise a delta (see :mod:`crypto.lanes`).

    Raises
    ------
    SecretKeyRequiredError
        ``context`` is public.
    ShapeMismatchError, NonFiniteInputError
        No arrays, or NaN or infinity in them.
    InvalidWeightError
        ``weight`` or ``normaliser`` out of range.
    """
    codec = _codec(context)
    if not arrays:
        raise ShapeMismatchError("an update needs at least one array")
    shapes = tuple(tuple(int(d) for d in np.shape(a)) for a in arrays)
    flat = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays])
    if not np.all(np.isfinite(flat)):
        raise NonFiniteInputError("update holds NaN or infinite values; refusing to quantise")
    return QuantisedUpdate(shapes, codec.quantise(flat, weight, normaliser), int(weight))


class MaskedRound:
    """One institution's masked contributions to one (run, round).

    Parameters
    ----------
    context:
        The federation's secret context (a masked preset).
    agreement:
        This institution's agreement private key.
    name:
        This institution's name, as in every kit.
    peers:
        Agreement public keys of the other institutions, by name.
    update:
        This round's quantised update (:func:`quantise_update`).
    session, round_id, binding:
        The run, the round and the caller's binding (crossfed: a digest of
        the model the institution started from), as for
        :func:`crypto.encrypt_update`.
    """

    def __init__(
        self,
        context: SecretContext,
        agreement: AgreementKey,
        name: str,
        peers: Mapping[str, bytes],
        update: QuantisedUpdate,
        *,
        session: str,
        round_id: int,
        binding: bytes = b"",
    ) -> None:
        self._codec = _codec(context)
        if round_id < 0 or len(session) > 256 or not valid_binding(binding):
            raise ContextMismatchError("invalid round, run identifier or binding")
        _check_update(self._codec, update)
        _check_peers(agreement, name, peers)
        self._context = context
        self._agreement = agreement
        self._name = name
        self._peers = dict(peers)
        self._update = update
        self._session = session
        self._round_id = round_id
        self._binding = binding
        self._nonce = secrets.token_bytes(NONCE_BYTES).hex()
        check = _check(context, self._codec, update.shapes, session, round_id, binding)
        entries = np.append(update.values, update.weight)
        self._tags = check.exact_tags(entries, name, self._nonce)
        self._pair_keys: dict[str, bytes] = {}
        self._seeds: dict[tuple[str, ...], bytes] = {}
        self._revealed: tuple[str, ...] | None = None

    def encrypt(self, contributors: Sequence[str]) -> EncryptedUpdate:
        """This round's update masked for the contributor set ``contributors``.

        Raises
        ------
        MaskingRefusedError
            Fewer than three contributors, a repeated name, this institution
            not among them, a peer without an agreement key, or a seed already
            revealed for another set this round.
        InvalidPeerKeyError
            A peer's agreement key is of low order.
        """
        members = self._members(contributors)
        if self._revealed is not None and self._revealed != members:
            raise MaskingRefusedError("this round's self mask was revealed for another set")
        seed = self._seeds.setdefault(members, secrets.token_bytes(32))
        digest = set_digest(members)
        shape = self._shape()
        values = self._update.values.copy()
        weight = np.array([self._update.weight], dtype=np.int64)
        tags = self._tags.copy()
        for peer in members:
            if peer == self._name:
                continue
            key = self._pair_key(peer)
            masks = mask_entries(
                key,
                shape,
                session=self._session,
                round_id=self._round_id,
                digest=digest,
                purpose="pair",
            )
            sign = 1 if self._name < peer else -1
            values, weight, tags = (
                values + sign * masks[0],
                weight + sign * masks[1],
                tags + sign * masks[2],
            )
        own = mask_entries(
            seed,
            shape,
            session=self._session,
            round_id=self._round_id,
            digest=digest,
            purpose="self",
        )
        values = (values + own[0]) % (1 << self._codec.value_bits)
        weight = (weight + own[1]) % (1 << WEIGHT_BITS)
        tags = (tags + own[2]) % shape.tag_modulus
        slots = self._codec.pack(values, int(weight[0]), tags)
        step = self._context.preset.params.slots
        vectors = tuple(
            ts.ckks_vector(self._context.tenseal_context, slots[start : start + step])
            for start in range(0, slots.size, step)
        )
        return EncryptedUpdate(
            self._context.fingerprint,
            self._round_id,
            self._update.shapes,
            1,
            MASKED,
            vectors,
            self._session,
            ((self._name, self._nonce),),
            self._binding,
        )

    def reveal(self, contributors: Sequence[str]) -> bytes:
        """This round's self-mask seed for ``contributors``: for one set per round only.

        Raises
        ------
        MaskingRefusedError
            No update was masked for this set, or a seed was revealed for another.
        """
        members = self._members(contributors)
        if members not in self._seeds or self._revealed not in (None, members):
            raise MaskingRefusedError(
                "refusing to reveal: no update was masked for this set, or this round's "
                "seed was revealed for another set"
            )
        self._revealed = members
        return self._seeds[members]

    def _members(self, contributors: Sequence[str]) -> tuple[str, ...]:
        members = contributor_set(contributors)
        if self._name not in members:
            raise MaskingRefusedError("the contributor set does not name this institution")
        if len(members) > self._codec.max_institutions:
            raise MaskingRefusedError("more contributors than the preset's lanes can sum")
        missing = [peer for peer in members if peer != self._name and peer not in self._peers]
        if missing:
            raise MaskingRefusedError(f"no agreement key for {', '.join(missing)}")
        return members

    def _pair_key(self, peer: str) -> bytes:
        if peer not in self._pair_keys:
            self._pair_keys[peer] = self._agreement.pair_key(
                self._name, peer, self._peers[peer], self._context.fingerprint
            )
        return self._pair_keys[peer]

    def _shape(self) -> MaskShape:
        return _mask_shape(self._context, self._codec, self._update.values.size)


def decrypt_masked(
    context: SecretContext,
    encrypted_sum: EncryptedUpdate,
    *,
    self_seeds: Mapping[str, bytes],
    min_contributors: int = MIN_CONTRIBUTORS,
    binding: bytes | None = None,
) -> MaskedSum:
    """Decrypt, unmask and verify a masked aggregate; only integers come out.

    ``self_seeds`` are the contributors' revealed self-mask seeds, by name.

    Raises
    ------
    SecretKeyRequiredError
        ``context`` is public.
    ContextMismatchError
        Another context.
    IntegrityError
        Contributors malformed, repeated or fewer than ``max(3,
        min_contributors)``, a seed missing, another binding, a slot out of
        range or off an integer, or the check values do not match: not
        exactly this round's sum of the declared contributors.
    DecryptionError
        Decryption failed.
    """
    codec = _codec(context)
    if encrypted_sum.encoding != MASKED:
        raise ShapeMismatchError("this aggregate is not masked: use decrypt_average")
    contributors = encrypted_sum.contributors
    names = [name for name, _ in contributors]
    if encrypted_sum.count > codec.max_institutions or any(
        not isinstance(self_seeds.get(name), bytes) for name in names
    ):
        raise IntegrityError(_REFUSED)
    slots = decrypted_slots(
        context, encrypted_sum, max(MIN_CONTRIBUTORS, min_contributors), binding
    )
    n_values = encrypted_sum.n_values
    values, weight, tags = codec.unpack(slots, n_values, encrypted_sum.count)
    shape = _mask_shape(context, codec, n_values)
    digest = set_digest(tuple(names))
    for name in names:
        own = mask_entries(
            self_seeds[name],
            shape,
            session=encrypted_sum.session,
            round_id=encrypted_sum.round_id,
            digest=digest,
            purpose="self",
        )
        values, weight, tags = values - own[0], weight - int(own[1][0]), tags - own[2]
    sums = codec.signed(values)
    total = weight % (1 << WEIGHT_BITS)
    check = _check(
        context,
        codec,
        encrypted_sum.shapes,
        encrypted_sum.session,
        encrypted_sum.round_id,
        encrypted_sum.binding,
    )
    checks = tags % shape.tag_modulus
    if total < encrypted_sum.count or not check.exact_matches(
        np.append(sums, total), checks, contributors
    ):
        raise IntegrityError(_REFUSED)
    return MaskedSum(encrypted_sum.shapes, sums, total, codec.step, codec.weight_headroom)


def _codec(context: SecretContext) -> MaskedCodec:
    if not isinstance(context, SecretContext):
        raise SecretKeyRequiredError("masking and unmasking need the institutions' secret context")
    codec = context.preset.build_masked_codec()
    if codec is None:
        raise OverflowRiskError(
            f"preset {context.preset.name!r} does not mask updates: use a masked preset"
        )
    return codec


def _check(
    context: SecretContext,
    codec: MaskedCodec,
    shapes: Shapes,
    session: str,
    round_id: int,
    binding: bytes,
) -> RoundCheck:
    return round_check(
        context,
        codec,
        encoding=MASKED,
        shapes=shapes,
        session=session,
        round_id=round_id,
        binding=binding,
    )


def _mask_shape(context: SecretContext, codec: MaskedCodec, n_values: int) -> MaskShape:
    return MaskShape(n_values, codec.value_bits, 1, CHECK_LANES, codec.tag_modulus)


def _check_update(codec: MaskedCodec, update: QuantisedUpdate) -> None:
    """Refuse a quantised update :func:`quantise_update` could not have made.

    This catches a caller's mistake, not a modified client: a malicious
    institution masks whatever it likes, and the bounds that hold against it
    are :meth:`MaskedSum.average`'s and the institutions' movement bound.
    """
    weight = update.weight
    if isinstance(weight, bool) or not isinstance(weight, int | np.integer):
        raise InvalidWeightError(f"a contribution's example count is an integer, got {weight!r}")
    if not 1 <= weight <= codec.max_weight:
        raise InvalidWeightError(f"a contribution carries 1 to {codec.max_weight} examples")
    values = np.asarray(update.values)
    if values.dtype.kind != "i" or (values.size and int(np.abs(values).max()) > codec.levels + 1):
        raise MaskingRefusedError("quantised values outside the codec's range: quantise again")


def _check_peers(agreement: AgreementKey, name: str, peers: Mapping[str, bytes]) -> None:
    """Refuse a peer list in which one key stands for two names.

    A key listed twice, or this institution's own key under another name, would
    let whoever controls the list pair this institution with itself or with
    one party under two names, and count one party as two of the three
    contributors a masked aggregate needs.
    """
    own = agreement.public_bytes()
    listed = list(peers.values())
    if name in peers or own in listed or len(set(listed)) != len(listed):
        raise MaskingRefusedError(
            "the agreement keys list one key under two names (or this institution's own key)"
        )
