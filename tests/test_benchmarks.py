"""benchmarks/run.py --quick runs to the end and prints a table with every row (numbers not checked)."""

from __future__ import annotations

import json
import os
import re
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
    "first_result",
    "pages_time",
    "pages_memory",
    "pages_latency",
    "pages_limit",
    "pages_latency_memory",
    "big_display",
)


def run_quick(script: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``benchmarks/<script> *args`` in ``tmp_path`` (its user config there too); it
    must succeed."""
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=tmp_path,
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_quick_benchmark_prints_every_row(tmp_path):
    out = tmp_path / "rows.json"
    page = tmp_path / "performance.md"
    page.write_text(
        "# Performance\n<!-- benchmark-table:begin -->\nold table\n<!-- benchmark-table:end -->\nafter\n"
    )
    done = run_quick("run.py", tmp_path, "--quick", "--json", str(out), "--write", str(page))
    rows = json.loads(out.read_text())
    # --write puts the printed table and its run line between the page's markers, nothing else.
    written = page.read_text()
    assert "old table" not in written and written.startswith(
        "# Performance\n<!-- benchmark-table:begin -->\n"
    )
    assert written.endswith("<!-- benchmark-table:end -->\nafter\n")
    printed = done.stdout.strip()
    assert printed in written and "load average" in printed.splitlines()[-1]
    assert [row["key"] for row in rows] == list(ROWS)
    lines = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert lines[0] == "| Measure | Result | Target | Met |"
    assert len(lines) == 2 + len(ROWS)  # header, rule, one line per row
    for row, line in zip(rows, lines[2:], strict=True):
        assert row["measure"] in line and row["result"] and row["result"] in line
    # The ratio rows carry the spread of their per-round ratios, worked out by the script.
    spread_rows = {row["key"] for row in rows if " over " in row["result"] and " rounds" in row["result"]}
    assert {"api_q", "core", "raw_cell", "pages_time", "pages_latency"} <= spread_rows
    assert "Quick run" in done.stdout
    # The pages come out as the same DataFrame as a hand-written requests + pandas loop makes,
    # one page after another or several at once (against the demo API with latency).
    same = {row["key"]: row["same_frame"] for row in rows if row["key"].startswith("pages_")}
    assert same == dict.fromkeys(
        ("pages_time", "pages_memory", "pages_latency", "pages_limit", "pages_latency_memory"), True
    )


def test_quick_oauth_benchmark_prints_its_rows_and_refreshes_once_per_half_lifetime(tmp_path):
    """benchmarks/oauth_logins.py --quick against the test provider: every row, no request
    refused, and the refresh grants the issuer saw match the renewal rule (one per half
    lifetime of a 2 s token), not one per request."""
    done = run_quick("oauth_logins.py", tmp_path, "--quick")
    lines = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert lines[0] == "| OAuth on loopback (test provider) | Result |"
    assert [line.split("|")[1].strip().split(" ")[0] for line in lines[2:]] == [
        "client-credentials",
        "device",
        "code",
        "1000",
    ]
    found = re.search(
        r"(\d+) refresh grants at the issuer in [\d.]+ s \(([\d.]+) lifetimes\), (\d+) requests refused",
        lines[-1],
    )
    assert found, lines[-1]
    grants, lifetimes, refused = int(found[1]), float(found[2]), int(found[3])
    assert refused == 0
    assert grants <= 2 * lifetimes + 2  # one per half lifetime (+ the edges), never one per request


def test_variants_quick_run_times_every_kept_optimisation_against_its_plain_version(tmp_path):
    """benchmarks/variants.py --quick runs to the end: a row per figure each kept optimisation
    serves (the plain FrameBuilder is checked inside to make the same DataFrame)."""
    done = run_quick("variants.py", tmp_path, "--quick")
    lines = [line for line in done.stdout.splitlines() if line.startswith("| ") and "×" in line]
    keys = [(key.lstrip("| "), figure) for key, figure in (line.split(" | ")[:2] for line in lines)]
    assert [key for key, _ in keys] == [
        "proxy_settings", "proxy_settings", "frame_builder", "frame_builder", "mentions_us",
    ]  # fmt: skip
    assert [figure.split("(row ")[1].split(")")[0] for _, figure in keys] == [
        "api_q; also api_q/raw_cell", "core", "pages_time", "pages_memory", "load_ext",
    ]  # fmt: skip
