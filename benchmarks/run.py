#!/usr/bin/env python
"""Measure session-magics against the local demo API and print a markdown table.

    python benchmarks/run.py            # the full run (a few minutes)
    python benchmarks/run.py --quick    # fewer repetitions: a smoke run, numbers are rough
    make bench                          # installs restmagic first, then the full run

Everything runs on 127.0.0.1. The demo API runs in its own process (``python -m
session_magics.demo``; uvicorn, TCP_NODELAY), so client and server do not share a
GIL. The magics run in a real ``InteractiveShell`` with its history database
switched off: in a notebook that write happens between cells, while in a tight
loop of cells it would dominate every figure. What is measured:

1. per-request time of a GET of the demo's ``/small`` (about 1 KB of JSON): ``%%api -q``,
   ``%%api`` with its display formatted (what a notebook pays), restmagic's
   ``%%rest`` (``-q`` and with display), against a plain ``requests.Session().get``
   loop. Rounds interleave the variants in random order; a ratio is the median
   over rounds of (variant / raw Session) in the same round. A no-op cell magic
   shows what IPython itself costs per cell;
2. keyring reads in a new kernel that runs ``%login`` and 1000 requests, counted
   by an in-memory keyring backend;
3. the time ``%load_ext session_magics`` adds to a fresh IPython process (with .pyc
   files: ``PYTHONDONTWRITEBYTECODE`` is removed from the children's environment),
   against the same process without it, after warm-up runs;
4. 100 pages of 100 records into one DataFrame: ``%api ... --all --df`` against a
   hand-written requests + pandas loop; time ratio, and peak memory (tracemalloc);
5. the size of the display bundle a 10 MB JSON answer puts into a notebook.

No threshold is asserted: machines are noisy. The "Target" column says what the
figure should be, and whether this run met it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PASSWORD_ENV = "SESSION_MAGICS_BENCH_PASSWORD"
DEMO_PASSWORD = "penguins"  # the demo API's documented password, nothing secret

ROW_NAMES = (
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


@dataclass
class Row:
    key: str
    measure: str
    result: str
    target: str = "—"
    met: bool | None = None

    def cells(self) -> list[str]:
        mark = "—" if self.met is None else ("yes" if self.met else "**no**")
        return [self.measure, self.result, self.target, mark]


@dataclass
class Settings:
    rounds: int
    per_round: int
    keyring_requests: int
    load_runs: int
    page_rounds: int
    quick: bool


FULL = Settings(rounds=60, per_round=20, keyring_requests=1000, load_runs=25, page_rounds=7, quick=False)
QUICK = Settings(rounds=6, per_round=8, keyring_requests=1000, load_runs=4, page_rounds=2, quick=True)


# -- helpers -------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms" if seconds < 0.1 else f"{seconds * 1000:.0f} ms"


def size(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} MB"


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        yield


class CountingKeyring:
    """An in-memory keyring backend that counts reads and writes."""

    def __init__(self) -> None:
        from keyring.backend import KeyringBackend

        class Backend(KeyringBackend):
            priority = 1  # type: ignore[assignment]
            viable = False  # never offered to keyring's own discovery

            def __init__(inner) -> None:
                super().__init__()
                inner.entries: dict[tuple[str, str], str] = {}
                inner.reads = 0
                inner.writes = 0

            def get_password(inner, service: str, username: str) -> str | None:
                inner.reads += 1
                return inner.entries.get((service, username))

            def set_password(inner, service: str, username: str, password: str) -> None:
                inner.writes += 1
                inner.entries[(service, username)] = password

            def delete_password(inner, service: str, username: str) -> None:
                inner.writes += 1
                inner.entries.pop((service, username), None)

        self.backend = Backend()


def start_demo() -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "session_magics.demo", "--port", "0", "--log-level", "warning",
         "--access-ttl", "3600", "--refresh-ttl", "7200"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    prefix = "session-magics demo API: "
    if not first.startswith(prefix):
        proc.kill()
        raise RuntimeError(f"the demo API did not start: {first!r}")
    while "stop with Ctrl+C" not in proc.stdout.readline():
        pass
    return proc, first[len(prefix):].strip()


def new_shell(ipython_dir: str) -> Any:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    InteractiveShell.clear_instance()
    config = Config()
    config.HistoryManager.enabled = False
    os.environ["IPYTHONDIR"] = ipython_dir
    return InteractiveShell.instance(ipython_dir=ipython_dir, config=config)


def run(ip: Any, source: str) -> Any:
    result = ip.run_cell(source, store_history=True)
    error = result.error_before_exec or result.error_in_exec
    if error is not None:
        raise RuntimeError(f"{source.splitlines()[0]!r} failed: {type(error).__name__}: {error}")
    return result.result


def interleaved(
    variants: dict[str, Callable[[], Any]], rounds: int, per_round: int, base: str, warmup: int | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds per call of each variant, and the median per-round ratio to ``base``."""
    names = list(variants)
    for fn in variants.values():  # warm-up
        for _ in range(warmup if warmup is not None else max(5, per_round)):
            fn()
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        random.shuffle(names)
        for name in names:
            fn = variants[name]
            start = time.perf_counter()
            for _ in range(per_round):
                fn()
            times[name].append((time.perf_counter() - start) / per_round)
    medians = {name: statistics.median(v) for name, v in times.items()}
    ratios = {
        name: statistics.median(a / b for a, b in zip(v, times[base], strict=True))
        for name, v in times.items()
    }
    return medians, ratios


# -- 1. per-request time ---------------------------------------------------------------


def bench_requests(ip: Any, url: str, token: str, s: Settings) -> list[Row]:
    import requests

    raw = requests.Session()
    raw.headers["Authorization"] = f"Bearer {token}"
    target = f"{url}/small"
    probe = raw.get(target)
    assert probe.status_code == 200 and 900 <= len(probe.content) <= 1200, len(probe.content)

    def nop(line: str, cell: str) -> None:
        return None

    ip.register_magic_function(nop, "cell", "nop")
    from session_magics import magics

    core = magics._instance.session()  # the ApiSession behind %%api, used directly
    ip.user_ns["bench_raw"], ip.user_ns["bench_target"] = raw, target
    variants: dict[str, Callable[[], Any]] = {
        "raw": lambda: raw.get(target).content,
        "core": lambda: core.request("GET", "/small").content,
        "raw_cell": lambda: run(ip, "bench_raw.get(bench_target).content;"),
        "api_q": lambda: run(ip, "%%api -q\nGET /small"),
        "api_display": lambda: run(ip, "%%api\nGET /small"),
        "ipython_floor": lambda: run(ip, "%%nop -q\nGET /small"),
    }
    have_restmagic = True
    try:
        with silenced():
            run(ip, "%load_ext restmagic")
            run(ip, "%rest_session")  # one keep-alive connection, as %%api has
        ip.user_ns["bench_bearer"] = f"Bearer {token}"
        rest = f"GET {target}\nAuthorization: $bench_bearer"
        variants["rest_q"] = lambda: run(ip, f"%%rest -q\n{rest}")
        variants["rest_display"] = lambda: run(ip, f"%%rest\n{rest}")
    except RuntimeError:
        have_restmagic = False
    with silenced():
        checked = run(ip, "%%api\nGET /small")
        assert checked.status_code == 200 and checked.data["name"] == "small"
        medians, ratios = interleaved(variants, s.rounds, s.per_round, "raw")
    base = medians["raw"]
    rows = [
        Row("raw", "Plain `requests.Session().get` loop, GET /small (1 KB JSON), per request", ms(base)),
        Row(
            "api_q",
            "`%%api -q` through IPython, per request",
            f"{ms(medians['api_q'])} — **{ratios['api_q']:.2f}×** raw",
            "≤ 1.05×",
            ratios["api_q"] <= 1.05,
        ),
        Row(
            "core",
            "The core without IPython: `ApiSession.request` (origin checks, token, renewal flow)",
            f"{ms(medians['core'])} — **{ratios['core']:.2f}×** raw",
            "≤ 1.05×",
            ratios["core"] <= 1.05,
        ),
        Row(
            "raw_cell",
            "Hand-written `requests` GET run as an IPython cell (the cell-level baseline)",
            f"{ms(medians['raw_cell'])} — {ratios['raw_cell']:.2f}× raw; `%%api -q` is "
            f"**{medians['api_q'] / medians['raw_cell']:.2f}×** this",
        ),
        Row(
            "api_display",
            "`%%api` with its display formatted (what a notebook pays)",
            f"{ms(medians['api_display'])} — {ratios['api_display']:.2f}× raw",
        ),
    ]
    if have_restmagic:
        rows += [
            Row(
                "rest_q",
                "restmagic 0.7.2 `%%rest -q` (with `%rest_session`)",
                f"{ms(medians['rest_q'])} — {ratios['rest_q']:.2f}× raw",
            ),
            Row(
                "rest_display",
                "restmagic 0.7.2 `%%rest` with its display",
                f"{ms(medians['rest_display'])} — {ratios['rest_display']:.2f}× raw",
            ),
        ]
    else:
        for key, what in (("rest_q", "`%%rest -q`"), ("rest_display", "`%%rest` with its display")):
            rows.append(Row(key, f"restmagic 0.7.2 {what}", "not installed (`make bench` installs it)"))
    floor = medians["ipython_floor"]
    rows.append(
        Row(
            "ipython_floor",
            "IPython's own cost of running any cell magic (a no-op `%%nop`)",
            f"{ms(floor)} — `%%api -q` minus this: {(medians['api_q'] - floor) / base:.2f}× raw",
        )
    )
    return rows


# -- 2. keyring reads ------------------------------------------------------------------


def bench_keyring(ipython_dir: str, url: str, s: Settings) -> Row:
    import keyring

    counting = CountingKeyring().backend
    keyring.set_keyring(counting)
    first = new_shell(ipython_dir + "-a")
    with silenced():
        run(first, "%load_ext session_magics")
        run(first, f"%login {url} --user demo --password-env {PASSWORD_ENV}")
        run(first, "%unload_ext session_magics")
    counting.reads = counting.writes = 0
    kernel = new_shell(ipython_dir + "-b")  # a restarted kernel: nothing in memory
    with silenced():
        run(kernel, "%load_ext session_magics")
        run(kernel, f"%login {url} --user demo")
        for _ in range(s.keyring_requests):
            run(kernel, "%%api -q\nGET /small")
        run(kernel, "%unload_ext session_magics")
    reads = counting.reads
    return Row(
        "keyring",
        f"Keyring reads in a new kernel: `%login` + {s.keyring_requests} `%%api` requests",
        f"{reads} read{'s' if reads != 1 else ''} ({counting.writes} writes)",
        "1",
        reads == 1,
    )


# -- 3. %load_ext ------------------------------------------------------------------------

CHILD = """
import sys, time
t0 = time.perf_counter()
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
t1 = time.perf_counter()
if sys.argv[1] == "1":
    ip.run_line_magic("load_ext", "session_magics")
t2 = time.perf_counter()
print(t2 - t1)
"""


def bench_load_ext(s: Settings) -> Row:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory() as tmp:
        env["XDG_CONFIG_HOME"] = tmp
        env["IPYTHONDIR"] = str(Path(tmp) / "ipython")

        def child(load: bool) -> tuple[float, float]:
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", CHILD, "1" if load else "0"],
                env=env,
                cwd=REPO,  # a project with a pyproject.toml, as notebooks usually have
                capture_output=True,
                text=True,
                check=True,
            )
            wall = time.perf_counter() - start
            return wall, float(done.stdout.strip().splitlines()[-1])

        for _ in range(2):  # warm-up: .pyc files, OS caches
            child(True)
            child(False)
        with_ext: list[float] = []
        without: list[float] = []
        inside: list[float] = []
        for _ in range(s.load_runs):
            order = [True, False]
            random.shuffle(order)
            for load in order:
                wall, measured = child(load)
                (with_ext if load else without).append(wall)
                if load:
                    inside.append(measured)
    # The whole-process difference is within the noise of starting Python twice; the
    # time measured around %load_ext inside the process is the direct figure.
    added = statistics.median(with_ext) - statistics.median(without)
    direct = statistics.median(inside)
    return Row(
        "load_ext",
        "Time `%load_ext session_magics` adds to a fresh IPython process",
        f"{direct * 1000:.1f} ms measured around it (whole process {ms(statistics.median(with_ext))} "
        f"vs {ms(statistics.median(without))} without: {added * 1000:+.1f} ms, within start-up noise)",
        "≤ 20 ms",
        direct <= 0.020,
    )


# -- 4. 100 pages into a DataFrame ---------------------------------------------------------


def bench_pages(ip: Any, url: str, token: str, s: Settings) -> list[Row]:
    import pandas as pd
    import requests

    path = "/records?n=10000&per_page=100"

    def ours() -> Any:
        with silenced():
            run(ip, f"bench_df = %api GET {path} --all --df")
        return ip.user_ns.pop("bench_df")

    def hand() -> Any:
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {token}"
        rows: list[dict[str, Any]] = []
        next_url: str | None = url + path
        while next_url:
            response = http.get(next_url)
            response.raise_for_status()
            rows.extend(response.json()["results"])
            next_url = response.links.get("next", {}).get("url")
        http.close()
        return pd.DataFrame(rows)

    a, b = ours(), hand()
    assert a.shape == (10_000, 5) and a.equals(b), (a.shape, b.shape)
    frame_bytes = int(b.memory_usage(deep=True).sum())
    variants = {"ours": ours, "hand": hand}
    medians, ratios = interleaved(variants, s.page_rounds, 1, "hand", warmup=s.page_rounds)

    def peak(fn: Callable[[], Any]) -> int:
        gc.collect()
        tracemalloc.start()
        tracemalloc.reset_peak()
        try:
            frame = fn()
            _, top = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        del frame
        gc.collect()
        return top

    peaks = {"ours": [], "hand": []}  # type: dict[str, list[int]]
    for _ in range(2 if s.quick else 3):
        peaks["ours"].append(peak(ours))
        peaks["hand"].append(peak(hand))
    mine, theirs = min(peaks["ours"]), min(peaks["hand"])
    return [
        Row(
            "pages_time",
            "100 pages × 100 records → DataFrame: `x = %api GET … --all --df` vs a hand-written "
            "requests + pandas loop",
            f"{ms(medians['ours'])} vs {ms(medians['hand'])} — **{ratios['ours']:.2f}×**",
            "≤ 1.1×",
            ratios["ours"] <= 1.1,
        ),
        Row(
            "pages_memory",
            "Peak memory (tracemalloc) of the same, against the DataFrame "
            f"({size(frame_bytes)}, `memory_usage(deep=True)`)",
            f"{size(mine)} = **{mine / frame_bytes:.1f}×** the DataFrame; hand-written loop "
            f"{size(theirs)} = {theirs / frame_bytes:.1f}× (ours / hand-written: {mine / theirs:.2f}×)",
            "≤ 2× the DataFrame",
            mine <= 2 * frame_bytes,
        ),
    ]


# -- 5. display of a 10 MB answer ------------------------------------------------------------


def bench_big(ip: Any) -> Row:
    with silenced():
        run(ip, "%%api -q -o bench_big\nGET /big?mb=10")
    big = ip.user_ns.pop("bench_big")
    assert big.status_code == 200
    start = time.perf_counter()
    data, metadata = ip.display_formatter.format(big)
    formatting = time.perf_counter() - start
    written = len(json.dumps({"data": data, "metadata": metadata}).encode("utf-8"))
    return Row(
        "big_display",
        f"Bytes a {size(len(big.content))} JSON answer writes into the notebook (its display bundle)",
        f"{size(written)} ({', '.join(sorted(data))}; formatted in {ms(formatting)})",
        "≤ 200 KB",
        written <= 200 * 1024,
    )


# -- main ---------------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    lines = ["| Measure | Result | Target | Met |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    s = QUICK if args.quick else FULL
    random.seed(1)
    os.environ[PASSWORD_ENV] = DEMO_PASSWORD
    import keyring

    started = time.perf_counter()
    demo, url = start_demo()
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["XDG_CONFIG_HOME"] = tmp  # no user configuration
            counting = CountingKeyring().backend
            keyring.set_keyring(counting)
            ip = new_shell(str(Path(tmp) / "ipython"))
            with silenced():
                run(ip, "%load_ext session_magics")
                run(ip, f"%login {url} --user demo --password-env {PASSWORD_ENV}")
            from session_magics import magics

            session = magics._instance.session()  # type: ignore[union-attr]
            token = session.token.access_token  # used in headers only, never shown
            rows += bench_requests(ip, url, token, s)
            rows += bench_pages(ip, url, token, s)
            rows.append(bench_big(ip))
            with silenced():
                run(ip, "%unload_ext session_magics")
            rows.append(bench_keyring(str(Path(tmp) / "ipython-k"), url, s))
            rows.append(bench_load_ext(s))
    finally:
        demo.terminate()
        demo.wait(10)
    order = {key: i for i, key in enumerate(ROW_NAMES)}
    rows.sort(key=lambda row: order[row.key])
    import IPython
    import requests

    print(table(rows))
    print()
    print(
        f"{'Quick run (--quick): few repetitions, rough numbers. ' if s.quick else ''}"
        f"Python {platform.python_version()}, IPython {IPython.__version__}, "
        f"requests {requests.__version__}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{time.perf_counter() - started:.0f} s."
    )
    if args.json:
        Path(args.json).write_text(json.dumps([row.__dict__ for row in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
