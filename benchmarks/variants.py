#!/usr/bin/env python
"""Each optimisation in the package against its plain version, timed alternately in one run.

    python benchmarks/variants.py                      # every optimisation (several minutes)
    python benchmarks/variants.py --only frame_builder # some of them
    python benchmarks/variants.py --quick              # fewer rounds: a smoke run

An optimisation stays in the package only where it moves a figure of the
benchmark table (``benchmarks/run.py``, docs/performance.md) by 5 % or more; this script is how that is
decided. For each one, the workload of the table's row it serves is run with the
package as it is ("optimised") and with the plain version swapped in (a module
attribute replaced, then put back), the variants in random order within each round.
A ratio is the median over rounds of plain / optimised in the same round; the spread
is the quartiles of those per-round ratios. ``%load_ext`` runs in fresh processes:
one imports the package, the other a copy of it with the plain version.

The optimisations measured here are the ones that stayed (each one's comment in the
package gives its figures): ``proxy_settings`` (requests' environment settings worked
out once per origin: rows core and api_q), ``frame_builder`` (columns filled page by
page instead of ``DataFrame.from_records`` per page + ``concat``: rows pages_time and
pages_memory), ``mentions_us`` (a pyproject.toml that does not mention us is not
parsed: row load_ext). Measured and removed, as they moved no figure by 5 %: a
hand-made argument-parse cache of ``%%api`` (its options are now parsed once per line
with ``functools.lru_cache``, the plain form), the remembered base-URL join, safe URL
and redactor, and a fast path of the pages' same-origin check.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (benchmarks/run.py: the demo API, the shell, the workloads)

REPO = bench.REPO


@dataclass
class Swap:
    """The plain version of one optimisation: ``module.name`` replaced by ``plain``."""

    key: str
    what: str
    module: Any
    name: str
    plain: Any

    @contextlib.contextmanager
    def applied(self, on: bool) -> Iterator[None]:
        if not on:
            yield
            return
        kept = getattr(self.module, self.name)
        setattr(self.module, self.name, self.plain)
        try:
            yield
        finally:
            setattr(self.module, self.name, kept)


@dataclass
class Outcome:
    key: str
    figure: str
    optimised: float
    plain: float
    ratio: float  # median per-round plain / optimised
    low: float  # first quartile of the per-round ratios
    high: float  # third quartile
    unit: str = "ms"

    def line(self) -> str:
        if self.unit == "ms":
            a, b = f"{self.optimised * 1000:.3f} ms", f"{self.plain * 1000:.3f} ms"
        else:
            a, b = bench.size(self.optimised), bench.size(self.plain)
        return (
            f"| {self.key} | {self.figure} | {a} | {b} | **{self.ratio:.3f}×** "
            f"({self.low:.3f}–{self.high:.3f}) |"
        )


def alternately(
    swap: Swap, work: Callable[[], Any], rounds: int, per_round: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Seconds per call of ``work`` with the package as it is and with the plain version,
    one list per variant, a value per round; the two run in random order in each round."""
    for on in (False, True):
        with swap.applied(on):
            for _ in range(warmup):
                work()
    times: dict[bool, list[float]] = {False: [], True: []}
    order = [False, True]
    for _ in range(rounds):
        random.shuffle(order)
        for on in order:
            with swap.applied(on):
                start = time.perf_counter()
                for _ in range(per_round):
                    work()
                times[on].append((time.perf_counter() - start) / per_round)
    return times[False], times[True]


def outcome(key: str, figure: str, optimised: list[float], plain: list[float], unit: str = "ms") -> Outcome:
    ratios = [p / o for o, p in zip(optimised, plain, strict=True)]
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return Outcome(
        key, figure, statistics.median(optimised), statistics.median(plain), statistics.median(ratios),
        q[0], q[2], unit,
    )  # fmt: skip


# -- the plain versions ------------------------------------------------------------------------


def plain_merge(self: Any, http: Any, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
    import requests

    return requests.Session.merge_environment_settings(http, url, proxies, stream, verify, cert)


class PlainFrameBuilder:
    """A DataFrame a page at a time: each page's records become a frame as the page is
    read (so its dicts can be let go), and the frames are joined at the end."""

    def __init__(self) -> None:
        self.frames: list[Any] = []
        self.kinds: set[bool] = set()  # whether a page held objects (True) or other values
        self.error: Exception | None = None

    def add(self, records: list[Any]) -> None:
        from session_magics.explore import ExtractError, frame_of

        if not records or self.error is not None:
            return
        try:
            self.frames.append(frame_of(records))
        except ExtractError as exc:
            self.error, self.frames = exc, []
            return
        self.kinds.add(isinstance(records[0], dict))

    def frame(self) -> Any:
        import pandas as pd

        from session_magics.explore import ExtractError

        if self.error is not None:
            raise self.error
        if len(self.kinds) > 1:
            raise ExtractError("--df: the list mixes objects and other values, so it makes no table")
        if not self.frames:
            return pd.DataFrame()
        frames, self.frames = self.frames, []
        return pd.concat(frames, ignore_index=True, sort=False)


# -- the workloads ---------------------------------------------------------------------------------


def per_request(ip: Any, swaps: list[Swap], rounds: int, per_round: int) -> list[Outcome]:
    from session_magics import magics

    core = magics._instance.session()  # type: ignore[union-attr]
    works: dict[str, tuple[str, Callable[[], Any]]] = {
        "api_q": (
            "`%%api -q` per request (row api_q; also api_q/raw_cell)",
            lambda: bench.run(ip, "%%api -q\nGET /small"),
        ),
        "core": (
            "`ApiSession.request` per request (row core)",
            lambda: core.request("GET", "/small").content,
        ),
    }
    out = []
    for swap in swaps:
        for figure, work in works.values():
            a, b = alternately(swap, work, rounds, per_round, warmup=per_round)
            out.append(outcome(swap.key, figure, a, b))
            print(out[-1].line(), flush=True)
    return out


def pages(ip: Any, swaps: list[Swap], rounds: int) -> list[Outcome]:
    path = "/records?n=10000&per_page=100"

    def ours() -> Any:
        with bench.silenced():
            bench.run(ip, f"bench_df = %api GET {path} --all --df --concurrency 1")
        return ip.user_ns.pop("bench_df")

    out = []
    for swap in swaps:
        with swap.applied(True):
            plain_frame = ours()
        assert plain_frame.equals(ours()), f"{swap.key}: the plain version makes another DataFrame"
        a, b = alternately(swap, ours, rounds, 1, warmup=2)
        out.append(outcome(swap.key, "100 pages --all --df --concurrency 1, time (row pages_time)", a, b))
        print(out[-1].line(), flush=True)
        peaks: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(max(2, rounds // 3)):
            order = [False, True]
            random.shuffle(order)
            for on in order:
                with swap.applied(on):
                    peaks[on].append(bench.peak(ours))
        memory = "the same, peak memory (row pages_memory)"
        out.append(outcome(swap.key, memory, peaks[False], peaks[True], "bytes"))
        print(out[-1].line(), flush=True)
    return out


PLAIN_CONFIG = (
    "        if not _MENTIONS_US.search(raw):  # cheap: most pyproject.toml files are not for us\n"
    "            continue\n"
)


def load_ext(rounds: int) -> list[Outcome]:
    """``%load_ext`` in a fresh process in a project with a pyproject.toml (this one's, which
    has no [tool.session_magics] table): the package, and a copy that parses the file."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory() as tmp:
        plain_root = Path(tmp) / "plain"
        shutil.copytree(REPO / "session_magics", plain_root / "session_magics",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        config = plain_root / "session_magics" / "config.py"
        source = config.read_text()
        assert PLAIN_CONFIG in source, "config.py changed: update PLAIN_CONFIG"
        config.write_text(source.replace(PLAIN_CONFIG, ""))
        env["XDG_CONFIG_HOME"] = tmp
        env["IPYTHONDIR"] = str(Path(tmp) / "ipython")

        def child(plain: bool) -> float:
            root = plain_root if plain else REPO
            done = subprocess.run(
                [sys.executable, "-P", "-c", bench.CHILD, "1"],  # -P: the package from PYTHONPATH, not cwd
                env={**env, "PYTHONPATH": str(root)},
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            )
            return float(done.stdout.strip().splitlines()[-1])

        for plain in (False, True):  # each variant runs its own copy of the package
            where = subprocess.run(
                [sys.executable, "-P", "-c", "import session_magics; print(session_magics.__file__)"],
                env={**env, "PYTHONPATH": str(plain_root if plain else REPO)}, cwd=REPO,
                capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
            assert where.startswith(str(plain_root if plain else REPO)), where
        for _ in range(2):
            child(False)
            child(True)
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(rounds):
            order = [False, True]
            random.shuffle(order)
            for plain in order:
                times[plain].append(child(plain))
    out = [outcome("mentions_us", "`%load_ext` measured around it (row load_ext)", times[False], times[True])]
    print(out[-1].line(), flush=True)
    return out


# -- main ----------------------------------------------------------------------------------------


def swaps() -> dict[str, list[Swap]]:
    from session_magics import explore, transport

    return {
        "proxy_settings": [
            Swap(
                "proxy_settings",
                "requests' own merge_environment_settings",
                transport._EnvironmentSettings,
                "merge",
                plain_merge,
            ),
        ],  # fmt: skip
        "frame_builder": [
            Swap(
                "frame_builder", "from_records per page + concat", explore, "FrameBuilder", PlainFrameBuilder
            )
        ],  # fmt: skip
    }


PER_REQUEST = ("proxy_settings",)
PAGES = ("frame_builder",)
ALL = (*PER_REQUEST, *PAGES, "mentions_us")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated, of: {', '.join(ALL)}")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument(
        "--rounds",
        type=int,
        help="rounds per comparison (default: 300 per request, 25 for the pages, 60 for %%load_ext; "
        "--quick: 10, 3, 4)",
    )
    args = parser.parse_args(argv)
    chosen = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = set(chosen) - set(ALL)
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))} (choose from {', '.join(ALL)})")
    request_rounds = args.rounds or (10 if args.quick else 300)
    page_rounds = args.rounds or (3 if args.quick else 25)
    load_rounds = args.rounds or (4 if args.quick else 60)
    random.seed(1)
    os.environ[bench.PASSWORD_ENV] = bench.DEMO_PASSWORD
    import keyring

    print("| optimisation | figure | optimised | plain | plain / optimised (quartiles) |")
    print("|---|---|---|---|---|")
    started = time.perf_counter()
    demo, url = bench.start_demo()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["XDG_CONFIG_HOME"] = tmp
            keyring.set_keyring(bench.CountingKeyring().backend)
            ip = bench.new_shell(str(Path(tmp) / "ipython"))
            with bench.silenced():
                bench.run(ip, "%load_ext session_magics")
                bench.run(ip, f"%login {url} --user demo --password-env {bench.PASSWORD_ENV}")
            table = swaps()
            picked = [s for k in chosen if k in PER_REQUEST for s in table[k]]
            if picked:
                per_request(ip, picked, request_rounds, 5)
            picked = [s for k in chosen if k in PAGES for s in table[k]]
            if picked:
                pages(ip, picked, page_rounds)
            if "mentions_us" in chosen:
                load_ext(load_rounds)
    finally:
        demo.terminate()
        demo.wait(10)
    print(f"\n{time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
