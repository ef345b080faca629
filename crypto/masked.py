"""Masked updates: no single party, nor the aggregator with one institution, reads one.

All institutions share one CKKS key, so encryption alone hides an update only
from the aggregator. Under it, every quantised update is masked (pairwise masks
that cancel in the sum, and a self mask; :mod:`crypto.masks`), so a ciphertext
decrypted alone, or stripped of every mask a colluding institution can compute,
is uniform modulo ``2^B``. The recipe, per run, round and purpose (statistics,
training, evaluation: :data:`crypto.MASK_PURPOSES`, bound into every mask and
check value):

1. An institution quantises once: :func:`crypto.quantise_update` (its weighted,
   clipped delta and its example count; :class:`~crypto.lanes.MaskedCodec`),
   or :func:`crypto.integer_update` for exact integers (statistics, metrics).
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
   :meth:`~crypto.MaskedSum.average` gives FedAvg's average delta
   (:func:`crypto.integer_sum` the exact integers).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

import numpy as np
import tenseal as ts

from crypto.check import CHECK_LANES, NONCE_BYTES, RoundCheck
from crypto.encrypted import MASKED, EncryptedUpdate, decrypted_slots
from crypto.errors import (
    ContextMismatchError,
    IntegrityError,
    InvalidWeightError,
    MaskingRefusedError,
    ShapeMismatchError,
)
from crypto.integrity import round_check, valid_binding
from crypto.keys import SecretContext
from crypto.lanes import WEIGHT_BITS, MaskedCodec
from crypto.masks import (
    MIN_CONTRIBUTORS,
    AgreementKey,
    MaskShape,
    check_purpose,
    contributor_set,
    mask_entries,
    set_digest,
)
from crypto.quantised import MaskedSum, QuantisedUpdate, masked_codec

__all__ = ["MaskedRound", "decrypt_masked", "verified_sum"]

Shapes = tuple[tuple[int, ...], ...]

_REFUSED = "aggregate refused: it is not exactly this round's sum of its declared contributors"


class MaskedRound:
    """One institution's masked contributions to one (run, round, purpose).

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
    purpose:
        What the sum is for, one of :data:`crypto.MASK_PURPOSES` (``"stats"``,
        ``"train"``, ``"evaluate"``): bound into every mask stream and check
        value, so that two masked vectors of one institution with one round
        number never share a mask (their difference would cancel every mask)
        and a sum of one purpose never verifies as another.

    Raises
    ------
    MaskingRefusedError
        ``purpose`` is not one of :data:`crypto.MASK_PURPOSES`, or the peer
        list names one key twice.
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
        purpose: str,
    ) -> None:
        self._codec = masked_codec(context)
        self._purpose = check_purpose(purpose)
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
        check = _check(context, self._codec, update.shapes, session, round_id, binding, purpose)
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
        values, weight, tags = self.masked_entries(contributors)
        slots = self._codec.pack(values, weight, tags)
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

    def masked_entries(self, contributors: Sequence[str]) -> tuple[np.ndarray, int, np.ndarray]:
        """``(values mod 2^B, weight mod 2^32, check values mod P)`` masked for ``contributors``.

        What :meth:`encrypt` packs into CKKS slots; uniform to anyone without
        every pair key and the self-mask seed. Raises as :meth:`encrypt`.
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
                purpose=self._purpose,
                kind="pair",
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
            purpose=self._purpose,
            kind="self",
        )
        values = (values + own[0]) % (1 << self._codec.value_bits)
        weight = (weight + own[1]) % (1 << WEIGHT_BITS)
        tags = (tags + own[2]) % shape.tag_modulus
        return values, int(weight[0]), tags

    @property
    def contributor(self) -> tuple[str, str]:
        """``(name, nonce)``: how this contribution is named in the check values."""
        return self._name, self._nonce

    @property
    def session(self) -> str:
        """The run this round belongs to."""
        return self._session

    @property
    def round_id(self) -> int:
        """The round."""
        return self._round_id

    @property
    def purpose(self) -> str:
        """What the sum is for (:data:`crypto.MASK_PURPOSES`)."""
        return self._purpose

    @property
    def binding(self) -> bytes:
        """The caller's binding (the start model's digest)."""
        return self._binding

    @property
    def shapes(self) -> Shapes:
        """The update's array shapes."""
        return self._update.shapes

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
    purpose: str,
    min_contributors: int = MIN_CONTRIBUTORS,
    binding: bytes | None = None,
    member: str | None = None,
) -> MaskedSum:
    """Decrypt, unmask and verify a masked aggregate; only integers come out.

    ``self_seeds`` are the contributors' revealed self-mask seeds, by name;
    ``purpose`` is what the sum must be for (:data:`crypto.MASK_PURPOSES`): a
    sum masked and tagged for another purpose is refused. ``member``, when
    given, is the verifier's own name: an institution that contributed to a
    round takes no aggregate of it without itself (two genuine sums of one
    start, one with and one without an institution, would differ by its
    update), so a sum whose declared contributors leave ``member`` out is
    refused before anything is decrypted.

    Raises
    ------
    SecretKeyRequiredError
        ``context`` is public.
    ContextMismatchError
        Another context.
    MaskingRefusedError
        ``purpose`` is not one of :data:`crypto.MASK_PURPOSES`.
    IntegrityError
        Contributors malformed, repeated, fewer than ``max(3,
        min_contributors)`` or without ``member``, a seed missing, another
        binding, a slot out of range or off an integer, or the check values
        do not match: not exactly this round's sum of the declared
        contributors for this purpose.
    DecryptionError
        Decryption failed.
    """
    codec = masked_codec(context)
    check_purpose(purpose)
    if encrypted_sum.encoding != MASKED:
        raise ShapeMismatchError("this aggregate is not masked: use decrypt_average")
    contributors = encrypted_sum.contributors
    names = [name for name, _ in contributors]
    if (
        encrypted_sum.count > codec.max_institutions
        or (member is not None and member not in names)
        or any(not isinstance(self_seeds.get(name), bytes) for name in names)
    ):
        raise IntegrityError(_REFUSED)
    slots = decrypted_slots(
        context, encrypted_sum, max(MIN_CONTRIBUTORS, min_contributors), binding
    )
    values, weight, tags = codec.unpack(slots, encrypted_sum.n_values, encrypted_sum.count)
    return verified_sum(
        context,
        (values, weight, tags),
        self_seeds=self_seeds,
        purpose=purpose,
        shapes=encrypted_sum.shapes,
        session=encrypted_sum.session,
        round_id=encrypted_sum.round_id,
        binding=encrypted_sum.binding,
        contributors=contributors,
    )


def verified_sum(
    context: SecretContext,
    summed: tuple[np.ndarray, int, np.ndarray],
    *,
    self_seeds: Mapping[str, bytes],
    purpose: str,
    shapes: Shapes,
    session: str,
    round_id: int,
    binding: bytes,
    contributors: Sequence[tuple[str, str]],
) -> MaskedSum:
    """Remove the revealed self masks from a sum of masked entries and verify it.

    ``summed`` is ``(values mod 2^B, weight, check values)`` summed over the
    declared ``contributors`` (``(name, nonce)`` pairs) — decrypted from CKKS
    (:func:`decrypt_masked`) or with an institutions-only pad removed
    (:mod:`crypto.padded`).

    Raises
    ------
    IntegrityError
        A seed missing, or the check values do not match.
    """
    codec = masked_codec(context)
    names = [name for name, _ in contributors]
    if any(not isinstance(self_seeds.get(name), bytes) for name in names):
        raise IntegrityError(_REFUSED)
    values, weight, tags = summed
    n_values = int(np.asarray(values).size)
    shape = _mask_shape(context, codec, n_values)
    digest = set_digest(tuple(names))
    for name in names:
        own = mask_entries(
            self_seeds[name],
            shape,
            session=session,
            round_id=round_id,
            digest=digest,
            purpose=purpose,
            kind="self",
        )
        values, weight, tags = values - own[0], weight - int(own[1][0]), tags - own[2]
    sums = codec.signed(values)
    total = weight % (1 << WEIGHT_BITS)
    check = _check(context, codec, shapes, session, round_id, binding, purpose)
    checks = tags % shape.tag_modulus
    if total < len(names) or not check.exact_matches(
        np.append(sums, total), checks, tuple(contributors)
    ):
        raise IntegrityError(_REFUSED)
    return MaskedSum(
        shapes,
        sums,
        total,
        codec.step,
        codec.weight_headroom,
        tuple(names),
        codec.integer_limb_bits,
    )


def _check(
    context: SecretContext,
    codec: MaskedCodec,
    shapes: Shapes,
    session: str,
    round_id: int,
    binding: bytes,
    purpose: str,
) -> RoundCheck:
    return round_check(
        context,
        codec,
        encoding=MASKED,
        shapes=shapes,
        session=session,
        round_id=round_id,
        binding=binding,
        purpose=purpose,
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
