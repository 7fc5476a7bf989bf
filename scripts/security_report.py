#!/usr/bin/env python3
"""Run the security tests and write their figures into docs/SECURITY.md.

    scripts/with-secret-service.sh .venv/bin/python scripts/security_report.py   (or: make security-report)

pytest runs tests/security with --junitxml; the cases are grouped by test file (one
row per part of the security model), and the table between the markers

    <!-- security-report:begin -->  ...  <!-- security-report:end -->

in docs/SECURITY.md is replaced; the rest of the file is left as it is. Hypothesis'
statistics give the number of generated inputs of the fuzzing rows. The exit code is
pytest's: the table is written either way, so a failure shows in it.

Options: --doc PATH (another file); anything after -- goes to pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = "tests/security"
BEGIN = "<!-- security-report:begin -->"
END = "<!-- security-report:end -->"

#: Test file -> (row title, what its cases check). Files not listed get a row of their own.
ROWS: OrderedDict[str, tuple[str, str]] = OrderedDict(
    [
        (
            "test_confinement.py",
            (
                "1. Token confinement",
                "absolute URLs to other origins and ports; redirects 301/302/303/307/308 away "
                "(token dropped) and within the origin (token kept); https→http; plain http to "
                "other hosts refused; user info and `@` tricks; `{{...}}` URLs; a custom token "
                "header; `.netrc` — asserted on what a recording server received",
            ),
        ),
        (
            "test_trust.py",
            (
                "1. Credential destinations (trust model)",
                "a cloned repository's pyproject.toml naming a login/refresh/revoke endpoint or "
                "`login_path` on another origin; a project profile over the user's (a token stored "
                "earlier, real Secret Service); approvals asked, remembered and used; `{{...}}` in "
                "`%login`; plain-http credential endpoints — asserted on what a recording server "
                "received",
            ),
        ),
        (
            "test_oauth_confinement.py",
            (
                "1. OAuth: where each secret goes",
                "every flow against a real OpenID provider: access token only at the API, client "
                "secret, refresh token, PKCE verifier and device code only in POSTs to the issuer's "
                "endpoints, ID token nowhere; a cloned repository's issuer or endpoint on another "
                "origin (nothing, not even discovery, before approval; a refresh after the project "
                "file changed the issuer); discovery naming another issuer, an endpoint elsewhere "
                "or in plain http, redirecting elsewhere; token, device and revocation endpoints "
                "redirecting away or https→http; forged loopback callbacks, the listener closed at timeout "
                "and cancel; forged ID tokens; "
                "secrets echoed in errors — asserted on what recording servers received",
            ),
        ),
        (
            "test_secrets.py",
            (
                "2. Secrets never surface",
                "`-v` output, reprs, `%login --status`, error messages, IPython `Verbose` "
                "tracebacks (Ctrl+C in a request or a keyring call, unexpected errors, odd login "
                "answers, a keyring quoting the value), DEBUG log records",
            ),
        ),
        (
            "test_leak_scan.py",
            (
                "2. Leak scan of a whole session",
                "login, requests, refresh, expiry and new login, logout in a real InteractiveShell; "
                "history database, stdout/stderr, display bundles, log records and an .ipynb "
                "searched for the password and every token issued",
            ),
        ),
        (
            "test_nothing_escapes.py",
            (
                "2. Nothing escapes, whatever goes wrong",
                "a keyring backend raising `SystemExit` / `KeyboardInterrupt` / its own "
                "`BaseException`; `%debug` and every frame `sys.last_traceback` reaches after a "
                "failed login or request; `--password-env` / `--token-env` gone from `%env`, "
                "`os.environ` and child processes; servers echoing the token or password "
                "(403 body, `-v` headers, URL-, JSON-, HTML-escaped, short); absurd `expires_in` "
                "/ JWT `exp`; no keyring piece left by a shorter token, `%logout` or a late write",
            ),
        ),
        (
            "test_keyring_faults.py",
            (
                "3. Keyring faults",
                "no backend, null backend, locked, hanging (timeout), writes failing after login, "
                "values too large for Windows, two processes on one Secret Service, writes only "
                "on change",
            ),
        ),
        (
            "test_network_faults.py",
            (
                "4. Server and network faults",
                "connection refused, DNS failure, timeouts, 5xx, 429/503 with Retry-After "
                "(idempotent methods only), malformed JSON, wrong content type, huge and binary "
                "bodies, `--save`",
            ),
        ),
        (
            "test_transport.py",
            (
                "4. Bounded requests and the wire",
                "a trickled body or header and `--save` end at the `--timeout` deadline while the "
                "server still had bytes to send; retries within the deadline; an endless or "
                "announced-huge body stops at `max_body` with memory bounded; credential requests "
                "redirected to another origin or to http not followed; `Host` / `Content-Length` / "
                "`Transfer-Encoding` in a cell refused; loopback never through an environment "
                "proxy; an IDN base URL; a lone surrogate, 10 000-deep JSON, 200 000 placeholders",
            ),
        ),
        (
            "test_bad_input.py",
            (
                "5. Bad input",
                "the cell parser and `{{...}}` fuzzed (hypothesis); `%login` with malformed URLs, "
                "unknown profiles, login endpoints answering HTML or no token",
            ),
        ),
        (
            "test_load.py",
            (
                "6. Load",
                "32 threads through one session while the token expires: every request "
                "succeeds, one refresh per expiry",
            ),
        ),
    ]
)


@dataclass
class Row:
    title: str
    what: str
    tried: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    examples: int = 0
    failures: list[str] = field(default_factory=list)


def run_pytest(junit: Path, extra: list[str]) -> tuple[int, str]:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        TESTS,
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        "-o",
        "junit_family=xunit2",
        "--hypothesis-show-statistics",
        *extra,
    ]
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    sys.stdout.write(proc.stdout[-4000:])
    sys.stderr.write(proc.stderr[-4000:])
    return proc.returncode, proc.stdout


def hypothesis_examples(output: str) -> dict[str, int]:
    """Generated inputs per test file, from pytest's --hypothesis-show-statistics output."""
    per_file: dict[str, int] = {}
    current = None
    for line in output.splitlines():
        head = re.match(r"^(\S+\.py)::\S+:\s*$", line.strip())
        if head:
            current = Path(head.group(1)).name
            continue
        counts = re.search(r"- (\d+) passing, (\d+) failing", line)
        if counts and current:
            per_file[current] = per_file.get(current, 0) + int(counts.group(1)) + int(counts.group(2))
    return per_file


def collect(junit: Path) -> list[Row]:
    rows: OrderedDict[str, Row] = OrderedDict((name, Row(*info)) for name, info in ROWS.items())
    # The XML is the one pytest just wrote in our temporary directory.
    for case in ET.parse(junit).getroot().iter("testcase"):  # noqa: S314
        module = case.get("classname", "").split(".")
        # classname is tests.security.test_x or tests.security.test_x.TestClass
        name = next((m + ".py" for m in module if m.startswith("test_")), "?")
        row = rows.setdefault(name, Row(name, ""))
        row.tried += 1
        if case.find("skipped") is not None:
            row.skipped += 1
        elif case.find("failure") is not None or case.find("error") is not None:
            row.failed += 1
            row.failures.append(case.get("name", "?"))
        else:
            row.passed += 1
    return [row for row in rows.values() if row.tried]


def versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for dist in ("requests", "urllib3", "keyring", "ipython", "hypothesis"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            parts.append(f"{dist} {metadata.version(dist)}")
    return ", ".join(parts)


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def table(rows: list[Row], exit_code: int) -> str:
    secret_service = (
        "a real Secret Service (gnome-keyring on a private D-Bus session)"
        if os.environ.get("SESSION_MAGICS_SECRET_SERVICE") == "1"
        else "**no Secret Service: its cases were skipped** (run inside scripts/with-secret-service.sh)"
    )
    lines = [
        BEGIN,
        "",
        f"Generated by `scripts/security_report.py` on {dt.date.today().isoformat()} at commit "
        f"`{commit()}`, with {versions()}, against {secret_service}. "
        "A case is one test or one parametrized variant; fuzzed inputs are the examples "
        "hypothesis generated for the property tests of that row.",
        "",
        "| Area | What the cases check | Cases tried | Passed | Failed | Skipped | Fuzzed inputs |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    total = Row("**Total**", "")
    for row in rows:
        lines.append(
            f"| {row.title} | {row.what} | {row.tried} | {row.passed} | {row.failed} | {row.skipped} "
            f"| {row.examples or '—'} |"
        )
        total.tried += row.tried
        total.passed += row.passed
        total.failed += row.failed
        total.skipped += row.skipped
        total.examples += row.examples
    lines.append(
        f"| **Total** | | **{total.tried}** | **{total.passed}** | **{total.failed}** | "
        f"**{total.skipped}** | **{total.examples}** |"
    )
    failures = [f"{row.title}: {name}" for row in rows for name in row.failures]
    if failures:
        lines += ["", "Failed cases:", ""] + [f"- `{f}`" for f in failures]
    elif exit_code != 0:
        lines += ["", f"pytest exited with {exit_code} (see its output)."]
    lines += ["", END]
    return "\n".join(lines)


def rewrite(doc: Path, new_table: str) -> str:
    text = doc.read_text(encoding="utf-8")
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise SystemExit(f"{doc}: expected one {BEGIN} ... {END} section")
    start = text.index(BEGIN)
    end = text.index(END) + len(END)
    return text[:start] + new_table + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "SECURITY.md")
    parser.add_argument("pytest_args", nargs="*", help="after --: extra pytest arguments")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "security.xml"
        code, output = run_pytest(junit, args.pytest_args)
        if not junit.exists():
            print("security_report: pytest wrote no JUnit XML", file=sys.stderr)
            return code or 1
        rows = collect(junit)
    examples = hypothesis_examples(output)
    for row in rows:
        key = next((name for name, info in ROWS.items() if info[0] == row.title), row.title)
        row.examples = examples.get(key, 0)
    args.doc.write_text(rewrite(args.doc, table(rows, code)), encoding="utf-8")
    print(f"security_report: wrote the table of {sum(r.tried for r in rows)} cases to {args.doc}")
    return code


if __name__ == "__main__":
    sys.exit(main())
