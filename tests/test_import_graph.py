"""No import cycles in the `orchestrator` package, read from the source with `ast`.

Every import counts, also one inside a function (it is a dependency all the same; hiding it there only
hides the cycle), except those under `if TYPE_CHECKING:` (never executed). `from a import b` is an edge
to the submodule `a.b` when there is one, else to `a`; relative imports are resolved against the
importing module's package. `import a.b.c` is an edge to `a.b.c` alone, not to the packages above it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "orchestrator"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Known cycles (each a strongly connected component, as its set of modules), allowed until fixed.
# The lead empties this list as they are fixed; an entry that no longer matches a cycle fails the test,
# so that it is removed rather than left to hide a new one.


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py file under root (a package's own is `__init__`)."""
    names: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except in the body of `if TYPE_CHECKING:`."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The module itself, or the deepest module above it (`a.b.attr` -> `a.b`)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports."""
    modules = module_names(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name.split(".") if is_package else name.split(".")[:-1]  # the package relative imports start in
        for node in _imports(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base_parts = here[: len(here) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                if target == package or target.startswith(package + "."):
                    known = _known(target, modules)
                    if known is not None and known != name:
                        graph[name].add(known)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Tarjan's algorithm; only the components that hold a cycle (more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def a_cycle(graph: dict[str, set[str]], component: frozenset[str]) -> list[str]:
    """One shortest cycle through the component's first module, as a path that ends where it starts."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in {sorted(component)}")  # pragma: no cover - a component has one


def describe(graph: dict[str, set[str]], components: list[frozenset[str]]) -> str:
    """Per component: its modules, and one cycle through them."""
    return "\n".join(f"{sorted(c)}: {' -> '.join(a_cycle(graph, c))}" for c in components)


def test_the_package_has_no_import_cycles() -> None:
    graph = import_graph()
    cycles = strongly_connected(graph)
    assert not cycles, "import cycles (move the shared piece down, or import under TYPE_CHECKING):\n" + describe(
        graph, cycles
    )


def test_the_graph_sees_function_level_relative_and_submodule_imports_but_not_type_checking(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("from ..top import VALUE\n")
    (pkg / "top.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "import os\n"
        "if TYPE_CHECKING:\n    from pkg.other import Thing\n"
        "else:\n    import pkg.sub\n"
        "def f():\n    from pkg.sub import leaf\n    return leaf\n"
        "VALUE = 1\n"
    )
    (pkg / "other.py").write_text("from pkg import top\nfrom pkg.sub.leaf import name\n")
    graph = import_graph(pkg, "pkg")
    assert graph == {
        "pkg": set(),
        "pkg.sub": {"pkg.sub.leaf"},
        "pkg.sub.leaf": {"pkg.top"},
        "pkg.top": {"pkg.sub", "pkg.sub.leaf"},  # not pkg.other: that import is under TYPE_CHECKING
        "pkg.other": {"pkg.top", "pkg.sub.leaf"},
    }
    (cycle,) = strongly_connected(graph)
    assert cycle == {"pkg.top", "pkg.sub", "pkg.sub.leaf"}
    path = a_cycle(graph, cycle)
    assert path[0] == path[-1] == "pkg.sub" and len(path) == 4
