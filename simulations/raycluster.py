"""A local Ray cluster kept alive across the federated runs of one study.

Flower's simulation engine calls ``ray.init`` at the start of every run and
``ray.shutdown`` at its end. Started in-process, that is a whole local Ray
cluster per run (about 10 s on two cores, measured); connected to an existing
cluster, it is a driver that attaches and detaches (about 2 s). A study runs
four to six federations, so :class:`LocalRayCluster` starts one cluster in a
helper process for the whole study and every run attaches to it, exactly as
runs attach to a user's cluster given with ``--ray-address``.

The helper is a child Python process that calls ``ray.init`` and then waits on
its standard input: closing the pipe (:meth:`LocalRayCluster.close`, or the
parent dying) makes it call ``ray.shutdown`` and exit, so no Ray process
outlives the study and no other user's Ray processes are touched.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
from types import TracebackType

from simulations.errors import SimulationError

__all__ = ["LocalRayCluster"]

# Runs in the helper: start a local cluster, report its address, wait for EOF.
_HELPER = """
import json, sys
import ray
args = json.loads(sys.argv[1])
ray.init(
    num_cpus=args["num_cpus"],
    num_gpus=0,
    object_store_memory=args["object_store_memory"],
    include_dashboard=False,
    _temp_dir=args["temp_dir"],
    configure_logging=False,
    log_to_driver=False,
)
print("ADDRESS " + ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
"""


class LocalRayCluster:
    """A local Ray cluster in a helper process; use as a context manager.

    Parameters
    ----------
    num_cpus
        CPUs the cluster offers (one per concurrently running virtual
        institution); defaults to the machine's count.
    object_store_memory
        Bytes of Ray's shared object store. Flower's messages are small (a
        model update, a ciphertext of a few hundred kB), so the default is
        kept small for memory-bound machines.
    start_timeout
        Seconds to wait for the cluster to come up.

    Attributes
    ----------
    address
        The cluster's GCS address (``host:port``), to pass as
        ``init_args={"address": ...}`` in Flower's backend config.
    """

    def __init__(
        self,
        num_cpus: int | None = None,
        *,
        object_store_memory: int = 256 * 1024 * 1024,
        start_timeout: float = 120.0,
    ) -> None:
        self.num_cpus = num_cpus or os.cpu_count() or 1
        self.object_store_memory = object_store_memory
        self.start_timeout = start_timeout
        self.address: str | None = None
        self._process: subprocess.Popen[str] | None = None
        # Ray's socket paths must stay short: a fresh folder under the system temp.
        self._temp_dir = tempfile.mkdtemp(prefix="crossfed-ray-")

    def start(self) -> str:
        """Start the cluster and return its address.

        Raises
        ------
        SimulationError
            The helper exited or printed no address within ``start_timeout``.
        """
        args = {
            "num_cpus": self.num_cpus,
            "object_store_memory": self.object_store_memory,
            "temp_dir": self._temp_dir,
        }
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
        self._process = subprocess.Popen(
            [sys.executable, "-c", _HELPER, json.dumps(args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        try:
            line = _readline_within(self._process, self.start_timeout)
        except TimeoutError as exc:
            self.close()
            raise SimulationError(
                f"local Ray cluster did not start within {self.start_timeout:.0f} s"
            ) from exc
        if not line.startswith("ADDRESS "):
            self.close()
            raise SimulationError(f"local Ray cluster failed to start: {line.strip()!r}")
        self.address = line.split(" ", 1)[1].strip()
        return self.address

    def close(self) -> None:
        """Shut the cluster down (idempotent); waits for the helper to exit."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=10)
        finally:
            if process.stdout is not None:
                process.stdout.close()
            self.address = None
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _readline_within(process: subprocess.Popen[str], timeout: float) -> str:
    """The helper's first stdout line, or ``TimeoutError``."""
    if process.stdout is None:
        raise TimeoutError("the helper has no stdout pipe")
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise TimeoutError
    return process.stdout.readline()
