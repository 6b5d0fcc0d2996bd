"""Run a script of scripts/ under the project's virtualenv, whatever ``python3`` started it.

Why: ``scripts/bench`` and ``scripts/bench_*.py`` import crmtasks and its
dependencies (psycopg2, redis, matplotlib), which a fresh clone's system
``python3`` does not have. ``scripts/run`` and ``scripts/test`` solve this
in bash with ``ensure_venv`` (``scripts/_venv.sh``); the Python scripts
call :func:`use_project_venv` before their first third-party import, which
runs that same ``ensure_venv`` (creating or updating the virtualenv of
``CRMTASKS_VENV``, default ``.venv`` at the repository root) and re-executes
the script with the virtualenv's python and the same arguments. Under that
python it returns at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_ENSURE = ROOT / "scripts" / "_venv.sh"
# Set in the re-executed process: a second re-execution would be a loop.
_MARK = "CRMTASKS_VENV_REEXEC"


def project_venv(environ: dict[str, str] | os._Environ = os.environ) -> Path:
    """The virtualenv the scripts run in: ``CRMTASKS_VENV``, default ``<repository>/.venv`` (as _venv.sh)."""
    return Path(environ.get("CRMTASKS_VENV") or ROOT / ".venv")


def running_in(venv: Path) -> bool:
    """True when this interpreter is ``venv``'s python."""
    try:
        return Path(sys.prefix).resolve() == venv.resolve()
    except OSError:
        return False


def use_project_venv(extras: str = "") -> None:
    """Return when already under the project's virtualenv; otherwise make sure it is installed and exec into it.

    Parameters:
      extras(str): Extras to install with crmtasks ("" or "[dev]"), as ``ensure_venv`` takes them.

    Exits with status 2 and one line on stderr when the virtualenv cannot be made or would loop.
    """
    venv = project_venv()
    if running_in(venv):
        os.environ.pop(_MARK, None)  # children of this script start afresh
        return
    if os.environ.get(_MARK):
        _fail(f"re-executed under {venv}, but the interpreter is still {sys.executable}; "
              "set CRMTASKS_VENV to a virtualenv directory")
    script = (  # ensure_venv's messages go to stderr; stdout carries only the python's path
        'source "$1" && ensure_venv "$2" >&2 && printf %s "$PY"')
    done = subprocess.run(["bash", "-c", script, "ensure_venv", str(_ENSURE), extras],
                          stdout=subprocess.PIPE, text=True, check=False)
    python = done.stdout.strip()
    if done.returncode != 0 or not python:
        _fail(f"could not install crmtasks into the virtualenv {venv} "
              f"(scripts/_venv.sh exited with {done.returncode}); see the messages above")
    os.environ[_MARK] = "1"
    script_path = str(Path(sys.argv[0]).resolve())
    os.execv(python, [python, script_path, *sys.argv[1:]])


def _fail(message: str) -> None:
    print(f"{Path(sys.argv[0]).name}: {message}", file=sys.stderr)
    sys.exit(2)
