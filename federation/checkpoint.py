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
import tempfile
from dataclasses import dataclass
from pathlib import Path

from federation.errors import CheckpointError

__all__ = ["CHECKPOINT_VERSION", "Checkpoint", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_VERSION = 1
_MAGIC = b"XFCK"
_PREFIX = struct.Struct(">4sI")
_MAX_HEADER = 1 << 16


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
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(_PREFIX.pack(_MAGIC, len(header)) + header + checkpoint.model)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_checkpoint(
    path: str | os.PathLike[str], *, expected_fingerprint: str | None = None
) -> Checkpoint:
    """Read a checkpoint, refusing a corrupt one or one from another federation.

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
    if len(data) < _PREFIX.size:
        raise CheckpointError(f"{target}: truncated checkpoint")
    magic, head_len = _PREFIX.unpack_from(data, 0)
    if magic != _MAGIC:
        raise CheckpointError(f"{target}: not a crossfed checkpoint")
    if head_len > _MAX_HEADER or _PREFIX.size + head_len > len(data):
        raise CheckpointError(f"{target}: corrupt checkpoint header length")
    try:
        header = json.loads(data[_PREFIX.size : _PREFIX.size + head_len].decode("utf-8"))
        version = header["version"]
        checkpoint = Checkpoint(
            round=header["round"],
            run_id=header["run_id"],
            fingerprint=header["fingerprint"],
            audit_head=header["audit_head"],
            model=data[_PREFIX.size + head_len :],
        )
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{target}: corrupt checkpoint header ({exc!r})") from exc
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(f"{target}: checkpoint version {version!r} is not supported")
    if type(checkpoint.round) is not int or checkpoint.round < 0:
        raise CheckpointError(f"{target}: invalid round {checkpoint.round!r}")
    if not all(isinstance(v, str) for v in (checkpoint.run_id, checkpoint.fingerprint)):
        raise CheckpointError(f"{target}: invalid run id or fingerprint")
    if expected_fingerprint is not None and checkpoint.fingerprint != expected_fingerprint:
        raise CheckpointError(
            f"{target}: checkpoint belongs to another federation (context fingerprint differs)"
        )
    return checkpoint
