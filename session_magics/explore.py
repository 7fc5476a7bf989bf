"""Turn an answer into the value a cell needs: ``--extract`` (JMESPath) and ``--df``.

* :func:`extract` applies a JMESPath expression (https://jmespath.org) to parsed
  JSON; a bad expression is a one-line :class:`ExtractError`.
* :func:`frame_of` makes a pandas DataFrame of a list of records, of an answer
  that holds one (``results``, ``data``, ``items``...), or of a single object
  (one row); nested objects become ``parent.child`` columns, as with
  ``pandas.json_normalize``.
* :func:`value_of` is the value of an ``%%api`` cell with ``--all``, ``--df`` or ``--extract``.
"""

from __future__ import annotations

import functools
import itertools
import operator
import sys
from typing import TYPE_CHECKING, Any

from .errors import SessionMagicsError
from .result import ApiResult, find_records

if TYPE_CHECKING:
    import pandas


class ExtractError(SessionMagicsError):
    """A JMESPath expression that does not parse or cannot be applied."""


@functools.lru_cache(maxsize=128)
def _compile(expr: str) -> Any:
    import jmespath

    return jmespath.compile(expr)


def _one_line(exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for tail in (", for expression:", ":"):
        if first.endswith(tail):
            first = first[: -len(tail)]
    return first.replace("Invalid jmespath expression: ", "")


def extract(data: Any, expr: str, *, option: str = "--extract") -> Any:
    """``data`` searched with the JMESPath expression ``expr``."""
    import jmespath.exceptions

    if not expr.strip():
        raise ExtractError(f"{option} needs a JMESPath expression, e.g. {option} 'results[].name'")
    try:
        compiled = _compile(expr)
    except jmespath.exceptions.JMESPathError as exc:
        raise ExtractError(f"{option} {expr!r} is not valid JMESPath: {_one_line(exc)}") from None
    if isinstance(data, (bytes, str)):
        raise ExtractError(f"{option} needs a JSON answer, and this one is not JSON")
    try:
        return compiled.search(data)
    except jmespath.exceptions.JMESPathError as exc:
        raise ExtractError(f"{option} {expr!r} failed: {_one_line(exc)}") from None


def unquote(option: str | None) -> str | None:
    """An option value without the quotes IPython's magic argument splitter keeps."""
    if option is not None and len(option) >= 2 and option[0] == option[-1] and option[0] in "'\"":
        return option[1:-1]
    return option


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise SessionMagicsError("--df and .df need pandas: pip install 'session-magics[pandas]'") from None
    return pd


def records_frame(records: list[dict[str, Any]]) -> pandas.DataFrame:
    """A DataFrame of dicts; flat records skip json_normalize (the same frame, 3-4× faster)."""
    pd = _pandas()
    for record in records:
        for value in record.values():
            if isinstance(value, dict):
                return pd.json_normalize(records)
    return pd.DataFrame(records)


_MISSING = object()


class FrameBuilder:
    """The columns of a DataFrame, filled a page of records at a time.

    Flat records (no nested objects) go straight into one list per column, so a
    page's dicts can be let go once it is read. The frame equals
    ``pandas.DataFrame(records)``: columns in order of first appearance, a missing
    key NaN, an explicit null None. Nested objects or non-object items switch it
    to keeping the records for :func:`frame_of` (json_normalize) at the end.

    Hand-made rather than ``DataFrame.from_records`` per page + ``concat`` for the
    benchmark table's 100-pages rows (``benchmarks/variants.py``): peak memory 2.5 MB
    against 3.1 MB (row pages_memory, 1.20×; the plain way holds every page's frame
    and their concatenation at once: about 2.2× the DataFrame, against the ≤ 2× target),
    and 1.19× the time (row pages_time).
    """

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {}
        self.rows = 0
        self.gaps: set[str] = set()  # columns where some record had no value
        self.records: list[Any] | None = None

    def add(self, records: list[Any]) -> None:
        if self.records is not None:
            self.records.extend(records)
            return
        if not records:
            return
        # Checks in C (map/all/in) rather than a Python loop per record: a page of
        # uniform flat records is moved into the columns at once.
        if set(map(type, records)) != {dict} or dict in map(
            type, itertools.chain.from_iterable(map(dict.values, records))
        ):
            self._switch(records)
            return
        keys = records[0].keys()
        columns = self.columns
        if (not columns or keys == columns.keys()) and all(map(keys.__eq__, map(dict.keys, records))):
            names = list(keys)
            for name in names:
                if name not in columns:  # (earlier records, if any, were all empty objects)
                    columns[name] = [_MISSING] * self.rows
                    if self.rows:
                        self.gaps.add(name)
            if len(names) == 1:
                columns[names[0]].extend(map(operator.itemgetter(names[0]), records))
            elif names:
                values = zip(*map(operator.itemgetter(*names), records), strict=True)
                for name, page_column in zip(names, values, strict=True):
                    columns[name].extend(page_column)
            self.rows += len(records)
            return
        for record in records:  # keys vary: record by record
            for key in record:
                if key not in columns:
                    columns[key] = [_MISSING] * self.rows
                    if self.rows:
                        self.gaps.add(key)
            for key, column in columns.items():
                if key in record:
                    column.append(record[key])
                else:
                    column.append(_MISSING)
                    self.gaps.add(key)
            self.rows += 1

    def _switch(self, records: list[Any]) -> None:
        """Nested objects or items that are not objects: keep the records instead."""
        self.records = self._as_records()
        self.records.extend(records)
        self.columns = {}

    def _as_records(self) -> list[Any]:
        names = list(self.columns)
        cols = [self.columns[name] for name in names]
        return [
            {name: col[i] for name, col in zip(names, cols, strict=True) if col[i] is not _MISSING}
            for i in range(self.rows)
        ]

    def frame(self) -> pandas.DataFrame:
        pd = _pandas()
        if self.records is not None:
            return frame_of(self.records)
        if not self.columns:
            return pd.DataFrame(index=range(self.rows))
        if self.gaps:
            nan = float("nan")
            for key in self.gaps:
                self.columns[key] = [nan if v is _MISSING else v for v in self.columns[key]]
        frame = pd.DataFrame(self.columns)
        self.columns = {}
        return frame


def frame_of(value: Any) -> pandas.DataFrame:
    """A DataFrame of records, of an answer holding records, or of one object (a row)."""
    pd = _pandas()
    if isinstance(value, ApiResult):
        records = value.records
        value = records if records is not None else value.data
    if isinstance(value, list):
        if not value:
            return pd.DataFrame()
        if all(isinstance(item, dict) for item in value):
            return records_frame(value)
        if not any(isinstance(item, (dict, list)) for item in value):
            return pd.DataFrame({"value": value})
        raise ExtractError("--df: the list mixes objects and other values, so it makes no table")
    if isinstance(value, dict):
        records = find_records(value)
        return records_frame(records) if records is not None else records_frame([value])
    kind = "nothing (null)" if value is None else f"a {type(value).__name__}"
    raise ExtractError(f"--df needs JSON records (a list of objects), but the answer is {kind}")


def _failure(result: ApiResult) -> str:
    """What went wrong, in one line: the status and the first line of the answer."""
    try:
        text = result.text  # a PagedResult's is its last page's
    except Exception:
        text = ""
    lines = text.strip().splitlines()
    detail = f": {lines[0][:200]}" if lines else ""
    graphql = getattr(result, "failure_detail", None)
    if graphql is not None and graphql():
        detail = f": {graphql()}"
    return f"{result.method} {result.url} answered {result.status_code} {result.reason}{detail}"


def value_of(result: ApiResult, *, df: bool, extract_expr: str | None) -> Any:
    """The value of an ``%%api`` cell with ``--all``, ``--df`` or ``--extract``."""
    stopped = getattr(result, "stopped", None)
    if stopped:
        print(f"Warning: {stopped}; the result holds the pages fetched until then.", file=sys.stderr)
    expr = unquote(extract_expr)
    if not df and expr is None:
        return result
    # Usable: a successful answer, or pages before the one that failed.
    usable = result.ok or getattr(result, "page_count", 1) > 1
    if not usable:
        option = "--df" if expr is None else "--extract"
        raise SessionMagicsError(
            f"{_failure(result)} — nothing for {option} (leave it out to see the answer)"
        )
    if expr is not None:
        value = extract(result.data, expr)
        if value is None:
            print(f"Note: --extract {expr!r} matched nothing (null)", file=sys.stderr)
        return frame_of(value) if df else value
    # --df alone: a PagedResult has its frame; one answer may hold records or be one
    return result.df if hasattr(result, "page_count") else frame_of(result)
