"""Waiting on a condition in tests: poll until it holds, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None], timeout: float = 30.0, what: str = "condition", *, poll: float = 0.05
) -> T:
    """Poll ``condition()`` (a file, a server's record, the REST API) until it returns something
    truthy, and return that; an AssertionError naming ``what`` after ``timeout`` seconds (a bound
    for a condition that never comes, not a speed)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)
