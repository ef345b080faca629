"""How the suite shares two cores: real-process tests one at a time, the rest beside them.

``pytest`` runs on two xdist workers (``-n 2 --dist loadscope`` in
``pyproject.toml``). The tests marked ``integration`` start real processes
(SuperLinks, SuperNodes, Ray) and spend most of their wall time waiting on them
(Flower's 30 s heartbeat, its 3 s polls), so all of them form one unit of work
that one worker runs in one process, one after another — never two federations
or a Ray start-up beside another one, exactly as without xdist. The other
worker takes the CPU-bound tests, one module at a time (a module's fixtures are
built once). Within that unit the fault scenarios, which start the most
processes at once, run last, when the CPU-bound tests have usually finished.

xdist's own ``loadgroup`` mode cannot be used: with pytest 9 the group suffix
it writes into node ids is lost. The scheduler here groups by path instead, and
collection fails if a test marked ``integration`` lies outside those paths.

No test may depend on the machine being idle: hypothesis's per-example deadline
(200 ms by default) and its "too slow" health check are timing assertions, so
the profile loaded here turns both off for every property test; a test that
hangs is still stopped by the timeouts the tests set on their processes.

``pytest -n 0`` runs everything in one process, in the same order.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings

__all__: list[str] = []

#: Where the tests that start real processes live (one unit of work under xdist).
PROCESS_PATHS = ("tests/integration/", "tests/simulations/test_bench.py")
#: Modules that run last among them (the heaviest start-up: three federations).
LAST = ("tests/integration/test_faults.py",)

settings.register_profile("crossfed", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("crossfed")


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def unit_of_work(nodeid: str) -> str:
    """The xdist unit a test belongs to: all real-process tests together, else its module."""
    return "processes" if nodeid.startswith(PROCESS_PATHS) else _module(nodeid)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse an integration test the scheduler would not group; fault scenarios last."""
    stray = [
        item.nodeid
        for item in items
        if item.get_closest_marker("integration") and unit_of_work(item.nodeid) != "processes"
    ]
    if stray:
        raise pytest.UsageError(
            f"tests marked integration outside {PROCESS_PATHS} (add the path there): {stray[:3]}"
        )
    items.sort(key=lambda item: _module(item.nodeid) in LAST)  # stable: otherwise unchanged


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``--dist loadscope``, schedule by :func:`unit_of_work` rather than by module."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling  # only when xdist runs the session

    class ProcessesTogether(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return unit_of_work(nodeid)

    return ProcessesTogether(config, log)
