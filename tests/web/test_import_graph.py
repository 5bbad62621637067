"""No import cycle between the modules of web/ (counting imports inside functions too): the
composition root (web/app.py) imports the rest, and nothing imports it back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """The web modules ``path`` imports anywhere in it (``from web import x`` counts as web.x
    when web.x is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found.update(name for name in names if name in known)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(WEB.rglob("*.py"))
    known = {_module_name(p) for p in paths}
    graph = {_module_name(p): _imports(p, known) for p in paths}
    # a package's __init__ runs before its modules: an edge into "web" itself is no cycle
    return {name: {t for t in targets if t != "web" and t != name}
            for name, targets in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle_between_web_modules() -> None:
    graph = import_graph()
    assert "web.app" in graph and "web.settings" in graph["web.app"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_nothing_in_web_imports_the_composition_root_but_the_server_command() -> None:
    importers = {name for name, targets in import_graph().items() if "web.app" in targets}
    assert importers == {"web.server"}


def test_the_cycle_finder_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_opening_a_store_through_the_root_imports_neither_falcon_nor_a_domain(
    tmp_path: Path,
) -> None:
    # The tools open stores through web/app.py; a broken domain package must not stop a dump.
    code = (
        "import sys\n"
        "from tools.common import Location\n"
        f"Location.resolve('lmdb', {str(tmp_path)!r}, None, {{}}).open(readonly=False,"
        " create=True).close()\n"
        "heavy = ('falcon', 'waitress', 'domains')\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in heavy]\n"
        "print('LOADED', sorted(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "LOADED []", out.stdout + out.stderr
    assert (tmp_path / "lmdb").is_dir()
