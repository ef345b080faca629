"""Summing checked replies so that no single reply can stop the sum.

Every reply is parsed and checked on its own first (size, format, context,
run, round, shapes, encoding). Some faults only show when two ciphertexts meet:
a ciphertext at another scale or modulus level that SEAL refuses to add, a
contributor name that another reply already used, more summands than the
preset can hold. :func:`sum_compatible` never lets an error escape:

- a contributor name claimed by more than one reply drops *every* reply
  claiming it: the aggregator cannot tell the genuine institution from one
  that borrowed its name, and keeping whichever came first would let the
  impostor's update stand in for the victim's;
- the rest are added one at a time; a reply that cannot join a sum starts a
  group of its own, and the largest group (the first formed, on a tie) is the
  sum. Honest replies are mutually compatible, so a hostile reply — first in
  line or not — can only drop itself.

Every reply left out gets a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import crypto
from federation.replies import bounded

__all__ = ["SumOutcome", "sum_compatible"]


@dataclass(frozen=True)
class SumOutcome:
    """The sum of the largest compatible group of replies, and why the others were left out.

    Attributes
    ----------
    total
        The encrypted sum, or None when no reply could be summed.
    summed
        The nodes whose replies are in ``total``, in the order given.
    dropped
        Node to the reason its reply is not in ``total``.
    """

    total: crypto.EncryptedUpdate | None
    summed: tuple[int, ...] = ()
    dropped: dict[int, str] = field(default_factory=dict)


def sum_compatible(
    context: crypto.PublicContext, updates: Mapping[int, crypto.EncryptedUpdate]
) -> SumOutcome:
    """Sum ``updates`` (node to checked update); the largest compatible group wins.

    Never raises a :class:`crypto.CryptoError`: every failure to sum is a drop
    reason in the outcome.
    """
    groups: list[tuple[crypto.EncryptedUpdate, list[int]]] = []
    refused = _shared_names(updates)
    for node, update in updates.items():
        if node in refused:
            continue
        for index, (total, members) in enumerate(groups):
            try:
                groups[index] = (crypto.aggregate(context, [total, update]), [*members, node])
                break
            except crypto.CryptoError:
                continue  # not addable to this group: try the next, or start one
        else:
            try:
                groups.append((crypto.aggregate(context, [update]), [node]))
            except crypto.CryptoError as exc:
                refused[node] = bounded(f"{type(exc).__name__}: {exc}")
    if not groups:
        return SumOutcome(None, (), refused)
    total, members = max(groups, key=lambda group: len(group[1]))  # first of the largest
    dropped = dict(refused)
    for other, nodes in groups:
        if other is total:
            continue
        for node in nodes:
            dropped[node] = (
                f"its ciphertext cannot be summed with the {len(members)} replies that were "
                "(another scale, level, contributor or encoding)"
            )
    return SumOutcome(total, tuple(members), dropped)


def _shared_names(updates: Mapping[int, crypto.EncryptedUpdate]) -> dict[int, str]:
    """Every node whose reply claims a contributor name another reply claims too."""
    claims: dict[str, list[int]] = {}
    for node, update in updates.items():
        for name in dict.fromkeys(update.contributor_names):
            claims.setdefault(name, []).append(node)
    refused: dict[int, str] = {}
    for nodes in claims.values():
        if len(nodes) > 1:
            for node in nodes:
                refused[node] = (
                    f"its contributor name is claimed by {len(nodes)} replies this round: all "
                    "are dropped (the aggregator cannot tell the genuine one)"
                )
    return refused
