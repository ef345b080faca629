"""The encrypted update as it travels: its fields, its wire form, its checked parsing.

An :class:`EncryptedUpdate` is one institution's weighted update, or a sum of
them, under one federation's key: the CKKS ciphertexts plus a header naming
the context fingerprint, run, round, shapes, encoding, contributors and
binding. :meth:`EncryptedUpdate.from_bytes` bounds everything before TenSEAL
allocates (:mod:`crypto.blobs`) and refuses an update that does not belong to
the caller's run, round or shapes. The recipes that make, sum and open updates
are :mod:`crypto.update`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tenseal as ts

from crypto.blobs import load_vector
from crypto.check import CHECK_LANES
from crypto.codec import FloatCodec, PackedCodec, SumCodec
from crypto.constants import UPDATE_MAGIC
from crypto.errors import (
    ContextMismatchError,
    DecryptionError,
    MalformedDataError,
    SecretKeyRequiredError,
    ShapeMismatchError,
    WeakParametersError,
)
from crypto.integrity import (
    MAX_BINDING_BYTES,
    Contributors,
    check_binding,
    check_contributors,
    parse_contributors,
)
from crypto.keys import PublicContext, SecretContext
from crypto.presets import Preset
from crypto.wire import pack_envelope, unpack_envelope

__all__ = [
    "AVERAGE",
    "MASKED",
    "MAX_PARAMETERS",
    "SUM",
    "EncryptedUpdate",
    "codec_of",
    "decrypted_slots",
    "vector_sizes",
]

#: The encodings an update can have: weighted values to average, plain sums, or
#: masked quantised deltas (:mod:`crypto.masked`).
AVERAGE, SUM, MASKED = "average", "sum", "masked"

#: Largest parameter count an update may declare (bounds allocation on parse).
MAX_PARAMETERS = 1 << 28

#: Most bytes one serialised ciphertext may take, relative to the ring degree.
_BLOB_BYTES_PER_COEFF = 8 * 2 * 4 + 1  # up to 4 primes, 2 polynomials, 8-byte words

Shapes = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class EncryptedUpdate:
    """A weighted update, or a sum of them, under one federation's key.

    Attributes
    ----------
    fingerprint:
        The context fingerprint it was made under.
    round_id:
        The federation round it belongs to; sums refuse mixed rounds.
    shapes:
        Shapes of the arrays it encodes, in order.
    count:
        How many institutions' updates were summed into it (1 for a fresh one).
    encoding:
        ``"average"`` (weighted values, :func:`encrypt_update`) or ``"sum"``
        (plain wide-range sums, :func:`encrypt_sums`).
    vectors:
        The CKKS ciphertexts (TenSEAL vectors), ``N / 2`` slots each.
    session:
        The run it belongs to (an identifier the aggregator hands out); with
        the round id it makes an update replayed from another run or round
        recognisable. Empty when not bound to a run.
    contributors:
        ``(name, nonce)`` of every institution summed into it: its stable name
        and the 32-hex-digit nonce of that update. ``count`` equals its length.
    binding:
        What its contributors bound their updates to (see :func:`encrypt_update`);
        every update of a sum has the same.
    """

    fingerprint: str
    round_id: int
    shapes: Shapes
    count: int
    encoding: str
    vectors: tuple[ts.CKKSVector, ...]
    session: str = ""
    contributors: Contributors = ()
    binding: bytes = b""

    @property
    def n_values(self) -> int:
        """Number of parameters encoded."""
        return sum(math.prod(shape) for shape in self.shapes)

    @property
    def contributor_names(self) -> tuple[str, ...]:
        """Names of the institutions summed into it, in order (as declared by its header).

        Trust them only after :func:`decrypt_average` or :func:`decrypt_sums` has
        verified the aggregate; an institution checks that its own name is here.
        """
        return tuple(name for name, _ in self.contributors)

    def to_bytes(self) -> bytes:
        """Serialise: format version, fingerprint, round, shapes, contributors, ciphertexts."""
        header = {
            "kind": "update",
            "encoding": self.encoding,
            "fingerprint": self.fingerprint,
            "round": self.round_id,
            "session": self.session,
            "shapes": [list(shape) for shape in self.shapes],
            "count": self.count,
            "contributors": [[name, nonce] for name, nonce in self.contributors],
            "binding": self.binding.hex(),
        }
        return pack_envelope(UPDATE_MAGIC, header, [v.serialize() for v in self.vectors])

    @classmethod
    def from_bytes(
        cls,
        context: PublicContext | SecretContext,
        data: bytes,
        *,
        max_bytes: int | None = None,
        expected_round: int | None = None,
        expected_shapes: Sequence[Sequence[int]] | None = None,
        expected_session: str | None = None,
    ) -> EncryptedUpdate:
        """Parse and check an update against ``context`` and the caller's expectations.

        Parameters
        ----------
        context:
            The federation's context (the aggregator's public one suffices).
        data:
            Serialised update.
        max_bytes:
            Size bound checked before anything is parsed.
        expected_round, expected_shapes, expected_session:
            If given, an update for another round, with other shapes, or from
            another run is refused.

        Raises
        ------
        MalformedDataError
            Truncated, oversized, corrupt or inconsistent bytes; a contributor
            list that is not ``count`` well-formed ``[name, nonce]`` pairs; a
            ciphertext far shorter than its preset's raw size or trivial.
        ContextMismatchError
            Made under another key or preset, or for another round.
        ShapeMismatchError
            Shapes differ from ``expected_shapes``.
        """
        if max_bytes is not None and len(data) > max_bytes:
            raise MalformedDataError(f"update of {len(data)} bytes exceeds the bound {max_bytes}")
        preset = context.preset
        header, blobs = unpack_envelope(
            UPDATE_MAGIC,
            data,
            max_blobs=_max_vectors(preset.params.slots),
            max_blob_bytes=preset.params.poly_modulus_degree * _BLOB_BYTES_PER_COEFF + 4096,
        )
        try:
            kind = header["kind"]
            encoding = header["encoding"]
            fingerprint = str(header["fingerprint"])
            round_id = header["round"]
            session = header["session"]
            count = header["count"]
            shapes = tuple(tuple(_dim(d) for d in shape) for shape in header["shapes"])
            contributors = parse_contributors(header["contributors"])
            binding = _parse_binding(header["binding"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedDataError(f"update header is incomplete or invalid: {exc!r}") from exc
        if kind != "update" or encoding not in (AVERAGE, SUM, MASKED):
            raise MalformedDataError(f"not an update: kind {kind!r}, encoding {encoding!r}")
        if not isinstance(session, str) or len(session) > 256:
            raise MalformedDataError("update header has an invalid session")
        if type(round_id) is not int or type(count) is not int:
            raise MalformedDataError("update header has wrong field types")
        if not 1 <= count <= preset.max_institutions or round_id < 0:
            raise MalformedDataError(f"update header has out-of-range count {count} or round")
        if len(contributors) != count:
            raise MalformedDataError(
                f"update header declares {count} updates but lists {len(contributors)} contributors"
            )
        if fingerprint != context.fingerprint:
            raise ContextMismatchError(
                f"update made under context {fingerprint[:16]}…, this federation's is "
                f"{context.fingerprint[:16]}…"
            )
        if expected_session is not None and session != expected_session:
            raise ContextMismatchError(
                f"update belongs to run {session[:16]!r}, this run is {expected_session[:16]!r}"
                " (a replay from another run)"
            )
        if expected_round is not None and round_id != expected_round:
            raise ContextMismatchError(
                f"update is for round {round_id}, the current round is {expected_round}"
            )
        update_shapes = tuple(tuple(shape) for shape in shapes)
        if expected_shapes is not None:
            wanted = tuple(tuple(int(d) for d in shape) for shape in expected_shapes)
            if update_shapes != wanted:
                raise ShapeMismatchError(f"update has shapes {update_shapes}, expected {wanted}")
        n_values = sum(math.prod(shape) for shape in update_shapes)
        if n_values > MAX_PARAMETERS:
            raise MalformedDataError(f"update declares {n_values} parameters, over the bound")
        try:
            masked = preset.build_masked_codec()
            if (encoding == MASKED) != (masked is not None and encoding != SUM):
                raise MalformedDataError(f"a {encoding} update does not fit preset {preset.name!r}")
            payload = (
                masked.slot_count(n_values)
                if masked is not None and encoding == MASKED
                else codec_of(preset, encoding).slot_count(n_values)
            )
        except WeakParametersError as exc:
            raise MalformedDataError(f"a {encoding} update does not fit this preset") from exc
        expected = vector_sizes(payload + CHECK_LANES, preset.params.slots)
        if len(blobs) != len(expected):
            raise MalformedDataError(
                f"update carries {len(blobs)} ciphertexts, its shapes need {len(expected)}"
            )
        vectors = tuple(
            load_vector(context, blob, size, index)
            for index, (blob, size) in enumerate(zip(blobs, expected, strict=True))
        )
        return cls(
            fingerprint,
            round_id,
            update_shapes,
            count,
            encoding,
            vectors,
            session,
            contributors,
            binding,
        )


def _parse_binding(value: Any) -> bytes:
    """A header's binding: lowercase hex of at most ``MAX_BINDING_BYTES`` bytes."""
    if not isinstance(value, str) or len(value) > 2 * MAX_BINDING_BYTES:
        raise ValueError("invalid binding")
    binding = bytes.fromhex(value)
    if binding.hex() != value:
        raise ValueError("a binding is written in lowercase hex")
    return binding


def _dim(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"invalid dimension {value!r}")
    return value


def vector_sizes(slot_count: int, slots: int) -> list[int]:
    full, rest = divmod(slot_count, slots)
    return [slots] * full + ([rest] if rest else [])


def _max_vectors(slots: int) -> int:
    return -(-2 * MAX_PARAMETERS // slots)


def codec_of(preset: Preset, encoding: str) -> FloatCodec | PackedCodec | SumCodec:
    return preset.build_sum_codec() if encoding == SUM else preset.build_codec()


def decrypted_slots(
    context: SecretContext,
    encrypted_sum: EncryptedUpdate,
    min_contributors: int,
    binding: bytes | None,
) -> np.ndarray:
    """The slots of an aggregate, decrypted after its header passed every check.

    The steps every recipe that opens a sum shares: the secret context, this
    federation's fingerprint, at least ``min_contributors`` distinct declared
    contributors, the expected ``binding``; then decryption. The slots are not
    yet verified against the check values: that is the recipe's.

    Raises
    ------
    SecretKeyRequiredError
        ``context`` is public.
    ContextMismatchError
        The sum was made under another federation's context.
    HeaderRefusedError
        Contributors repeated, malformed or too few, or another binding: read
        from the header, before anything is decrypted (an ``IntegrityError``).
    DecryptionError
        TenSEAL failed to decrypt.
    """
    if not isinstance(context, SecretContext):
        raise SecretKeyRequiredError("decryption needs the institutions' secret context")
    if encrypted_sum.fingerprint != context.fingerprint:
        raise ContextMismatchError("the sum was made under another federation's context")
    check_contributors(encrypted_sum.contributors, encrypted_sum.count, min_contributors)
    check_binding(encrypted_sum.binding, binding)
    try:
        secret_key = context.tenseal_context.secret_key()
        return np.concatenate([np.asarray(v.decrypt(secret_key)) for v in encrypted_sum.vectors])
    except Exception as exc:
        raise DecryptionError("decryption failed") from exc
