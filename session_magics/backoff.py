"""A back-off shared by the threads that fetch pages at once (``--all --concurrency N``).

When one answer says ``429 Too Many Requests`` or ``503`` with ``Retry-After``,
every thread of the same walk waits that long before it sends again, so a
rate-limited API is never hammered by the threads that did not get the answer
themselves. The retry policy of the HTTP session (urllib3's ``Retry``, see
:mod:`session_magics.session`) asks :func:`current` for the back-off of the
thread it runs in: none outside a concurrent walk, where it sleeps as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_CURRENT: ContextVar[SharedBackoff | None] = ContextVar("session_magics_backoff", default=None)


class SharedBackoff:
    """A time before which no thread sharing this object sends a request."""

    def __init__(self) -> None:
        self._until = 0.0
        self._cond = threading.Condition()
        self._cancelled = False
        self.holds = 0  # how many answers asked everyone to wait

    def hold(self, seconds: float) -> None:
        """Nobody sends for ``seconds`` from now (a later hold already set is kept)."""
        with self._cond:
            self.holds += 1
            self._until = max(self._until, time.monotonic() + max(0.0, seconds))
            self._cond.notify_all()

    def wait(self, most: float | None = None) -> None:
        """Return once the back-off is over (at once when there is none, or when cancelled),
        or after ``most`` seconds (what is left of a request's deadline)."""
        end = None if most is None else time.monotonic() + max(0.0, most)
        with self._cond:
            while not self._cancelled:
                now = time.monotonic()
                left = self._until - now
                if end is not None:
                    left = min(left, end - now)
                if left <= 0:
                    return
                self._cond.wait(left)

    def cancel(self) -> None:
        """Wake every waiting thread: the walk is over."""
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()


def current() -> SharedBackoff | None:
    """The back-off of the walk this thread works for, if any."""
    return _CURRENT.get()


@contextmanager
def sharing(backoff: SharedBackoff) -> Iterator[None]:
    """Within the block, this thread's retries wait on ``backoff``."""
    token = _CURRENT.set(backoff)
    try:
        yield
    finally:
        _CURRENT.reset(token)
