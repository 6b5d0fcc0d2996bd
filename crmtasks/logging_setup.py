"""Handlers for the ``crmtasks`` logger: stderr and an optional file, as text or one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys
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


def install_handlers(level: str, log_format: str, log_file: Path | None) -> None:
    logger = logging.getLogger("crmtasks")
    for handler in [h for h in logger.handlers if getattr(h, _MARK, False)]:
        logger.removeHandler(handler)
        handler.close()
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(_TEXT_FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _MARK, True)
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
