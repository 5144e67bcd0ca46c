"""Print the package import graph of ``kukeond`` and check that layers only point down.

Only imports that run when a module is loaded count (module level, outside
``if TYPE_CHECKING``). Prints the module import cycles, the edges between
packages with their counts, and every edge from a lower layer to a higher
one; exits 1 when there is a cycle or an upward edge. ``python -m
tools.layers`` (``--check``: only the verdict, as ``make lint`` runs it).
"""

from __future__ import annotations

import ast
import collections
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LAYERS = {
    "kukeond": 0,
    "base": 0,
    "errors": 1,
    "logs": 1,
    "blocking": 1,
    "config": 1,
    "startup": 1,
    "api": 2,
    "store": 3,
    "host": 3,
    "containerd": 3,
    "rpc": 3,
    "listener": 4,
    "controller": 5,
    "handlers": 6,
    "status": 6,
    "daemon": 7,
    "tap": 8,
    "cli": 9,
    "client": 4,
}
"""Layer of each top-level module or package of ``kukeond``: imports go to a lower or equal one."""


def module_files(package_dir: str) -> dict[str, str]:
    """Dotted module name → path, for every module of the package (generated stubs left out)."""
    found = {}
    for directory, _dirs, files in os.walk(package_dir):
        if "_pb" in directory:
            continue
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                dotted = os.path.relpath(path[:-3], ROOT).replace(os.sep, ".")
                found[dotted.removesuffix(".__init__")] = path
    return found


def _load_time_statements(tree: ast.Module) -> list[ast.stmt]:
    out: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out += node.orelse
        elif isinstance(node, (ast.If, ast.Try)):
            out += node.body
        else:
            out.append(node)
    return out


def imports_of(path: str, modules: dict[str, str]) -> set[str]:
    """The package modules ``path`` imports at load time."""
    found = set()
    for node in _load_time_statements(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in modules else node.module)
    return {name for name in found if name in modules}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in graph:
        if node not in index:
            visit(node)
    return found


def top_level(module: str) -> str:
    """``kukeond.controller.cells`` → ``controller``; ``kukeond`` → ``kukeond``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def main() -> int:
    """Print the graph and the problems; 1 when there are any."""
    modules = module_files(os.path.join(ROOT, "kukeond"))
    unplaced = sorted({top_level(m) for m in modules} - LAYERS.keys())
    if unplaced:
        print(f"no layer for {', '.join(unplaced)}: add them to LAYERS in tools/layers.py")
        return 1
    graph = {m: imports_of(p, modules) - {m} for m, p in modules.items()}
    edges: collections.Counter[tuple[str, str]] = collections.Counter()
    upward = []
    for module, deps in graph.items():
        for dep in deps:
            a, b = top_level(module), top_level(dep)
            if a != b:
                edges[(a, b)] += 1
                if LAYERS[b] > LAYERS[a]:
                    upward.append(f"{module} -> {dep}")
    found = cycles(graph)
    if "--check" not in sys.argv:
        print(f"{len(modules)} modules, {sum(len(d) for d in graph.values())} imports")
        for (a, b), count in sorted(edges.items()):
            print(f"  {a} -> {b} ({count})")
    print("import cycles:", found or "none")
    print("upward imports:", upward or "none")
    return 1 if found or upward else 0


if __name__ == "__main__":
    sys.exit(main())
