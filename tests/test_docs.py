"""The documentation holds together: every relative link in README.md and docs/*.md reaches
an existing file (and heading), and docs/reference.md documents each option of the magics,
each setting and each configuration-file key exactly once, and nothing the code lacks."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from session_magics.config import PROFILE_KEYS
from session_magics.magics import SessionMagics

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REFERENCE = ROOT / "docs" / "reference.md"

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def without_code_blocks(text: str) -> str:
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.lower().replace("`", "")
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: Counter[str] = Counter()
    out = set()
    for match in HEADING.finditer(without_code_blocks(page.read_text(encoding="utf-8"))):
        base = slug(match.group(2))
        out.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
        seen[base] += 1
    return out


def links(page: Path) -> list[str]:
    text = CODE_SPAN.sub("", without_code_blocks(page.read_text(encoding="utf-8")))
    return [m.group(1) for m in LINK.finditer(text)]


def test_the_slugs_are_githubs():
    assert slug("`%%api` / `%api`") == "api--api"
    assert slug("Settings: `%config SessionMagics`") == "settings-config-sessionmagics"
    assert slug("Where each secret may go (the trust model)") == "where-each-secret-may-go-the-trust-model"
    assert slug(".http files") == "http-files"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    found = links(page)
    broken = []
    for target in found:
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path_part, _, fragment = target.partition("#")
        file = (page.parent / path_part).resolve() if path_part else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target}: no heading #{fragment} in {file.relative_to(ROOT)}")
    assert not broken, broken


def test_the_readme_links_every_page_under_docs():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md")}
    pages = set((ROOT / "docs").glob("*.md"))
    assert pages <= linked, sorted(str(p.relative_to(ROOT)) for p in pages - linked)


def section(text: str, heading: str) -> str:
    """From the level-2 heading that starts with ``heading`` to the next level-2 heading."""
    start = text.index(f"\n## {heading}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def first_cells(text: str) -> list[str]:
    """The first cell of every table row (header and rule rows left out)."""
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    cells = [re.split(r"(?<!\\)\|", row)[1] for row in rows]
    return [c for c in cells if c.strip() not in ("option", "setting", "profile key", "")]


def options_in(cells: list[str]) -> Counter[str]:
    found: Counter[str] = Counter()
    for cell in cells:
        for span in re.findall(r"`([^`]+)`", cell):
            found.update(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", span))
    return found


@pytest.mark.parametrize(
    ("magic", "heading"),
    [("login", "`%login`"), ("api", "`%%api` / `%api`"), ("logout", "`%logout`")],
)
def test_each_option_is_in_the_reference_once(magic: str, heading: str):
    parser = getattr(SessionMagics, magic).parser
    in_code = {opt for action in parser._actions for opt in action.option_strings} - {"-h", "--help"}
    documented = options_in(first_cells(section(REFERENCE.read_text(encoding="utf-8"), heading)))
    assert set(documented) - in_code == set(), "documented, but not an option of the code"
    assert in_code - set(documented) == set(), "options of the code the reference does not document"
    assert {opt: n for opt, n in documented.items() if n > 1} == {}, "documented more than once"


def test_each_setting_is_in_the_reference_once():
    cells = first_cells(section(REFERENCE.read_text(encoding="utf-8"), "Settings"))
    names = Counter(re.fullmatch(r"\s*`(\w+)`\s*", c).group(1) for c in cells)  # type: ignore[union-attr]
    assert set(names) == set(SessionMagics.class_trait_names(config=True))
    assert max(names.values()) == 1


def test_each_profile_key_is_in_the_reference_once():
    cells = first_cells(section(REFERENCE.read_text(encoding="utf-8"), "Configuration files"))
    keys = Counter(k for cell in cells for k in re.findall(r"`(\w+)`", cell))
    assert set(keys) == set(PROFILE_KEYS) | {"url"}  # url: another name for base_url
    assert max(keys.values()) == 1
