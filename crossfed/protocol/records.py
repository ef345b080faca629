"""Record keys of the messages exchanged by the ServerApp and the institutions' ClientApp.

Keys of the records carried in Flower messages; one place, so that the two
sides cannot drift apart.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ARRAYS_KEY",
    "AUDIT_HEAD_KEY",
    "CIPHERTEXT_KEY",
    "CONFIG_KEY",
    "CPU_METRIC",
    "DP_SHARES_KEY",
    "EVALUATION_CIPHERTEXT_KEY",
    "EVALUATION_FILE",
    "EVALUATION_KEY",
    "EVALUATION_METRICS",
    "FINAL_QUERY",
    "METRICS_KEY",
    "MODE_KEY",
    "NUM_EXAMPLES_KEY",
    "PHASE_KEY",
    "PHASE_STATS",
    "ROUND_KEY",
    "SESSION_KEY",
    "STATS_CIPHERTEXT_KEY",
    "STATS_KEY",
]

#: RecordDict key of the ArrayRecord with model weights (plaintext) or ciphertext.
ARRAYS_KEY: Final = "arrays"
#: RecordDict key of the ConfigRecord sent to institutions.
CONFIG_KEY: Final = "config"
#: RecordDict key of the MetricRecord returned by institutions.
METRICS_KEY: Final = "metrics"
#: Array name under which serialised ciphertext bytes travel (a uint8 array).
CIPHERTEXT_KEY: Final = "ciphertext"
#: Metric with the example count (plaintext mode only: encrypted replies hide it).
NUM_EXAMPLES_KEY: Final = "num-examples"
#: Config entry with the current round (Flower's own key).
ROUND_KEY: Final = "server-round"
#: Config entry with the federation-wide feature statistics.
STATS_KEY: Final = "stats"
#: Config entry naming the phase of a query message.
PHASE_KEY: Final = "phase"
#: Phase value of the statistics round that precedes training.
PHASE_STATS: Final = "stats"

#: Evaluation metrics an institution reports, in the order they are encrypted.
EVALUATION_METRICS: Final = ("auc", "ks", "brier", "log_loss", "approval_rate")
#: File (in the aggregator's out-dir) with a round's encrypted evaluation sum.
EVALUATION_FILE: Final = "evaluation-round-{round}.bin"
#: Config entry of the final message: the last round's encrypted evaluation sum (bytes).
EVALUATION_CIPHERTEXT_KEY: Final = "evaluation-ciphertext"
#: Config entry with the last round's federation-wide mean metrics (EVALUATION_METRICS order).
EVALUATION_KEY: Final = "evaluation"

#: Config entry with the encrypted federation-wide statistics (bytes).
STATS_CIPHERTEXT_KEY: Final = "stats-ciphertext"
#: Config entry with the aggregation mode, so institutions know whether to encrypt.
MODE_KEY: Final = "mode"

#: Config entry with the number of institutions sharing distributed-DP noise.
DP_SHARES_KEY: Final = "dp-shares"

#: Message type of the last message: the final global model, for institutions to keep.
FINAL_QUERY: Final = "query.final"

#: Config entry with the run's identifier; updates are bound to it (replay protection).
SESSION_KEY: Final = "session"

#: Reply metric with the institution's CPU seconds for the message.
CPU_METRIC: Final = "cpu-s"

#: Config entry of every training and evaluation message: the head hash of the
#: aggregator's audit log when the message was sent, for institutions to keep, so a
#: history rewritten later fails verification against the heads they hold.
AUDIT_HEAD_KEY: Final = "audit-head"
