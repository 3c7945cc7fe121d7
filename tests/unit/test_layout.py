"""The layout stays easy to live in: no import cycles, short modules, no reaching into another module's privates,
and benchmarks that stand on their own (read from the source, so a regression fails here, not in review)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "serve_app"
MAX_LINES = 300


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports_of(path: Path, known: set[str]) -> set[str]:
    """serve_app modules `path` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def test_no_import_cycles_in_serve_app():
    mods = modules()
    graph = {name: imports_of(path, set(mods)) - {name} for name, path in mods.items()}
    # a package's __init__ re-exporting its own modules is not a cycle of behaviour: drop parent -> child edges
    graph = {name: {t for t in targets if not t.startswith(name + ".")} for name, targets in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for target in graph[node]:
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(target):] + [target]))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name)


def test_modules_stay_short():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"


# The library patches: the one module each where FastVideo's internals are touched (compat.py guards them).
LIBRARY_PATCHES = {"serve_app.backends.fastvideo.stages", "serve_app.backends.fastvideo.vae",
                   "serve_app.backends.fastvideo.executor", "serve_app.backends.fastvideo.prestart",
                   "serve_app.backends.fastvideo.dit_compile"}
# torch's FP8 matmul: private by name, but the one compiled FP8 paths use (torchao, vLLM); Inductor lowers it.
TORCH_PRIVATE_CALLS = {"torch._scaled_mm"}


def test_no_private_name_of_another_module_is_used():
    """No `from x import _y`, and no `obj._y` but on self/cls: objects talk through their public methods.

    Only the library patch modules reach into FastVideo's internals, and only there."""
    mods = modules()
    offences = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        imported_modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("serve_app"):
                offences += [f"{name}: from {node.module} import {a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")]
                imported_modules |= {a.asname or a.name for a in node.names if f"{node.module}.{a.name}" in mods}
            elif isinstance(node, ast.Import):
                imported_modules |= {a.asname or a.name for a in node.names if a.name in mods}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
                continue
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            namedtuple_api = node.attr in ("_replace", "_asdict", "_fields")  # public despite the underscore
            allowed = namedtuple_api or ast.unparse(node) in TORCH_PRIVATE_CALLS
            if not own and not allowed and name not in LIBRARY_PATCHES:
                offences.append(f"{name}: {ast.unparse(node)}")
    assert not offences, offences


def test_benchmarks_and_scripts_import_nothing_from_the_tests():
    for path in [*(ROOT / "bench").rglob("*.py"), *(ROOT / "scripts").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "tests" or n.startswith("tests.") for n in names), f"{path} imports {names}"
