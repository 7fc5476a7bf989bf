"""The input transformer: cells calling our magics at top level ``await`` them.

On kernels that handle widget messages while an async cell awaits (ipykernel >= 7.4,
see :meth:`~session_magics.waiting.base.KernelLine.prefers_async`), a cell such as
``x = %api GET /x`` is rewritten by an IPython ``input_transformers_post`` entry into
``x = (await runner('line', 'api', 'GET /x', None))``, so the login form, if one is
needed, waits asynchronously and the kernel keeps handling the form's messages.
Plain Python (``ast``) only; nothing here looks at the kernel except
:func:`install_transformer`, which asks whether to install at all.
"""

from __future__ import annotations

import ast
from typing import Any

_MAGIC_METHODS = {"run_line_magic": "line", "run_cell_magic": "cell"}


def _magic_call(node: ast.AST, names: set[str] | frozenset[str]) -> str | None:
    """'line'/'cell' if node is ``get_ipython().run_*_magic('<one of names>', ...)``."""
    if not isinstance(node, ast.Call) or node.keywords:
        return None
    func = node.func
    if not isinstance(func, ast.Attribute) or func.attr not in _MAGIC_METHODS:
        return None
    owner = func.value
    if not (
        isinstance(owner, ast.Call)
        and isinstance(owner.func, ast.Name)
        and owner.func.id == "get_ipython"
        and not owner.args
        and not owner.keywords
    ):
        return None
    kind = _MAGIC_METHODS[func.attr]
    if len(node.args) != (2 if kind == "line" else 3):
        return None
    name = node.args[0]
    if not (isinstance(name, ast.Constant) and name.value in names):
        return None
    return kind


def _top_level_calls(tree: ast.AST, names: set[str] | frozenset[str]) -> list[tuple[ast.Call, str]]:
    """Magic calls outside any function, lambda or class body, in source order."""
    found: list[tuple[ast.Call, str]] = []
    scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, scopes):
                continue
            kind = _magic_call(child, names)
            if kind is not None:
                assert isinstance(child, ast.Call)
                found.append((child, kind))
                continue
            visit(child)

    visit(tree)
    found.sort(key=lambda item: (item[0].lineno, item[0].col_offset))
    return found


def _runner_expr(runner: str) -> str:
    parts = runner.split(".")
    if not runner or not all(part.isidentifier() for part in parts):
        raise ValueError(f"runner must be a name or a dotted path, not {runner!r}")
    if len(parts) == 1:
        return runner
    module, attr = ".".join(parts[:-1]), parts[-1]
    return f"__import__({module!r}, fromlist=[{attr!r}]).{attr}"


def _offsets(source: str) -> list[int]:
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _char_offset(lines: list[str], starts: list[int], lineno: int, col_bytes: int) -> int:
    line = lines[lineno - 1]
    return starts[lineno - 1] + len(line.encode("utf-8")[:col_bytes].decode("utf-8", "replace"))


def _compiles_with_await(source: str) -> bool:
    try:
        compile(source, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def rewrite_source(source: str, magic_names: set[str] | frozenset[str], runner: str) -> str:
    """Rewrite top-level calls of the given magics into ``await runner(...)``.

    ``get_ipython().run_line_magic('login', 'x')`` becomes
    ``(await runner('line', 'login', 'x', None))`` and
    ``get_ipython().run_cell_magic('api', 'l', 'body')`` becomes
    ``(await runner('cell', 'api', 'l', 'body'))``, keeping the line count.
    Calls inside functions, lambdas and class bodies are left alone, and so is any
    call whose rewriting would not compile with top-level ``await`` allowed. The
    source is returned unchanged (the same object) when nothing was rewritten.
    ``runner`` is a name in the user namespace or a dotted ``module.attr`` path.
    """
    if not any(name in source for name in magic_names):
        return source
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source
    calls = _top_level_calls(tree, magic_names)
    if not calls:
        return source
    target = _runner_expr(runner)
    lines = source.splitlines(keepends=True)
    starts = _offsets(source)

    edits: list[tuple[int, int, str]] = []
    for call, kind in calls:
        if call.end_lineno is None or call.end_col_offset is None:
            continue
        begin = _char_offset(lines, starts, call.lineno, call.col_offset)
        end = _char_offset(lines, starts, call.end_lineno, call.end_col_offset)
        args = [ast.get_source_segment(source, arg) for arg in call.args]
        if any(arg is None for arg in args):
            continue
        cell = args[2] if kind == "cell" else "None"
        text = f"(await {target}({kind!r}, {args[0]}, {args[1]}, {cell}))"
        missing = source[begin:end].count("\n") - text.count("\n")
        if missing > 0:
            text = text[:-1] + "\n" * missing + ")"
        edits.append((begin, end, text))

    def apply(chosen: list[tuple[int, int, str]]) -> str:
        out = source
        for begin, end, text in sorted(chosen, reverse=True):
            out = out[:begin] + text + out[end:]
        return out

    result = apply(edits)
    if _compiles_with_await(result):
        return result
    kept: list[tuple[int, int, str]] = []
    for edit in edits:
        if _compiles_with_await(apply([*kept, edit])):
            kept.append(edit)
    return apply(kept) if kept else source


class AwaitMagics:
    """IPython ``input_transformers_post`` entry made by :func:`install_transformer`."""

    has_side_effects = False

    def __init__(self, shell: Any, magic_names: set[str], runner: str) -> None:
        _runner_expr(runner)  # validate early
        self.shell = shell
        self.magic_names = frozenset(magic_names)
        self.runner = runner

    def __call__(self, lines: list[str]) -> list[str]:
        if not getattr(self.shell, "autoawait", False):
            return lines
        source = "".join(lines)
        try:
            result = rewrite_source(source, self.magic_names, self.runner)
        except Exception:
            return lines
        if result is source:
            return lines
        return result.splitlines(keepends=True)


def install_transformer(ip: Any, magic_names: set[str], runner: str, *, force: bool = False) -> bool:
    """Make cells that call our magics at top level ``await runner(kind, name, line, cell)``.

    Installed only where :func:`preferred_wait` is ``"async"`` (a kernel that
    handles widget messages while an async cell awaits), unless ``force``.
    Returns whether it is installed. Installing again replaces the previous one.
    """
    uninstall_transformer(ip)
    from . import preferred_wait

    if not force and preferred_wait() != "async":
        return False
    ip.input_transformers_post.append(AwaitMagics(ip, set(magic_names), runner))
    return True


def uninstall_transformer(ip: Any) -> None:
    """Remove what :func:`install_transformer` installed (no error if nothing was)."""
    transformers = getattr(ip, "input_transformers_post", None)
    if transformers is None:
        return
    transformers[:] = [t for t in transformers if not isinstance(t, AwaitMagics)]
