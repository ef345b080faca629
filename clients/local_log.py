"""The institution's local log: where the details of every refusal and failure go.

What an institution tells the aggregator about a failure is a fixed code
(:class:`crossfed.protocol.ErrorCode`); the details — exception text and
traceback, which may hold decrypted values or facts about the bank's data —
go to the logger :data:`LOGGER_NAME` instead. In a simulation that logger
simply propagates to the harness's logging. A deployment adds a file handler
with :func:`open_local_log`: the file is created with mode 0600 before the
first byte is written, because the log holds what the wire must not.
"""

from __future__ import annotations

import logging
import os
from io import TextIOWrapper
from pathlib import Path

__all__ = ["LOGGER_NAME", "institution_logger", "open_local_log"]

#: Logger of the institution side's refusals and failures.
LOGGER_NAME = "crossfed.institution"
_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class _PrivateFileHandler(logging.FileHandler):
    """A :class:`logging.FileHandler` whose file is created, or narrowed to, mode 0600."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, mode="a", encoding="utf-8")

    def _open(self) -> TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.fchmod(fd, 0o600)
            return os.fdopen(fd, "a", encoding=self.encoding)
        except BaseException:
            os.close(fd)
            raise


def institution_logger() -> logging.Logger:
    """The logger every institution-side refusal and failure is written to."""
    return logging.getLogger(LOGGER_NAME)


def open_local_log(path: Path | str, *, level: int = logging.INFO) -> logging.Handler:
    """Append :data:`LOGGER_NAME`'s records to ``path``, a file readable by its owner only.

    The file is opened with :func:`os.open` and mode 0600 (a file that already
    existed with a wider mode is narrowed to 0600 first), so the log is never
    readable by others, not even for an instant. The handler is added to the
    logger and returned; remove it with ``institution_logger().removeHandler``
    and close it when done. The logger's level is lowered to ``level`` if it
    was higher (or unset).

    Raises
    ------
    OSError
        The file cannot be created or opened.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handler = _PrivateFileHandler(target)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(level)
    logger = institution_logger()
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    return handler
