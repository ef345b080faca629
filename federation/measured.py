"""Per-round measurements around any Flower strategy: time, CPU, bytes, privacy.

:class:`MeasuredStrategy` wraps the outermost strategy of a run and records,
for each training round, the wall time from sending to aggregation, the
aggregator's CPU seconds (this thread's, for configuring and aggregating),
the payload bytes sent down and received up and, with distributed DP, the ε
spent so far by the run (:mod:`federation.dp`). These are the measured inputs
of the compliance-cost model's operational cost and of ``crossfed bench round``.

The institutions' CPU seconds never come from the institutions: a figure per
institution on the wire would leak (CPU time is close to linear in rows). A
:class:`CpuMeter` given by whoever runs the aggregator measures them from the
outside — the simulation harness measures the processes that play the
institutions (:class:`simulations.cputime.RayWorkerCpu`); a deployed aggregator
has no such view and reports none (``institutions_cpu_s`` is ``None``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from federation.dp import effective_noise_multiplier, epsilon_spent
from federation.wrapping import DelegatingStrategy

__all__ = [
    "NOT_MEASURED",
    "CpuMeter",
    "MeasuredStrategy",
    "RoundMeasurement",
    "SumCounter",
    "content_bytes",
]

#: ``institutions_cpu_source`` when no meter was given (a deployment).
NOT_MEASURED = (
    "not measured: each institution's CPU stays with it (nothing per institution is sent);"
    " the aggregator's own CPU is aggregator_cpu_s"
)


class CpuMeter(Protocol):
    """Measures, from outside, the CPU the institutions spend in a round.

    Attributes
    ----------
    source:
        Where the figure comes from, in words, for reports.
    """

    source: str

    def start(self) -> Callable[[], float]:
        """Start measuring; the function returned gives the CPU seconds spent since."""
        ...


@runtime_checkable
class SumCounter(Protocol):
    """A strategy that says how many replies its latest training round summed."""

    last_summed: int


@dataclass(frozen=True)
class RoundMeasurement:
    """What one training round cost, and what it released.

    ``institutions_replied`` counts replies that were not errors;
    ``institutions_summed`` those that entered the aggregate (0 for a round
    refused for lack of quorum). ``noise_multiplier`` is the round's effective
    DP noise multiplier (None without DP, or when nothing was released);
    ``epsilon`` the run's ε after the round, restarts included.
    """

    round: int
    round_s: float
    aggregator_cpu_s: float
    bytes_down: int
    bytes_up: int
    institutions_sampled: int
    institutions_replied: int
    institutions_summed: int
    institutions_cpu_s: float | None
    noise_multiplier: float | None
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
    dp_institutions:
        The share count institutions divide their noise by (the run's
        ``institutions``); the accountant uses the larger of it and the
        number of institutions asked, which can only raise ε.
    prior_noise_multipliers:
        Effective multipliers of the rounds this run released before a
        restart; they are composed first.
    institutions_cpu:
        Measures the institutions' CPU per round from outside (simulation);
        None: not measured.
    """

    def __init__(
        self,
        strategy: Strategy,
        *,
        dp_noise_multiplier: float = 0.0,
        dp_delta: float = 1e-5,
        dp_institutions: int = 0,
        prior_noise_multipliers: Sequence[float] = (),
        institutions_cpu: CpuMeter | None = None,
    ) -> None:
        super().__init__(strategy)
        self.dp_noise_multiplier = dp_noise_multiplier
        self.dp_delta = dp_delta
        self.dp_institutions = dp_institutions
        self.institutions_cpu = institutions_cpu
        self.rounds: list[RoundMeasurement] = []
        #: Effective noise multipliers of every released round of the run, in order.
        self.noise_multipliers: list[float] = list(prior_noise_multipliers)
        self._started = 0.0
        self._cpu = 0.0
        self._down = 0
        self._sampled = 0
        self._institutions_watch: Callable[[], float] | None = None

    @property
    def institutions_cpu_source(self) -> str:
        """Where ``institutions_cpu_s`` comes from, in words."""
        return self.institutions_cpu.source if self.institutions_cpu else NOT_MEASURED

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Delegate; start the round's clocks and count bytes sent."""
        self._started = time.perf_counter()
        if self.institutions_cpu is not None:
            self._institutions_watch = self.institutions_cpu.start()
        cpu = time.thread_time()
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        self._cpu = time.thread_time() - cpu
        self._down = sum(content_bytes(m.content) for m in messages)
        self._sampled = len(messages)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Delegate; record the round's measurement (also when the round is refused)."""
        received = list(replies)
        cpu = time.thread_time()
        try:
            result = self.strategy.aggregate_train(server_round, received)
        except Exception:
            self._record(server_round, received, 0, cpu)
            raise
        self._record(server_round, received, self._summed(received, result[0]), cpu)
        return result

    def _summed(self, received: list[Message], arrays: ArrayRecord | None) -> int:
        """How many replies entered the round's aggregate."""
        if isinstance(self.strategy, SumCounter):
            return self.strategy.last_summed
        # Flower's FedAvg sums every reply that is not an error, or none.
        return sum(not r.has_error() for r in received) if arrays is not None else 0

    def _record(self, server_round: int, received: list[Message], summed: int, cpu: float) -> None:
        multiplier = None
        epsilon = None
        if self.dp_noise_multiplier > 0:
            planned = max(self.dp_institutions, self._sampled, 1)
            if summed > 0:
                multiplier = effective_noise_multiplier(self.dp_noise_multiplier, summed, planned)
                self.noise_multipliers.append(multiplier)
            epsilon = epsilon_spent(self.noise_multipliers, self.dp_delta)
        watch, self._institutions_watch = self._institutions_watch, None
        self.rounds.append(
            RoundMeasurement(
                round=server_round,
                round_s=time.perf_counter() - self._started,
                aggregator_cpu_s=self._cpu + time.thread_time() - cpu,
                bytes_down=self._down,
                bytes_up=sum(content_bytes(r.content) for r in received if not r.has_error()),
                institutions_sampled=self._sampled,
                institutions_replied=sum(not r.has_error() for r in received),
                institutions_summed=summed,
                institutions_cpu_s=watch() if watch is not None else None,
                noise_multiplier=multiplier,
                epsilon=epsilon,
            )
        )
