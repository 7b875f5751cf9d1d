"""The shape of the code: no import cycle among the project's modules (all packages, not only envs),
and no long function in envs/ without a stated reason.

The import graph is read from the source with ``ast`` (nothing is imported): a node per module of
the project's packages, an edge for every ``import`` / ``from ... import`` of a project module
anywhere in a file (inside functions too: a local import does not make a cycle go away). ``from
pkg import name`` points at the submodule ``pkg.name`` when there is one, else at ``pkg``. Importing
a submodule also runs its parent package's ``__init__``; that implicit edge is not drawn (a package
importing its own submodules is how packages work), so a module must import the package itself
(``from envs import X``) for an edge to it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("envs", "modules", "datamodules", "callbacks", "cli")
MAX_FUNCTION_LINES = 60
#: A function longer than MAX_FUNCTION_LINES says why in a comment like this on its ``def`` line or
#: the line above it.
LONG_REASON = re.compile(r"#\s*long:\s*\S")


def project_modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``packages`` under ``root``."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _resolve(dotted: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``dotted`` that is a project module."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in modules:
            return name
    return None


def _from_base(node: ast.ImportFrom, name: str, path: Path) -> str:
    """The absolute module a ``from`` import reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def imports_of(name: str, modules: dict[str, Path]) -> set[str]:
    """The project modules that module ``name`` imports."""
    path = modules[name]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(_resolve(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, name, path)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else _resolve(base, modules))
    found.discard(None)
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (and self-imports): each one
    holds at least one cycle. Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    cycles.append(sorted(component))
    return cycles


def test_no_import_cycle_in_the_project():
    modules = project_modules()
    assert {"envs", "envs.text_env", "envs.games.base", "datamodules", "cli"} <= set(modules)
    graph = {name: imports_of(name, modules) for name in modules}
    assert "envs.core" in graph["envs.text_env"] and "envs.registry" in graph["envs.core"]
    assert import_cycles(graph) == []


def reentries(modules: dict[str, Path]) -> list[str]:
    """Imports through a module's own ancestor package (``from envs import games`` inside
    ``envs.text_env``): they run while that package's ``__init__`` is still half done. A package's
    ``__main__`` may import its package."""
    found = []
    for name, path in modules.items():
        if name.endswith(".__main__"):
            continue
        ancestors = {name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)}
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets = []
            if isinstance(node, ast.ImportFrom):
                targets = [_from_base(node, name, path)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            found += [f"{name} imports from {t}" for t in targets if t in ancestors]
    return found


def test_no_module_reenters_its_package():
    assert reentries(project_modules()) == []


def test_cycle_finder_finds_cycles(tmp_path):
    """The check can fail: a relative and a function-level import that close a loop are found."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("def f():\n    from .. import c\n")
    (package / "c.py").write_text("import pkg.a\nimport os\n")
    (package / "d.py").write_text("from pkg import a\n")
    modules = project_modules(tmp_path, ("pkg",))
    graph = {name: imports_of(name, modules) for name in modules}
    assert graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.d"] == {"pkg.a"}
    assert import_cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    assert reentries(modules) == ["pkg.d imports from pkg", "pkg.sub.b imports from pkg"]


def _long_functions(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            around = " ".join(lines[max(node.lineno - 2, 0) : node.lineno])
            if length > MAX_FUNCTION_LINES and not LONG_REASON.search(around):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return found


@pytest.mark.parametrize(
    "path", sorted((ROOT / "envs").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_long_function_without_a_reason(path):
    assert _long_functions(path) == []
