"""The aggregator's side of a masked sum: declare a set, re-mask on dropouts, collect seeds.

Under a masked preset (``masked16``, ``masked8``; :mod:`crypto.masked`) every
institution's vector is masked for a *contributor set* S of institution names,
and the masks cancel only in the sum over exactly S. The aggregator, holding
no key, runs one routine for every masked vector of a round (training update,
later statistics and evaluation), :func:`complete_masked_sum`:

1. it keeps the valid replies to the message that declared S (size bound,
   fingerprint, round, session, shapes, encoding ``masked``, one contributor
   under the name the node answered the roll-call with);
2. if a member of S dropped, it declares the survivors S' in a *remask* query
   (:data:`~crossfed.protocol.PHASE_REMASK`): each re-sends its same quantised
   vector masked for S'; repeated while the set shrinks, never below
   ``max(3, quorum)``;
3. it sums the last set's replies and asks each member, in a *reveal* query
   (:data:`~crossfed.protocol.PHASE_REVEAL`), for its self-mask seed of that
   set. An institution reveals one set per round and purpose, so no two sums
   that differ by one institution can both be opened. If any member does not
   reveal, the sum cannot be opened and the round is refused
   (:class:`QuorumNotReachedError`).

Names come from a *roll call* (:func:`roll_call`): every node replies its
institution name only; a node that answers no valid name, or a name another
node answered too (compared case-folded and NFKC-normalised, as the
institutions compare them), is left out of the run. The names are what the
institutions' pair keys are bound to; node ids mean nothing to them.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

import crypto
from crossfed.protocol import (
    CONFIG_KEY,
    CONTRIBUTORS_KEY,
    NAME_KEY,
    PHASE_KEY,
    PHASE_REMASK,
    PHASE_REVEAL,
    PHASE_ROLL_CALL,
    PURPOSE_KEY,
    ROUND_KEY,
    SELF_SEED_KEY,
    SESSION_KEY,
)
from federation.errors import QuorumNotReachedError
from federation.measured import content_bytes
from federation.replies import bounded, error_reason
from federation.summing import sum_compatible

__all__ = ["MIN_MASKED", "Checked", "MaskedOutcome", "complete_masked_sum", "roll_call"]

logger = logging.getLogger(__name__)

#: Fewest contributors of a masked sum: with two, the sum reveals the other's vector.
MIN_MASKED = 3
#: Longest institution name taken from a roll call (the ciphertext header's bound).
_MAX_NAME = 64
#: Bytes of a revealed self-mask seed.
_SEED_BYTES = 32

#: What checking one reply gives: drop reason (empty when valid), update, size, SHA-256.
Checked = tuple[str, crypto.EncryptedUpdate | None, int, str]


@dataclass
class MaskedOutcome:
    """One masked sum, ready to go out.

    Attributes
    ----------
    total:
        The summed ciphertext (serialised).
    seeds:
        Every member's revealed self-mask seed, by name.
    members:
        The set the sum is over (sorted names).
    summed:
        Node ids in the sum.
    dropped:
        Node id to the reason it is not in the sum (for the audit).
    digests:
        SHA-256 of each node's last reply.
    bytes_down, bytes_up:
        Payload bytes of the remask and reveal exchanges.
    """

    total: bytes
    seeds: dict[str, bytes]
    members: tuple[str, ...]
    summed: tuple[int, ...]
    dropped: dict[int, str] = field(default_factory=dict)
    digests: dict[int, str] = field(default_factory=dict)
    bytes_down: int = 0
    bytes_up: int = 0


def roll_call(
    grid: Grid, nodes: Iterable[int], session: str, timeout: float
) -> tuple[dict[int, str], dict[int, str]]:
    """Ask every node for its institution name: ``(node -> name, dropped node -> reason)``.

    A node whose name is missing, malformed or also claimed by another node is
    dropped (both claimants: the aggregator cannot tell which is genuine).
    """
    asked = sorted(set(nodes))
    messages = [_query(node, {PHASE_KEY: PHASE_ROLL_CALL, SESSION_KEY: session}) for node in asked]
    claimed: dict[int, str] = {}
    dropped: dict[int, str] = {}
    for node, reply in _replies(grid, messages, timeout):
        if reply.has_error():
            dropped[node] = error_reason(reply)
            continue
        config = reply.content.config_records.get(CONFIG_KEY)
        name = config.get(NAME_KEY) if config is not None else None
        if not isinstance(name, str) or not 1 <= len(name) <= _MAX_NAME:
            dropped[node] = "roll call: no valid institution name"
            continue
        claimed[node] = name
    folded: dict[str, list[int]] = {}
    for node, name in claimed.items():
        folded.setdefault(_folded(name), []).append(node)
    for owners in folded.values():
        if len(owners) > 1:
            for node in owners:
                dropped[node] = "roll call: the same institution name as another node"
                claimed.pop(node)
    for node in asked:
        if node not in claimed and node not in dropped:
            dropped[node] = "roll call: no reply before the deadline"
    for node, reason in dropped.items():
        logger.warning("roll call: node %d left out: %s", node, reason)
    return claimed, dropped


def complete_masked_sum(
    grid: Grid,
    context: crypto.PublicContext,
    names: Mapping[int, str],
    first: Mapping[int, Checked],
    check: Callable[[Message], Checked],
    *,
    purpose: str,
    round_id: int,
    session: str,
    quorum: int,
    timeout: float,
) -> MaskedOutcome:
    """Finish a masked sum from the replies to the message that declared the set.

    Parameters
    ----------
    grid
        The run's grid.
    context
        The aggregator's public context.
    names
        Node id to institution name, from the roll call; the declared set is
        the names of ``first``'s nodes.
    first
        Each asked node's checked reply to the declaring message.
    check
        Checks one reply (size bound, fingerprint, run, round, shapes, encoding).
    purpose, round_id, session
        Which masked vector of which round of which run.
    quorum
        Fewest members of a set that may be summed (at least :data:`MIN_MASKED`).
    timeout
        Seconds to wait for each exchange's replies.

    Raises
    ------
    QuorumNotReachedError
        The set shrank below ``max(3, quorum)``, or a member did not reveal its seed.
    """
    floor = max(MIN_MASKED, quorum)
    dropped: dict[int, str] = {}
    digests: dict[int, str] = {}
    members = tuple(sorted(names[node] for node in first))
    outcome = MaskedOutcome(b"", {}, members, ())
    replies = dict(first)
    while True:
        valid: dict[int, crypto.EncryptedUpdate] = {}
        for node, (reason, update, _size, digest) in replies.items():
            if digest:
                digests[node] = digest
            if update is not None and update.contributor_names != (names[node],):
                reason, update = "reply under another institution's name", None
            if update is None:
                dropped[node] = reason or "no valid reply"
                continue
            valid[node] = update
        summing = sum_compatible(context, valid) if len(valid) >= floor else None
        if summing is not None:
            dropped.update(summing.dropped)
            summed = set(summing.summed)
        else:
            summed = set()
        survivors = tuple(sorted(names[node] for node in summed))
        if summing is not None and summing.total is not None and survivors == members:
            outcome.total = summing.total.to_bytes()
            outcome.summed = tuple(sorted(summed))
            outcome.seeds = _reveal(grid, outcome, names, purpose, round_id, session, timeout)
            outcome.dropped = {n: r for n, r in dropped.items() if n not in summed}
            outcome.digests = digests
            return outcome
        if len(survivors) < floor:
            raise QuorumNotReachedError(
                f"{purpose} {round_id}: {len(survivors)} members left of a masked set, "
                f"at least {floor} needed; the round is not applied"
            )
        logger.warning(
            "%s %d: %d of %d members dropped; re-masking for the %d left",
            purpose,
            round_id,
            len(members) - len(survivors),
            len(members),
            len(survivors),
        )
        members = outcome.members = survivors
        config = _set_config(PHASE_REMASK, members, purpose, round_id, session)
        messages = [_query(node, config) for node in sorted(summed)]
        outcome.bytes_down += sum(content_bytes(m.content) for m in messages)
        replies = {}
        for node, reply in _replies(grid, messages, timeout):
            outcome.bytes_up += _reply_bytes(reply)
            replies[node] = check(reply)
        for node in summed:
            replies.setdefault(node, ("no remask reply before the deadline", None, 0, ""))


def _reveal(
    grid: Grid,
    outcome: MaskedOutcome,
    names: Mapping[int, str],
    purpose: str,
    round_id: int,
    session: str,
    timeout: float,
) -> dict[str, bytes]:
    """Every member's self-mask seed for the summed set; all of them, or the round is refused."""
    members = outcome.members
    config = _set_config(PHASE_REVEAL, members, purpose, round_id, session)
    messages = [_query(node, config) for node in outcome.summed]
    outcome.bytes_down += sum(content_bytes(m.content) for m in messages)
    seeds: dict[str, bytes] = {}
    for node, reply in _replies(grid, messages, timeout):
        outcome.bytes_up += _reply_bytes(reply)
        record = None if reply.has_error() else reply.content.config_records.get(CONFIG_KEY)
        seed = record.get(SELF_SEED_KEY) if record is not None else None
        if isinstance(seed, bytes) and len(seed) == _SEED_BYTES:
            seeds[names[node]] = seed
    missing = sorted(set(members) - set(seeds))
    if missing:
        raise QuorumNotReachedError(
            f"{purpose} {round_id}: {bounded(', '.join(missing))} revealed no seed for the "
            "summed set; the sum cannot be opened and the round is not applied"
        )
    return seeds


def _set_config(
    phase: str, members: tuple[str, ...], purpose: str, round_id: int, session: str
) -> dict[str, object]:
    return {
        PHASE_KEY: phase,
        CONTRIBUTORS_KEY: list(members),
        PURPOSE_KEY: purpose,
        ROUND_KEY: round_id,
        SESSION_KEY: session,
    }


def _query(node: int, config: Mapping[str, object]) -> Message:
    return Message(
        content=RecordDict({CONFIG_KEY: ConfigRecord(dict(config))}),  # type: ignore[arg-type]
        message_type=MessageType.QUERY,
        dst_node_id=node,
    )


def _replies(grid: Grid, messages: list[Message], timeout: float) -> Iterable[tuple[int, Message]]:
    """``(node, reply)`` for each asked node's first reply; replies not asked for are ignored."""
    if not messages:
        return []
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    asked = {m.metadata.message_id: m.metadata.dst_node_id for m in messages}  # ids set on push
    targets = set(asked.values())
    seen: set[int] = set()
    out: list[tuple[int, Message]] = []
    for reply in replies:
        node = asked.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)
        if node in targets and node not in seen:
            seen.add(node)
            out.append((node, reply))
    return out


def _reply_bytes(reply: Message) -> int:
    """Bytes a reply carried: none for an error reply (a refused remask or reveal)."""
    return content_bytes(reply.content) if reply.has_content() else 0


def _folded(name: str) -> str:
    return unicodedata.normalize("NFKC", name).casefold()
