"""The package's shape: module-level imports form no circle, no private name is imported from another package,
and a module longer than about 500 lines says why in its docstring.

Only module-level imports count as edges: they are the ones that run when a module is imported, and so the ones
that can form a circle. An import inside a function is a deliberate late binding (an optional dependency such as
Ray, a heavy one such as matplotlib, or the report an Audit writes) and is left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "classaudit"
LONG = 500  # lines
LONG_REASON = "longer than 500 lines"  # the phrase a long module's docstring uses to say why


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _module_level(tree: ast.Module):
    """Statements that run at import: the module body and the bodies of its top-level if/try/with blocks."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []):
                    stack.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node


def _imported(node: ast.AST, module: str) -> list[tuple[str, str | None]]:
    """(module imported, name taken from it or None) for one import statement."""
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names]
    base = node.module or ""
    if node.level:  # relative import
        anchor = module.split(".")
        anchor = anchor[:len(anchor) - node.level + (1 if MODULES[module].name == "__init__.py" else 0)]
        base = ".".join([*anchor, base] if base else anchor)
    out = []
    for alias in node.names:
        full = f"{base}.{alias.name}"
        out.append((full, None) if full in MODULES else (base, alias.name))
    return out


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for node in _module_level(ast.parse(path.read_text())):
            for target, _ in _imported(node, name):
                if not target.startswith("classaudit"):
                    continue
                # Importing a.b.c runs a/__init__ and a/b/__init__ first.
                parts = target.split(".")
                for i in range(2, len(parts) + 1):
                    if ".".join(parts[:i]) in MODULES:
                        edges[name].add(".".join(parts[:i]))
        edges[name].discard(name)
    return edges


def test_module_level_imports_form_no_circle():
    edges = _edges()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = path[path.index(name):] + [name]
            raise AssertionError("import circle: " + " -> ".join(cycle))
        if name in done:
            return
        for target in sorted(edges[name]):
            # A package's __init__ importing its own submodules is how packages work, not a circle.
            if not target.startswith(f"{name}."):
                visit(target, [*path, name])
        done.add(name)

    for name in MODULES:
        visit(name, [])


def test_the_walk_sees_real_imports():
    # The test above can only fail if the walk finds edges: check a few known ones.
    edges = _edges()
    assert "classaudit.analysis.schema" in edges["classaudit.store"]
    assert "classaudit.analysis" in edges["classaudit.report.compute"]
    assert "classaudit.analysis.checks" in edges["classaudit.analysis.change"]


def _package(module: str) -> str:
    """The package a module belongs to: classaudit.analysis for classaudit.analysis.points, classaudit for
    classaudit.store."""
    path = MODULES[module]
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def test_no_private_name_is_imported_from_another_package():
    found = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target, taken in _imported(node, name):
                if target.startswith("classaudit") and taken and taken.startswith("_") and not taken.startswith("__") \
                        and target in MODULES and _package(target) != _package(name):
                    found.append(f"{name} imports {taken} from {target}")
    assert not found, found


def test_long_modules_say_why():
    long = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()
            if len(path.read_text().splitlines()) > LONG}
    unexplained = [f"{name} ({lines} lines)" for name, lines in long.items()
                   if LONG_REASON not in " ".join((ast.get_docstring(ast.parse(MODULES[name].read_text())) or "")
                                                  .split())]
    assert not unexplained, unexplained
