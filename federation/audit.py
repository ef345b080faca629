"""Hash-chained audit log of the aggregator's rounds.

The aggregator writes one JSON line per round: who was sampled, who replied,
who was dropped and why, the SHA-256 of every ciphertext received and of the
aggregate sent back, bytes on the wire and timings. A compliance officer can
later show which institutions took part in which round without the log
holding a single model value.

Format (version :data:`AUDIT_FORMAT_VERSION`): each line is the canonical JSON
of one object (keys sorted, no whitespace, ASCII only) holding the fields of
an :class:`~federation.audit_record.AuditRecord` plus four chain fields:

``v``
    the format version;
``seq``
    the line's one-based number in the file;
``prev_hash``
    the ``hash`` of the previous line, or :func:`genesis_hash` of the first
    record's run id on the first line;
``hash``
    SHA-256 (hex) of the canonical JSON of the line's object without ``hash``.

The chain makes any edited, dropped, inserted, duplicated or reordered line
fail :func:`verify_audit_log` at the first line affected. What a chain alone
cannot show is lines cut from the end, or a log rewritten whole with fresh
hashes: the shortened file is itself a valid chain. Both are detected only
against a head hash kept elsewhere (printed after each round, sent to the
institutions, or stored in another system) and passed as ``expected_head``.
The hash is not a signature: whoever can write the file can forge a new
chain, which is exactly what the external head guards against.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from federation.audit_record import AuditRecord
from federation.errors import AuditLogError, AuditTamperedError

__all__ = [
    "AUDIT_FORMAT_VERSION",
    "AuditLog",
    "VerifyReport",
    "audit_head",
    "genesis_hash",
    "verify_audit_log",
]

AUDIT_FORMAT_VERSION = 1
"""Version of the line format; a line carrying another version does not verify."""

_CHAIN_FIELDS = ("hash", "prev_hash", "seq", "v")
_FILE_MODE = 0o600
"""The log names institutions and holds the reasons their replies were dropped: owner only."""


def _canonical(obj: dict[str, Any]) -> bytes:
    """Canonical bytes of a JSON object: sorted keys, no whitespace, ASCII, no NaN."""
    text = json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return text.encode("ascii")


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def genesis_hash(run_id: str) -> str:
    """Return the ``prev_hash`` of a log's first line.

    It is the SHA-256 of 64 zeros followed by the first record's run id, so the
    first line is bound to its run and cannot be moved to the head of another
    run's log without breaking the chain.
    """
    return _sha256_hex(("0" * 64 + run_id).encode("utf-8"))


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of a successful :func:`verify_audit_log`.

    Attributes
    ----------
    path
        The file verified.
    lines
        Number of lines, one per recorded round.
    head
        ``hash`` of the last line (keep it elsewhere to detect truncation
        later), or ``None`` for an empty log.
    records
        The verified records, in file order.
    """

    path: Path
    lines: int
    head: str | None
    records: tuple[AuditRecord, ...]

    @property
    def runs(self) -> tuple[str, ...]:
        """Run ids in order of first appearance."""
        return tuple(dict.fromkeys(r.run_id for r in self.records))

    @property
    def round_ranges(self) -> dict[str, tuple[int, int]]:
        """First and last round recorded per run id."""
        ranges: dict[str, tuple[int, int]] = {}
        for r in self.records:
            first = ranges.get(r.run_id, (r.round, r.round))[0]
            ranges[r.run_id] = (first, r.round)
        return ranges


@dataclass
class _Chain:
    """Running state of a log: what the next line must link to and exceed."""

    lines: int = 0
    head: str | None = None
    last_round: dict[str, int] = field(default_factory=dict)
    # Whether each run's last recorded round produced an aggregate (was applied).
    last_applied: dict[str, bool] = field(default_factory=dict)

    def prev_for(self, run_id: str) -> str:
        return self.head if self.head is not None else genesis_hash(run_id)

    def round_problem(self, record: AuditRecord) -> str | None:
        """Why ``record`` cannot follow this chain, or None.

        Rounds increase strictly within a run, with one exception: a round that
        was refused (no aggregate, e.g. below the quorum) may be recorded again
        by the restarted aggregator that retries it.
        """
        last = self.last_round.get(record.run_id)
        if last is None or record.round > last:
            return None
        if record.round == last and not self.last_applied[record.run_id]:
            return None
        return (
            f"round {record.round} of run {record.run_id!r} does not follow "
            f"round {last}: rounds must increase strictly within a run (only a refused "
            "round may be retried)"
        )

    def advance(self, record: AuditRecord, line_hash: str) -> None:
        self.lines += 1
        self.head = line_hash
        self.last_round[record.run_id] = record.round
        self.last_applied[record.run_id] = record.aggregate_sha256 is not None


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _check_line(raw: bytes, line_no: int, chain: _Chain) -> tuple[AuditRecord, str]:
    """Verify one raw line against the chain; return its record and hash.

    Raises
    ------
    AuditTamperedError
        Naming ``line_no`` and the first rule the line breaks.
    """

    def bad(reason: str) -> AuditTamperedError:
        return AuditTamperedError(line_no, reason)

    if not raw.endswith(b"\n"):
        raise bad("incomplete last line (no newline): a write was cut short or the file truncated")
    try:
        text = raw[:-1].decode("ascii")
        obj = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise bad(f"not valid JSON ({type(exc).__name__})") from exc
    if not isinstance(obj, dict):
        raise bad("not a JSON object")
    missing = [name for name in _CHAIN_FIELDS if name not in obj]
    if missing:
        raise bad(f"chain fields missing: {', '.join(missing)}")
    version, seq, prev_hash, line_hash = obj["v"], obj["seq"], obj["prev_hash"], obj["hash"]
    if type(version) is not int or version != AUDIT_FORMAT_VERSION:
        raise bad(f"format version {version!r}, expected {AUDIT_FORMAT_VERSION}")
    try:
        canonical = _canonical(obj)
    except (ValueError, RecursionError) as exc:
        raise bad(f"content cannot be canonicalised ({type(exc).__name__})") from exc
    if canonical != raw[:-1]:
        raise bad("not in canonical form (keys unsorted, whitespace or escapes changed)")
    body = {k: v for k, v in obj.items() if k != "hash"}
    if not isinstance(line_hash, str) or _sha256_hex(_canonical(body)) != line_hash:
        raise bad("hash does not match the line's content: the line was edited")
    if type(seq) is not int or seq != line_no:
        raise bad(
            f"sequence number {seq!r} where {line_no} was expected: "
            "a line was dropped, inserted, duplicated or moved"
        )
    fields = {k: v for k, v in obj.items() if k not in _CHAIN_FIELDS}
    try:
        record = AuditRecord.model_validate(fields)
        rewritten = _canonical(record.canonical_fields())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "record"
        raise bad(f"record invalid at {where}: {first['msg']}") from exc
    except (ValueError, RecursionError) as exc:
        raise bad(f"record invalid ({type(exc).__name__})") from exc
    if prev_hash != chain.prev_for(record.run_id):
        raise bad("prev_hash does not match the previous line: the chain is broken")
    if rewritten != _canonical(fields):
        raise bad("record fields are not in the form the log writes them")
    problem = chain.round_problem(record)
    if problem is not None:
        raise bad(problem)
    return record, line_hash


def _scan(path: Path) -> tuple[_Chain, list[AuditRecord]]:
    chain = _Chain()
    records: list[AuditRecord] = []
    try:
        with path.open("rb") as handle:
            for line_no, raw in enumerate(handle, start=1):
                record, line_hash = _check_line(raw, line_no, chain)
                chain.advance(record, line_hash)
                records.append(record)
    except OSError as exc:
        raise AuditLogError(f"cannot read audit log {path}: {exc}") from exc
    return chain, records


def verify_audit_log(
    path: str | os.PathLike[str], expected_head: str | None = None
) -> VerifyReport:
    """Check every line of an audit log and the chain that links them.

    Parameters
    ----------
    path
        The JSON-lines file written by :class:`AuditLog`.
    expected_head
        The ``hash`` of the last line as kept outside the file. When given, a
        log cut short at the end, or rewritten whole, is detected too.

    Returns
    -------
    VerifyReport
        Line count, head hash and the records.

    Raises
    ------
    AuditTamperedError
        At the first line that is malformed, edited, out of place, breaks the
        chain or does not increase its run's round (only a refused round may
        be recorded again, by the aggregator that retries it); or when the head differs
        from ``expected_head``.
    AuditLogError
        If the file cannot be read or ``expected_head`` is not a SHA-256 hex.
    """
    if expected_head is not None and (
        len(expected_head) != 64 or any(c not in "0123456789abcdef" for c in expected_head)
    ):
        raise AuditLogError("expected_head must be 64 lowercase hexadecimal characters")
    log_path = Path(path)
    chain, records = _scan(log_path)
    if expected_head is not None and chain.head != expected_head:
        raise AuditTamperedError(
            chain.lines,
            f"log head {chain.head} differs from the expected head {expected_head}: "
            "lines were removed from the end, or the log was rewritten",
        )
    return VerifyReport(path=log_path, lines=chain.lines, head=chain.head, records=tuple(records))


def audit_head(path: str | os.PathLike[str], run_id: str = "") -> str:
    """Return the head hash of an audit log: what its next line will link to.

    The aggregator sends it to the institutions every round; each keeps the
    heads it was sent, and a later log that does not extend them (lines cut
    from the end, a history rewritten with fresh hashes) fails
    :func:`verify_audit_log` with ``expected_head``. The log is verified
    whole first, so a damaged log never yields a head.

    Parameters
    ----------
    path
        The JSON-lines file written by :class:`AuditLog`. A missing file is
        an empty log: the aggregator creates it with the first round's line.
    run_id
        The run whose genesis hash an empty log has (the first line's
        ``prev_hash`` is :func:`genesis_hash` of its run id).

    Returns
    -------
    str
        The last line's ``hash``, or ``genesis_hash(run_id)`` for an empty log.

    Raises
    ------
    AuditTamperedError
        If the log does not verify.
    AuditLogError
        If the file exists but cannot be read.
    """
    log_path = Path(path)
    if not log_path.exists():
        return genesis_hash(run_id)
    chain, _ = _scan(log_path)
    return chain.prev_for(run_id)


class AuditLog:
    """Append-only, hash-chained audit log in one JSON-lines file.

    Opening an existing file verifies it whole (a log is one line per round,
    so this is cheap) and continues its chain from the last line; a tampered
    or damaged log is never extended. Each :meth:`append` writes one line with
    ``O_APPEND`` under an exclusive ``flock`` and ``fsync``s it before
    returning, so a round the aggregator reports as done is on disk. The file
    is created owner-only (0600, whatever the umask), and a log found with
    wider permissions is narrowed to 0600 before it is extended: it names the
    institutions and the reasons their replies were dropped.

    One writer per file: if the file grew since this object last wrote, the
    append is refused rather than forking the chain. POSIX only (``fcntl``).

    Parameters
    ----------
    path
        The log file; created on the first append if absent.

    Raises
    ------
    AuditTamperedError
        If an existing file does not verify.
    AuditLogError
        If an existing file cannot be read.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        if self._path.exists():
            self._chain, _ = _scan(self._path)
            try:
                self._size = self._path.stat().st_size
            except OSError as exc:
                raise AuditLogError(f"cannot read audit log {self._path}: {exc}") from exc
        else:
            self._chain = _Chain()
            self._size = 0

    @property
    def path(self) -> Path:
        """The log file."""
        return self._path

    @property
    def lines(self) -> int:
        """Number of lines (rounds) in the log."""
        return self._chain.lines

    @property
    def head(self) -> str | None:
        """``hash`` of the last line, to keep outside the file; ``None`` if empty."""
        return self._chain.head

    def append(self, record: AuditRecord) -> str:
        """Append one round's record and return the new head hash.

        Raises
        ------
        AuditLogError
            If the round does not exceed the run's last recorded round, the
            record cannot be written as JSON (a NaN in ``extra``), another
            writer changed the file, or the write fails.
        """
        problem = self._chain.round_problem(record)
        if problem is not None:
            raise AuditLogError(problem)
        body: dict[str, Any] = record.canonical_fields()
        body.update(
            v=AUDIT_FORMAT_VERSION,
            seq=self._chain.lines + 1,
            prev_hash=self._chain.prev_for(record.run_id),
        )
        try:
            line_hash = _sha256_hex(_canonical(body))
        except ValueError as exc:
            raise AuditLogError(f"record cannot be written as JSON: {exc}") from exc
        line = _canonical({**body, "hash": line_hash}) + b"\n"
        self._write(line)
        self._chain.advance(record, line_hash)
        self._size += len(line)
        return line_hash

    def _write(self, line: bytes) -> None:
        created = not self._path.exists()
        try:
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _FILE_MODE)
        except OSError as exc:
            raise AuditLogError(f"cannot open audit log {self._path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_mode & 0o777 != _FILE_MODE:
                os.fchmod(fd, _FILE_MODE)  # a log from an older version, or copied in
            size = os.fstat(fd).st_size
            if size != self._size:
                raise AuditLogError(
                    f"audit log {self._path} changed since it was opened "
                    f"({size} bytes, expected {self._size}): another writer? reopen and verify it"
                )
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError as exc:
            raise AuditLogError(f"cannot write audit log {self._path}: {exc}") from exc
        finally:
            os.close(fd)
        if created:
            _fsync_directory(self._path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make a newly created file's directory entry durable."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError as exc:
        raise AuditLogError(f"cannot open directory {directory}: {exc}") from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        raise AuditLogError(f"cannot sync directory {directory}: {exc}") from exc
    finally:
        os.close(fd)
