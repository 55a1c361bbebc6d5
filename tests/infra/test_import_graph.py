"""The import graph, read from the code with `ast` (every `import`, at module level or inside a function):
the library has no circle, never imports a deployable, and no deployable imports another.

The layering rule is in docs/architecture.md ("Layers"): deployables -> library, never back, never sideways.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from tests.infra.terraform import REPO_ROOT

LIBRARY = "runtune"
# Each deployable is one package; `services/` and `jobs/` are folders of several.
DEPLOYABLES = (
    "gateway",
    "services.preprocessing",
    "services.training",
    "services.inference",
    "jobs.trainer",
    "jobs.ingest",
    "jobs.evaluate",
    "jobs.convert",
    "engine",
)
TOPS = (LIBRARY, "gateway", "services", "jobs", "engine")
# Modules that must stay importable without the training stack.
TORCH = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "safetensors")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for top in TOPS for path in sorted((REPO_ROOT / top).rglob("*.py"))}


def _imported(node: ast.AST, package: str) -> list[str]:
    """The dotted names one import statement brings in (relative imports resolved against `package`)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*anchor, *([base] if base else [])])
    # `from a.b import c`: the module a.b.c when there is one, else a.b itself.
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def _owner(name: str) -> str | None:
    """The module of ours that a dotted name lives in (the longest prefix that is a module)."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def graph() -> dict[str, frozenset[str]]:
    """Module -> the modules of ours it imports."""
    edges: dict[str, frozenset[str]] = {}
    for name, path in modules().items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            imported = _imported(node, package)
            if isinstance(node, ast.ImportFrom):
                # Names that are modules are arrows to them; other names are arrows to the base.
                imported = [item for item in imported[:-1] if item in modules()] or imported[-1:]
            for item in imported:
                owner = _owner(item)
                if owner and owner != name:
                    targets.add(owner)
        edges[name] = frozenset(targets)
    return edges


def external_imports(name: str) -> set[str]:
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return {item.split(".")[0] for node in ast.walk(ast.parse(path.read_text())) for item in _imported(node, package)}


def deployable_of(name: str) -> str | None:
    return next((d for d in DEPLOYABLES if name == d or name.startswith(d + ".")), None)


def cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
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
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_is_read() -> None:
    """The reader sees the arrows that are there (so the rules below are not passed by reading nothing)."""
    edges = graph()
    assert "runtune.models.registry" in edges["runtune.serving"]  # `from runtune.models import registry`
    assert "runtune.models.tiny" in edges["runtune.models.loading"]
    assert "engine.local_engine" in edges["engine.app"]
    assert "runtune.settings" in edges["gateway.app"]
    assert cycles({"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset()}) == [
        ["a", "b", "c"]
    ]


def test_no_circle_of_imports() -> None:
    assert cycles(graph()) == []


def room(name: str) -> str:
    """A module's place in the library's plan: its sub-package (`runtune.datasets`) or its own module."""
    return ".".join(name.split(".")[:2])


def test_no_circle_between_the_library_folders() -> None:
    """Folders and top modules of `runtune/` stand in layers too: `runtune.webhooks` may use
    `runtune.owned`, which may then not use any module of `runtune.webhooks`."""
    rooms: dict[str, set[str]] = {}
    for source, targets in graph().items():
        if source.startswith(LIBRARY + "."):
            rooms.setdefault(room(source), set()).update(
                room(target) for target in targets if target.startswith(LIBRARY + ".") and room(target) != room(source)
            )
    assert cycles({name: frozenset(targets) for name, targets in rooms.items()}) == []


def test_the_library_never_imports_a_deployable() -> None:
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in graph().items()
        if source.split(".")[0] == LIBRARY
        for target in targets
        if target.split(".")[0] != LIBRARY
    )
    assert upward == []


def test_deployables_never_import_each_other() -> None:
    sideways = sorted(
        f"{source} -> {target}"
        for source, targets in graph().items()
        for target in targets
        if deployable_of(source) is not None
        and deployable_of(target) is not None
        and deployable_of(target) != deployable_of(source)
    )
    assert sideways == []


def test_the_model_registry_is_a_leaf() -> None:
    """Pure data and lookups: no torch, and nothing of Runtune but modules that import nothing of Runtune."""
    name = "runtune.models.registry"
    assert not external_imports(name) & set(TORCH)
    for target in graph()[name]:
        assert graph()[target] <= {"runtune"}, f"{name} imports {target}, which imports {sorted(graph()[target])}"
