"""Record keys of a masked round (pairwise masks under the encryption; :mod:`crypto.masked`).

A masked round adds to the messages of an encrypted one:

=====================  =====================================================================
message                what it carries (beyond the round, session and statistics)
=====================  =====================================================================
train r                :data:`CONTRIBUTORS_KEY`: the contributor set S the aggregator
                       declares; each member replies its update masked for S
query, phase remask    :data:`CONTRIBUTORS_KEY`: the survivors S' after a dropout; each
                       replies the *same* quantised update masked for S'
query, phase reveal    :data:`CONTRIBUTORS_KEY`: the set whose sum the aggregator holds;
                       each member replies its self-mask seed for it
                       (:data:`SELF_SEED_KEY`), given for one set per round only
train r + 1 / final    the masked sum of round r and :data:`SELF_SEEDS_KEY`: a config
                       record of every contributor's revealed seed, by name
=====================  =====================================================================

Round and session travel under :data:`~crossfed.protocol.ROUND_KEY` and
:data:`~crossfed.protocol.SESSION_KEY`, the phase under
:data:`~crossfed.protocol.PHASE_KEY`, as in every other message.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CONTRIBUTORS_KEY",
    "PHASE_REMASK",
    "PHASE_REVEAL",
    "SELF_SEEDS_KEY",
    "SELF_SEED_KEY",
]

#: Config entry: the contributor set of a masked aggregate (a list of institution names).
CONTRIBUTORS_KEY: Final = "contributors"
#: Query phase: send this round's quantised update again, masked for a smaller set.
PHASE_REMASK: Final = "remask"
#: Query phase: reveal this round's self-mask seed for one set.
PHASE_REVEAL: Final = "reveal"
#: Reply config entry: one institution's revealed self-mask seed (bytes).
SELF_SEED_KEY: Final = "self-seed"
#: RecordDict key of the config record (institution name to seed) beside a masked sum.
SELF_SEEDS_KEY: Final = "self-seeds"
