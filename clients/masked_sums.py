"""Masked statistics and evaluation sums: one institution's values under the round's masks.

Under a masked preset the statistics round (feature moments and row count) and
every evaluation (metrics weighted by the test-set size) carry this
institution's own values, as its update does: sent under the CKKS key alone,
any institution that saw the reply could read them. So they are masked like
the update (:mod:`crypto.masked`), but as *exact* integers: each real value is
turned into fixed point (:data:`~crossfed.protocol.FRACTION_BITS` fraction
bits, :func:`crypto.fixed_point`), split into limbs that never carry
(:func:`crypto.integer_update`) and masked for the declared set with its own
purpose (``"stats"`` in round 0, ``"evaluate"`` in round r), so that no two
masked vectors of one round share a mask.

Each purpose is masked once per round (a second request of the same round is
refused: two maskings of one round, opened for two sets, would differ by this
institution's values) and its :class:`crypto.MaskedRound` is kept in this
process for the round's remask and reveal queries
(:func:`~clients.masked_round.masked_query_reply`). Opening a sum
(:func:`open_masked_sum`) requires this institution among its contributors
(``member``), its purpose, run, round and binding, and returns the exact sums.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from flwr.app import ConfigRecord, Context, Message

import crypto
from clients.errors import InboundMessageError
from clients.masked_round import MaskingKeys, keep_masked_round
from clients.run_state import pinned_session, state_key
from crossfed.protocol import (
    CONFIG_KEY,
    CONTRIBUTORS_KEY,
    FRACTION_BITS,
    FederationSettings,
    sealed_reply,
)

__all__ = ["masked_sum_reply", "open_masked_sum", "seeds_of"]

#: Run-memory entries: the last round whose sum of each purpose was masked.
_DONE = {"stats": "masked-stats-round", "evaluate": "masked-evaluate-round"}


def masked_sum_reply(
    msg: Message,
    context: Context,
    settings: FederationSettings,
    keys: MaskingKeys,
    *,
    purpose: str,
    round_id: int,
    values: Sequence[float],
    binding: bytes,
) -> Message:
    """Reply ``values`` as exact fixed-point integers masked for the declared set.

    Raises
    ------
    InboundMessageError
        No contributor set, another purpose than statistics or evaluation, or
        this purpose's sum of this round was masked already.
    crypto.MaskingRefusedError
        The set has fewer than three members, repeats one, leaves this
        institution out, or names one without an agreement key.
    """
    if purpose not in _DONE:
        raise InboundMessageError(f"no masked sum of purpose {purpose!r}")
    config = msg.content.config_records.get(CONFIG_KEY)
    members = config.get(CONTRIBUTORS_KEY) if config is not None else None
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise InboundMessageError(f"a masked {purpose} request declares no contributor set")
    session = pinned_session(context, settings)
    memory = context.state.config_records.get(state_key(settings))
    if memory is None:
        raise InboundMessageError("no session is pinned for this run")
    done = memory.get(_DONE[purpose])
    if isinstance(done, int) and done >= round_id:
        raise InboundMessageError(f"the {purpose} sum of round {round_id} was masked already")
    integers = crypto.fixed_point(np.asarray(values, dtype=np.float64), FRACTION_BITS)
    masked = crypto.MaskedRound(
        keys.secret,
        keys.agreement,
        keys.name,
        keys.peers,
        crypto.integer_update(keys.secret, integers),
        session=session,
        round_id=round_id,
        binding=binding,
        purpose=purpose,
    )
    sealed = masked.encrypt([str(m) for m in members])
    memory[_DONE[purpose]] = round_id
    keep_masked_round(context, settings, purpose, session, round_id, masked)
    return Message(content=sealed_reply(sealed.to_bytes()), reply_to=msg)


def open_masked_sum(
    keys: MaskingKeys,
    data: bytes,
    seeds: Mapping[str, bytes],
    *,
    purpose: str,
    round_id: int,
    session: str,
    binding: bytes,
    min_contributors: int,
) -> tuple[np.ndarray, int]:
    """The exact sums of a masked statistics or evaluation sum, and its contributor count.

    Raises
    ------
    crypto.MalformedDataError, crypto.ContextMismatchError
        Not a ciphertext of this federation, run or round.
    crypto.IntegrityError
        Not exactly the sum of its declared contributors for this purpose and
        binding, this institution not among them, or a seed missing.
    crypto.ShapeMismatchError
        Not a sum of exact integers.
    """
    update = crypto.EncryptedUpdate.from_bytes(
        keys.secret, data, expected_round=round_id, expected_session=session
    )
    if len(update.shapes) != 1 or len(update.shapes[0]) != 2:
        raise crypto.ShapeMismatchError("not a sum of exact integers")
    summed = crypto.decrypt_masked(
        keys.secret,
        update,
        self_seeds=seeds,
        purpose=purpose,
        min_contributors=min_contributors,
        binding=binding,
        member=keys.name,
    )
    exact = crypto.integer_sum(summed, update.shapes[0][0])
    return crypto.from_fixed_point(exact, FRACTION_BITS), len(update.contributor_names)


def seeds_of(msg: Message, key: str) -> dict[str, bytes]:
    """The revealed seeds a message carries under ``key``, by name.

    Raises
    ------
    InboundMessageError
        The message carries none.
    """
    record: ConfigRecord | None = msg.content.config_records.get(key)
    if record is None:
        raise InboundMessageError("a masked sum arrives with its contributors' seeds, not without")
    return {name: value for name, value in record.items() if isinstance(value, bytes)}
