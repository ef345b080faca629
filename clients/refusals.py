"""How many tampered aggregates an institution refuses before it stops decrypting.

Whether an institution accepts or refuses an aggregate depends on what it
decrypted, hence on the shared CKKS secret key: an aggregator that edits a
genuine sum's bytes (``c1 += λ`` plus a plaintext offset) and watches the
accept/refuse bit runs a binary search on the key (red-team finding F5: about
37,000 such queries recover it). The fixed error code hides *why* an aggregate
was refused, not *whether*. So the number of refusals is what must be bounded:

* **per run** — after one aggregate of a run is refused
  (``crossfed:INTEGRITY_FAILED``: check value, summed weight, movement bound,
  or a decryption that yields no valid sum; or any other failure of a message
  whose ciphertexts it was decrypting, see :mod:`clients.encryption_mod`), the
  institution decrypts nothing more in that run: every later message that
  carries a ciphertext is refused with the same code before anything is
  decrypted (:func:`close_run`, :func:`check_may_decrypt`);
* **across runs** — refused aggregates are counted in a small file beside the
  local log (:class:`RefusalBudget`, mode 0600). Once :data:`REFUSAL_BUDGET`
  are spent, the institution decrypts nothing in any run until its operator
  has read ``institution.log`` and reset the count
  (``crossfed client --reset-refusals`` or deleting the file). A file that
  cannot be read or parsed counts as spent: fail closed.

What crosses the wire does not change: a refusal because the run is closed or
the budget spent is raised as :class:`DecryptionWithheldError`, a
:class:`~clients.errors.TamperedAggregateError`, and so leaves as the same
``INTEGRITY_FAILED`` code and text as every other refused aggregate; it
depends on the count of earlier refusals (which the aggregator caused and
knows), never on a decrypted value.

Accepted aggregates are not counted: the aggregator's whole transcript is
fixed by where its at most :data:`REFUSAL_BUDGET` refusals fell among its
queries, about ``REFUSAL_BUDGET * log2(queries)`` bits, not the one bit per
query F5 needs tens of thousands of.

In simulation no file is configured: the per-run rule applies (a simulation is
one Flower run), the cross-run budget does not.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from flwr.app import ConfigRecord, Context

from clients.errors import ClientError, TamperedAggregateError
from clients.local_log import institution_logger
from clients.output_names import WORK_DIR
from clients.run_state import state_key
from crossfed.protocol import FederationSettings
from crypto import write_atomically

__all__ = [
    "REFUSALS_FILE",
    "REFUSAL_BUDGET",
    "REFUSAL_FILE_KEY",
    "DecryptionWithheldError",
    "RefusalBudget",
    "RefusalBudgetSpentError",
    "budget_of",
    "check_may_decrypt",
    "close_run",
    "refusal_budget",
    "run_closed",
]

#: Refused aggregates, over all runs, after which the institution decrypts nothing.
#: Each refusal gives a malicious aggregator at most one key-dependent bit; F5's
#: attack needs tens of thousands. Three leaves room for an honest fault.
REFUSAL_BUDGET = 3

#: The count's file name, beside the local log ``institution.log`` in a deployment.
REFUSALS_FILE = "refusals.json"

#: Node config key of the count's path (set by :mod:`clients.app_runner`).
REFUSAL_FILE_KEY = "refusal-file"

_FORMAT = "crossfed-refusals/v1"
_MAX_BYTES = 4096
_CLOSED = "-refused"


class DecryptionWithheldError(TamperedAggregateError):
    """The run is closed or the refusal budget spent: nothing was decrypted.

    A :class:`~clients.errors.TamperedAggregateError`, so the wire sees
    ``INTEGRITY_FAILED`` exactly as for any refused aggregate.
    """


class RefusalBudgetSpentError(ClientError):
    """``crossfed client`` will not join: the refusal budget is spent (operator review)."""


@dataclass(frozen=True)
class RefusalBudget:
    """The persistent count of refused aggregates, in ``path`` (JSON, mode 0600).

    A missing file is a count of 0. An unreadable, oversized or malformed file
    counts as spent (:attr:`REFUSAL_BUDGET`): the institution fails closed.
    """

    path: Path

    def refused(self) -> int:
        """Refused aggregates so far; :data:`REFUSAL_BUDGET` if the file is unusable."""
        data: object = None
        try:
            with self.path.open("rb") as handle:
                raw = handle.read(_MAX_BYTES + 1)
            if len(raw) <= _MAX_BYTES:
                data = json.loads(raw)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            _say(f"cannot read the refusal count {self.path} ({exc}): treated as spent")
            return REFUSAL_BUDGET
        count = data.get("refused") if isinstance(data, dict) else None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            count = None
        if type(count) is not int or count < 0:
            _say(f"the refusal count {self.path} is malformed: treated as spent")
            return REFUSAL_BUDGET
        return count

    def spent(self) -> bool:
        """Whether no more aggregates may be decrypted, in any run."""
        return self.refused() >= REFUSAL_BUDGET

    def record(self) -> int:
        """Count one more refused aggregate; return the new count.

        A count that cannot be written leaves this process refusing everything
        (:func:`check_may_decrypt`), since the file would not stop the next run.
        """
        count = min(self.refused(), REFUSAL_BUDGET) + 1
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, _encode(count), mode=0o600)
        except OSError as exc:
            _UNRECORDED.add(str(self.path))
            _say(f"cannot write the refusal count {self.path} ({exc}): refusing everything")
        return count

    def reset(self) -> None:
        """Set the count to 0 (the operator's explicit decision after a review)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, _encode(0), mode=0o600)
        _UNRECORDED.discard(str(self.path))


#: Paths whose count could not be written in this process: treated as spent.
_UNRECORDED: set[str] = set()


def _encode(count: int) -> bytes:
    return json.dumps({"format": _FORMAT, "refused": count}).encode()


def _say(line: str) -> None:
    """Loudly, locally: the institution's log and its console (never the wire)."""
    institution_logger().error("REFUSAL BUDGET: %s", line)
    print(f"crossfed institution: REFUSAL BUDGET: {line}", file=sys.stderr, flush=True)


def budget_of(context: Context) -> RefusalBudget | None:
    """The node's refusal budget, if its node config names a file (a deployment)."""
    path = context.node_config.get(REFUSAL_FILE_KEY)
    return RefusalBudget(Path(path)) if isinstance(path, str) and path else None


def _closed_key(settings: FederationSettings) -> str:
    return state_key(settings) + _CLOSED


def run_closed(context: Context, settings: FederationSettings, session: str) -> bool:
    """Whether an aggregate of this run (pinned ``session``) was refused already."""
    record = context.state.config_records.get(_closed_key(settings))
    return record is not None and record.get("session") == session


def close_run(context: Context, settings: FederationSettings, session: str) -> None:
    """Record a refused aggregate: close the run and spend one unit of the budget."""
    context.state[_closed_key(settings)] = ConfigRecord({"session": session})
    institution_logger().error(
        "an aggregate of session %r was refused: this institution decrypts nothing more "
        "in this run",
        session,
    )
    budget = budget_of(context)
    if budget is None:
        return
    count = budget.record()
    if count >= REFUSAL_BUDGET:
        _say(
            f"{count} refused aggregates (budget {REFUSAL_BUDGET}): this institution "
            "decrypts nothing in any run until its operator has reviewed institution.log "
            f"and reset the count (`crossfed client --reset-refusals`, or delete {budget.path})"
        )


def check_may_decrypt(context: Context, settings: FederationSettings, session: str) -> None:
    """Refuse, before any decryption, in a closed run or with the budget spent.

    Raises
    ------
    DecryptionWithheldError
        The run is closed, or the budget spent (or unwritable, or unreadable).
    """
    if run_closed(context, settings, session):
        raise DecryptionWithheldError(
            f"an aggregate of session {session!r} was refused earlier: nothing more is "
            "decrypted in this run"
        )
    budget = budget_of(context)
    if budget is not None and (str(budget.path) in _UNRECORDED or budget.spent()):
        _say(
            f"the refusal budget ({REFUSAL_BUDGET}) is spent: nothing is decrypted until "
            f"the operator resets it (`crossfed client --reset-refusals`, or delete {budget.path})"
        )
        raise DecryptionWithheldError("the refusal budget is spent: nothing is decrypted")


def refusal_budget(out_dir: Path) -> RefusalBudget:
    """The count of refused aggregates of the institution whose outputs go to ``out_dir``.

    Beside the local log, in ``OUT/.supernode`` (:data:`~clients.output_names.WORK_DIR`).
    """
    return RefusalBudget(out_dir.resolve() / WORK_DIR / REFUSALS_FILE)
