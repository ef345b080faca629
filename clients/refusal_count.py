"""The file that carries an institution's refusals across runs and restarts.

One small JSON file (mode 0600) per federation key, in the institution's kit
folder beside ``secret.ctx`` (:func:`refusal_budget`): its name holds the
context fingerprint, so every ``--out`` an operator gives shares one count, and
a kit re-created in the same folder (a new key) starts a new one. It holds

* ``refused``: refused aggregates that spent the budget, over every run;
* ``closed``: digests of the last :data:`MAX_CLOSED` runs (sessions) in which an
  aggregate was refused, so that a SuperNode the aggregator made rejoin (a
  fresh, empty node state) still decrypts nothing more in that run.

Writers hold an exclusive ``fcntl.flock`` on a lock file beside it: the
runner for its whole lifetime (:meth:`RefusalBudget.claim`, so one process at
a time decrypts under this key's budget and nothing can slip between the check
before decryption and the count after it), anyone else for one
read-modify-write. A lock that is busy is never waited for: a count that
cannot be written fails closed. The writes themselves go through
:func:`crypto.write_atomically`. A file that cannot be read or parsed counts
as spent.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from clients.errors import ClientError
from clients.local_log import institution_logger
from crypto import write_atomically

__all__ = [
    "MAX_CLOSED",
    "REFUSAL_BUDGET",
    "RefusalBudget",
    "RefusalCountBusyError",
    "alert_operator",
    "refusal_budget",
]

#: Refused aggregates, over all runs, after which the institution decrypts nothing.
#: Each refusal that spends it gives a malicious aggregator at most one key-dependent
#: bit; F5's attack needs tens of thousands. Three leaves room for an honest fault.
REFUSAL_BUDGET = 3

#: Closed runs remembered (the latest); an older one reopened is no more than a new run.
MAX_CLOSED = 64

_FORMAT = "crossfed-refusals/v2"
_FORMAT_V1 = "crossfed-refusals/v1"  # a count beside the log, before the closed runs
_MAX_BYTES = 8192
_DIGEST = re.compile(r"[0-9a-f]{32}")
_FINGERPRINT = re.compile(r"[0-9a-f]{16,128}")
_SESSION_LABEL = b"crossfed/closed-run/v1\x00"

#: Lock files this process holds (path -> descriptor), for the runner's lifetime.
_CLAIMED: dict[str, int] = {}
#: Serialises this process's read-modify-writes (the lock file serialises processes).
_THREAD_LOCK = threading.Lock()
#: Paths whose count could not be written in this process: treated as spent.
_UNRECORDED: set[str] = set()


class RefusalCountBusyError(ClientError):
    """Another process holds this key's refusal count (a ``crossfed client`` is running)."""


@dataclass(frozen=True)
class _Count:
    refused: int
    closed: tuple[str, ...]


_SPENT = _Count(REFUSAL_BUDGET, ())


def _session_digest(session: str) -> str:
    """What the file keeps of a session: a digest (no aggregator-chosen text on disk)."""
    return hashlib.sha256(_SESSION_LABEL + session.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class RefusalBudget:
    """The persistent refusal count of one federation key, in ``path`` (JSON, mode 0600).

    A missing file is a count of 0 and no closed run. An unreadable, oversized
    or malformed file counts as spent: the institution fails closed.
    """

    path: Path

    @property
    def lock_path(self) -> Path:
        """The lock file beside the count (the count itself is replaced on each write)."""
        return self.path.with_name(f".{self.path.name}.lock")

    def _read(self) -> _Count:
        data: object = None
        try:
            with self.path.open("rb") as handle:
                raw = handle.read(_MAX_BYTES + 1)
            if len(raw) <= _MAX_BYTES:
                data = json.loads(raw)
        except FileNotFoundError:
            return _Count(0, ())
        except (OSError, ValueError) as exc:
            alert_operator(f"cannot read the refusal count {self.path} ({exc}): treated as spent")
            return _SPENT
        count = _parse(data)
        if count is None:
            alert_operator(f"the refusal count {self.path} is malformed: treated as spent")
            return _SPENT
        return count

    def refused(self) -> int:
        """Refused aggregates that spent the budget; :data:`REFUSAL_BUDGET` if unusable."""
        return self._read().refused

    def spent(self) -> bool:
        """Whether no more aggregates may be decrypted, in any run."""
        return str(self.path) in _UNRECORDED or self.refused() >= REFUSAL_BUDGET

    def closed(self, session: str) -> bool:
        """Whether an aggregate of the run pinned to ``session`` was refused (any process)."""
        return _session_digest(session) in self._read().closed

    def record(self, session: str | None = None, *, spend: bool = True) -> int:
        """Close the run of ``session`` and, if ``spend``, count one refusal; the new count.

        A count that cannot be written (or whose lock another process holds)
        leaves this process refusing everything (:meth:`spent`), since the file
        would not stop the next run.
        """
        with _THREAD_LOCK:
            try:
                with self._locked():
                    now = self._read()
                    refused = min(now.refused, REFUSAL_BUDGET) + (1 if spend else 0)
                    closed = now.closed
                    if session is not None:
                        digest = _session_digest(session)
                        closed = (*(d for d in closed if d != digest), digest)[-MAX_CLOSED:]
                    self._write(_Count(refused, closed))
                    return refused
            except (OSError, RefusalCountBusyError) as exc:
                _UNRECORDED.add(str(self.path))
                alert_operator(
                    f"cannot write the refusal count {self.path} ({exc}): refusing everything"
                )
                return REFUSAL_BUDGET

    def reset(self) -> None:
        """Set the count to 0 (the operator's explicit decision after a review).

        Closed runs stay closed. Raises :class:`RefusalCountBusyError` while a
        runner holds the count, :class:`OSError` if it cannot be written.
        """
        with _THREAD_LOCK, self._locked():
            now = self._read()
            self._write(_Count(0, now.closed if now is not _SPENT else ()))
            _UNRECORDED.discard(str(self.path))

    @contextmanager
    def claim(self) -> Iterator[None]:
        """Hold this count's lock until the block ends (the runner's whole lifetime).

        Raises
        ------
        RefusalCountBusyError
            Another process holds it: another ``crossfed client`` uses this kit.
        OSError
            The lock file cannot be created.
        """
        key = str(self.path)
        if key in _CLAIMED:
            raise RefusalCountBusyError(f"{self.path} is already claimed in this process")
        fd = self._lock()
        _CLAIMED[key] = fd
        try:
            yield
        finally:
            del _CLAIMED[key]
            os.close(fd)  # releases the lock

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The lock for one read-modify-write: held already (claimed), or taken now."""
        if str(self.path) in _CLAIMED:
            yield
            return
        fd = self._lock()
        try:
            yield
        finally:
            os.close(fd)

    def _lock(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise RefusalCountBusyError(
                f"another process holds the refusal count {self.path} (is a `crossfed client` "
                "with this kit running?)"
            ) from exc
        except OSError:
            os.close(fd)
            raise
        return fd

    def _write(self, count: _Count) -> None:
        data = {"format": _FORMAT, "refused": count.refused, "closed": list(count.closed)}
        write_atomically(self.path, json.dumps(data).encode(), mode=0o600)


def _parse(data: object) -> _Count | None:
    """The count a file's JSON holds, or None if it is not a well-formed count."""
    if not isinstance(data, dict) or data.get("format") not in (_FORMAT, _FORMAT_V1):
        return None
    refused = data.get("refused")
    closed = data.get("closed", []) if data.get("format") == _FORMAT else []
    if type(refused) is not int or refused < 0 or not isinstance(closed, list):
        return None
    if len(closed) > MAX_CLOSED or not all(
        isinstance(d, str) and _DIGEST.fullmatch(d) for d in closed
    ):
        return None
    return _Count(refused, tuple(closed))


def alert_operator(line: str) -> None:
    """Loudly, locally: the institution's log and its console (never the wire)."""
    institution_logger().error("REFUSAL BUDGET: %s", line)
    print(f"crossfed institution: REFUSAL BUDGET: {line}", file=sys.stderr, flush=True)


def refusal_budget(kit_dir: Path, fingerprint: str) -> RefusalBudget:
    """The refusal count of the federation key ``fingerprint``, kept in its kit ``kit_dir``.

    ``KIT/refusals-<first 16 hex digits of the context fingerprint>.json``: the
    count belongs to the key, not to an output folder, so a new ``--out`` does
    not start it again (red team R4).

    Raises
    ------
    ValueError
        ``fingerprint`` is not a lowercase hex digest.
    """
    if not _FINGERPRINT.fullmatch(fingerprint):
        raise ValueError("a context fingerprint is a lowercase hex digest")
    return RefusalBudget(kit_dir.resolve() / f"refusals-{fingerprint[:16]}.json")
