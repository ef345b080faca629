"""How many refused aggregates an institution answers before it stops decrypting.

Whether an institution accepts or refuses an aggregate depends on what it
decrypted, hence on the shared CKKS secret key: an aggregator that edits a
genuine sum's bytes (``c1 += λ`` plus a plaintext offset) and watches the
accept/refuse bit runs a binary search on the key (red-team finding F5: about
37,000 such queries recover it). The fixed error code hides *why* an aggregate
was refused, not *whether*. So the number of refusals is what must be bounded.
A failed message of a run costs one of three things (:func:`settle_failure`):

* **nothing** — a failure decided before anything of the message was
  decrypted, by bytes the aggregator wrote or by the bank's own key file
  (:data:`KEY_INDEPENDENT`: the message's structure, a ciphertext's header, a
  contributor list too short or another binding,
  :class:`crypto.HeaderRefusedError`). Its outcome does not depend on the key:
  counting it would only let the aggregator, or an honest fault such as a
  stale binding after a missed round, lock the institution out for free;
* **the run** — a refusal of a sum whose check values *verified*, by a policy
  that reads nothing but that sum (the summed-weight cap, the movement bound:
  :class:`~clients.errors.TamperedAggregateError`), or any failure once every
  aggregate of the message verified (training on the verified model, the
  reply's encryption). The run is closed (below) but the budget is not spent;
* **the run and one unit of the budget** — every other failure of a message
  whose ciphertexts were being decrypted: a check value that does not verify,
  a decryption that yields no valid sum, anything raised while decrypting.

*Why a policy refusal of a verified sum need not spend the budget.* The budget
bounds bits about the secret key. Once the check values verified, the
decrypted sum is the genuine sum of the declared contributors' updates, up to
shifts below the check's detection limit (docs/security.md, "Detection limits":
0.17 to 1.1 on one coordinate of the weighted sum) — the aggregator's edits did
not get through, so the policy reads the contributors' data, not the key. An
honest contributor clips its update and caps its weight, so a sum of honest
updates lies inside both bounds with a margin (the movement bound's CKKS
slack, ``1e-3 + 1e-4 sqrt(d)`` on the average; the weight's 0.5): a policy
refusal needs a contributor that broke its bound, that is a malicious
*institution* — and every institution holds the shared secret key already, so
it gains nothing from a key oracle. The aggregator alone sees no plaintext and
cannot scale a sum without failing the check, so to make a policy refuse an
honest sum its edit must move the sum further than the policy's margin; the
check catches an edit that large with some probability ``1 - p`` (``p`` falls
as the edit grows, docs/security.md), and each catch spends the budget. So the
policy refusals it can cause with edits are, in expectation, at most
``REFUSAL_BUDGET * p / (1 - p)`` before the budget is gone, not one per run.
The margin is the one assumption: honest updates that all sit on the clip norm
and point the same way to within about ``1e-4`` would put the honest sum on the
movement bound's edge (DP's weights of 1 put the summed weight 0.5 from it).
What is left is stated in docs/security.md: a colluding institution that puts
the sum on a bound's edge learns whether an undetected edit crossed it, one bit
per *run* (the run is closed), and it holds the key anyway. Counting these
refusals instead let one institution alone lock every honest institution out
in three runs, one out-of-bounds update each (red team R2).

The two bounds:

* **per run** — after one aggregate of a run is refused (either kind above), the
  institution decrypts nothing more in that run: every later message that
  carries a ciphertext is refused with the same code before anything is
  decrypted (:func:`close_run`, :func:`check_may_decrypt`). A deployed
  institution also writes the run's closure to its refusal file, so a SuperNode
  that the aggregator makes rejoin (with a fresh, empty node state) still
  refuses that run (red team R5);
* **across runs** — refusals of the third kind are counted in the refusal file
  of the federation key (:mod:`clients.refusal_count`: in the kit, 0600, one per
  key whatever the ``--out``). Once :data:`REFUSAL_BUDGET` are spent, the
  institution decrypts nothing in any run until its operator has read
  ``institution.log`` and reset the count (``crossfed client --reset-refusals``
  or deleting the file). A file that cannot be read, parsed or written counts
  as spent: fail closed.

What this costs an attacker, plainly: the aggregator can spend the budget with
one forged aggregate per run (an encryption under the public context, a few
milliseconds): a denial of service of three runs, one message each, after which
the operator reviews and resets. One institution alone can no longer do so.

What crosses the wire does not change: a refusal because the run is closed or
the budget spent is raised as :class:`DecryptionWithheldError`, a
:class:`~clients.errors.TamperedAggregateError`, and so leaves as the same
``INTEGRITY_FAILED`` code and text as every other refused aggregate; the
encryption mod raises it only after the message's record-level checks, so a
message malformed in its records gets the same answer in a closed run as in an
open one (red team R6; a message with a genuine statistics sum and a malformed
model header still tells them apart, docs/security.md). It depends on the
count of earlier refusals (which the aggregator caused and knows), never on a
decrypted value.

Accepted aggregates are not counted: the aggregator's whole transcript is
fixed by where its at most :data:`REFUSAL_BUDGET` counted refusals fell among
its queries, about ``REFUSAL_BUDGET * log2(queries)`` bits, not the one bit per
query F5 needs tens of thousands of.

In simulation no file is configured: the per-run rule applies (a simulation is
one Flower run, its closure in the node state), the cross-run budget does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flwr.app import ConfigRecord, Context

import crypto
from clients.errors import (
    ClientError,
    InboundMessageError,
    KeyMaterialError,
    MaskReuseRefusedError,
    TamperedAggregateError,
)
from clients.local_log import institution_logger
from clients.refusal_count import REFUSAL_BUDGET, RefusalBudget, alert_operator, refusal_budget
from clients.run_state import state_key
from crossfed.protocol import FederationSettings

if TYPE_CHECKING:
    from clients.kit import InstitutionKit

__all__ = [
    "KEY_INDEPENDENT",
    "REFUSAL_BUDGET",
    "REFUSAL_FILE_KEY",
    "DecryptionWithheldError",
    "RefusalBudget",
    "RefusalBudgetSpentError",
    "budget_of",
    "check_may_decrypt",
    "close_run",
    "kit_refusal_budget",
    "refusal_budget",
    "run_closed",
    "settle_failure",
]

#: Node config key of the count's path (set by :mod:`clients.app_runner`).
REFUSAL_FILE_KEY = "refusal-file"

_CLOSED = "-refused"


class DecryptionWithheldError(TamperedAggregateError):
    """The run is closed or the refusal budget spent: nothing was decrypted.

    A :class:`~clients.errors.TamperedAggregateError`, so the wire sees
    ``INTEGRITY_FAILED`` exactly as for any refused aggregate.
    """


class RefusalBudgetSpentError(ClientError):
    """``crossfed client`` will not join: the refusal budget is spent (operator review)."""


#: Failures decided before anything of the message is decrypted, whatever the key: the
#: message's structure, a ciphertext's header (contributors, binding), the bank's own key
#: file, a run already closed, the mask ledger (what was quantised and revealed before, which
#: the aggregator asked for). They neither close the run nor spend the budget.
KEY_INDEPENDENT: tuple[type[BaseException], ...] = (
    DecryptionWithheldError,
    InboundMessageError,
    KeyMaterialError,
    MaskReuseRefusedError,
    crypto.ContextMismatchError,
    crypto.HeaderRefusedError,
    crypto.MalformedDataError,
    crypto.SecretKeyRequiredError,
    crypto.ShapeMismatchError,
)


def budget_of(context: Context) -> RefusalBudget | None:
    """The node's refusal budget, if its node config names a file (a deployment)."""
    path = context.node_config.get(REFUSAL_FILE_KEY)
    return RefusalBudget(Path(path)) if isinstance(path, str) and path else None


def kit_refusal_budget(kit: InstitutionKit) -> RefusalBudget:
    """The refusal count of ``kit``'s federation key, in the kit (:func:`refusal_budget`)."""
    return refusal_budget(kit.path, kit.manifest.context_fingerprint)


def _closed_key(settings: FederationSettings) -> str:
    return state_key(settings) + _CLOSED


def run_closed(context: Context, settings: FederationSettings, session: str) -> bool:
    """Whether an aggregate of this run (pinned ``session``) was refused already.

    In this node state, or — in a deployment — in the refusal file, which a
    SuperNode made to rejoin does not lose.
    """
    record = context.state.config_records.get(_closed_key(settings))
    if record is not None and record.get("session") == session:
        return True
    budget = budget_of(context)
    return budget is not None and budget.closed(session)


def close_run(
    context: Context, settings: FederationSettings, session: str, *, spend: bool = True
) -> None:
    """Record a refused aggregate: close the run and, if ``spend``, one unit of the budget.

    ``spend=False`` only for a failure whose outcome cannot depend on the key
    (:func:`settle_failure` decides).
    """
    context.state[_closed_key(settings)] = ConfigRecord({"session": session})
    institution_logger().error(
        "an aggregate of session %r was refused (%s): this institution decrypts nothing "
        "more in this run",
        session,
        "counted against the refusal budget" if spend else "a verified sum: not counted",
    )
    budget = budget_of(context)
    if budget is None:
        return
    count = budget.record(session, spend=spend)
    if spend and count >= REFUSAL_BUDGET:
        alert_operator(
            f"{count} refused aggregates (budget {REFUSAL_BUDGET}): this institution "
            "decrypts nothing in any run until its operator has reviewed institution.log "
            f"and reset the count (`crossfed client --reset-refusals`, or delete {budget.path})"
        )


def settle_failure(
    context: Context,
    settings: FederationSettings,
    session: str,
    failure: BaseException | None,
    *,
    verified: bool,
) -> None:
    """What a failed message that carried ciphertexts costs (the module docstring's rule).

    Parameters
    ----------
    failure:
        The exception, or None for an error reply from the handlers.
    verified:
        Whether every aggregate of the message had verified when it failed.
    """
    if isinstance(failure, KEY_INDEPENDENT):
        return
    policy = verified or isinstance(failure, TamperedAggregateError)
    close_run(context, settings, session, spend=not policy)


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
    if budget is not None and budget.spent():
        alert_operator(
            f"the refusal budget ({REFUSAL_BUDGET}) is spent: nothing is decrypted until "
            f"the operator resets it (`crossfed client --reset-refusals`, or delete {budget.path})"
        )
        raise DecryptionWithheldError("the refusal budget is spent: nothing is decrypted")
