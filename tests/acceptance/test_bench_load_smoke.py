"""``scripts/bench --scale small --suites load`` end to end: real threads, processes and workers, real servers.

Checks the shape of what the load suite reports and that nothing failed (no
error from the pooled calls, every run-now message recorded), never a
timing: the figures depend on the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from benchsuite.load import CALLS, MODES, PACED  # noqa: E402 - scripts/ is put on the path above
from benchsuite.load_jobs import MESSAGES  # noqa: E402

pytestmark = pytest.mark.slow


def test_the_load_suite_runs_end_to_end(tmp_path):
    out = tmp_path / "results"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench"), "--scale", "small", "--suites", "load",
                             "--out", str(out)], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True,
                            timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    load = results["raw"]["load"]
    cells = {(cell["call"], cell["mode"], cell["side"]) for cell in load["cells"]}
    expected = {(call, mode, side) for call in CALLS for mode, _, _ in MODES for side in ("ours", "baseline")}
    assert cells == expected | {("can_access", PACED, side) for side in ("ours", "baseline")}
    ours = [cell for cell in load["cells"] if cell["side"] == "ours"]
    assert all(cell["calls"] > 0 for cell in ours)
    assert [cell for cell in ours if cell["errors"]] == []
    jobs = load["jobs"]
    assert jobs["recorded"] == MESSAGES and jobs["ran"] >= 1 and jobs["most_at_once"] == 1 and jobs["failed"] == 0
    assert {row["suite"] for row in results["rows"]} == {"load"}
    markdown = (out / "results.md").read_text()
    assert "## Under load" in markdown and "| can_access | 40 threads |" in markdown
    assert markdown.strip() in result.stdout
