"""The audit SQL files in ``crmtasks/sql/``, loaded by name."""

from __future__ import annotations

import functools
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


@functools.cache
def load(name: str) -> str:
    """The text of ``crmtasks/sql/<name>.sql``."""
    return (SQL_DIR / f"{name}.sql").read_text()
