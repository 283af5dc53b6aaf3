"""Find import circles in a package, counting imports inside functions.

    python -m tests.import_cycles personaseg      # exit 1 and one line per circle if any

(Imports of package modules that do not exist are reported too: a lazy import left behind by a
move fails only when its function runs.)

Every ``import`` statement anywhere in a module counts (module level, inside functions, lazy),
except those under ``if TYPE_CHECKING:``, which never run. An edge goes to the module an import
names: ``from pkg import name`` reaches ``pkg.name`` when that is a module of the package, else
``pkg`` (its ``__init__``). A package's ``__init__`` is the module ``pkg``. Importing ``pkg.sub``
also runs ``pkg/__init__`` first, so it is an edge to ``pkg`` too, except from modules inside
``pkg`` (their package has started importing before them).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` of the package at ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every import node, skipping ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def edges(name: str, path: Path, known: dict[str, Path], missing: list[str] | None = None) -> set[str]:
    """The package modules that module ``name`` imports (imports of package modules that do not
    exist, e.g. left behind by a move, are appended to ``missing``)."""
    is_package = path.name == "__init__.py"
    package = name.split(".")[0]
    out = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
            if missing is not None:
                missing += [f"{path}:{node.lineno}: {t} does not exist" for t in targets
                            if t.split(".")[0] == package and t not in known]
        else:
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
            if missing is not None and base.split(".")[0] == package and base not in known:
                missing.append(f"{path}:{node.lineno}: {base} does not exist")
        for target in targets:
            while target and target not in known:  # `import a.b.c` where c is a name: a.b
                target = target.rpartition(".")[0]
            while target:
                if target != name and not name.startswith(target + "."):
                    out.add(target)
                target = target.rpartition(".")[0]  # Python runs the parent packages' __init__ first
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
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

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def path_in(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One circle through the component's first module, for the message: a -> b -> a."""
    members, start = set(component), component[0]
    seen, queue = {start: [start]}, [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                return seen[node] + [start]
            if nxt not in seen:
                seen[nxt] = seen[node] + [nxt]
                queue.append(nxt)
    return component


def check(package_dir: Path) -> list[str]:
    """One line per import circle, and per import of a package module that does not exist."""
    known, missing = modules(package_dir), []
    graph = {name: edges(name, path, known, missing) for name, path in known.items()}
    return [f"import circle: {' -> '.join(path_in(c, graph))}" for c in cycles(graph)] + missing


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.import_cycles PACKAGE_DIR", file=sys.stderr)
        return 2
    root = Path(argv[0])
    if not (root / "__init__.py").is_file():
        print(f"{root}: not a package (no __init__.py)", file=sys.stderr)
        return 2
    found = check(root)
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
