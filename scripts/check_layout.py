"""Fail when the layout of the code drifts from the rules the README states.

The rules are cheap to break by accident and expensive to find by reading: an import made
inside a function closes a cycle nobody sees, a `_helper` imported from another module
makes a private name part of two modules' contracts, a stage that imports one above it
blurs what each is for, and a new file dropped straight into `tasks/` starts the flat drawer
again. Run by `make lint`; `--graph` prints the imports.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The packages whose imports are ours to check; tests, bench and scripts may reach anywhere.
PACKAGES = ("tasks", "flows", "blocks")
# The only modules that may stand directly in tasks/: what every stage shares.
SHARED_TASK_MODULES = {"__init__", "settings", "config"}
# What each part may import besides itself and the shared modules, floor by floor (the
# README's map of the code says why). The most specific part names a module's part:
# tasks.extract.reddit_api is a part of its own, self-contained inside tasks.extract.
STAGES = ("core", "lake", "state", "process", "extract", "model", "quality", "load", "ops")
MAY_IMPORT: dict[str, set[str]] = {
    "tasks.core": set(),
    "tasks.lake": {"tasks.core"},
    "tasks.state": {"tasks.core", "tasks.lake"},
    "tasks.process": {"tasks.core", "tasks.lake"},
    "tasks.extract.reddit_api": set(),
    "tasks.extract": {
        "tasks.core",
        "tasks.lake",
        "tasks.process",
        "tasks.state",
        "tasks.extract.reddit_api",
    },
    "tasks.model": {"tasks.core", "tasks.lake", "tasks.process"},
    "tasks.quality": {"tasks.core", "tasks.lake", "tasks.model", "tasks.state", "blocks.warehouse"},
    "tasks.load": {"tasks.core", "tasks.lake"},
    "tasks.ops": {"tasks.quality", "tasks.state"},
    "tasks.run": {f"tasks.{s}" for s in STAGES} | {"tasks.extract.reddit_api", "blocks"},
    "blocks.warehouse": set(),
    "blocks.reddit": {"tasks.extract.reddit_api"},
}


@dataclass(frozen=True)
class Import:
    """One `import` or `from ... import` of a project module, wherever it stands in a file."""

    importer: str
    imported: str
    names: tuple[str, ...]
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path) -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            modules[module_name(path, root)] = path
    return modules


def resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a `from` import names, relative imports included."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """Every import of a project module, at module level or inside functions alike."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield Import(name, alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            target = resolve(name, is_package, node)
            if target not in modules:
                continue
            plain: list[str] = []
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in modules:
                    yield Import(name, submodule, (), node.lineno)
                else:
                    plain.append(alias.name)
            if plain:
                yield Import(name, target, tuple(plain), node.lineno)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
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
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def stage_of(module: str, modules: dict[str, Path]) -> str | None:
    """The stage package a module belongs to (tasks.extract for tasks.extract.reddit_api.x),
    None for tasks.settings and tasks.config, which every stage shares."""
    parts = module.split(".")
    stage = ".".join(parts[:2])
    if parts[0] != "tasks" or len(parts) < 2 or stage not in modules:
        return None
    return stage if is_face(stage, modules) else None


def is_face(module: str, modules: dict[str, Path]) -> bool:
    return modules[module].name == "__init__.py"


def face_exports(face: str, modules: dict[str, Path]) -> set[str]:
    """The names a package's face hands on (what its `__init__.py` imports or defines)."""
    names: set[str] = set()
    for node in ast.parse(modules[face].read_text()).body:
        if isinstance(node, ast.ImportFrom):
            names |= {a.asname or a.name for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names


def part_of(module: str, table: dict[str, set[str]]) -> str | None:
    """The most specific part of the table a module belongs to (None: flows, shared modules)."""
    for part in sorted(table, key=len, reverse=True):
        if module == part or module.startswith(part + "."):
            return part
    return None


def allowed(imported: str, allowed_parts: set[str]) -> bool:
    return any(imported == p or imported.startswith(p + ".") for p in allowed_parts)


def problems(root: Path, may_import: dict[str, set[str]] | None = None) -> list[str]:
    table = MAY_IMPORT if may_import is None else may_import
    modules = project_modules(root)
    found: list[str] = []
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        where = path.relative_to(root)
        for imp in imports_of(name, path, modules):
            if imp.imported == name:
                continue
            graph[name].add(imp.imported)
            # Importing a.b.c runs a/__init__.py and a/b/__init__.py first: a face that
            # imports back closes a loop that the import statement does not show.
            parts = imp.imported.split(".")
            for depth in range(2, len(parts)):
                parent = ".".join(parts[:depth])
                if parent in modules and not name.startswith(parent + "."):
                    graph[name].add(parent)
            for private in (n for n in imp.names if n.startswith("_")):
                found.append(
                    f"{where}:{imp.line}: imports the private name {private} from "
                    f"{imp.imported}: make it public where both can reach it"
                )
            importer_part, imported_part = part_of(name, table), part_of(imp.imported, table)
            shared = imp.imported in ("tasks", *(f"tasks.{m}" for m in SHARED_TASK_MODULES))
            if (
                importer_part is not None
                and importer_part != imported_part
                and not shared
                and not allowed(imp.imported, table[importer_part])
            ):
                found.append(
                    f"{where}:{imp.line}: {importer_part} may not import {imp.imported} "
                    f"(it imports {', '.join(sorted(table[importer_part])) or 'no other part'}):"
                    " move what both need to the lower floor"
                )
            stage = stage_of(imp.imported, modules)
            if stage is None or stage_of(name, modules) == stage:
                continue
            if is_face(imp.imported, modules):
                continue
            parent = imp.imported.rpartition(".")[0]
            leaf = imp.imported.rpartition(".")[2]
            if not imp.names and parent in modules and leaf in face_exports(parent, modules):
                continue  # `from tasks.core import duck`: a module the face hands on
            found.append(
                f"{where}:{imp.line}: reaches into {imp.imported}: another stage's code is "
                f"imported from its face ({stage}), which says what it offers"
            )
    for cycle in find_cycles(graph):
        found.append(f"import cycle: {' -> '.join(cycle)} (imports inside functions count)")
    for face in sorted(m for m in modules if stage_of(m, modules) == m):
        if face not in table:
            found.append(f"{face}: a stage the layout's table (MAY_IMPORT) does not list")
    for path in sorted((root / "tasks").glob("*.py")):
        if path.stem not in SHARED_TASK_MODULES:
            found.append(
                f"{path.relative_to(root)}: a module directly in tasks/; only "
                f"{', '.join(sorted(SHARED_TASK_MODULES - {'__init__'}))} are shared by "
                "every stage: move it into the subpackage of its stage"
            )
    tests = root / "tests"
    for folder in sorted({p.parent for p in tests.rglob("test_*.py")} if tests.is_dir() else ()):
        relative = folder.relative_to(tests)
        if relative.parts and not (root / "tasks" / relative / "__init__.py").exists():
            found.append(
                f"tests/{relative.as_posix()}/: tests mirror tasks/, and tasks/"
                f"{relative.as_posix()} is no subpackage"
            )
    return sorted(set(found), key=found.index)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to check")
    parser.add_argument("--graph", action="store_true", help="print who imports whom, then check")
    args = parser.parse_args(argv)
    if args.graph:
        modules = project_modules(args.root)
        for name, path in modules.items():
            for imp in imports_of(name, path, modules):
                names = f" ({', '.join(imp.names)})" if imp.names else ""
                print(f"{name} -> {imp.imported}{names}")
    found = problems(args.root)
    for line in found:
        print(line, file=sys.stderr)
    if found:
        print(f"layout: {len(found)} problem(s)", file=sys.stderr)
        return 1
    print(
        "layout: no import cycles, no private names across modules, every part imports only"
        " the floors below it, through their faces"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
