"""The record of one federated round, as the aggregator's audit log stores it.

See :mod:`federation.audit` for the log that chains these records together.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_serializer,
    field_validator,
    model_validator,
)

__all__ = ["AuditRecord", "DroppedNode"]

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
NodeId = Annotated[str, Field(min_length=1, max_length=256)]


class DroppedNode(BaseModel):
    """An institution sampled in a round whose update did not enter the aggregate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    node: NodeId
    reason: str = Field(min_length=1)


class AuditRecord(BaseModel):
    """What the aggregator records about one round.

    Node ids are strings (institution names, or Flower node ids written as
    decimal strings) because JSON object keys must be strings.

    Rules checked on construction: ``sampled`` has no repeats; ``replied`` and
    the dropped nodes are among ``sampled``; every node in
    ``ciphertext_sha256`` replied; timings are finite and not negative; the
    timestamp carries a time zone and is stored in UTC.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    round: int = Field(ge=0, strict=True)
    run_id: str = Field(min_length=1, max_length=256)
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))
    sampled: list[NodeId] = Field(default_factory=list)
    replied: list[NodeId] = Field(default_factory=list)
    dropped: list[DroppedNode] = Field(default_factory=list)
    ciphertext_sha256: dict[NodeId, Sha256Hex] = Field(default_factory=dict)
    aggregate_sha256: Sha256Hex | None = None
    bytes_received: int = Field(default=0, ge=0, strict=True)
    bytes_sent: int = Field(default=0, ge=0, strict=True)
    timings: dict[str, float] = Field(default_factory=dict)
    extra: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("timestamp")
    @classmethod
    def _timestamp_in_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("timestamp must carry a time zone (use datetime.now(UTC))")
        return value.astimezone(UTC)

    @field_serializer("timestamp")
    def _timestamp_iso(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat()

    @field_validator("timings")
    @classmethod
    def _timings_finite(cls, value: dict[str, float]) -> dict[str, float]:
        for name, seconds in value.items():
            if not math.isfinite(seconds) or seconds < 0:
                raise ValueError(f"timing {name!r} must be finite and >= 0, got {seconds}")
        return value

    @model_validator(mode="after")
    def _nodes_consistent(self) -> AuditRecord:
        sampled = set(self.sampled)
        if len(sampled) != len(self.sampled):
            raise ValueError("sampled lists a node twice")
        if len(set(self.replied)) != len(self.replied):
            raise ValueError("replied lists a node twice")
        if not sampled.issuperset(self.replied):
            raise ValueError(f"replied but not sampled: {sorted(set(self.replied) - sampled)}")
        dropped = [d.node for d in self.dropped]
        if len(set(dropped)) != len(dropped):
            raise ValueError("dropped lists a node twice")
        if not sampled.issuperset(dropped):
            raise ValueError(f"dropped but not sampled: {sorted(set(dropped) - sampled)}")
        unexpected = set(self.ciphertext_sha256) - set(self.replied)
        if unexpected:
            raise ValueError(f"ciphertext hash for nodes that did not reply: {sorted(unexpected)}")
        return self

    def canonical_fields(self) -> dict[str, Any]:
        """Return the record as the JSON object stored in the log (chain fields excluded)."""
        return self.model_dump(mode="json")
