"""The layout is the design: layers import only the layers before them, no module cycles, no hidden imports.

Layers, lowest first: ``core`` < ``data`` < ``train`` < ``distill`` < ``experiments`` < ``report`` < the entry
points (``cli``, ``reproduce``, ``pairing``, ``notebook``, ``__main__``). ``paperlib/__init__.py`` is the package
façade that loads every registry and is left out of the graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "paperlib"
LAYERS = ("core", "data", "train", "distill", "experiments", "report", "entry")
ENTRY_POINTS = ("cli", "reproduce", "pairing", "notebook", "__main__")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:  # the package façade
        return -1
    name = parts[1]
    return LAYERS.index("entry") if name in ENTRY_POINTS else LAYERS.index(name)


def _is_module(dotted: str) -> bool:
    """Whether ``dotted`` names a module of the package: a file, or a sub-package (``paperlib.report``)."""
    path = PACKAGE.parent / dotted.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _imports(path: Path) -> list[tuple[str, bool]]:
    """Every paperlib module ``path`` imports, and whether the import sits inside a function."""
    tree = ast.parse(path.read_text())
    inside = {id(sub) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
              for sub in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:  # ``from ..report import tables``: not seen below
            found.append((f"relative import from {'.' * node.level}{node.module or ''}", id(node) in inside))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("paperlib"):
            # ``from paperlib.data import bias`` imports the module paperlib.data.bias, not the package's names
            submodules = [f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}")]
            targets = submodules if len(submodules) == len(node.names) else [node.module, *submodules]
            found += [(t, id(node) in inside) for t in targets]
        elif isinstance(node, ast.Import):
            found += [(a.name, id(node) in inside) for a in node.names if a.name.startswith("paperlib")]
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: sorted({m for m, _ in _imports(path) if m in MODULES and m != name})
         for name, path in MODULES.items() if name != "paperlib"}


def test_every_module_belongs_to_a_layer():
    for name in GRAPH:
        assert name.split(".")[1] in (*LAYERS[:-1], *ENTRY_POINTS), f"{name} is in no layer of {LAYERS}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_a_module_imports_only_its_own_or_lower_layers(module):
    upward = [m for m in GRAPH[module] if m != "paperlib" and _layer(m) > _layer(module)]
    assert not upward, f"{module} ({LAYERS[_layer(module)]}) imports a higher layer: {upward}"


def test_no_import_cycles_between_modules():
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in GRAPH[node]:
            if nxt not in GRAPH:  # the package façade
                continue
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*trail[trail.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in GRAPH:
        if module not in state:
            visit(module, [module])


def test_no_paperlib_import_hides_inside_a_function():
    hidden = [f"{name}: {target}" for name, path in MODULES.items() for target, inside in _imports(path) if inside]
    assert not hidden, f"imports inside functions hide the dependency graph: {hidden}"


def test_the_check_would_catch_an_upward_import(tmp_path):
    """The layering check is not vacuous: an import of the report layer from core is seen as upward, written as
    a module, as a sub-package of the façade, or relative."""
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    from paperlib.report.tables import results_table\n"
                    "from paperlib import report\nfrom ..report import tables\n")
    found = sorted(_imports(fake))
    assert found == [("paperlib.report", False), ("paperlib.report.tables", True),
                     ("relative import from ..report", False)]
    assert _layer("paperlib.report.tables") == _layer("paperlib.report") > _layer("paperlib.core.x")


def test_no_module_imports_relatively():
    """Relative imports would hide a module's layer from the checks above."""
    relative = [f"{name}: {target}" for name, path in MODULES.items() for target, _ in _imports(path)
                if target.startswith("relative")]
    assert not relative, relative


def test_the_registry_names_architecture_md_lists_are_the_registries():
    import importlib
    import re

    page = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    listed = re.findall(r"(\w+)\.py\s+([A-Z_]+) \(([a-z_0-9, ]+)\)", page)
    assert len(listed) >= 6  # the check below reads what it is meant to
    layer_of = {p.stem: p.parent.name for p in PACKAGE.rglob("*.py")}
    for module, registry, names in listed:
        found = getattr(importlib.import_module(f"paperlib.{layer_of[module]}.{module}"), registry)
        assert names.split(", ") == list(found), f"docs/architecture.md lists {registry} as ({names})"
