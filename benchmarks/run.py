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
   loop, and against the same ``requests.Session`` GET written by hand in a cell.
   Rounds interleave the variants in random order; a ratio is the median over
   rounds of (variant / raw Session, or ``%%api -q`` / the hand-written cell) in the
   same round. A no-op cell magic
   shows what IPython itself costs per cell;
2. keyring reads in a new kernel that runs ``%login`` and 1000 requests, counted
   by an in-memory keyring backend;
3. the time ``%load_ext session_magics`` adds to a fresh IPython process (with .pyc
   files: ``PYTHONDONTWRITEBYTECODE`` is removed from the children's environment),
   against the same process without it, after warm-up runs;
4. 100 pages of 100 records into one DataFrame: ``%api ... --all --df --concurrency 1``
   against a hand-written requests + pandas loop; time ratio, and peak memory (tracemalloc);
   then the same against a second demo API whose every answer waits 50 ms
   (``--latency-ms 50``): ``--all --df`` with its default 4 pages at once against the
   hand-written loop (one page after another) and against the limit,
   ⌈pages / concurrency⌉ × latency; peak memory again;
5. the size of the display bundle a 10 MB JSON answer puts into a notebook;
6. the first result of a fresh kernel whose keyring holds a token: ``%load_ext``, ``%login``
   and the first ``%api ... --df`` in a new process, against the hand-written cell
   (``import requests, keyring, pandas``, ``keyring.get_password``, ``requests.get``,
   ``pandas.DataFrame``); both pay the keyring's backend discovery.

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
    "first_result",
    "pages_time",
    "pages_memory",
    "pages_latency",
    "pages_limit",
    "pages_latency_memory",
    "big_display",
)


@dataclass
class Row:
    key: str
    measure: str
    result: str
    target: str = "—"
    met: bool | None = None
    same_frame: bool | None = None  # for the page rows: ours equals the hand-written loop's

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


def start_demo(*options: str) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "session_magics.demo",
            "--port",
            "0",
            "--log-level",
            "warning",
            "--access-ttl",
            "3600",
            "--refresh-ttl",
            "7200",
            *options,
        ],
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
    return proc, first[len(prefix) :].strip()


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
    variants: dict[str, Callable[[], Any]],
    rounds: int,
    per_round: int,
    base: str,
    warmup: int | None = None,
    pairs: tuple[tuple[str, str], ...] = (),
) -> tuple[dict[str, float], dict[str, float], dict[str, str]]:
    """Median seconds per call of each variant, the median per-round ratio to ``base``
    (and, for each ``(a, b)`` of ``pairs``, the median per-round ratio of a to b, as "a/b"),
    and the spread of those per-round ratios (:func:`spread`)."""
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
    spreads: dict[str, str] = {}
    for name, v in times.items():
        spreads[name] = spread([a / b for a, b in zip(v, times[base], strict=True)])
    for a, b in pairs:
        per_round = [x / y for x, y in zip(times[a], times[b], strict=True)]
        ratios[f"{a}/{b}"] = statistics.median(per_round)
        spreads[f"{a}/{b}"] = spread(per_round)
    return medians, ratios, spreads


def spread(values: list[float]) -> str:
    """The middle half of per-round ratios: "1.38–1.47 over 60 rounds" (the quartiles)."""
    if len(values) < 4:
        return f"{min(values):.2f}–{max(values):.2f} over {len(values)} rounds"
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"quartiles {q1:.2f}–{q3:.2f} over {len(values)} rounds"


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
        medians, ratios, spreads = interleaved(
            variants, s.rounds, s.per_round, "raw", pairs=(("api_q", "raw_cell"),)
        )
    base = medians["raw"]
    rows = [
        Row("raw", "Plain `requests.Session().get` loop, GET /small (1 KB JSON), per request", ms(base)),
        Row(
            "api_q",
            "`%%api -q` through IPython, per request",
            f"{ms(medians['api_q'])} — **{ratios['api_q']:.2f}×** raw ({spreads['api_q']})",
            "≤ 1.05×",
            ratios["api_q"] <= 1.05,
        ),
        Row(
            "core",
            "The core without IPython: `ApiSession.request` (origin checks, token, renewal flow)",
            f"{ms(medians['core'])} — **{ratios['core']:.2f}×** raw ({spreads['core']})",
            "≤ 1.05×",
            ratios["core"] <= 1.05,
        ),
        Row(
            "raw_cell",
            "Hand-written `requests` GET run as an IPython cell (the cell-level baseline)",
            f"{ms(medians['raw_cell'])} — {ratios['raw_cell']:.2f}× raw; `%%api -q` is "
            f"**{ratios['api_q/raw_cell']:.2f}×** this ({spreads['api_q/raw_cell']})",
            "`%%api -q` ≤ 1.0× this",
            ratios["api_q/raw_cell"] <= 1.0,
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


def hand_written_pages(first_url: str, token: str) -> Any:
    """The baseline: the requests + pandas loop one writes by hand, one page after another."""
    import pandas as pd
    import requests

    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"
    rows: list[dict[str, Any]] = []
    next_url: str | None = first_url
    while next_url:
        response = http.get(next_url)
        response.raise_for_status()
        rows.extend(response.json()["results"])
        next_url = response.links.get("next", {}).get("url")
    http.close()
    return pd.DataFrame(rows)


def bench_pages(ip: Any, url: str, token: str, s: Settings) -> list[Row]:

    path = "/records?n=10000&per_page=100"

    def ours() -> Any:
        with silenced():
            run(ip, f"bench_df = %api GET {path} --all --df --concurrency 1")
        return ip.user_ns.pop("bench_df")

    def hand() -> Any:
        return hand_written_pages(url + path, token)

    a, b = ours(), hand()
    same = a.shape == (10_000, 5) and a.equals(b)
    frame_bytes = int(b.memory_usage(deep=True).sum())
    variants = {"ours": ours, "hand": hand}
    medians, ratios, spreads = interleaved(variants, s.page_rounds, 1, "hand", warmup=s.page_rounds)

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
            f"{ms(medians['ours'])} vs {ms(medians['hand'])} — **{ratios['ours']:.2f}×** ({spreads['ours']})",
            "≤ 1.1×",
            ratios["ours"] <= 1.1,
            same,
        ),
        Row(
            "pages_memory",
            "Peak memory (tracemalloc) of the same, against the DataFrame "
            f"({size(frame_bytes)}, `memory_usage(deep=True)`)",
            f"{size(mine)} = **{mine / frame_bytes:.1f}×** the DataFrame; hand-written loop "
            f"{size(theirs)} = {theirs / frame_bytes:.1f}× (ours / hand-written: {mine / theirs:.2f}×)",
            "≤ 2× the DataFrame",
            mine <= 2 * frame_bytes,
            same,
        ),
    ]


def peak(fn: Callable[[], Any]) -> int:
    """Peak bytes traced (tracemalloc) while ``fn`` makes its DataFrame."""
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


LATENCY_MS = 50
PAGES, PER_PAGE, CONCURRENCY = 100, 100, 4


def bench_pages_latency(ip: Any, s: Settings) -> list[Row]:
    """The same 100 pages from a demo API whose every answer waits 50 ms."""
    import math

    demo, url = start_demo("--latency-ms", str(LATENCY_MS))
    try:
        with silenced():
            run(ip, f"%login {url} --user demo --password-env {PASSWORD_ENV}")
        from session_magics import magics

        token = magics._instance.session().token.access_token  # type: ignore[union-attr]
        path = f"/records?n={PAGES * PER_PAGE}&per_page={PER_PAGE}"

        def ours() -> Any:
            with silenced():
                run(ip, f"bench_df = %api GET {path} --all --df")  # the default: 4 at a time
            return ip.user_ns.pop("bench_df")

        def hand() -> Any:  # what one writes by hand: one page after another
            return hand_written_pages(url + path, token)

        a, b = ours(), hand()
        same = a.shape == (PAGES * PER_PAGE, 5) and a.equals(b)
        frame_bytes = int(b.memory_usage(deep=True).sum())
        rounds = 1 if s.quick else 3
        medians, ratios, spreads = interleaved({"ours": ours, "hand": hand}, rounds, 1, "hand", warmup=0)
        limit = math.ceil(PAGES / CONCURRENCY) * LATENCY_MS / 1000
        mine = min(peak(ours) for _ in range(1 if s.quick else 2))
    finally:
        demo.terminate()
        demo.wait(10)
    speedup = 1 / ratios["ours"]
    return [
        Row(
            "pages_latency",
            f"The same {PAGES} pages with {LATENCY_MS} ms latency per answer (`--latency-ms {LATENCY_MS}`): "
            f"`x = %api GET … --all --df` ({CONCURRENCY} at a time) vs the hand-written loop "
            "(one page after another)",
            f"{ms(medians['ours'])} vs {ms(medians['hand'])} — **{speedup:.2f}×** faster "
            f"(ours / loop per round: {spreads['ours']})",
            "≥ 3.5× faster",
            speedup >= 3.5,
            same,
        ),
        Row(
            "pages_limit",
            f"The same against the limit, ⌈{PAGES} pages / {CONCURRENCY}⌉ × {LATENCY_MS} ms",
            f"{ms(medians['ours'])} vs {ms(limit)} — **{medians['ours'] / limit:.2f}×** the limit",
            "≤ 1.2×",
            medians["ours"] <= 1.2 * limit,
            same,
        ),
        Row(
            "pages_latency_memory",
            f"Peak memory (tracemalloc) of the pages fetched {CONCURRENCY} at a time, against the "
            f"DataFrame ({size(frame_bytes)})",
            f"{size(mine)} = **{mine / frame_bytes:.1f}×** the DataFrame",
            "≤ 2× the DataFrame",
            mine <= 2 * frame_bytes,
            same,
        ),
    ]


# -- 4b. the first result of a fresh kernel ---------------------------------------------------

FIRST_CHILD = """
import sys, time
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

config = Config()
config.HistoryManager.enabled = False
ip = InteractiveShell.instance(config=config)
url, kind = sys.argv[1], sys.argv[2]
cells = {
    "setup": [
        "%load_ext session_magics",
        f"%login {url} --user demo --password-env SESSION_MAGICS_BENCH_PASSWORD",
        "import keyring, requests",
        f"token = requests.post('{url}/auth/token', data={{'grant_type': 'password', 'username': 'demo', "
        "'password': 'penguins'}).json()['access_token']",
        "keyring.set_password('bench-api', 'demo', token)",
    ],
    "ours": [
        "%load_ext session_magics",
        f"%login {url} --user demo",
        "df = %api GET /penguins?per_page=100 --df",
    ],
    "hand": [
        "import requests, keyring, pandas\\n"
        "token = keyring.get_password('bench-api', 'demo')\\n"
        f"r = requests.get('{url}/penguins?per_page=100',\\n"
        "                 headers={'Authorization': f'Bearer {token}'})\\n"
        "df = pandas.DataFrame(r.json()['results'])"
    ],
}[kind]
start = time.perf_counter()
for cell in cells:
    result = ip.run_cell(cell, store_history=False)
    if not result.success:
        raise SystemExit(f"{cell!r} failed: {result.error_in_exec or result.error_before_exec}")
elapsed = time.perf_counter() - start
if kind != "setup":
    assert ip.user_ns["df"].shape == (100, 9), ip.user_ns["df"].shape
print(elapsed)
"""


def bench_first_result(url: str, s: Settings) -> Row:
    """A fresh process whose keyring holds a token: %load_ext + %login + the first %api --df,
    against import requests, keyring, pandas + keyring.get_password + requests.get + DataFrame.
    Both pay the keyring's backend discovery (the same backend: keyrings.alt's file here,
    allowed for session-magics by a user configuration in a temporary directory)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHON_KEYRING_BACKEND", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env[PASSWORD_ENV] = DEMO_PASSWORD
    with tempfile.TemporaryDirectory() as tmp:
        env["XDG_CONFIG_HOME"] = str(Path(tmp) / "config")
        env["XDG_DATA_HOME"] = str(Path(tmp) / "data")
        env["IPYTHONDIR"] = str(Path(tmp) / "ipython")
        (Path(tmp) / "config" / "session-magics").mkdir(parents=True)
        config = Path(tmp) / "config" / "session-magics" / "config.toml"
        config.write_text("allow_plaintext_keyring = true\n")

        def child(kind: str) -> float:
            done = subprocess.run(
                [sys.executable, "-c", FIRST_CHILD, url, kind],
                env=env,
                cwd=tmp,
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                why = f"{done.stderr[-2000:]}{done.stdout[-500:]}"
                raise RuntimeError(f"first-result child {kind} failed: {why}")
            return float(done.stdout.strip().splitlines()[-1])

        child("setup")
        for _ in range(2):  # warm-up: .pyc files, OS caches
            child("ours")
            child("hand")
        times: dict[str, list[float]] = {"ours": [], "hand": []}
        for _ in range(3 if s.quick else 12):
            order = ["ours", "hand"]
            random.shuffle(order)
            for kind in order:
                times[kind].append(child(kind))
    mine, theirs = statistics.median(times["ours"]), statistics.median(times["hand"])
    return Row(
        "first_result",
        "The first result of a fresh kernel whose keyring holds a token: `%load_ext` + `%login` + "
        "`df = %api GET /penguins?per_page=100 --df`, vs `import requests, keyring, pandas` + "
        "`keyring.get_password` + `requests.get` + `pandas.DataFrame` in one cell",
        f"{ms(mine)} vs {ms(theirs)} — **{mine / theirs:.2f}×**",
        "≤ 1.1×",
        mine <= 1.1 * theirs,
    )


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


BEGIN = "<!-- benchmark-table:begin -->"
END = "<!-- benchmark-table:end -->"


def write_between_markers(path: Path, text: str) -> None:
    """Replace what stands between :data:`BEGIN` and :data:`END` in ``path`` by ``text``."""
    doc = path.read_text(encoding="utf-8")
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} markers to write the table between")
    path.write_text(f"{doc[: start + len(BEGIN)]}\n{text}\n{doc[end:]}", encoding="utf-8")


def table(rows: list[Row]) -> str:
    lines = ["| Measure | Result | Target | Met |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    parser.add_argument(
        "--write",
        metavar="FILE",
        help=f"also put the table and its run line into FILE, between {BEGIN} and {END}",
    )
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
            rows += bench_pages_latency(ip, s)  # logs in to a second demo API: last
            with silenced():
                run(ip, "%unload_ext session_magics")
            rows.append(bench_keyring(str(Path(tmp) / "ipython-k"), url, s))
            rows.append(bench_load_ext(s))
            rows.append(bench_first_result(url, s))
    finally:
        demo.terminate()
        demo.wait(10)
    order = {key: i for i, key in enumerate(ROW_NAMES)}
    rows.sort(key=lambda row: order[row.key])
    import IPython
    import requests

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    run_line = (
        f"{'Quick run (--quick): few repetitions, rough numbers. ' if s.quick else ''}"
        f"Python {platform.python_version()}, IPython {IPython.__version__}, "
        f"requests {requests.__version__}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
        f"{f', load average {load:.1f} at the end' if load is not None else ''}; "
        f"{time.perf_counter() - started:.0f} s."
    )
    print(table(rows))
    print()
    print(run_line)
    if args.write:
        write_between_markers(Path(args.write), f"{table(rows)}\n\n{run_line}")
    if args.json:
        Path(args.json).write_text(json.dumps([row.__dict__ for row in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
