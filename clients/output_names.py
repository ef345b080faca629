"""The names of the files an institution's run leaves in its output folder.

Kept apart from :mod:`clients.outputs` (which needs torch and scikit-learn to
write them) so that ``crossfed client``, which only checks and promotes those
files, starts without importing either.
"""

from __future__ import annotations

__all__ = ["METRICS_FILE", "MODEL_FILE", "SCORECARD_FILE", "WORK_DIR"]

MODEL_FILE = "global_model.npz"
SCORECARD_FILE = "scorecard.csv"
METRICS_FILE = "metrics.json"
#: The SuperNode's and the runner's working folder inside the output folder (its
#: local log, the refusal count).
WORK_DIR = ".supernode"
