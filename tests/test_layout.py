"""The shape of the Python package, checked from its source: no import cycles between fasttb's
modules, the command line tools outside the runtime's imports, and nothing but numpy and
protobuf imported from outside the standard library when a runtime module loads (torch,
tensorboard, fsspec, ... are imported inside the calls that need them)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Set

PACKAGE = Path(__file__).resolve().parent.parent / "python" / "fasttb"
RUNTIME_THIRD_PARTY = {"numpy", "google"}  # google.protobuf


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def load_time_imports(body: List[ast.stmt]) -> Iterator[ast.stmt]:
    """Import statements that run when the module loads: at top level, in try/except and plain
    if blocks, but not under ``if TYPE_CHECKING:`` and not inside functions or classes."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from load_time_imports(block)
        elif isinstance(node, ast.If):
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                yield from load_time_imports(node.body)
                yield from load_time_imports(node.orelse)


def resolve(module: str, is_package: bool, node: ast.stmt, known: Set[str]) -> Iterator[str]:
    """Absolute names a statement imports (for ``from . import x``, the submodule x if it is one)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        base = module.split(".")
        if not is_package:
            base = base[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    yield target
    for alias in node.names:
        if f"{target}.{alias.name}" in known:
            yield f"{target}.{alias.name}"


def import_graph() -> Dict[str, Set[str]]:
    sources = {module_name(p): p for p in PACKAGE.rglob("*.py") if "proto" not in p.parts}
    known = set(sources)
    graph: Dict[str, Set[str]] = {}
    for name, path in sources.items():
        tree = ast.parse(path.read_text(), str(path))
        names: Set[str] = set()
        for node in load_time_imports(tree.body):
            names.update(resolve(name, path.name == "__init__.py", node, known))
        graph[name] = names
    return graph


def test_the_graph_is_read():
    graph = import_graph()
    assert {"fasttb", "fasttb.writer", "fasttb.cli.bench", "fasttb.cli.local_s3"} <= set(graph)
    assert "fasttb._convert" in graph["fasttb.writer"] and "numpy" in graph["fasttb.writer"]


def test_no_import_cycles_between_fasttb_modules():
    graph = import_graph()
    inner = {m: {t for t in targets if t in graph and t != m} for m, targets in graph.items()}
    # A package imports its own submodules on load; those importing the package back is the
    # usual shape, not a cycle to untangle.
    for module, targets in inner.items():
        targets -= {p for p in targets if module.startswith(p + ".")}
    done: Set[str] = set()

    def visit(module: str, path: List[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        for target in sorted(inner[module]):
            visit(target, path + [module])
        done.add(module)

    for module in sorted(inner):
        visit(module, [])


def test_the_runtime_does_not_import_the_command_line_tools():
    graph = import_graph()
    runtime = [m for m in graph if not m.startswith("fasttb.cli") and m != "fasttb.__main__"]
    for module in runtime:
        assert not any(t.startswith("fasttb.cli") for t in graph[module]), module


def test_runtime_modules_load_only_numpy_and_protobuf():
    graph = import_graph()
    stdlib = set(sys.stdlib_module_names)
    for module, targets in graph.items():
        if module.startswith("fasttb.cli") or module == "fasttb.__main__":
            continue
        outside = {t.split(".")[0] for t in targets} - stdlib - {"fasttb", "__future__"}
        assert outside <= RUNTIME_THIRD_PARTY, f"{module} imports {sorted(outside)} when it loads"
