"""The tree's layering, checked on every import statement (docs/LAYERS.md).

Every ``import`` and ``from ... import`` of every module under ``explainers/``, ``stats/`` and
``studyapp/`` (migrations included) counts, wherever it stands: at the top, inside a function
(a lazy import), under ``if TYPE_CHECKING:`` or in a ``try``. So does ``import_module("...")``
with a literal name. Two rules:

- Imports run downwards only: ``analysis -> studies -> pipeline -> {lib, celery, settings}``, and
  the two pure libraries (``explainers``, ``stats``) import nothing of ``studyapp``, Django or
  Celery.
- No file imports a file that imports it back, over any number of steps: the module graph has
  no strongly connected component larger than one file. A package's ``__init__`` is a file like
  any other, so ``pkg/__init__.py`` importing ``pkg.a`` while ``pkg/a.py`` does
  ``from pkg import x`` is a cycle. Importing ``pkg.a`` does not by itself count as importing
  ``pkg/__init__.py`` (Python runs it, but it cannot import back what is being imported).
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("explainers", "stats", "studyapp")

FRAMEWORKS = ("studyapp", "django", "rest_framework", "drf_spectacular", "celery", "kombu")
APPS = ("studyapp.pipeline", "studyapp.studies", "studyapp.analysis")

#: (layer, what it must not import, why). A layer is a module or package and all below it.
RULES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("explainers", FRAMEWORKS, "explainers/ is pure torch"),
    ("stats", FRAMEWORKS, "the stats package is pure pandas/scipy"),
    ("studyapp.lib", APPS, "lib is below every app"),
    ("studyapp.settings", APPS, "settings are configuration only"),
    ("studyapp.celery", APPS, "the Celery app is configuration only; hooks connect in an app's ready()"),
    ("studyapp.pipeline", ("studyapp.studies", "studyapp.analysis"), "pipeline is below studies and analysis"),
    ("studyapp.studies", ("studyapp.analysis",), "studies is below analysis"),
)


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the dotted name as written (resolved if relative), e.g. "studyapp.studies.models.Study"
    line: int
    module: str | None  # the file it reaches in the scanned tree, if any


@dataclass
class Tree:
    root: Path
    files: dict[str, Path] = field(default_factory=dict)  # module -> file
    imports: list[Import] = field(default_factory=list)

    def where(self, imp: Import) -> str:
        return f"{self.files[imp.source].relative_to(self.root)}:{imp.line}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def scan(root: Path, packages: tuple[str, ...] = PACKAGES) -> Tree:
    """Every module under ``root/<package>`` (packages that do not exist are skipped) and its imports."""
    tree = Tree(root)
    for package in packages:
        if (root / package).is_dir():
            for path in sorted((root / package).rglob("*.py")):
                tree.files[module_name(root, path)] = path
    for name, path in tree.files.items():
        is_package = path.name == "__init__.py"
        for target, line in _imports_of(ast.parse(path.read_text(), str(path)), name, is_package):
            tree.imports.append(Import(name, target, line, _resolve(tree.files, target)))
    return tree


def _imports_of(node: ast.AST, module: str, is_package: bool):
    """(dotted target, line) for every import anywhere in the module, lazy ones included."""
    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            for alias in n.names:
                yield alias.name, n.lineno
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (n.level - 1)]
                base = ".".join(package + ([n.module] if n.module else []))
            for alias in n.names:
                yield (f"{base}.{alias.name}" if alias.name != "*" else base), n.lineno
        elif (
            isinstance(n, ast.Call)
            and (getattr(n.func, "id", None) == "import_module" or getattr(n.func, "attr", None) == "import_module")
            and n.args
            and isinstance(n.args[0], ast.Constant)
            and isinstance(n.args[0].value, str)
            and not n.args[0].value.startswith(".")
        ):
            yield n.args[0].value, n.lineno


def _resolve(files: dict[str, Path], target: str) -> str | None:
    """The scanned module a target reaches: itself, or the module that defines the imported name."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in files:
            return candidate
    return None


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_violations(tree: Tree, rules=RULES) -> list[str]:
    found = []
    for imp in tree.imports:
        for layer, forbidden, why in rules:
            if _within(imp.source, layer):
                hit = next((f for f in forbidden if _within(imp.target, f)), None)
                if hit is not None:
                    found.append(f"{tree.where(imp)} {imp.source} imports {imp.target} ({why})")
    return found


def import_cycles(tree: Tree) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = {name: set() for name in tree.files}
    for imp in tree.imports:
        if imp.module is not None and imp.module != imp.source:
            graph[imp.source].add(imp.module)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
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
                    components.append(sorted(component))
    return sorted(components)


def describe_cycle(tree: Tree, component: list[str]) -> str:
    members = set(component)
    edges = sorted(
        {f"    {tree.where(i)} {i.source} -> {i.module}" for i in tree.imports
         if i.source in members and i.module in members and i.module != i.source}
    )
    return "cycle between " + ", ".join(component) + ":\n" + "\n".join(edges)


# -- the real tree ---------------------------------------------------------------------------------


def test_the_scan_sees_the_real_tree():
    """Not vacuous: the scan reaches every layer and sees the imports it must judge."""
    tree = scan(ROOT)
    assert {"explainers", "studyapp", "studyapp.studies.api", "studyapp.pipeline.models"} <= set(tree.files)
    assert any(i.source == "studyapp.studies.api" and i.module == "studyapp.studies.services" for i in tree.imports)
    assert any(i.source.startswith("studyapp.studies.migrations.") for i in tree.imports)


def test_no_import_runs_from_a_lower_layer_to_a_higher_one():
    violations = layer_violations(scan(ROOT))
    assert not violations, "\n".join(violations)


def test_no_import_cycles_between_files():
    tree = scan(ROOT)
    cycles = import_cycles(tree)
    assert not cycles, "\n".join(describe_cycle(tree, c) for c in cycles)


# -- the checker itself, on a tree made to break the rules ----------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_the_checker_reports_violations_and_cycles(tmp_path):
    _write(tmp_path, {
        "explainers/__init__.py": "",
        "explainers/clean.py": "import torch\nfrom . import lazy\n",
        "explainers/lazy.py": """
            def f():
                from django.conf import settings  # a lazy import counts
                return settings
        """,
        "studyapp/__init__.py": "from studyapp.celery import app\n",  # package importing its submodule: fine
        "studyapp/celery.py": "import celery\napp = celery.Celery()\n",
        "studyapp/pipeline/__init__.py": "",
        "studyapp/pipeline/services.py": """
            from typing import TYPE_CHECKING
            from . import tasks
            if TYPE_CHECKING:
                from studyapp.studies.models import Study
        """,
        "studyapp/pipeline/tasks.py": """
            def run():
                from studyapp.pipeline.services import compute  # lazy, and a cycle with services
        """,
        "studyapp/studies/__init__.py": "from studyapp.studies.state import present\n",
        "studyapp/studies/state.py": "from studyapp.studies import helper\n",  # back to its own __init__
        "studyapp/studies/models.py": "from django.db import models\n",
        "studyapp/analysis/__init__.py": "",
        "studyapp/analysis/views.py": "from studyapp.studies.models import Study\nfrom ..pipeline import tasks\n",
    })
    tree = scan(tmp_path)  # no stats/ here: skipped, not an error
    assert "stats" not in {name.split(".")[0] for name in tree.files}

    violations = layer_violations(tree)
    assert len(violations) == 2, violations
    assert violations[0].startswith("explainers/lazy.py:3 explainers.lazy imports django.conf.settings")
    assert violations[1].startswith(
        "studyapp/pipeline/services.py:5 studyapp.pipeline.services imports studyapp.studies.models.Study"
    )

    cycles = import_cycles(tree)
    assert cycles == [
        ["studyapp.pipeline.services", "studyapp.pipeline.tasks"],
        ["studyapp.studies", "studyapp.studies.state"],
    ]
    assert "studyapp/pipeline/tasks.py:3 studyapp.pipeline.tasks -> studyapp.pipeline.services" in describe_cycle(
        tree, cycles[0]
    )


def test_relative_and_dynamic_imports_resolve(tmp_path):
    _write(tmp_path, {
        "studyapp/__init__.py": "",
        "studyapp/studies/__init__.py": "from . import api\n",
        "studyapp/studies/api.py": "from .. import lib\nfrom .services import enroll\n",
        "studyapp/studies/services.py": "",
        "studyapp/lib/__init__.py": "",
        "studyapp/lib/env.py": "import importlib\nimportlib.import_module('studyapp.analysis.views')\n",
    })
    tree = scan(tmp_path)
    reached = {(i.source, i.target, i.module) for i in tree.imports}
    assert ("studyapp.studies", "studyapp.studies.api", "studyapp.studies.api") in reached
    assert ("studyapp.studies.api", "studyapp.lib", "studyapp.lib") in reached
    assert ("studyapp.studies.api", "studyapp.studies.services.enroll", "studyapp.studies.services") in reached
    assert layer_violations(tree) == [
        "studyapp/lib/env.py:2 studyapp.lib.env imports studyapp.analysis.views (lib is below every app)"
    ]
    assert import_cycles(tree) == []
