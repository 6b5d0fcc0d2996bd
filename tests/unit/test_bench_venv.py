"""scripts/bench and scripts/bench_*.py run as the README shows them, whatever ``python3`` comes first on PATH.

A fresh clone's ``python3`` has none of crmtasks' dependencies. Here that
python is a bare virtualenv made from this interpreter's base python
(``--without-pip``: nothing installed, certainly not psycopg2), put first on
PATH; the scripts must re-run themselves under the project's virtualenv
(``CRMTASKS_VENV``, here the one running these tests, already installed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
BENCH_SCRIPTS = ("bench", *sorted(path.name for path in SCRIPTS.glob("bench_*.py")))


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """A ``bin`` directory whose python3 is a plain python without psycopg2."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    missing = subprocess.run([str(venv / "bin" / "python3"), "-c", "import psycopg2"], capture_output=True,
                             check=False, timeout=60)
    assert missing.returncode != 0, "the bare python must lack psycopg2 for this test to mean anything"
    return venv / "bin"


def _environment(bin_dir: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no virtualenv activated, the bare python first on PATH, the project's venv named."""
    return {"HOME": os.environ.get("HOME", "/tmp"), "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "CRMTASKS_VENV": sys.prefix, "LANG": "C.UTF-8", **extra}


def test_the_project_virtualenv_is_the_one_running_these_tests():
    # What the tests below rely on: CRMTASKS_VENV (as scripts/test sets it up) is this interpreter's prefix.
    assert (Path(sys.prefix) / "bin" / "python").exists()
    assert Path(sys.prefix).resolve() != Path(getattr(sys, "base_prefix", sys.prefix)).resolve()


@pytest.mark.parametrize("script", BENCH_SCRIPTS)
def test_runs_as_typed_with_a_python3_lacking_the_dependencies(script, bare_python):
    assert os.access(SCRIPTS / script, os.X_OK)
    assert (SCRIPTS / script).read_text().startswith("#!/usr/bin/env python3\n")
    result = subprocess.run([f"scripts/{script}", "--help"], cwd=ROOT, env=_environment(bare_python),
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ModuleNotFoundError" not in result.stderr
    assert result.stdout.startswith("usage: ")


def test_runs_when_given_to_a_python3_lacking_the_dependencies(bare_python):
    result = subprocess.run([str(bare_python / "python3"), "scripts/bench", "--help"], cwd=ROOT,
                            env=_environment(bare_python), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("usage: scripts/bench")


def test_the_re_executed_script_runs_under_the_project_virtualenv(bare_python, tmp_path):
    # A script of scripts/ that reports its interpreter once the shim has run.
    probe = SCRIPTS / f"_probe_{os.getpid()}.py"
    probe.write_text("import sys\nfrom _venv import use_project_venv\nuse_project_venv()\n"
                     "import psycopg2\nprint(sys.prefix)\n")
    try:
        result = subprocess.run([str(bare_python / "python3"), str(probe)], cwd=tmp_path,
                                env=_environment(bare_python), capture_output=True, text=True, timeout=300,
                                check=False)
    finally:
        probe.unlink()
    assert result.returncode == 0, result.stderr[-3000:]
    assert Path(result.stdout.strip()).resolve() == Path(sys.prefix).resolve()


def test_a_loop_is_one_line_and_exit_2(bare_python):
    # Marked as already re-executed but still not the project's python: refuse rather than exec forever.
    result = subprocess.run([str(bare_python / "python3"), "scripts/bench", "--help"], cwd=ROOT,
                            env=_environment(bare_python, CRMTASKS_VENV_REEXEC="1"), capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "CRMTASKS_VENV" in result.stderr
