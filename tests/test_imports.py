"""hfssl's layers only look down: no module imports one that imports it back, counting imports inside functions."""

import ast
from pathlib import Path

import hfssl

PACKAGE = Path(hfssl.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The hfssl modules `path` imports anywhere in its body (a package's module where one is named)."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name in modules}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
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
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(p for p in PACKAGE.rglob("*.py") if "model_cards" not in p.parts and "recipes" not in p.parts)
    modules = {module_name(p) for p in paths}
    # Importing a package runs its __init__: an import of `hfssl.objectives.mlm` depends on `hfssl.objectives` too.
    graph = {}
    for path in paths:
        name = module_name(path)
        targets = imports(path, modules)
        for target in list(targets):
            parent = target.rpartition(".")[0]
            while parent and parent != "hfssl":
                if parent in modules and not name.startswith(parent + ".") and name != parent:
                    targets.add(parent)
                parent = parent.rpartition(".")[0]
        graph[name] = targets - {"hfssl", name}  # a package naming its own submodules
    return graph


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "hfssl.hub" in graph["hfssl.__main__"]  # imported inside push_command only
    assert "hfssl.pretrain" in graph["hfssl.dry_run"]
    assert "hfssl.pretrain" not in graph["hfssl.objectives.mlm"]
