"""The package's layering, enforced: every import inside ``seglab`` (at module level or inside a function)
goes down the documented order (docs/architecture.md), never up or sideways within a row.

Parsing with ``ast`` reads the code as written, so an import hidden in a function body counts as much as one
at the top of a file: a lazy import that runs upward still ties the two layers together.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "seglab"

# Top to bottom. A unit imports only units of lower rows; units in one row do not import each other.
LAYERS = [
    ["seglab"],  # the front door (seglab/__init__.py): seglab.load and, lazily, the calls below it
    ["api"],  # the Python API: train, evaluate, study and the Run / Study objects they return
    ["cli"],
    ["bench"],
    ["tune"],  # seglab tune: a search whose trials are runs and whose executors are the study's
    ["study"],
    ["experiment"],
    ["evaluate"],
    ["inference"],
    ["training"],
    ["scoring"],
    ["runs"],
    ["data", "models"],
    ["metrics"],
    ["config"],
    ["device", "imageio", "sizes", "environment", "naming"],
    ["errors", "constants"],
]
ROW = {unit: i for i, row in enumerate(LAYERS) for unit in row}

# Modules that must import without torch (and its seconds of start-up): the front door and the CLI, whose
# commands import the floors below lazily, inside the command, so `seglab --help` answers at once.
TORCH_FREE = ["seglab", "seglab.api", "seglab.cli", "seglab.cli.train", "seglab.cli.predict", "seglab.cli.study",
              "seglab.cli.tune", "seglab.cli.data", "seglab.cli.bench", "seglab.config", "seglab.device", "seglab.errors"]


def unit_of(module: str) -> str:
    """seglab.training.run -> training; seglab -> seglab (the package's front door)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "seglab"


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports() -> list[tuple[str, str, str, int]]:
    """(importing module, imported module, file, line) for every import of a seglab module."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        module = ".".join(parts)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        tree = ast.parse(path.read_text(), str(path))
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in
                       ast.unparse(block.test) for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in typing_only:  # annotations only: never imported when the code runs
                continue
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    targets = [".".join(base + ([node.module] if node.module else []))]
                else:
                    targets = [node.module or ""]
                # `from seglab import sizes` imports the module seglab.sizes, not the front door
                targets = list(dict.fromkeys(f"{t}.{a.name}" if _is_module(f"{t}.{a.name}") else t
                                             for t in targets for a in node.names))
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            found += [(module, t, str(path.relative_to(PACKAGE.parent)), node.lineno)
                      for t in targets if t == "seglab" or t.startswith("seglab.")]
    return found


def violations() -> list[str]:
    bad = []
    for module, target, file, line in imports():
        a, b = unit_of(module), unit_of(target)
        if a == b:
            continue
        if a not in ROW or b not in ROW:
            bad.append(f"{file}:{line}: {module} -> {target}: a unit missing from LAYERS")
        elif ROW[b] <= ROW[a]:
            bad.append(f"{file}:{line}: {module} -> {target} goes {'sideways' if ROW[b] == ROW[a] else 'up'}")
    return bad


def test_every_import_goes_down_the_layers():
    assert violations() == []


def test_every_unit_of_the_package_has_a_layer():
    units = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | {"seglab"}
    units |= {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert units <= set(ROW), units - set(ROW)


def test_the_front_door_and_the_cli_import_without_torch():
    code = f"import sys\nfor m in {TORCH_FREE!r}: __import__(m)\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def cycles(edges: list[tuple[str, str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or around a loop (strongly connected components
    of more than one module), by Tarjan's algorithm."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_between_modules():
    assert cycles([(m, t) for m, t, _, _ in imports() if m != t]) == []


def test_the_cycle_check_finds_a_loop():
    assert cycles([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]) == [["a", "b", "c"]]


@pytest.mark.parametrize("case", [
    ("seglab.config.checks", "seglab.training.losses", "up"),
    ("seglab.data.sources", "seglab.models.builder", "sideways"),
])
def test_the_check_catches_an_upward_and_a_sideways_import(case, monkeypatch):
    module, target, kind = case
    import test_layering as me

    monkeypatch.setattr(me, "imports", lambda: [(module, target, "x.py", 1)])
    assert me.violations() == [f"x.py:1: {module} -> {target} goes {kind}"]
