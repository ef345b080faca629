"""Encrypted checkpoints of the global model, written after every round.

A checkpoint holds the round just completed, the run identifier, the
federation's context fingerprint, the audit log's head hash and the encrypted
global model exactly as the aggregator holds it (a serialised
:class:`crypto.EncryptedUpdate`: nothing in it is plaintext). A restarted
aggregator reads it back and resumes at the next round.

File layout: ``b"XFCK"`` | header length (u32, big-endian) | UTF-8 JSON header |
model bytes. Writes go to a temporary file in the same folder, are fsynced,
then renamed, so a crash leaves either the old or the new checkpoint.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from crypto import write_atomically
from federation.errors import CheckpointError

__all__ = ["CHECKPOINT_VERSION", "Checkpoint", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_VERSION = 1
_MAGIC = b"XFCK"
_PREFIX = struct.Struct(">4sI")
_MAX_HEADER = 1 << 16
_MAX_ROUND = 2**63 - 1  # Flower's messages carry the round as a signed 64-bit integer
_HEADER_FIELDS = ("version", "round", "run_id", "fingerprint", "audit_head")


@dataclass(frozen=True)
class Checkpoint:
    """The aggregator's state after a completed round.

    Attributes
    ----------
    round:
        The last completed round.
    run_id:
        The run this state belongs to.
    fingerprint:
        The federation's CKKS context fingerprint ("plaintext" in plaintext mode).
    audit_head:
        Hash of the audit log's last line when the checkpoint was written.
    model:
        Serialised encrypted global model (or plaintext arrays in plaintext mode).
    """

    round: int
    run_id: str
    fingerprint: str
    audit_head: str
    model: bytes


def save_checkpoint(path: str | os.PathLike[str], checkpoint: Checkpoint) -> Path:
    """Atomically write ``checkpoint`` to ``path``."""
    header = json.dumps(
        {
            "version": CHECKPOINT_VERSION,
            "round": checkpoint.round,
            "run_id": checkpoint.run_id,
            "fingerprint": checkpoint.fingerprint,
            "audit_head": checkpoint.audit_head,
        },
        sort_keys=True,
    ).encode()
    data = _PREFIX.pack(_MAGIC, len(header)) + header + checkpoint.model
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, data)


def load_checkpoint(
    path: str | os.PathLike[str], *, expected_fingerprint: str | None = None
) -> Checkpoint:
    """Read a checkpoint, refusing a corrupt one or one from another federation.

    Every way the bytes can be wrong (truncated, not UTF-8, not JSON, JSON
    nested too deep or with numbers too long to convert, fields missing or
    of the wrong type) is a :class:`CheckpointError`: a restarted aggregator
    reads a file that anyone with write access to its folder may have
    replaced.

    Raises
    ------
    CheckpointError
        Missing, truncated, corrupt, of another version, or (with
        ``expected_fingerprint``) made under another federation's context.
    """
    target = Path(path)
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {target}: {exc.strerror}") from exc
    checkpoint = _parse(target, data)
    if expected_fingerprint is not None and checkpoint.fingerprint != expected_fingerprint:
        raise CheckpointError(
            f"{target}: checkpoint belongs to another federation (context fingerprint differs)"
        )
    return checkpoint


def _parse(target: Path, data: bytes) -> Checkpoint:
    """Decode a checkpoint's bytes; any failure is a :class:`CheckpointError`."""
    if len(data) < _PREFIX.size:
        raise CheckpointError(f"{target}: truncated checkpoint")
    magic, head_len = _PREFIX.unpack_from(data, 0)
    if magic != _MAGIC:
        raise CheckpointError(f"{target}: not a crossfed checkpoint")
    if head_len > _MAX_HEADER or _PREFIX.size + head_len > len(data):
        raise CheckpointError(f"{target}: corrupt checkpoint header length")
    try:
        header = json.loads(data[_PREFIX.size : _PREFIX.size + head_len].decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, too deep, too many digits
        raise CheckpointError(
            f"{target}: corrupt checkpoint header ({type(exc).__name__})"
        ) from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{target}: corrupt checkpoint header (not a JSON object)")
    missing = [name for name in _HEADER_FIELDS if name not in header]
    if missing:
        raise CheckpointError(f"{target}: checkpoint header lacks {', '.join(missing)}")
    version = header["version"]
    if type(version) is not int or version != CHECKPOINT_VERSION:
        raise CheckpointError(f"{target}: checkpoint version {_shown(version)} is not supported")
    round_ = header["round"]
    if type(round_) is not int or not 0 <= round_ <= _MAX_ROUND:
        raise CheckpointError(f"{target}: invalid round {_shown(round_)}")
    texts = [header[name] for name in ("run_id", "fingerprint", "audit_head")]
    if not all(isinstance(text, str) and _encodable(text) for text in texts):
        raise CheckpointError(f"{target}: invalid run id, fingerprint or audit head")
    run_id, fingerprint, audit_head = texts
    return Checkpoint(
        round=round_,
        run_id=run_id,
        fingerprint=fingerprint,
        audit_head=audit_head,
        model=data[_PREFIX.size + head_len :],
    )


def _shown(value: object) -> str:
    """A header value for an error message: a short integer, else only its JSON type.

    Never the value's ``repr``: a hostile header's value may be nested deep
    enough, or be an integer long enough, for ``repr`` itself to raise.
    """
    if type(value) is int and -(10**12) < value < 10**12:
        return str(value)
    return f"of type {type(value).__name__}"


def _encodable(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8: JSON escapes can smuggle in lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
