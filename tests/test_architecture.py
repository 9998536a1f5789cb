"""Imports point down: every module of pipeline_lib, db_api and web_app sits in one layer, and
none imports from a layer above its own (docs/architecture.md). The README's layout table names
the tree as it is.

`python -m tests.test_architecture` prints the graph: modules per layer, imports between layers,
and the upward imports (none expected).
"""

from __future__ import annotations

import ast
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline_lib", "db_api", "web_app")

# Lowest first. A module belongs to the longest unit it equals or lies under.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("pipeline_lib", "pipeline_lib.settings", "pipeline_lib.logs", "pipeline_lib.parent_watch"),
    ("pipeline_lib.contract",),
    ("pipeline_lib.wire",),
    ("pipeline_lib.client",),
    ("pipeline_lib.spark",),
    ("pipeline_lib.clean",),
    ("pipeline_lib.process",),
    ("pipeline_lib.runs",),
    ("pipeline_lib.views",),
    ("pipeline_lib.dashboards",),
    ("pipeline_lib.demo",),
    ("db_api", "web_app"),
    ("pipeline_lib.cli",),
)
# Units of one layer that never import each other: the server and the web app are peers.
PEERS = frozenset({"db_api", "web_app"})
# Units that hold only their own module: pipeline_lib's __init__, so that a new top-level module
# of pipeline_lib is in no layer until it is placed.
OWN_MODULE_ONLY = frozenset({"pipeline_lib"})


@dataclass(frozen=True)
class Import:
    module: str
    line: int
    target: str


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = ROOT, packages: Sequence[str] = PACKAGES) -> dict[str, Path]:
    """Every module of the packages by dotted name (a package by its __init__)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            found[_module_name(path, root)] = path
    return found


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def imports(name: str, path: Path, known: Iterable[str], packages: Sequence[str] = PACKAGES) -> list[Import]:
    """The imports of one module into the packages, wherever they stand (in functions too).

    `from a import b` counts as an import of `a.b` when that is a module, else of `a`."""
    known = set(known)
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(node, name, path.name == "__init__.py")
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source for a in node.names]
        else:
            continue
        for target in dict.fromkeys(targets):
            if target.split(".")[0] in packages:
                found.append(Import(name, node.lineno, target))
    return found


def layer_of(module: str, layers: Sequence[Sequence[str]] = LAYERS) -> tuple[int, str] | None:
    """(layer index, unit) of a module by the longest unit it equals or lies under, or None."""
    best: tuple[int, str] | None = None
    for index, units in enumerate(layers):
        for unit in units:
            inside = module == unit or (unit not in OWN_MODULE_ONLY and module.startswith(unit + "."))
            if inside and (best is None or len(unit) > len(best[1])):
                best = index, unit
    return best


@dataclass(frozen=True)
class Graph:
    per_layer: list[list[str]]
    unplaced: list[str]
    between: Counter[tuple[int, int]]
    upward: list[str]


def graph(
    root: Path = ROOT, packages: Sequence[str] = PACKAGES, layers: Sequence[Sequence[str]] = LAYERS
) -> Graph:
    found = modules(root, packages)
    per_layer: list[list[str]] = [[] for _ in layers]
    unplaced, upward = [], []
    between: Counter[tuple[int, int]] = Counter()
    for name, path in found.items():
        home = layer_of(name, layers)
        if home is None:
            unplaced.append(name)
            continue
        per_layer[home[0]].append(name)
        for imp in imports(name, path, found, packages):
            there = layer_of(imp.target, layers)
            if there is None:
                unplaced.append(f"{imp.target} (imported by {name}:{imp.line})")
                continue
            between[home[0], there[0]] += 1
            crossing_peers = home[1] != there[1] and {home[1], there[1]} <= PEERS
            if there[0] > home[0] or crossing_peers:
                upward.append(
                    f"{name}:{imp.line} imports {imp.target}: layer {home[0]} ({home[1]}) "
                    f"-> layer {there[0]} ({there[1]})"
                )
    return Graph(per_layer, sorted(unplaced), between, upward)


def render(g: Graph, layers: Sequence[Sequence[str]] = LAYERS) -> str:
    lines = ["Modules per layer (lowest first):"]
    for index, units in enumerate(layers):
        lines.append(f"  {index:2} {', '.join(units)}: {len(g.per_layer[index])} modules")
    lines.append(f"Imports between modules: {sum(g.between.values())}")
    lines.append("Imports between layers (from -> to: count):")
    for (source, target), count in sorted(g.between.items()):
        if source != target:
            lines.append(f"  {source:2} -> {target:2}: {count}")
    lines.append(f"Upward imports: {len(g.upward)}")
    lines.extend(f"  {u}" for u in g.upward)
    if g.unplaced:
        lines.append(f"Modules in no layer: {len(g.unplaced)}")
        lines.extend(f"  {u}" for u in g.unplaced)
    return "\n".join(lines)


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = graph().unplaced
    assert not unplaced, "place these modules in a layer (tests/test_architecture.py LAYERS):\n" + "\n".join(
        unplaced
    )


def test_imports_point_down() -> None:
    upward = graph().upward
    assert not upward, "imports that run back up (see docs/architecture.md):\n" + "\n".join(upward)


def test_relative_and_function_level_imports_are_seen(tmp_path: Path) -> None:
    package = tmp_path / "pipeline_lib"
    (package / "contract").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "contract" / "__init__.py").write_text("")
    (package / "cli.py").write_text("")
    (package / "contract" / "fields.py").write_text("def f():\n    from .. import cli\n")
    layers = (("pipeline_lib",), ("pipeline_lib.contract",), ("pipeline_lib.cli",))
    g = graph(tmp_path, ("pipeline_lib",), layers)
    assert g.upward == [
        "pipeline_lib.contract.fields:2 imports pipeline_lib.cli: layer 1 (pipeline_lib.contract) "
        "-> layer 2 (pipeline_lib.cli)"
    ]


def test_peers_never_import_each_other(tmp_path: Path) -> None:
    peers = ("db_api", "web_app")
    for package, source in zip(peers, ("", "import db_api\n"), strict=True):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(source)
    g = graph(tmp_path, peers, (peers,))
    assert g.upward == ["web_app:1 imports db_api: layer 0 (web_app) -> layer 0 (db_api)"]


_LAYOUT_ROW = re.compile(r"^\| `([^`]+)` \|", re.MULTILINE)


def _layout_paths() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Layout") :]
    section = section[: section.find("\n## ", 1) if "\n## " in section[1:] else len(section)]
    return _LAYOUT_ROW.findall(section)


def test_readme_layout_table_names_directories_that_exist() -> None:
    missing = [p for p in _layout_paths() if p.endswith("/") and not (ROOT / p).is_dir()]
    assert not missing, f"README's layout table names missing directories: {missing}"


def test_readme_layout_table_lists_every_pipeline_lib_subpackage() -> None:
    listed = set(_layout_paths())
    subpackages = sorted(p.parent.name for p in (ROOT / "pipeline_lib").glob("*/__init__.py"))
    missing = [name for name in subpackages if f"pipeline_lib/{name}/" not in listed]
    assert not missing, f"README's layout table lacks pipeline_lib subpackages: {missing}"


if __name__ == "__main__":
    sys.stdout.write(render(graph()) + "\n")
