"""The simulated institutions' CPU, measured from outside (no figure crosses the wire).

Institutions used to report their CPU seconds in every reply. A per-institution
figure in clear is a leak (CPU time grows about linearly with an institution's
rows), so the harness measures it itself: in Flower's simulation engine the
ServerApp runs in a thread of this (the driver's) process, and with a local
Ray cluster every process Ray starts — GCS, raylet, its agents and the worker
processes — descends from this process. The virtual institutions run inside
Flower's ``ClientAppActor`` actors, one Ray worker process each.

:class:`RayWorkerCpu` sums, over those actor processes, the user plus system CPU
seconds spent between :meth:`~RayWorkerCpu.start` and reading the stopwatch it
returns (psutil; a process first seen at the reading counts whole, so a worker
that became an actor during the round is counted). Ray's daemons and idle
workers are left out: they are the simulator's overhead, not an institution's.
Limits, stated: a worker that exits before the reading loses that round's CPU
(Flower's actors live for the whole simulation), and a Ray cluster given by
address runs its workers elsewhere — there the harness reports no figure.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import psutil

__all__ = ["ACTOR_NAME", "RayWorkerCpu"]

#: The name Ray gives the processes of Flower's simulation actors.
ACTOR_NAME = "ClientAppActor"

_Snapshot = dict[tuple[int, float], tuple[bool, float]]


class RayWorkerCpu:
    """CPU seconds of this process's descendants that run Flower's ClientApp actors.

    Parameters
    ----------
    root
        The process whose descendants are measured (default: this one).
    name
        Substring of the process name or command line that marks a measured process.
    """

    source = (
        "measured from outside with psutil: user+system CPU of the simulation's Ray worker "
        "processes running Flower's ClientAppActor (the virtual institutions), from sending "
        "each training round's messages to aggregating its replies; Ray's own daemons excluded;"
        " nothing is reported by the institutions"
    )

    def __init__(self, root: int | None = None, name: str = ACTOR_NAME) -> None:
        self.root = os.getpid() if root is None else root
        self.name = name

    def start(self) -> Callable[[], float]:
        """Snapshot every descendant's CPU; the function returned reads the actors' CPU since."""
        before = self._snapshot()

        def since() -> float:
            spent = 0.0
            for key, (measured, cpu) in self._snapshot().items():
                if measured:
                    previous = before.get(key)
                    spent += cpu - (previous[1] if previous is not None else 0.0)
            return max(spent, 0.0)

        return since

    def _snapshot(self) -> _Snapshot:
        """``(pid, start time) -> (is an actor, CPU seconds)`` of every live descendant."""
        try:
            children = psutil.Process(self.root).children(recursive=True)
        except psutil.Error:
            return {}
        found: _Snapshot = {}
        for child in children:
            try:
                with child.oneshot():
                    times = child.cpu_times()
                    label = child.name()
                    if self.name not in label:
                        label = " ".join(child.cmdline())
                    found[(child.pid, child.create_time())] = (
                        self.name in label,
                        times.user + times.system,
                    )
            except psutil.Error:  # ended, or not ours to read: nothing to count
                continue
        return found
