"""What a message from the aggregator may be, given the institution's own settings and past.

A malicious aggregator chooses every message: its type, its round, its session
and what records it carries. The institution reads none of that on trust. Each
message is classified (:func:`classify`) into one of four kinds, with the
round and the global model it must carry:

=============  =====================  =======================================
message        round                  global model it carries
=============  =====================  =======================================
statistics     0                      none
train r        1 <= r <= kit rounds   none if r = 1 (the seeded initial
                                      model is built locally), else the
                                      aggregate of round r - 1
evaluate r     1 <= r <= kit rounds   the aggregate of round r (Flower
                                      evaluates the model the round made)
final          the kit's rounds       the aggregate of the last round
roll-call      0                      none (masked presets: reply the name)
remask,        the round being        none (masked presets: the same
reveal         trained                quantised update for a smaller set,
                                      or one self-mask seed)
=============  =====================  =======================================

and checked against what the institution remembers of the run
(:func:`admit`): the first message fixes the run's session, and every later
one must carry it; a remask or reveal query must be about the round the
institution is training now, of the pinned session; a training round must be
later than every round trained before; an evaluation may not go back before
the last round trained. The memory lives in ``context.state``, which Flower
keeps per node and run (in simulation and in deployment), under a key derived
from the run's settings, so that several federations run in one simulation
keep apart.

It also remembers which model the institution started its last training round
from (:func:`remember_binding`): in encrypted mode every model update is bound
to a digest of the exact ciphertext of the aggregate it was trained from
(:func:`model_binding`; :data:`SEEDED_START` in round 1), and a round-``r``
model is accepted only if it verifies under the institution's own round-``r``
start (:func:`expected_binding`). A genuine sum of updates trained from another
start is then refused whatever the data, and one trained from the
institution's own start always passes the movement bound
(:mod:`clients.bounds`): whether a model is refused never depends on the data.
An institution that started no round of the run yet (its first model, or a
new Flower run after the aggregator restarted) accepts the start the
aggregate's contributors declare; it has no movement reference either, so
nothing it answers depends on the data.

Limits, stated plainly: a new Flower run starts with an empty state, so an
aggregator can always start over with a new session — which gives it nothing
it could not get by running a new federation, because every aggregate must
still verify as the exact sum of that session's round (``crypto``'s check
value). A node that joins after the statistics round pins the session of the
first message it sees.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType

from clients.errors import InboundMessageError, TamperedAggregateError
from crossfed.protocol import (
    CONFIG_KEY,
    FINAL_QUERY,
    PHASE_KEY,
    PHASE_REMASK,
    PHASE_REVEAL,
    PHASE_ROLL_CALL,
    PHASE_STATS,
    ROUND_KEY,
    SESSION_KEY,
    FederationSettings,
)

__all__ = [
    "MAX_SESSION_CHARS",
    "SEEDED_START",
    "Inbound",
    "admit",
    "classify",
    "expected_binding",
    "model_binding",
    "pinned_session",
    "remember_binding",
    "remember_start",
    "round_start",
    "state_key",
]

#: Longest session identifier accepted (the ciphertext header's own bound).
MAX_SESSION_CHARS = 256

#: What round 1's updates are bound to: every institution starts from the seeded model.
SEEDED_START = b""

#: Domain separation of :func:`model_binding`'s digest.
_BINDING_LABEL = b"crossfed/start-model/v1\x00"

Kind = Literal["stats", "train", "evaluate", "final", "roll-call", "remask", "reveal"]
_SESSION, _TRAINED, _START_ROUND = "session", "trained-round", "start-round"
_BOUND_ROUND, _BINDING = "bound-round", "start-binding"


@dataclass(frozen=True)
class Inbound:
    """A message as the institution reads it.

    Attributes
    ----------
    kind:
        ``"stats"``, ``"train"``, ``"evaluate"``, ``"final"``, or (masked
        presets) ``"roll-call"``, ``"remask"``, ``"reveal"``.
    round:
        The round the message belongs to (0 for statistics, the kit's last
        round for the final message); replies are encrypted for it.
    model_round:
        The round whose aggregate the message's global model must be, or
        ``None`` when the message must carry no model.
    """

    kind: Kind
    round: int
    model_round: int | None


def state_key(settings: FederationSettings) -> str:
    """Key of this run's memory in ``context.state`` (one per distinct settings)."""
    text = json.dumps(settings.to_run_config(), sort_keys=True, default=str)
    return "crossfed-run-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def classify(msg: Message, settings: FederationSettings) -> Inbound:
    """What ``msg`` is, from its type and round, bounded by the kit's settings.

    Raises
    ------
    InboundMessageError
        A query that is neither the statistics query nor the final message, or
        a round that is not a whole number in ``1 .. settings.rounds``.
    """
    kind = msg.metadata.message_type
    config = msg.content.config_records.get(CONFIG_KEY)
    if kind == MessageType.QUERY:
        phase = config.get(PHASE_KEY) if config is not None else None
        if phase == PHASE_STATS:
            return Inbound("stats", 0, None)
        if phase == PHASE_ROLL_CALL:
            return Inbound("roll-call", 0, None)
        if phase not in (PHASE_REMASK, PHASE_REVEAL):
            raise InboundMessageError(
                "a query that is neither the statistics query nor a masking one"
            )
        value = config.get(ROUND_KEY) if config is not None else None
        if type(value) is not int or not 0 <= value <= settings.rounds:
            raise InboundMessageError(
                f"a {phase} query for round {value!r}, outside the kit's 0..{settings.rounds}"
            )
        return Inbound("remask" if phase == PHASE_REMASK else "reveal", value, None)
    if kind == FINAL_QUERY:
        return Inbound("final", settings.rounds, settings.rounds)
    if kind not in (MessageType.TRAIN, MessageType.EVALUATE):
        raise InboundMessageError(f"a message of unknown type {kind!r}")
    value = config.get(ROUND_KEY) if config is not None else None
    if type(value) is not int or not 1 <= value <= settings.rounds:
        raise InboundMessageError(
            f"a {kind} message for round {value!r}, outside the kit's 1..{settings.rounds}"
        )
    if kind == MessageType.TRAIN:
        return Inbound("train", value, value - 1 if value > 1 else None)
    return Inbound("evaluate", value, value)


def pinned_session(context: Context, settings: FederationSettings) -> str:
    """The session this run was pinned to by :func:`admit`.

    Raises
    ------
    InboundMessageError
        No message of this run was admitted yet.
    """
    memory = context.state.config_records.get(state_key(settings))
    session = memory.get(_SESSION) if memory is not None else None
    if not isinstance(session, str) or not session:
        raise InboundMessageError("no session is pinned for this run")
    return session


def admit(msg: Message, context: Context, settings: FederationSettings) -> Inbound:
    """Classify ``msg``, check it against the run's memory, and remember it.

    The first admitted message pins its session. A training message records
    its round as the last round trained (before any work, so a round is never
    trained twice, even when it fails).

    Raises
    ------
    InboundMessageError
        The message is of no known kind, names another session (or none, when
        it must), or goes back in rounds.
    """
    inbound = classify(msg, settings)
    config = msg.content.config_records.get(CONFIG_KEY)
    stated = config.get(SESSION_KEY) if config is not None else None
    key = state_key(settings)
    memory = context.state.config_records.get(key)
    if memory is None and inbound.kind in ("remask", "reveal"):
        raise InboundMessageError(f"a {inbound.kind} query before this run's first message")
    if memory is None:
        if not isinstance(stated, str) or not 0 < len(stated) <= MAX_SESSION_CHARS:
            raise InboundMessageError("the run's first message names no valid session")
        memory = ConfigRecord({_SESSION: stated, _TRAINED: 0})
        context.state[key] = memory
    session = memory[_SESSION]
    if stated is None and inbound.kind != "final":
        # The aggregator names the session in every message but the final one (whose
        # ciphertext header is checked against the pinned session instead).
        raise InboundMessageError(f"a {inbound.kind} message names no session")
    if stated is not None and stated != session:
        raise InboundMessageError(f"a {inbound.kind} message of another session")
    trained = memory.get(_TRAINED)
    if not isinstance(trained, int):  # written here only, never from the wire
        raise InboundMessageError("the run's memory in the node state is damaged")
    if inbound.kind == "train":
        if inbound.round <= trained:
            raise InboundMessageError(
                f"a train message for round {inbound.round}, not after round {trained}"
            )
        memory[_TRAINED] = inbound.round
    elif inbound.kind in ("remask", "reveal") and inbound.round != trained:
        # Only the round being trained has a masked update to re-mask or a seed to reveal.
        raise InboundMessageError(
            f"a {inbound.kind} query for round {inbound.round}; this institution trains {trained}"
        )
    elif inbound.kind == "evaluate" and inbound.round < trained:
        raise InboundMessageError(
            f"an evaluate message for round {inbound.round}, before round {trained}"
        )
    return inbound


def remember_start(
    context: Context, settings: FederationSettings, round_id: int, weights: list[np.ndarray]
) -> None:
    """Keep the model this institution starts ``round_id`` from (its movement reference)."""
    memory = context.state.config_records.get(state_key(settings))
    if memory is None:
        raise InboundMessageError("no session is pinned for this run")
    memory[_START_ROUND] = round_id
    context.state[state_key(settings) + "-start"] = ArrayRecord(
        [np.asarray(w, dtype=np.float32) for w in weights]
    )


def round_start(
    context: Context, settings: FederationSettings
) -> tuple[int, list[np.ndarray]] | None:
    """The last round this institution trained in and the model it started from, if any."""
    memory = context.state.config_records.get(state_key(settings))
    record = context.state.array_records.get(state_key(settings) + "-start")
    round_id = memory.get(_START_ROUND) if memory is not None else None
    if record is None or not isinstance(round_id, int):
        return None
    return round_id, record.to_numpy_ndarrays()


def model_binding(data: bytes) -> bytes:
    """The binding of updates trained or evaluated on the aggregate serialised as ``data``.

    SHA-256 of the exact ciphertext bytes: two aggregates that decrypt alike
    but differ in a byte are different starts.
    """
    return hashlib.sha256(_BINDING_LABEL + data).digest()


def remember_binding(
    context: Context, settings: FederationSettings, round_id: int, binding: bytes
) -> None:
    """Keep the binding of the model this institution starts training round ``round_id`` from.

    Raises
    ------
    InboundMessageError
        No session is pinned for this run.
    """
    memory = context.state.config_records.get(state_key(settings))
    if memory is None:
        raise InboundMessageError("no session is pinned for this run")
    memory[_BOUND_ROUND] = round_id
    memory[_BINDING] = binding.hex()


def expected_binding(
    context: Context, settings: FederationSettings, model_round: int
) -> bytes | None:
    """The binding a round-``model_round`` aggregate must verify under, if any.

    The binding of the start of round ``model_round`` when this institution
    trained that round; ``None`` when it has started no round of this run yet
    (it then has no movement reference either, :func:`round_start`).

    Raises
    ------
    TamperedAggregateError
        This institution started another round last (or its memory of the
        start is incomplete): it cannot tell which start the aggregate's
        contributors should share, so it refuses the aggregate.
    """
    memory = context.state.config_records.get(state_key(settings))
    bound = memory.get(_BOUND_ROUND) if memory is not None else None
    started = memory.get(_START_ROUND) if memory is not None else None
    if bound is None and started is None:
        return None
    binding = memory.get(_BINDING) if memory is not None else None
    if bound != model_round or started != bound or not isinstance(binding, str):
        raise TamperedAggregateError(
            "a model of a round this institution did not start from its own remembered "
            "model; refusing to apply it"
        )
    return bytes.fromhex(binding)
