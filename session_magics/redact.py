"""Keeping secrets out of what is shown: messages, displays, tracebacks.

* :class:`Redactor` hides secrets in text and in decoded JSON, also when a server
  echoes them URL-encoded (``%2B`` or ``%2b``, ``+`` for a space), JSON-escaped
  (``\\u00e9``, ``\\/``) or HTML-escaped (``&amp;``, ``&#39;``, ``&#x27;``), or any mix
  of these. A short secret (a short password) is hidden where it stands as a word of
  its own, since inside other words it cannot be told from ordinary text.
* :class:`Secret` holds a secret kept in memory on purpose (a password read from
  ``--password-env``, for later logins); its ``repr`` shows nothing of it.
* :func:`sealed` makes a function a boundary that no traceback crosses: whatever
  goes wrong inside (any :class:`BaseException`), what leaves is the same exception
  raised afresh at the boundary, with the frames below it (and their local variables:
  passwords, payloads, headers) and any chained exceptions dropped, and the secrets
  removed from its message. IPython's ``%xmode Verbose``, ``%debug`` and
  ``sys.last_traceback`` then reach no frame that held them.

This module imports nothing heavy: it is used on every request.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

MASK = "●●●●"
SHORT = 6  # secrets shorter than this are hidden only where they stand as a word of their own

F = TypeVar("F", bound=Callable[..., Any])

_JSON_SHORT = {ch: json.dumps(ch)[1:-1] for ch in '"\\\b\f\n\r\t'} | {"/": "\\/"}
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HTML_NAMED = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos"}


def _hex(value: int, width: int) -> str:
    """A case-insensitive regex for ``value`` in hexadecimal."""
    return f"(?i:{value:0{width}x})"


def _spellings(ch: str) -> str:
    """A regex matching ``ch`` as written plainly, URL-encoded, JSON-escaped or HTML-escaped."""
    if ch in _PLAIN:  # no encoding changes these (the characters of most tokens)
        return re.escape(ch)
    alts = [re.escape(ch)]
    alts.append("".join("%" + _hex(b, 2) for b in ch.encode("utf-8", "surrogatepass")))
    if ch == " ":
        alts.append(r"\+")
    code = ord(ch)
    if code > 0xFFFF:  # JSON writes it as a surrogate pair
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        alts.append(r"\\u" + _hex(high, 4) + r"\\u" + _hex(low, 4))
    else:
        alts.append(r"\\u" + _hex(code, 4))
    if ch in _JSON_SHORT:
        alts.append(re.escape(_JSON_SHORT[ch]))
    alts.append(f"&#0*{code};")
    alts.append(f"&#(?i:x)0*(?i:{code:x});")
    if ch in _HTML_NAMED:
        alts.append(f"&{_HTML_NAMED[ch]};")
    return "(?:" + "|".join(alts) + ")"


@functools.lru_cache(maxsize=64)
def _pattern(secret: str) -> re.Pattern[str]:
    body = "".join(_spellings(ch) for ch in secret)
    if len(secret) < SHORT:
        body = rf"(?<![^\W_]){body}(?![^\W_])"  # a word of its own
    return re.compile(body)


class Secret:
    """A secret kept in memory on purpose. ``repr`` and ``str`` show nothing of it;
    :meth:`reveal` gives it to the code that sends it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # never pickled (copied into a file, say)
        raise TypeError("a Secret cannot be pickled")


class Redactor:
    """Hides a set of secrets in text and in decoded JSON. Its ``repr`` shows none of them."""

    __slots__ = ("_patterns",)

    def __init__(self, secrets: Iterable[str | Secret | None] = ()) -> None:
        values = {s.reveal() if isinstance(s, Secret) else s for s in secrets}
        # The longest first: a secret holding another one is hidden whole.
        self._patterns = tuple(_pattern(s) for s in sorted((v for v in values if v), key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def including(self, secrets: Iterable[str | Secret | None]) -> Redactor:
        """A redactor hiding these secrets as well as this one's."""
        more = Redactor(secrets)
        both = Redactor()
        both._patterns = more._patterns + self._patterns
        return both

    def __repr__(self) -> str:
        return f"<Redactor of {len(self._patterns)} secret(s)>"

    def text(self, text: str) -> str:
        for pattern in self._patterns:
            text = pattern.sub(MASK, text)
        return text

    def data(self, value: Any, _depth: int = 0) -> Any:
        """A copy of decoded JSON with every string (keys too) redacted; untouched when
        nothing needed hiding."""
        if not self._patterns:
            return value
        if isinstance(value, str):
            return self.text(value)
        if _depth > 200:  # deeper than any display shows: a placeholder, not a crash
            return "…"
        if isinstance(value, dict):
            key = self.text
            return {(key(k) if isinstance(k, str) else k): self.data(v, _depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v, _depth + 1) for v in value]
        return value


def redact_message(text: str, *secrets: str | Secret | None) -> str:
    """``text`` with every secret hidden (also URL-, JSON- or HTML-escaped, as servers echo them)."""
    return Redactor(secrets).text(text)


# ----------------------------------------------------------- no traceback crosses
def detach(exc: BaseException, redactor: Redactor | None = None) -> BaseException:
    """``exc`` made ready to be raised again elsewhere: no traceback, no chained
    exceptions, secrets hidden in its message. Ctrl+C becomes
    :class:`~session_magics.errors.Interrupted` (shown as one line), unless it is
    one line already (:func:`~session_magics.errors.interrupted_wait`)."""
    from .errors import Interrupted, shown_as_one_line

    if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Interrupted) and not shown_as_one_line(exc):
        exc = Interrupted("interrupted")
    if redactor and exc.args:
        try:
            args = tuple(redactor.text(a) if isinstance(a, str) else a for a in exc.args)
            if args != exc.args:
                exc.args = args
        except Exception:  # an exception class whose args cannot be set: keep only its type
            exc = type(exc).__new__(type(exc))
    # RequestSyntaxError and the like keep their message in an attribute as well.
    for name in ("reason", "message", "msg"):
        value = getattr(exc, name, None)
        if redactor and isinstance(value, str):
            with contextlib.suppress(Exception):  # read-only: fine
                setattr(exc, name, redactor.text(value))
    exc.__traceback__ = None
    exc.__cause__ = None
    exc.__context__ = None
    exc.__suppress_context__ = False
    return exc


def drop_frames(exc: BaseException) -> None:
    """Forget the tracebacks of ``exc`` and of the exceptions chained to it: replaced by
    another error, it stays reachable as that one's ``__context__`` (``%debug`` walks
    there), and its frames hold what the code below had in hand."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        error = todo.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        error.__traceback__ = None
        todo += [error.__cause__, error.__context__]


def _sealed_failure(
    exc: BaseException,
    secrets_of: Callable[..., Iterable[str | Secret | None]] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> BaseException:
    """What a :func:`sealed` boundary raises for ``exc``: detached, with the secrets that
    ``secrets_of`` names for the call's arguments hidden in its message. Returning drops
    this frame (and the redactor, which holds the secrets) before the boundary raises."""
    try:
        redactor = Redactor(secrets_of(*args, **kwargs)) if secrets_of else None
    except Exception:
        redactor = None
    return detach(exc, redactor)


def sealed(secrets_of: Callable[..., Iterable[str | Secret | None]] | None = None) -> Callable[[F], F]:
    """Decorate a function that holds secrets: no traceback leaving it reaches its frame
    or any frame below it (see the module's docstring).

    ``secrets_of(*args, **kwargs)`` names the secrets to hide in the exception's
    message (it gets the function's own arguments).
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def boundary(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except BaseException as exc:
                failure = _sealed_failure(exc, secrets_of, args, kwargs)
            # Here, outside the handler, nothing is chained to ``failure``; and this frame,
            # the first of its new traceback, keeps none of the arguments.
            del args, kwargs
            raise failure

        @functools.wraps(fn)
        async def async_boundary(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except BaseException as exc:
                failure = _sealed_failure(exc, secrets_of, args, kwargs)
            del args, kwargs
            raise failure

        if inspect.iscoroutinefunction(fn):
            return async_boundary  # type: ignore[return-value]
        return boundary  # type: ignore[return-value]

    return decorate


# ------------------------------------------------ secrets taken from the environment
_KEPT: dict[str, Secret] = {}
_KEPT_LOCK = threading.Lock()


def take_from_environment(var: str) -> Secret | None:
    """The secret in environment variable ``var``, removed from the environment.

    Once read, ``var`` is gone from ``os.environ`` (so from ``%env``, and from the
    environment of child processes such as ``!env``); the value is kept in this
    process's memory, in a :class:`Secret`, for later logins. Setting ``var`` again
    replaces the kept value. None when ``var`` is neither set nor kept.
    """
    with _KEPT_LOCK:
        value = os.environ.pop(var, None)
        if value:
            _KEPT[var] = Secret(value)
        elif value is not None:  # set but empty: put back, as if not read
            os.environ[var] = value
        return _KEPT.get(var)


def kept_secrets() -> tuple[Secret, ...]:
    """Every secret taken from the environment so far (hidden in displays too)."""
    with _KEPT_LOCK:
        return tuple(_KEPT.values())


def forget_kept(var: str | None = None) -> None:
    """Drop the secret kept for ``var`` (every one when None)."""
    with _KEPT_LOCK:
        if var is None:
            _KEPT.clear()
        else:
            _KEPT.pop(var, None)
