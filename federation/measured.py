"""Per-round measurements around any Flower strategy: time, CPU, bytes, privacy.

:class:`MeasuredStrategy` wraps the outermost strategy of a run and records,
for each training round, the wall time from sending to aggregation, the
aggregator's CPU seconds (this thread's, for configuring and aggregating),
the payload bytes sent down and received up, the institutions' CPU seconds
(the ``cpu-s`` metric each reply carries) and, with distributed DP, the ε
spent so far. These are the measured inputs of the compliance-cost model's
operational cost and of ``crossfed bench round``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from crossfed.protocol import CPU_METRIC
from federation.dp import effective_noise_multiplier, epsilon_spent
from federation.wrapping import DelegatingStrategy

__all__ = ["MeasuredStrategy", "RoundMeasurement", "content_bytes"]


@dataclass(frozen=True)
class RoundMeasurement:
    """What one training round cost."""

    round: int
    round_s: float
    aggregator_cpu_s: float
    bytes_down: int
    bytes_up: int
    institutions_sampled: int
    institutions_replied: int
    institutions_cpu_s: float
    epsilon: float | None

    def to_dict(self) -> dict[str, float | int | None]:
        """Plain data for ``metrics.json``."""
        return asdict(self)


def content_bytes(content: RecordDict) -> int:
    """Payload bytes of a message: arrays' data, bytes and strings in configs, 8 per number."""
    total = 0
    for record in content.values():
        if isinstance(record, ArrayRecord):
            total += sum(len(array.data) for array in record.values())
        elif isinstance(record, ConfigRecord | MetricRecord):
            for value in record.values():
                items = value if isinstance(value, list) else [value]
                total += sum(len(v) if isinstance(v, bytes | str) else 8 for v in items)
    return total


class MeasuredStrategy(DelegatingStrategy):
    """Delegate everything to ``strategy``; record a :class:`RoundMeasurement` per round.

    Parameters
    ----------
    strategy:
        The strategy to measure (Flower's FedAvg, or encrypted aggregation around it).
    dp_noise_multiplier, dp_delta:
        Distributed DP settings; ε is reported when the multiplier is positive.
    """

    def __init__(
        self, strategy: Strategy, *, dp_noise_multiplier: float = 0.0, dp_delta: float = 1e-5
    ) -> None:
        super().__init__(strategy)
        self.dp_noise_multiplier = dp_noise_multiplier
        self.dp_delta = dp_delta
        self.rounds: list[RoundMeasurement] = []
        self._multipliers: list[float] = []
        self._started = 0.0
        self._cpu = 0.0
        self._down = 0
        self._sampled = 0

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Delegate; start the round's clocks and count bytes sent."""
        self._started = time.perf_counter()
        cpu = time.thread_time()
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        self._cpu = time.thread_time() - cpu
        self._down = sum(content_bytes(m.content) for m in messages)
        self._sampled = len(messages)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Delegate; record the round's measurement."""
        received = list(replies)
        cpu = time.thread_time()
        up = sum(content_bytes(r.content) for r in received if not r.has_error())
        institutions_cpu = sum(_cpu_of(r) for r in received)
        replied = sum(not r.has_error() for r in received)
        try:
            return self.strategy.aggregate_train(server_round, received)
        finally:
            epsilon = None
            if self.dp_noise_multiplier > 0 and self._sampled:
                self._multipliers.append(
                    effective_noise_multiplier(self.dp_noise_multiplier, replied, self._sampled)
                )
                epsilon = epsilon_spent(self._multipliers, self.dp_delta)
            self.rounds.append(
                RoundMeasurement(
                    round=server_round,
                    round_s=time.perf_counter() - self._started,
                    aggregator_cpu_s=self._cpu + time.thread_time() - cpu,
                    bytes_down=self._down,
                    bytes_up=up,
                    institutions_sampled=self._sampled,
                    institutions_replied=replied,
                    institutions_cpu_s=institutions_cpu,
                    epsilon=epsilon,
                )
            )


def _cpu_of(reply: Message) -> float:
    if reply.has_error():
        return 0.0
    total = 0.0
    for record in reply.content.metric_records.values():
        value = record.get(CPU_METRIC)
        if isinstance(value, int | float):
            total += float(value)
    return total
