"""What the aggregator sees on the wire, recorded for the privacy attacks.

:func:`record_updates` is a client mod placed outermost (where
:func:`clients.build_client_app` puts ``extra_mods``), so it sees each training
reply exactly as it leaves the institution: plaintext weights under plaintext
FedAvg, a ciphertext under encrypted FedAvg (then nothing is recorded, because
there is no plaintext update to attack). It writes, per round and institution,
the model the institution sent and its example count into
``<out_dir>/observed/``; :func:`read_updates` reads them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import Context, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable

from crossfed.protocol import ARRAYS_KEY, CONFIG_KEY, METRICS_KEY, NUM_EXAMPLES_KEY, ROUND_KEY
from simulations.engine import ClientMod

__all__ = ["ObservedUpdate", "read_updates", "record_updates"]

_FOLDER = "observed"


@dataclass(frozen=True)
class ObservedUpdate:
    """One institution's plaintext training reply in one round, as the aggregator saw it."""

    round: int
    partition: int
    weights: list[np.ndarray]
    num_examples: int


def _number(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def record_updates(out_dir: str | Path) -> ClientMod:
    """A client mod writing every plaintext training reply under ``out_dir/observed``."""
    folder = Path(out_dir) / _FOLDER

    def mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        reply = call_next(msg, context)
        if msg.metadata.message_type != MessageType.TRAIN or reply.has_error():
            return reply
        arrays = reply.content.array_records.get(ARRAYS_KEY)
        metrics = reply.content.metric_records.get(METRICS_KEY)
        config = msg.content.config_records.get(CONFIG_KEY)
        if arrays is None or metrics is None or config is None:
            return reply  # not a plaintext reply: nothing the aggregator can read
        server_round = _number(config.get(ROUND_KEY, 0))
        partition = int(context.node_config["partition-id"])
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(
            folder / f"round-{server_round}-partition-{partition}.npz",
            *arrays.to_numpy_ndarrays(),
            num_examples=np.asarray(_number(metrics[NUM_EXAMPLES_KEY])),
        )
        return reply

    return mod


def read_updates(out_dir: str | Path) -> list[ObservedUpdate]:
    """Every recorded reply under ``out_dir/observed``, by round then partition."""
    found = []
    for path in (Path(out_dir) / _FOLDER).glob("round-*-partition-*.npz"):
        _, server_round, _, partition = path.stem.split("-")
        with np.load(path) as archive:
            weights = [archive[f"arr_{i}"] for i in range(len(archive.files) - 1)]
            found.append(
                ObservedUpdate(
                    int(server_round), int(partition), weights, int(archive["num_examples"])
                )
            )
    return sorted(found, key=lambda u: (u.round, u.partition))
