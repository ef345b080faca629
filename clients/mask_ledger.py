"""The institution's mask ledger: one quantisation and one revealed set per start and purpose.

Inside one :class:`crypto.MaskedRound` an institution quantises once and
reveals its self-mask seed for one contributor set only, so no two sums that
differ by it can both be opened. That holds for one round object. An
aggregator that withholds an aggregate and starts the round again, or starts a
second run from the same start model, would get a second quantisation (two
roundings of one delta: their difference is rounding noise of this
institution's update) or a second opened sum over another set (the two sums
of one start differ by this institution's update: deterministic training makes
the others' updates identical). Red-team finding F3.

So the institution keeps a ledger on disk, across rounds and runs, keyed by
the *start* (the binding of the model or inputs the values derive from) and
the *purpose* (:data:`crypto.MASK_PURPOSES`):

* :meth:`MaskLedger.claim_quantisation` before quantising: refused if this
  start and purpose were quantised before — unless the caller passes the
  digest of exact integers and they are the same integers again (statistics
  and metrics through :func:`crypto.integer_update` are deterministic: sending
  the same integers under fresh masks reveals nothing new);
* :meth:`MaskLedger.claim_reveal` before revealing a self-mask seed: refused
  if a seed of another contributor set was revealed for this start and
  purpose; the same set again is allowed (a re-sent reveal);
* :meth:`MaskLedger.pin`: the first value recorded under a name and start is
  the only one ever accepted (red team 3: the federation's opened statistics
  sum, so that its row count N̂ cannot move between runs or messages, F1 and
  F2; the one contributor set whose evaluation seeds are revealed, F3).

The ledger is one JSON file (:data:`LEDGER_FILE`, mode 0600) in a folder the
caller gives (:func:`ledger_for`: the node config's ``mask-ledger``, else the
kit's folder, else beside the simulation's agreement keys), written whole
with :func:`crypto.write_atomically` *before* the claim returns, and read
again for every claim under an exclusive lock (``fcntl``; POSIX only), so two
processes of one institution share it. A file
that cannot be read, parsed or written refuses every claim: the ledger fails
closed (:class:`~clients.errors.MaskReuseRefusedError`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flwr.app import Context

import crypto
from clients.errors import KeyMaterialError, MaskReuseRefusedError
from clients.masking_keys import MaskingKeys
from crossfed.protocol import FederationSettings

__all__ = ["LEDGER_FILE", "MASK_LEDGER_KEY", "PINS", "MaskLedger", "ledger_for", "ledger_start"]

#: The ledger's file name inside the caller's folder.
LEDGER_FILE = "mask-ledger.json"

_LOCK_FILE = ".mask-ledger.lock"
_FORMAT = "crossfed-mask-ledger/v1"

#: Largest ledger read (an entry is about 250 bytes: tens of thousands of rounds).
_MAX_BYTES = 16 << 20

#: Longest start binding (bytes): as :func:`crypto.MaskedRound`'s binding.
_MAX_BINDING = 64

_DIGEST_BYTES = 32

#: Node config key: the folder of this institution's mask ledger.
MASK_LEDGER_KEY = "mask-ledger"

#: Domain separation of :func:`ledger_start`.
_LEDGER_LABEL = b"crossfed/ledger-start/v1\x00"

#: What :meth:`MaskLedger.pin` may pin.
PINS = ("evaluation-set", "statistics-sum")

Entries = dict[str, dict[str, str]]


class MaskLedger:
    """The persistent ledger of one institution, in ``folder`` / :data:`LEDGER_FILE`.

    Parameters
    ----------
    folder:
        Where the ledger lives (created, mode 0700, if missing). One ledger per
        institution: every run of it must use the same folder, or the ledger
        cannot see the runs before.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self._folder = Path(folder)
        self._path = self._folder / LEDGER_FILE

    @property
    def path(self) -> Path:
        """The ledger file."""
        return self._path

    def claim_quantisation(
        self, start_binding: bytes, purpose: str, *, values_digest: bytes | None = None
    ) -> None:
        """Record a quantisation from ``start_binding`` for ``purpose``; refuse a second.

        Call it before quantising (:func:`crypto.quantise_update`,
        :func:`crypto.integer_update`) and send nothing if it raises.
        ``values_digest`` (32 bytes), for exact integers only: the SHA-256 of
        the integers; the same integers from the same start may then be
        claimed again, other integers may not.

        Raises
        ------
        MaskReuseRefusedError
            This start and purpose were quantised before (other integers, or no
            digest), or the ledger cannot be read or written.
        ValueError
            A binding, purpose or digest of the wrong kind.
        """
        key = _key(start_binding, purpose)
        content = "" if values_digest is None else _digest_hex(values_digest, "values_digest")
        with self._locked():
            entries = self._read()
            entry = entries.get(key)
            if entry is not None:
                if content and entry.get("quantised") == content:
                    return
                raise MaskReuseRefusedError(
                    f"refusing to quantise again: a {purpose!r} update from this start was "
                    "quantised before (in this or an earlier round or run)"
                )
            entries[key] = {"quantised": content, "revealed": ""}
            self._write(entries)

    def claim_reveal(self, start_binding: bytes, purpose: str, set_digest: bytes) -> None:
        """Record the contributor set whose self-mask seed is revealed; refuse another set.

        ``set_digest`` is :func:`crypto.set_digest` of the set. Call it before
        :meth:`crypto.MaskedRound.reveal` and reveal nothing if it raises.

        Raises
        ------
        MaskReuseRefusedError
            Nothing was quantised from this start and purpose here, a seed of
            another set was revealed for them, or the ledger cannot be read or
            written.
        ValueError
            A binding, purpose or digest of the wrong kind.
        """
        key = _key(start_binding, purpose)
        members = _digest_hex(set_digest, "set_digest")
        with self._locked():
            entries = self._read()
            entry = entries.get(key)
            if entry is None:
                raise MaskReuseRefusedError(
                    f"refusing to reveal: no {purpose!r} update from this start was quantised here"
                )
            if entry["revealed"] == members:
                return
            if entry["revealed"]:
                raise MaskReuseRefusedError(
                    f"refusing to reveal: a seed of another contributor set was revealed for this "
                    f"start's {purpose!r} update"
                )
            entry["revealed"] = members
            self._write(entries)

    def pin(self, name: str, start_binding: bytes, value: bytes) -> bool:
        """Record ``value`` (a 32-byte digest) under ``name`` and the start, if first.

        Returns whether ``value`` is the one pinned: True the first time and for
        the same value again, False for any other value (the caller refuses).
        Pins live beside the entries (key ``pin-<name>``, field ``quantised``).

        Raises
        ------
        MaskReuseRefusedError
            The ledger cannot be read or written.
        ValueError
            A name, binding or digest of the wrong kind.
        """
        if name not in PINS:
            raise ValueError(f"a pin is one of {', '.join(PINS)}")
        key = f"pin-{name}:{_start_hex(start_binding)}"
        content = _digest_hex(value, "value")
        with self._locked():
            entries = self._read()
            entry = entries.get(key)
            if entry is not None:
                return bool(entry["quantised"] == content)
            entries[key] = {"quantised": content, "revealed": ""}
            self._write(entries)
            return True

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self._folder / _LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise MaskReuseRefusedError(
                f"the mask ledger in {self._folder} cannot be opened ({exc}): refusing"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> Entries:
        try:
            with self._path.open("rb") as handle:
                raw = handle.read(_MAX_BYTES + 1)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise MaskReuseRefusedError(
                f"the mask ledger {self._path} cannot be read ({exc}): refusing"
            ) from exc
        try:
            data = json.loads(raw) if len(raw) <= _MAX_BYTES else None
        except ValueError:
            data = None
        entries = data.get("entries") if isinstance(data, dict) else None
        if (
            not isinstance(data, dict)
            or data.get("format") != _FORMAT
            or not isinstance(entries, dict)
            or not all(_valid_entry(entry) for entry in entries.values())
        ):
            raise MaskReuseRefusedError(f"the mask ledger {self._path} is malformed: refusing")
        return entries

    def _write(self, entries: Entries) -> None:
        data = json.dumps({"format": _FORMAT, "entries": entries}, sort_keys=True).encode()
        try:
            crypto.write_atomically(self._path, data, mode=0o600)
        except OSError as exc:
            raise MaskReuseRefusedError(
                f"the mask ledger {self._path} cannot be written ({exc}): refusing"
            ) from exc


def ledger_for(context: Context, settings: FederationSettings, name: str) -> MaskLedger:
    """This institution's mask ledger (:mod:`clients.mask_ledger`), kept across runs.

    In the folder the node config names (``mask-ledger``), else in the kit's
    folder (deployment: beside the refusal budget), else, in simulation, beside
    the virtual institutions' agreement keys.

    Raises
    ------
    KeyMaterialError
        None of these is configured.
    """
    folder = context.node_config.get(MASK_LEDGER_KEY) or context.node_config.get("kit")
    if not folder and settings.agreement_keys:
        folder = str(Path(settings.agreement_keys) / "ledgers" / name)
    if not isinstance(folder, str) or not folder:
        raise KeyMaterialError("no folder for this institution's mask ledger")
    return MaskLedger(folder)


def ledger_start(keys: MaskingKeys, binding: bytes) -> bytes:
    """What the ledger keys a start by: this federation's fingerprint and the start's binding.

    Two federations (two kits, two keys) may start from the same seeded model;
    their sums cannot be combined, so their ledgers entries are apart.
    """
    return hashlib.sha256(
        _LEDGER_LABEL + keys.secret.fingerprint.encode() + b"\x00" + binding
    ).digest()


def _key(start_binding: bytes, purpose: str) -> str:
    if purpose not in crypto.MASK_PURPOSES:
        raise ValueError(f"a purpose is one of {', '.join(crypto.MASK_PURPOSES)}")
    return f"{purpose}:{_start_hex(start_binding)}"


def _start_hex(start_binding: bytes) -> str:
    if not isinstance(start_binding, bytes) or len(start_binding) > _MAX_BINDING:
        raise ValueError(f"a start binding is at most {_MAX_BINDING} bytes")
    # Hashed so that the key has one form whatever the binding's length.
    return hashlib.sha256(b"crossfed/mask-ledger/v1\x00" + start_binding).hexdigest()


def _digest_hex(value: bytes, name: str) -> str:
    if not isinstance(value, bytes) or len(value) != _DIGEST_BYTES:
        raise ValueError(f"{name} is a {_DIGEST_BYTES}-byte digest")
    return value.hex()


def _valid_entry(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and set(entry) == {"quantised", "revealed"}
        and all(isinstance(value, str) for value in entry.values())
    )
