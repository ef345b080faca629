"""A client mod that reports the institution's CPU seconds for each reply.

Outermost mod: the ``cpu-s`` metric covers decryption, training and
encryption, and feeds the compliance-cost model's measured operational cost.
"""

from __future__ import annotations

import time

from flwr.app import Context, Message, MetricRecord
from flwr.clientapp.typing import ClientAppCallable

from crossfed.protocol import CPU_METRIC, METRICS_KEY

__all__ = ["timing_mod"]


def timing_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Add ``cpu-s`` (process CPU seconds spent on this message) to the reply's metrics."""
    started = time.process_time()
    reply = call_next(msg, context)
    if reply.has_error():
        return reply
    spent = time.process_time() - started
    record = reply.content.metric_records.get(METRICS_KEY)
    metrics = dict(record) if record is not None else {}
    metrics[CPU_METRIC] = spent
    reply.content[METRICS_KEY] = MetricRecord(metrics)
    return reply
