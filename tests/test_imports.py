"""The shape of the package: imports go one way, down the floors, with no circle, and none
hides inside a function except an optional heavy dependency, commented."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "jee")

# Lower floors never import higher ones; a floor may import itself (without a circle).
FLOORS = [
    ("jee.config", "jee.workdir", "jee.checkpoint", "jee.errors",
     "jee.sharding", "jee.losses", "jee.confidence_stage", "jee.optim", "jee.metrics_log",
     "jee.tensorboard_log", "jee.host_memory",
     "jee.data", "jee.models"),
    ("jee.infer", "jee.policy", "jee.cascade", "jee.scoring"),
    ("jee.runs", "jee.train_lib", "jee.outputs"),
    ("jee.evaluation", "jee.cli"),
]
# Imported inside functions on purpose: heavy or optional, needed by few code paths.
LOCAL_OK = {"PIL", "sklearn", "tensorflow_datasets", "absl", "flax", "matplotlib", "jax",
            "tensorboard", "tensorboardX", "tqdm"}
MAX_LINES = 400


def _modules():
    for base, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(base, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                yield rel.removesuffix(".__init__"), path


MODULES = dict(_modules())


def _resolve(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The jee modules an import statement names (``from jee import data`` -> jee.data)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "jee"]
    base = node.module or ""
    if node.level:
        parts = module.split(".")
        is_pkg = MODULES.get(module, "").endswith("__init__.py")
        parts = parts[:len(parts) - node.level + (1 if is_pkg else 0)]
        base = ".".join(parts + ([node.module] if node.module else []))
    if base.split(".")[0] != "jee":
        return []
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.append(sub if sub in MODULES else base)
    return out


def _floor(module: str) -> int:
    for level, prefixes in enumerate(FLOORS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    raise AssertionError(f"{module} is on no floor of tests/test_imports.py; place it")


def _graph():
    graph, local = {}, []
    for module, path in MODULES.items():
        with open(path) as f:
            source = f.read()
        tree = ast.parse(source)
        lines = source.splitlines()
        edges = set()
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(t for t in _resolve(module, node) if t != module)
        for outer in ast.walk(tree):
            if not isinstance(outer, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(outer):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    local.append((module, node, lines))
        graph[module] = edges
    return graph, local


GRAPH, LOCAL = _graph()


def test_every_module_sits_on_a_floor_and_imports_only_its_own_or_lower():
    wrong = [(m, t) for m, targets in GRAPH.items() for t in targets
             if _floor(t) > _floor(m)]
    assert not wrong, f"imports that run up a floor: {wrong}"


def test_no_import_circle():
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(GRAPH.get(m, ())):
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)
    assert not cycles, f"import circles: {cycles}"


def test_imports_inside_functions_are_optional_heavy_dependencies_with_a_reason():
    bad = []
    for module, node, lines in LOCAL:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
        top = {(n or "").split(".")[0] for n in names}
        commented = "#" in lines[node.lineno - 1] or "#" in lines[node.lineno - 2]
        if not top <= LOCAL_OK or not commented:
            bad.append(f"{module}:{node.lineno} {lines[node.lineno - 1].strip()}")
    assert not bad, "imports inside functions (allowed only for " \
        f"{sorted(LOCAL_OK)}, with a comment saying why): {bad}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_400_lines(module):
    with open(MODULES[module]) as f:
        assert sum(1 for _ in f) <= MAX_LINES, f"{module} is over {MAX_LINES} lines"


def test_the_graph_is_read():
    # The checks above are vacuous if the walk found nothing: known edges must be there.
    assert "jee.runs" in GRAPH["jee.train_lib"]
    assert "jee.evaluation.exit_report" in GRAPH["jee.evaluation.commands"]


def test_readme_layout_matches_the_tree():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    block = text.split("## Layout", 1)[1].split("```")[1]
    entries = {n for n in os.listdir(PACKAGE)
               if n != "__pycache__" and n != "__init__.py"
               and (n.endswith(".py") or os.path.isdir(os.path.join(PACKAGE, n)))}
    missing = [n for n in entries
               if (n + "/" if os.path.isdir(os.path.join(PACKAGE, n)) else n) not in block]
    assert not missing, f"README's layout does not name {missing}"
    named = {w.rstrip(",") for w in block.split() if w.startswith("jee/")}
    gone = [w for w in named if not os.path.exists(os.path.join(ROOT, w))]
    assert not gone, f"README's layout names what does not exist: {gone}"
