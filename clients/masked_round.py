"""An institution's side of a masked round: quantise once, mask per set, reveal once, apply.

With a masked preset (``masked16``, ``masked8``) no party — the aggregator, any
one institution, or the two together — can read one institution's update
(:mod:`crypto.masked`). Per run and round an institution

1. on the round's training message, trains, then quantises once its *delta*
   (trained minus the model it started from), clipped to the preset's range
   and weighted by its (capped) example count over the normaliser N̂ that every
   institution shares: the federation's training row count, decrypted in the
   statistics round. It keeps a :class:`crypto.MaskedRound` and replies its
   update masked for the contributor set S the message declares
   (:func:`masked_train_reply`);
2. on a *remask* query (a member of S dropped out) replies the same quantised
   update masked for the survivors S'; on a *reveal* query replies its
   self-mask seed for one set, and refuses any other set of that round
   afterwards (:func:`masked_query_reply`);
3. on the next round's message, decrypts the masked sum with the seeds the
   aggregator forwards, verifies it (check values: exactly this round's sum of
   the declared contributors, bound to the start this institution trained
   from *and* the normaliser it quantised with), and takes start + average
   delta as the new global model (:func:`apply_masked_aggregate`).

The normaliser is in the binding because the average is ``sum(q) step N̂ /
sum(n)``: had the aggregator handed institutions statistics sums over
different subsets (each a genuine sum), their updates would be weighted by
different N̂ and the average silently rescaled. Bound, such a sum fails the
check values; the average uses the N̂ this institution quantised with. It
is *only* in the binding: the mask ledger keys a start by the start alone, so
no N̂ buys a second quantisation of it (red team 3, F1), and the first
statistics sum an institution opens is the only one it ever accepts in its
federation (:func:`clients.masked_sums.pin_statistics`).

The record keys are :mod:`crossfed.protocol.masking`'s. What is kept between
messages: the round and its start model and binding in the run's memory
(``context.state``, :mod:`clients.run_state`), and the :class:`crypto.MaskedRound`
itself — which holds pair keys and self-mask seeds and cannot be serialised —
in this process, one round per run and node (a new round forgets the last).
If the process lost it (a restart), a remask or reveal for that round is
refused, never answered by quantising again: two quantisations of one round
would let their difference be read.

The ClientApp reaches these through :mod:`clients.encryption_mod` whenever
the kit's preset masks updates; statistics and evaluation sums are masked the
same way (:mod:`clients.masked_sums`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict

import crypto
from clients.bounds import check_summed_weight
from clients.errors import (
    InboundMessageError,
    MaskReuseRefusedError,
    TamperedAggregateError,
)
from clients.mask_ledger import MASK_LEDGER_KEY, ledger_for, ledger_start
from clients.masking_keys import MaskingKeys
from clients.run_state import (
    SEEDED_START,
    classify,
    expected_binding,
    pinned_session,
    remember_binding,
    remember_start,
    round_start,
    state_key,
)
from crossfed.protocol import (
    ARRAYS_KEY,
    CONFIG_KEY,
    CONTRIBUTORS_KEY,
    METRICS_KEY,
    PHASE_KEY,
    PHASE_REMASK,
    PHASE_REVEAL,
    PURPOSE_KEY,
    PURPOSE_TRAIN,
    ROUND_KEY,
    SELF_SEED_KEY,
    SELF_SEEDS_KEY,
    SESSION_KEY,
    STATS_KEY,
    FederationSettings,
    read_ciphertext,
    sealed_reply,
)

__all__ = [
    "MASK_LEDGER_KEY",
    "MaskingKeys",
    "apply_masked_aggregate",
    "federation_rows",
    "keep_masked_round",
    "ledger_for",
    "ledger_start",
    "masked_query_reply",
    "masked_train_reply",
    "require_member",
]

#: Run-memory entries: the last round this institution quantised (never quantised
#: twice) and the normaliser it quantised with.
_QUANTISED, _NORMALISER = "masked-round", "masked-normaliser"

#: Largest normaliser taken (far beyond any federation's row count; 8 bytes in the binding).
_MAX_NORMALISER = 1 << 62

#: Domain separation of :func:`_masked_binding`.
_BINDING_LABEL = b"crossfed/masked-start/v1\x00"

#: This process's masked rounds: (run memory key, node id, purpose) -> (session, round,
#: MaskedRound, ledger start); one per purpose, a new round of a purpose forgets the last.
_ROUNDS: dict[tuple[str, int, str], tuple[str, int, crypto.MaskedRound, bytes]] = {}


#: The purpose of evaluation sums (:data:`crypto.MASK_PURPOSES`).
PURPOSE_EVALUATE = "evaluate"


def federation_rows(config: ConfigRecord) -> int:
    """N̂: the federation's training row count, the first entry of the decrypted statistics.

    Raises
    ------
    InboundMessageError
        The message carries no decrypted statistics, or a count below one or
        beyond any federation's (``2^62``).
    """
    stats = config.get(STATS_KEY)
    first = stats[0] if isinstance(stats, list) and stats else None
    if (
        isinstance(first, bool)
        or not isinstance(first, int | float)
        or not math.isfinite(first)
        or not 1 <= round(first) < _MAX_NORMALISER
    ):
        raise InboundMessageError("no federation row count to normalise a masked update by")
    return round(first)


def masked_train_reply(
    msg: Message,
    context: Context,
    settings: FederationSettings,
    keys: MaskingKeys,
    *,
    start: Sequence[np.ndarray],
    trained: Sequence[np.ndarray],
    count: int,
    binding: bytes,
) -> Message:
    """Quantise this round's delta once and reply it masked for the declared set.

    ``start`` is the model this institution started the round from, ``trained``
    the model it trained, ``count`` its example count (capped at the kit's
    ``max-weight``), ``binding`` the start's binding (:mod:`clients.run_state`).

    What the reply's outcome tells about private values (red team 3, F2).
    The codec refused ``count > 2 N̂`` after training, outside the refusal
    path, and each run could bring another N̂: a free binary search on the
    count, one probe per run. Now the reply fails

    * on the ledger (a start quantised before): decided by what the
      aggregator asked before, nothing private;
    * on ``count > N̂``, checked before quantising on a fact this institution
      knows without the message: a genuine N̂ counts its own rows (its name is
      in the verified statistics sum), so only a contributor's negative count
      gets here, and the codec's ``weight <= h N̂`` always holds after it;
    * on a quantisation error (a non-finite delta).

    The last two are settled refusals (:func:`clients.refusals.settle_failure`
    in the encryption mod: the run closes) and come after the ledger's claim.
    N̂ is the same in every message of every run of the federation
    (:func:`~clients.masked_sums.pin_statistics`) and ``count`` is the same
    every round, so ``count > N̂`` has one answer per federation: **one bit**,
    whether this institution's count exceeds the N̂ the coalition chose
    first. A non-finite delta can depend on the round; the run closes at the
    first, and only one run trains from the seeded start (the ledger): at most
    ``log2(rounds + 1)`` bits per federation, the round of that failure.

    Raises
    ------
    InboundMessageError
        Not a training message, no contributor set or statistics, or a round
        quantised before.
    clients.errors.MaskReuseRefusedError
        The ledger records a quantisation from this start (any N̂).
    TamperedAggregateError
        N̂ is below this institution's own (capped) count.
    crypto.MaskingRefusedError
        The set has fewer than three members, repeats one, leaves this
        institution out, or names one without an agreement key.
    """
    inbound = classify(msg, settings)
    if inbound.kind != "train":
        raise InboundMessageError(f"a masked update answers a train message, not {inbound.kind}")
    config = _config(msg)
    members = _contributors(config)
    session = pinned_session(context, settings)
    memory = _memory(context, settings)
    done = memory.get(_QUANTISED)
    if isinstance(done, int) and done >= inbound.round:
        raise InboundMessageError(f"round {inbound.round} was quantised already")
    delta = [
        np.asarray(t, dtype=np.float64) - np.asarray(s, dtype=np.float64)
        for s, t in zip(start, trained, strict=True)
    ]
    weight = max(1, min(int(count), settings.max_weight))
    scale = federation_rows(config)
    # Keyed by the start alone, never by N̂: a second quantisation from one start is
    # refused whatever the statistics say (red team 3, F1).
    start_key = ledger_start(keys, binding)
    ledger_for(context, settings, keys.name).claim_quantisation(start_key, PURPOSE_TRAIN)
    if weight > scale:
        # Not a genuine N̂ (it counts this institution's rows); see the docstring (F2).
        raise TamperedAggregateError(
            "the federation's row count is below this institution's own: not a genuine sum"
        )
    update = crypto.quantise_update(keys.secret, delta, weight, normaliser=scale)
    masked = crypto.MaskedRound(
        keys.secret,
        keys.agreement,
        keys.name,
        keys.peers,
        update,
        session=session,
        round_id=inbound.round,
        binding=_masked_binding(binding, scale),
        purpose="train",
    )
    sealed = masked.encrypt(members)
    memory[_QUANTISED] = inbound.round
    memory[_NORMALISER] = scale
    remember_start(context, settings, inbound.round, [np.asarray(s) for s in start])
    remember_binding(context, settings, inbound.round, binding)
    keep_masked_round(
        context, settings, PURPOSE_TRAIN, session, inbound.round, masked, start=start_key
    )
    return Message(content=sealed_reply(sealed.to_bytes()), reply_to=msg)


def masked_query_reply(
    msg: Message, context: Context, settings: FederationSettings, keys: MaskingKeys
) -> Message:
    """Answer a remask query (the same update, masked for S') or a reveal query (one seed).

    Evaluation seeds are revealed for one contributor set per federation (the
    ledger's ``evaluation-set`` pin, red team 3, F3): an institution's test-set
    size is the same every round, so two opened evaluation sums whose sets
    differ by one institution give its size (and, over one model, its
    metrics). An honest dropout in one round's evaluation thus costs the later
    rounds' evaluations over another set; training is not affected.

    Raises
    ------
    InboundMessageError
        Not a remask or reveal query of this session, or no masked update of
        its round kept in this process.
    crypto.MaskingRefusedError
        The set is invalid, or a seed of this round was revealed for another set.
    clients.errors.MaskReuseRefusedError
        The ledger records a seed of this start and purpose for another set,
        or an evaluation seed of another set in this federation.
    """
    config = _config(msg)
    phase = config.get(PHASE_KEY)
    if phase not in (PHASE_REMASK, PHASE_REVEAL):
        raise InboundMessageError("a query that is neither a remask nor a reveal query")
    session = pinned_session(context, settings)
    if config.get(SESSION_KEY) != session:
        raise InboundMessageError(f"a {phase} query of another session")
    round_id = config.get(ROUND_KEY)
    purpose = config.get(PURPOSE_KEY, PURPOSE_TRAIN)
    kept = _ROUNDS.get(_slot(context, settings, str(purpose)))
    if type(round_id) is not int or kept is None or kept[:2] != (session, round_id):
        raise InboundMessageError(f"a {phase} query for a round with no masked update kept")
    members = _contributors(config)
    masked = kept[2]
    if phase == PHASE_REMASK:
        return Message(content=sealed_reply(masked.encrypt(members).to_bytes()), reply_to=msg)
    seed = masked.reveal(members)
    # Across rounds and runs too: one revealed set per start and purpose (F3); the seed
    # is sent only once the ledger has recorded it.
    ledger = ledger_for(context, settings, keys.name)
    digest = crypto.set_digest(sorted(members))
    if purpose == PURPOSE_EVALUATE and not ledger.pin(
        "evaluation-set", ledger_start(keys, SEEDED_START), digest
    ):
        # One evaluation set per federation (red team 3, F3): test-set sizes are the same
        # every round, so two opened sets that differ by one institution give its size.
        raise MaskReuseRefusedError("refusing to reveal an evaluation seed for another set")
    ledger.claim_reveal(kept[3], str(purpose), digest)
    content = RecordDict(
        {CONFIG_KEY: ConfigRecord({SELF_SEED_KEY: seed}), METRICS_KEY: MetricRecord({})}
    )
    return Message(content=content, reply_to=msg)


def apply_masked_aggregate(
    msg: Message, context: Context, settings: FederationSettings, keys: MaskingKeys
) -> list[np.ndarray]:
    """The new global model: this institution's start plus the verified average delta.

    ``msg`` carries the masked sum of the round before (a train message) or of
    the last round (the final message) and the contributors' seeds.

    Raises
    ------
    InboundMessageError
        No masked sum or seeds where they are due, or a sum of another run or round.
    TamperedAggregateError
        This institution did not start the sum's round, or the summed weight is
        outside what the contributors may carry.
    crypto.IntegrityError
        Not exactly this round's sum of its declared contributors (a seed
        missing or forged included).
    """
    inbound = classify(msg, settings)
    if inbound.model_round is None:
        raise InboundMessageError(f"a {inbound.kind} message carries no global model")
    record = msg.content.array_records.get(ARRAYS_KEY)
    seeds_record = msg.content.config_records.get(SELF_SEEDS_KEY)
    if record is None or seeds_record is None:
        raise InboundMessageError("a masked sum arrives with its contributors' seeds, not without")
    try:
        data = read_ciphertext(record)
    except crypto.MalformedDataError as exc:
        raise InboundMessageError("the global model is not a ciphertext") from exc
    update = crypto.EncryptedUpdate.from_bytes(
        keys.secret,
        data,
        expected_round=inbound.model_round,
        expected_session=pinned_session(context, settings),
        expected_shapes=settings.shapes(),
    )
    started = round_start(context, settings)
    binding = expected_binding(context, settings, inbound.model_round)
    memory = _memory(context, settings)
    scale = memory.get(_NORMALISER)
    if (
        started is None
        or started[0] != inbound.model_round
        or binding is None
        or memory.get(_QUANTISED) != inbound.model_round
        or type(scale) is not int
    ):
        raise TamperedAggregateError(
            "a masked sum of a round this institution did not train: its delta has no base here"
        )
    seeds = {name: value for name, value in seeds_record.items() if isinstance(value, bytes)}
    require_member(update, keys.name, seeds)
    summed = crypto.decrypt_masked(
        keys.secret,
        update,
        self_seeds=seeds,
        purpose="train",
        min_contributors=max(2, settings.min_institutions),
        binding=_masked_binding(binding, scale),
        member=keys.name,
    )
    check_summed_weight(summed.total_weight, update.count, settings.max_weight)
    average = summed.average(scale)
    return [
        (np.asarray(s, dtype=np.float64) + d).astype(np.float32)
        for s, d in zip(started[1], average, strict=True)
    ]


def require_member(update: crypto.EncryptedUpdate, name: str, seeds: Mapping[str, bytes]) -> None:
    """Refuse, from its header alone, a masked sum without ``name`` or without a seed.

    Decided by bytes the aggregator wrote, before anything is decrypted, so the
    refusal says nothing about the key (:data:`clients.refusals.KEY_INDEPENDENT`):
    a dropped institution refusing the next sum, which it is not in, spends no
    refusal budget.

    Raises
    ------
    crypto.HeaderRefusedError
        ``name`` is not a contributor, or a contributor's seed is missing.
    """
    names = update.contributor_names
    if name not in names or any(not isinstance(seeds.get(n), bytes) for n in names):
        raise crypto.HeaderRefusedError(
            "aggregate refused: it does not name this institution, or a contributor's seed is "
            "missing"
        )


def _masked_binding(start: bytes, scale: int) -> bytes:
    """What a masked update is bound to: its start's binding and the normaliser N̂."""
    return hashlib.sha256(_BINDING_LABEL + start + scale.to_bytes(8, "big")).digest()


def _config(msg: Message) -> ConfigRecord:
    config = msg.content.config_records.get(CONFIG_KEY)
    if config is None:
        raise InboundMessageError("a message without its config record")
    return config


def _contributors(config: ConfigRecord) -> list[str]:
    members = config.get(CONTRIBUTORS_KEY)
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise InboundMessageError("a masked round's message declares no contributor set")
    return [str(m) for m in members]


def _memory(context: Context, settings: FederationSettings) -> ConfigRecord:
    memory = context.state.config_records.get(state_key(settings))
    if memory is None:
        raise InboundMessageError("no session is pinned for this run")
    return memory


def keep_masked_round(
    context: Context,
    settings: FederationSettings,
    purpose: str,
    session: str,
    round_id: int,
    masked: crypto.MaskedRound,
    *,
    start: bytes,
) -> None:
    """Keep ``masked`` (and its ledger ``start``) for its round's remask and reveal queries."""
    _ROUNDS[_slot(context, settings, purpose)] = (session, round_id, masked, start)


def _slot(context: Context, settings: FederationSettings, purpose: str) -> tuple[str, int, str]:
    return state_key(settings), int(context.node_id), purpose
