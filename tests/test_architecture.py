"""The package's shape, read from the source with `ast` (nothing is imported):

- no import cycle among module-level imports, and, with imports inside functions, none but the KNOWN_CYCLES
  once the known upward imports are set aside;
- the layering cli → commands → resolve → tasks/methods/judges → core/nn → metrics/formats/data →
  console/config/fileio → errors: a module imports only its own layer or lower ones. The upward imports that remain are listed in UPWARD
  (each a debt of issue 13); a new one fails here, and one that is gone must be struck from the list;
- imports inside functions: only where a comment on the line says it keeps `--help` fast, plus the per-module
  counts in INNER that remain from before (they may only go down).

Run alone: `python -m pytest -q tests/test_architecture.py`; `python tests/test_architecture.py` prints the graph's
cycles, upward imports and inner-import counts.
"""
from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "falcli"
LAZY_MARK = "keeps --help fast"

# Lower number = lower layer. The first matching prefix wins.
LAYERS = [
    ("falcli.errors", 0), ("falcli.config", 1), ("falcli.console", 1), ("falcli.fileio", 1),
    ("falcli.metrics", 2), ("falcli.formats", 2), ("falcli.data", 2),
    ("falcli.core", 3), ("falcli.nn", 3),
    ("falcli.tasks", 4), ("falcli.methods", 4), ("falcli.judges", 4),
    ("falcli.resolve", 5),              # recipes from files and checkpoints, through the registries of layer 4
    ("falcli.commands", 6),
    ("falcli.cli", 7), ("falcli.__main__", 7),
    ("falcli", 0),                      # the package itself: __version__ only
]

# Upward imports still in the code (importer, imported), all inside functions. Each is a debt, not a design.
UPWARD: set[tuple[str, str]] = set()  # none left (judges build their recipes with config.assemble)

# Same-layer cycles still in the code (through imports inside functions); they may only shrink.
KNOWN_CYCLES = [
    # none left: judges no longer train themselves (falcli/judges/provision.py, called by commands only)
]

# Imports inside functions (without the --help mark) per module, as left from before; may only go down.
INNER: dict[str, int] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: Path) -> list[tuple[str, bool, int]]:
    """(imported falcli module, inside a function, line) for every runtime import; TYPE_CHECKING blocks skipped."""
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("falcli"):
                for alias in child.names:
                    target = f"{child.module}.{alias.name}"
                    found.append((target if target in MODULES else child.module, in_function, child.lineno))
            elif isinstance(child, ast.Import):
                found.extend((a.name, in_function, child.lineno) for a in child.names if a.name.startswith("falcli"))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
    visit(ast.parse(path.read_text()), False)
    return found


def graph(module_level_only: bool = False) -> dict[str, set[str]]:
    return {m: {t for t, inner, _ in imports(p) if not (module_level_only and inner)} for m, p in MODULES.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def layer(module: str) -> int:
    return next(rank for prefix, rank in LAYERS if module == prefix or module.startswith(prefix + "."))


def upward_imports() -> set[tuple[str, str]]:
    return {(m, t) for m, targets in graph().items() for t in targets if layer(t) > layer(m)}


def _matches(edge: tuple[str, str], known: tuple[str, str]) -> bool:
    return edge[0] == known[0] and (edge[1] == known[1] or edge[1].startswith(known[1] + "."))


def inner_counts() -> Counter:
    counts: Counter = Counter()
    for m, p in MODULES.items():
        lines = p.read_text().splitlines()
        counts[m] += len({line for _, inner, line in imports(p) if inner and LAZY_MARK not in lines[line - 1]})
    return +counts


def test_every_module_has_a_layer():
    assert all(isinstance(layer(m), int) for m in MODULES)


def test_module_level_imports_have_no_cycle():
    assert cycles(graph(module_level_only=True)) == []


def test_no_cycle_but_through_the_known_upward_imports_and_known_cycles():
    edges = {m: {t for t in targets if not any(_matches((m, t), k) for k in UPWARD)} for m, targets in graph().items()}
    found = cycles(edges)
    grown = [c for c in found if not any(set(c) <= set(known) for known in KNOWN_CYCLES)]
    assert not grown, f"new import cycles: {grown}"
    shrunk = [known for known in KNOWN_CYCLES if known not in found]
    assert not shrunk, f"cycles that shrank or are gone (update KNOWN_CYCLES): {shrunk}\nnow: {found}"



def test_no_new_upward_import_and_none_left_listed_that_is_gone():
    found = upward_imports()
    new = sorted(e for e in found if not any(_matches(e, k) for k in UPWARD))
    assert not new, f"imports against the layering (fix them, or say why in UPWARD): {new}"
    gone = sorted(k for k in UPWARD if not any(_matches(e, k) for e in found))
    assert not gone, f"fixed, strike from UPWARD: {gone}"


def test_imports_inside_functions_only_go_down():
    grown = {m: (n, INNER.get(m, 0)) for m, n in inner_counts().items() if n > INNER.get(m, 0)}
    assert not grown, (f"imports inside functions (module: now, allowed): {grown}; import at the top, or mark a "
                       f"lazy import with a comment saying it {LAZY_MARK}")


def test_the_checks_can_fail():
    """The cycle finder and the layer rule on a made-up graph, so a broken checker cannot pass silently."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert layer("falcli.commands.train") > layer("falcli.tasks.toy") > layer("falcli.core.feedback")
    assert layer("falcli.core.feedback") > layer("falcli.metrics.fid") > layer("falcli.config")


if __name__ == "__main__":
    print("cycles (all imports):", cycles(graph()))
    print("upward imports:", sorted(upward_imports()))
    print("inner imports:", dict(sorted(inner_counts().items())))

