"""benchmarks/run.py --quick runs to the end and prints a table with every row (numbers not checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROWS = (
    "raw",
    "api_q",
    "core",
    "raw_cell",
    "api_display",
    "rest_q",
    "rest_display",
    "ipython_floor",
    "keyring",
    "load_ext",
    "pages_time",
    "pages_memory",
    "big_display",
)


def test_quick_benchmark_prints_every_row(tmp_path):
    out = tmp_path / "rows.json"
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--json", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [row["key"] for row in rows] == list(ROWS)
    lines = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert lines[0] == "| Measure | Result | Target | Met |"
    assert len(lines) == 2 + len(ROWS)  # header, rule, one line per row
    for row, line in zip(rows, lines[2:], strict=True):
        assert row["measure"] in line and row["result"] and row["result"] in line
    assert "Quick run" in done.stdout
