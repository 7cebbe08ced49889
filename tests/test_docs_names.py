"""The dotted ``paperlib.*`` names and the Sphinx roles in the README, the docs and the library's docstrings and
comments name something that exists, and the README's size of the quick results store is the one
``make reproduce`` prints. Imports only: nothing is computed."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SOURCES = sorted((ROOT / "paperlib").rglob("*.py"))

DOTTED = re.compile(r"(?<!\w)paperlib(?:\.\w+)+")
SKIPPED_PREFIXES = ("metadata.",)  # reproducibility.md's `metadata.paperlib.code` is a notebook metadata key
ROLE = re.compile(r":(func|class|meth|data|attr|mod):`~?\.?([\w.]+)`")
MISSING = object()


# --- resolving a name ------------------------------------------------------------------------------------


def _attribute(obj: object, name: str) -> object:
    """``obj.name``, a dataclass field without a default included; :data:`MISSING` when there is none."""
    value = getattr(obj, name, MISSING)
    if value is MISSING and name in getattr(obj, "__dataclass_fields__", {}):
        return dataclasses.fields(obj)[[f.name for f in dataclasses.fields(obj)].index(name)]
    return value


def _walk(obj: object, parts: list[str]) -> bool:
    for part in parts:
        obj = _attribute(obj, part)
        if obj is MISSING:
            return False
    return True


def _module(name: str) -> object:
    """The module ``name``, imported; ``None`` when there is none. A ``__main__`` module is only looked up, never
    run (``paperlib/__main__.py`` would start the command line)."""
    if name.rpartition(".")[2] == "__main__":
        try:
            return True if importlib.util.find_spec(name) is not None else None
        except ModuleNotFoundError:
            return None
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is not None and (name == err.name or name.startswith(err.name + ".")):
            return None  # that module does not exist (an error inside an existing module is raised)
        raise


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` names something: its longest importable module prefix, then attributes (dataclass
    fields count)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        module = _module(".".join(parts[:end]))
        if module is True:  # a __main__ module: nothing below it is checked
            return end == len(parts)
        if module is not None:
            return _walk(module, parts[end:])
    return False


def role_resolves(target: str, module_name: str) -> bool:
    """Whether a Sphinx role's ``target`` found in ``module_name`` resolves: in that module's namespace, in one
    of its classes (a role inside a class body), as a ``paperlib`` path, or as any importable dotted name."""
    parts = target.split(".")
    module = _module(module_name)
    if module is not None and module is not True:
        if _walk(module, parts):
            return True
        classes = [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
        if any(_walk(cls, parts) for cls in classes):
            return True
    return resolves(f"paperlib.{target}") or resolves(target)


# --- finding the names -----------------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def documentation_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, text)`` of every docstring line and every comment of a Python file."""
    source = path.read_text()
    lines = source.splitlines()
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                found += [(n, lines[n - 1]) for n in range(first.lineno, first.end_lineno + 1)]
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            found.append((token.start[0], token.string))
    return sorted(found)


def dotted_names(path: Path) -> list[tuple[str, int, str]]:
    """``(file:line, name)`` for every ``paperlib.x.y`` a page names, or a Python file's docstrings and
    comments."""
    if path.suffix == ".py":
        lines = documentation_lines(path)
    else:
        lines = list(enumerate(path.read_text().splitlines(), 1))
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return [(f"{where}:{n}", match.group(), text) for n, text in lines for match in DOTTED.finditer(text)
            if not text[:match.start()].endswith(SKIPPED_PREFIXES)]


def roles(path: Path) -> list[tuple[str, str]]:
    """``(file:line, target)`` for every Sphinx role in a Python file's docstrings and comments."""
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return [(f"{where}:{n}", match.group(2)) for n, text in documentation_lines(path)
            for match in ROLE.finditer(text)]


def unresolved_names(paths: list[Path]) -> list[str]:
    return [f"{where}: {name}" for path in paths for where, name, _ in dotted_names(path) if not resolves(name)]


def unresolved_roles(paths: list[Path], module_name: str | None = None) -> list[str]:
    return [f"{where}: {target}" for path in paths for where, target in roles(path)
            if not role_resolves(target, module_name or _module_name(path))]


# --- the tests -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_dotted_paperlib_name_in_the_docs_resolves(page):
    broken = unresolved_names([page])
    assert not broken, "names that do not resolve:\n" + "\n".join(broken)


def test_every_dotted_paperlib_name_in_docstrings_and_comments_resolves():
    broken = unresolved_names(SOURCES)
    assert not broken, "names that do not resolve:\n" + "\n".join(broken)


def test_every_sphinx_role_in_docstrings_resolves():
    broken = unresolved_roles(SOURCES)
    assert not broken, "Sphinx roles that do not resolve:\n" + "\n".join(broken)


def store_size_mismatch(readme: str, store: Path) -> str | None:
    """What is wrong with ``readme``'s "the quick profile's: N files, X MB" against ``store``, counted and
    printed as ``make reproduce`` does (:func:`paperlib.core.results_store.folder_size`, then
    ``paperlib/reproduce.py``'s "N files, X.X MB"); ``None`` when it is right, or when no such sentence is left."""
    from paperlib.core import results_store

    stated = re.search(r"the quick profile's: (\d[\d,]*) files, ([\d.]+) MB", readme)
    if stated is None:
        return None
    line = readme[:stated.start()].count("\n") + 1
    count, size = results_store.folder_size(store)
    printed = f"{count} files, {size / 1e6:.1f} MB"
    said = f"{stated.group(1).replace(',', '')} files, {stated.group(2)} MB"
    return None if said == printed else f"README.md:{line}: says {said}; {store.name}/ holds {printed}"


def test_the_readme_gives_the_quick_results_store_size_make_reproduce_prints():
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"the quick profile's: (\d[\d,]*) files, ([\d.]+) MB", readme), \
        "the README no longer states the quick results store's size as 'the quick profile's: N files, X MB'"
    wrong = store_size_mismatch(readme, ROOT / "results" / "quick")
    assert wrong is None, wrong


# --- the checks catch a broken name ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "exists"), [
    ("paperlib.core.runtime.diverged_pixels", True),
    ("paperlib.core.runtime", True),
    ("paperlib.core.params.Params.seed", True),  # a dataclass field
    ("paperlib.__main__", True),  # looked up, not run
    ("paperlib.core.runtime.squares_overflow", False),
    ("paperlib.core.no_such_module", False),
    ("paperlib.core.no_such_module.f", False),
])
def test_the_resolver(name, exists):
    assert resolves(name) is exists


@pytest.mark.parametrize(("target", "exists"), [
    ("diverged_pixels", True),  # the module's own namespace
    ("paperlib.core.runtime.to_device", True),
    ("core.runtime.to_device", True),  # below paperlib
    ("pathlib.Path", True),  # any importable name
    ("Compiled.active", True),  # a class's attribute
    ("squares_overflow", False),
    ("paperlib.core.runtime.squares_overflow", False),
])
def test_the_role_resolver(target, exists):
    assert role_resolves(target, "paperlib.core.runtime") is exists


def test_a_bogus_name_is_reported_with_its_file_and_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("Fine: `paperlib.core.runtime.diverged_pixels`.\nKept: `metadata.paperlib.code`.\n"
                    "Broken: `paperlib.core.runtime.squares_overflow`.\n")
    assert unresolved_names([page]) == [f"{page}:3: paperlib.core.runtime.squares_overflow"]

    source = tmp_path / "module.py"
    source.write_text('"""See :func:`diverged_pixels` and :func:`squares_overflow`."""\n\n'
                      'x = "paperlib.core.runtime.not_checked"  # but paperlib.core.runtime.squares_overflow\n\n\n'
                      'def f():\n    """Or :class:`~paperlib.core.runtime.Nowhere`."""\n')
    # the string on line 3 is code, not documentation: only its comment is read
    assert unresolved_names([source]) == [f"{source}:3: paperlib.core.runtime.squares_overflow",
                                          f"{source}:7: paperlib.core.runtime.Nowhere"]
    assert unresolved_roles([source], "paperlib.core.runtime") == [
        f"{source}:1: squares_overflow", f"{source}:7: paperlib.core.runtime.Nowhere"]


def test_a_wrong_store_size_is_reported(tmp_path):
    store = tmp_path / "quick"
    (store / "records").mkdir(parents=True)
    (store / "records" / "record.json").write_bytes(b"x" * 160_000)
    (store / "a.png").write_bytes(b"x" * 100_000)
    readme = "Intro.\n(the quick profile's: 2 files, 0.2 MB; the smoke profile's is not committed)\n"
    assert store_size_mismatch(readme, store) == "README.md:2: says 2 files, 0.2 MB; quick/ holds 2 files, 0.3 MB"
    assert store_size_mismatch(readme.replace("0.2 MB", "0.3 MB"), store) is None
