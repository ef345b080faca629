"""Record keys of a masked round (pairwise masks under the encryption; :mod:`crypto.masked`).

A masked round adds to the messages of an encrypted one:

=====================  =====================================================================
message                what it carries (beyond the round, session and statistics)
=====================  =====================================================================
query, phase roll-call nothing but the session; each institution replies its name only
                       (:data:`NAME_KEY`), which the aggregator declares sets with
train r                :data:`CONTRIBUTORS_KEY`: the contributor set S the aggregator
                       declares; each member replies its update masked for S
query, phase remask    :data:`CONTRIBUTORS_KEY`: the survivors S' after a dropout, and
                       :data:`PURPOSE_KEY`: which of the round's masked vectors; each
                       replies the *same* quantised update masked for S'
query, phase reveal    :data:`CONTRIBUTORS_KEY`: the set whose sum the aggregator holds,
                       and :data:`PURPOSE_KEY`; each member replies its self-mask seed
                       for it (:data:`SELF_SEED_KEY`), given for one set per round only
train r + 1 / final    the masked sum of round r and :data:`SELF_SEEDS_KEY`: a config
                       record of every contributor's revealed seed, by name
statistics query       :data:`CONTRIBUTORS_KEY`; each replies its feature moments as exact
                       fixed-point integers (:data:`FRACTION_BITS`), masked for round 0
                       and purpose ``stats``
every later message    the statistics sum and :data:`STATS_SEEDS_KEY` (its seeds)
evaluate r             :data:`CONTRIBUTORS_KEY` and the round's seeds; each replies its
                       metrics times its test-set size and the size, fixed point, masked
                       for round r and purpose ``evaluate``
final                  also the last evaluation sum and :data:`EVALUATION_SEEDS_KEY`
=====================  =====================================================================

Round and session travel under :data:`~crossfed.protocol.ROUND_KEY` and
:data:`~crossfed.protocol.SESSION_KEY`, the phase under
:data:`~crossfed.protocol.PHASE_KEY`, as in every other message.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CONTRIBUTORS_KEY",
    "EVALUATION_SEEDS_KEY",
    "FRACTION_BITS",
    "NAME_KEY",
    "PHASE_REMASK",
    "PHASE_REVEAL",
    "PHASE_ROLL_CALL",
    "PURPOSES",
    "PURPOSE_KEY",
    "PURPOSE_TRAIN",
    "SELF_SEEDS_KEY",
    "SELF_SEED_KEY",
    "STATS_SEEDS_KEY",
]

#: Config entry: the contributor set of a masked aggregate (a list of institution names).
CONTRIBUTORS_KEY: Final = "contributors"
#: Query phase: reply this institution's name (masked presets: sets are lists of names).
PHASE_ROLL_CALL: Final = "roll-call"
#: Reply config entry of a roll-call: the institution's name, as every kit lists it.
NAME_KEY: Final = "institution"
#: Config entry of a remask or reveal query: which masked vector of the round it is about.
PURPOSE_KEY: Final = "purpose"
#: The purpose of a training round's masked update.
PURPOSE_TRAIN: Final = "train"
#: Every purpose a masked vector may have: statistics (round 0), training, evaluation.
PURPOSES: Final = ("stats", "train", "evaluate")
#: Query phase: send this round's quantised update again, masked for a smaller set.
PHASE_REMASK: Final = "remask"
#: Query phase: reveal this round's self-mask seed for one set.
PHASE_REVEAL: Final = "reveal"
#: Reply config entry: one institution's revealed self-mask seed (bytes).
SELF_SEED_KEY: Final = "self-seed"
#: RecordDict key of the config record (institution name to seed) beside a masked sum.
SELF_SEEDS_KEY: Final = "self-seeds"
#: RecordDict key of the seeds of the masked statistics sum (every message after round 0).
STATS_SEEDS_KEY: Final = "stats-self-seeds"
#: RecordDict key of the seeds of the last masked evaluation sum (the final message).
EVALUATION_SEEDS_KEY: Final = "evaluation-self-seeds"
#: Fraction bits of masked statistics and evaluation metrics (exact fixed-point sums).
FRACTION_BITS: Final = 32
