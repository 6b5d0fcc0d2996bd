"""Named SQL files: each domain keeps its statements in ``<package>/sql/<name>.sql``.

SQL that is not composed at run time lives in files rather than in Python
strings, so it can be read, diffed and run by hand in ``psql``. Python code
asks for a statement by its package and name.
"""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def load_sql(package: str, name: str) -> str:
    """The text of ``<package>/sql/<name>.sql`` (read once per process).

    Parameters:
      package(str): The domain package that owns the statement, e.g. ``"crmtasks.audit"``.
      name(str): The file name without ``.sql``.
    """
    return resources.files(package).joinpath("sql", f"{name}.sql").read_text()
