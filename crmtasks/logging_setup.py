"""Where a crmtasks process logs: stderr and an optional file, as text or one JSON object per line.

The handlers go on the root logger, so that Dramatiq's and periodiq's
records (a failed job's traceback is one of Dramatiq's) take the same route
and format as ours: to stderr and to the log file. They replace the plain
stderr handler that ``dramatiq`` and ``periodiq`` install before importing
crmtasks; a process that logged before that (the ``dramatiq`` master, which
never imports crmtasks, and periodiq's first line) keeps its own format for
those lines (``dramatiq --skip-logging`` silences the master's).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"
_MARK = "_crmtasks_handler"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, process, message (and the traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname,
                 "logger": record.name, "pid": record.process, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ScrubbingFormatter(logging.Formatter):
    """Another formatter's output with each secret replaced by ``***``.

    The whole formatted record is scrubbed, traceback included: libpq's and
    redis-py's messages may echo a URL, and a password must not reach a log.

    Parameters:
      inner(logging.Formatter): The formatter that writes the record.
      secrets(Iterable[str]): The strings to mask (passwords, in every form they may be echoed in).
    """

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]) -> None:
        super().__init__()
        self.inner = inner
        self.secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def _replaceable(handler: logging.Handler) -> bool:
    """Ours from an earlier call, or a plain stream handler from a library's ``basicConfig``."""
    return getattr(handler, _MARK, False) or type(handler) is logging.StreamHandler


def install_handlers(level: str, log_format: str, log_file: Path | None, libraries_level: str | None = None,
                     *, secrets: Iterable[str] = ()) -> None:
    """Route every record to stderr (and ``log_file``) in ``log_format``; crmtasks' own from ``level`` up.

    Idempotent. Each of ``secrets`` is masked in every record. Other loggers log from ``libraries_level`` up when given,
    else from the level the process gave the root logger (WARNING by default). OSError when ``log_file``
    cannot be opened for appending.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:  # opened first: an OSError here leaves the process's logging as it was
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    root = logging.getLogger()
    for handler in [h for h in root.handlers if _replaceable(h)]:
        root.removeHandler(handler)
        if getattr(handler, _MARK, False):
            handler.close()
    formatter = ScrubbingFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(_TEXT_FORMAT),
                                   secrets)
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    if libraries_level is not None:
        root.setLevel(libraries_level)
    crmtasks_logger = logging.getLogger("crmtasks")
    crmtasks_logger.setLevel(level)
    crmtasks_logger.propagate = True
