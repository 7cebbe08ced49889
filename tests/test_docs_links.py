"""The README's and docs' relative links point at files that exist and at headings those files have."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]*)\)")


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    anchors = set()
    in_code = False
    for line in page.read_text().splitlines():
        in_code ^= line.startswith("```")
        heading = re.match(r"#+\s+(.*)", line)
        if heading and not in_code:
            anchors.add(re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-"))
    return anchors


def local_links(page: Path) -> list[tuple[Path, str]]:
    links = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        links.append(((page.parent / path).resolve() if path else page, anchor))
    return links


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page):
    broken = [f"{path.relative_to(ROOT)}#{anchor}" if anchor else str(path.relative_to(ROOT))
              for path, anchor in local_links(page)
              if not path.exists() or (anchor and path.suffix == ".md" and anchor not in heading_anchors(path))]
    assert not broken, f"{page.name} links to what does not exist: {broken}"


def test_the_anchor_rule_matches_githubs_for_punctuated_headings(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("## Side by side on an AMD Zen 4 CPU (2026-12-04)\n```\n# not a heading\n```\n")
    assert heading_anchors(page) == {"side-by-side-on-an-amd-zen-4-cpu-2026-12-04"}


CONSTANT = re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9]\b")


def _prose(page: Path) -> str:
    """The page without fenced code blocks and inline code."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return re.sub(r"`[^`]*`", "", text)


@functools.cache  # read once for all the pages
def _code() -> str:
    """Every source, parameter and CI file, and the Makefile, as one text."""
    files = [p for folder in ("paperlib", "tests", "params", ".ci") for p in (ROOT / folder).rglob("*")
             if p.is_file() and p.suffix in {".py", ".yaml", ""}]
    return "\n".join(p.read_text(errors="ignore") for p in [*files, ROOT / "Makefile"])


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_unfilled_placeholder(page):
    # An upper-case name in prose is a constant or variable the code defines, never a blank to fill in later
    # (three such blanks once stood in the README instead of measured numbers).
    unknown = sorted({name for name in CONSTANT.findall(_prose(page)) if name not in _code()})
    assert not unknown, f"{page.name} names {', '.join(unknown)}, which nothing in the code defines"


def test_the_library_page_lists_every_parameter_once():
    from paperlib.core.params import param_names

    section = (ROOT / "docs" / "library.md").read_text().split("## Parameters", 1)[1].split("\n#", 1)[0]
    lists = re.findall(r"`([a-z_]+(?:,\s*[a-z_]+){5,})`", section)
    listed = [name for chunk in lists for name in re.split(r",\s*", chunk)]
    assert sorted(listed) == sorted(param_names())


def test_every_page_and_heading_the_librarys_messages_name_exists():
    """An error pointed at the README's 'Adding a dataset' after that section moved to docs/extending.md."""
    named = re.compile(r"\((README|docs/[\w-]+\.md), '([^']+)'\)")
    stale = []
    for source in sorted((ROOT / "paperlib").rglob("*.py")):
        text = re.sub(r'"\s*\n\s*f?"', "", source.read_text())  # implicitly joined string literals, as one
        for page, heading in named.findall(text):
            path = ROOT / ("README.md" if page == "README" else page)
            anchor = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
            if not path.is_file() or anchor not in heading_anchors(path):
                stale.append(f"{source.relative_to(ROOT)}: {page}, '{heading}'")
    assert named.search('(docs/extending.md, \'Adding a dataset\')')  # the pattern reads what the messages write
    assert not stale, f"messages naming a page or heading that does not exist: {stale}"
