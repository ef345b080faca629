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

The encryption mod (:mod:`clients.encryption_mod`) calls :func:`masked_sum` for
a statistics or evaluation reply, :func:`masked_query` for a roll call, remask
or reveal query (none decrypts anything), and :func:`open_masked_evaluation`
for the final message's evaluation sum.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict

import crypto
from clients.bounds import check_summed_weight
from clients.errors import ConfigError, InboundMessageError, TamperedAggregateError
from clients.masked_round import (
    MaskingKeys,
    keep_masked_round,
    ledger_for,
    ledger_start,
    masked_query_reply,
    masked_train_reply,
    require_member,
)
from clients.refusals import check_may_decrypt
from clients.run_state import SEEDED_START, Inbound, pinned_session, state_key
from crossfed.protocol import (
    ARRAYS_KEY,
    CONFIG_KEY,
    CONTRIBUTORS_KEY,
    EVALUATION_METRICS,
    EVALUATION_SEEDS_KEY,
    FRACTION_BITS,
    METRICS_KEY,
    NAME_KEY,
    NUM_EXAMPLES_KEY,
    FederationSettings,
    sealed_reply,
)

__all__ = [
    "example_count",
    "masked_query",
    "masked_reply",
    "masked_sum",
    "masked_sum_reply",
    "open_masked_evaluation",
    "open_masked_sum",
    "pin_statistics",
    "seeds_of",
]

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
    # Exact integers: the same ones again from the same start reveal nothing new (ledger).
    start = ledger_start(keys, binding)
    digest = hashlib.sha256(repr(integers).encode()).digest()
    ledger_for(context, settings, keys.name).claim_quantisation(
        start, purpose, values_digest=digest
    )
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
    keep_masked_round(context, settings, purpose, session, round_id, masked, start=start)
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
    crypto.HeaderRefusedError
        This institution is not among its contributors, or a seed is missing.
    crypto.IntegrityError
        Not exactly the sum of its declared contributors for this purpose and
        binding.
    crypto.ShapeMismatchError
        Not a sum of exact integers.
    """
    update = crypto.EncryptedUpdate.from_bytes(
        keys.secret, data, expected_round=round_id, expected_session=session
    )
    if len(update.shapes) != 1 or len(update.shapes[0]) != 2:
        raise crypto.ShapeMismatchError("not a sum of exact integers")
    require_member(update, keys.name, seeds)
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


def pin_statistics(
    context: Context, settings: FederationSettings, keys: MaskingKeys, sums: np.ndarray
) -> None:
    """Refuse any statistics sum but the first this institution opened in this federation.

    The colluding institution of a coalition chooses its own contribution to
    the statistics, and so the federation's row count N̂ and the means every
    institution standardises with. Unpinned, it moved N̂ between runs to get a
    second quantisation of the seeded start (red team 3, F1) and probed each
    institution's private count one bit per run against the codec's
    ``weight <= h N̂`` (F2). An honest federation's statistics sum is the same
    every time it is opened — one revealed set for the statistics, ever, and
    the same integers (the ledger's two claims) — so the first sum opened is
    pinned in the mask ledger, per federation, and any other is refused as a
    tampered aggregate (the run closes; its check values verified, so the
    refusal budget is not spent: the coalition reads both sums anyway).

    Raises
    ------
    TamperedAggregateError
        Another statistics sum was opened first.
    clients.errors.MaskReuseRefusedError
        The ledger cannot be read or written.
    """
    digest = hashlib.sha256(np.ascontiguousarray(sums, dtype="<f8").tobytes()).digest()
    ledger = ledger_for(context, settings, keys.name)
    if not ledger.pin("statistics-sum", ledger_start(keys, SEEDED_START), digest):
        raise TamperedAggregateError(
            "the statistics sum differs from the one this federation opened first"
        )


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


def masked_sum(
    msg: Message,
    reply: Message,
    context: Context,
    settings: FederationSettings,
    keys: MaskingKeys,
    inbound: Inbound,
    binding: bytes,
) -> Message:
    """A masked preset's statistics or evaluation reply: exact sums under the round's masks.

    Statistics: the handler's moments vector. Evaluation: each metric times the
    (capped) test-set size, then the size, so the sum opens to the weighted mean.
    """
    if inbound.kind == "stats":
        arrays = reply.content.array_records[ARRAYS_KEY].to_numpy_ndarrays()
        values = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
        return masked_sum_reply(
            msg, context, settings, keys, purpose="stats", round_id=0, values=list(values),
            binding=SEEDED_START,
        )  # fmt: skip
    metrics = reply.content.metric_records[METRICS_KEY]
    missing = [name for name in EVALUATION_METRICS if name not in metrics]
    if missing:
        raise ValueError(f"the evaluation reply lacks {', '.join(missing)}")
    size = example_count(metrics)
    weighted = [float(metrics[key]) * size for key in EVALUATION_METRICS]  # type: ignore[arg-type]
    return masked_sum_reply(
        msg, context, settings, keys, purpose="evaluate", round_id=inbound.round,
        values=[*weighted, float(size)], binding=binding,
    )  # fmt: skip


def masked_reply(
    msg: Message,
    reply: Message,
    context: Context,
    settings: FederationSettings,
    keys: MaskingKeys,
    inbound: Inbound,
    binding: bytes,
    start: list[np.ndarray] | None,
) -> Message:
    """A masked preset's reply to a message its handlers answered.

    Statistics and evaluation: :func:`masked_sum`; training: the delta from
    ``start`` quantised once and masked (:func:`~clients.masked_round.masked_train_reply`);
    the final message: an empty acknowledgement.

    Raises
    ------
    ConfigError
        A training reply without the start model's weights.
    """
    if inbound.kind in ("stats", "evaluate"):
        return masked_sum(msg, reply, context, settings, keys, inbound, binding)
    if inbound.kind != "train":
        return Message(content=RecordDict({METRICS_KEY: MetricRecord({})}), reply_to=msg)
    if start is None:
        raise ConfigError("a masked preset needs the start model's weights")
    return masked_train_reply(
        msg,
        context,
        settings,
        keys,
        start=start,
        trained=reply.content.array_records[ARRAYS_KEY].to_numpy_ndarrays(),
        count=example_count(reply.content.metric_records[METRICS_KEY]),
        binding=binding,
    )


def masked_query(
    msg: Message,
    context: Context,
    settings: FederationSettings,
    inbound: Inbound,
    keys: MaskingKeys | None,
    session: str,
) -> Message:
    """Answer a roll-call (the name), a remask or a reveal query of a masked federation.

    None decrypts anything, so a refusal here says nothing about the key and
    does not close the run; a closed run answers none of them.
    """
    if keys is None:
        raise InboundMessageError(f"a {inbound.kind} query in a federation that masks nothing")
    if inbound.kind == "roll-call":
        content = RecordDict(
            {CONFIG_KEY: ConfigRecord({NAME_KEY: keys.name}), METRICS_KEY: MetricRecord({})}
        )
        return Message(content=content, reply_to=msg)
    check_may_decrypt(context, settings, session)  # a closed run re-masks and reveals nothing
    return masked_query_reply(msg, context, settings, keys)


def open_masked_evaluation(
    msg: Message,
    keys: MaskingKeys,
    blob: bytes,
    settings: FederationSettings,
    session: str,
    binding: bytes,
    minimum: int,
) -> list[float]:
    """The last round's mean metrics from its masked evaluation sum (metrics x size, size).

    ``minimum`` is the fewest contributors the sum may have.
    """
    sums, contributors = open_masked_sum(
        keys, blob, seeds_of(msg, EVALUATION_SEEDS_KEY), purpose="evaluate",
        round_id=settings.rounds, session=session, binding=binding, min_contributors=minimum,
    )  # fmt: skip
    if sums.size != len(EVALUATION_METRICS) + 1:
        raise crypto.ShapeMismatchError("the evaluation sum does not hold the metrics and a size")
    size = float(sums[-1])
    check_summed_weight(size, contributors, settings.max_weight)
    return [float(v) / size for v in sums[:-1]]


def example_count(metrics: MetricRecord) -> int:
    """The handler's example count: a whole number."""
    value = metrics.get(NUM_EXAMPLES_KEY)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ValueError(f"the handler reported example count {value!r}, not a whole number")
    return int(value)
