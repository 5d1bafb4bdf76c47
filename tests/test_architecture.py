"""The tree's layering (docs/LAYERS.md), checked by import-linter's contracts in pyproject.toml.

``lint-imports`` runs in scripts/test.sh beside ruff and mypy; the contracts are:

- ``pure-libraries``: ``explainers`` and ``stats`` import nothing of ``studyapp``, Django, DRF or Celery.
- ``apps-downwards``: ``analysis -> studies -> pipeline -> {lib, celery, settings}``.
- ``no-cycles``: no module or package imports a sibling that imports it back (ten package levels
  deep, import-linter's default), so a cycle between two packages counts even without one between files.

import-linter's graph (grimp) holds every ``import`` and ``from ... import`` wherever it stands:
at the top, inside a function, under ``if TYPE_CHECKING:``, in a ``try``; migrations included. Two
things the contracts do not see are checked here with the same graph or the syntax tree:

- a cycle through a package's ``__init__`` (``pkg/__init__.py`` imports ``pkg.a`` while
  ``pkg/a.py`` does ``from pkg import x``): ``acyclic_siblings`` compares a package's children,
  and the package's own ``__init__`` is not one of them;
- ``importlib.import_module("literal")``: grimp reads import statements only. The tree has none
  with a literal name, and a test keeps it so (the one dynamic import, the checkpoint registry's
  ``module:attr`` factory, takes its name from data).

Each check is also run on a small tree made to break it, so none can quietly pass.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("explainers", "stats", "studyapp")
CONTRACT_IDS = {"pure-libraries", "apps-downwards", "no-cycles"}


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the project's contracts on the packages under ``root``.

    A subprocess, so that ``root``'s packages (not the ones this test process imported) are found.
    """
    return subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())",
         "--config", str(root / "pyproject.toml"), "--no-cache", "--no-logo"],
        cwd=root, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(root)},
    )


def package_init_cycles(graph: grimp.ImportGraph) -> list[str]:
    """Each import from a package's ``__init__`` to a module that imports that ``__init__`` back."""
    found = []
    for package in sorted(m for m in graph.modules if graph.find_children(m)):
        for imported in sorted(graph.find_modules_directly_imported_by(package)):
            chain = graph.find_shortest_chain(imported, package, as_packages=False)
            if chain:
                found.append(f"{package} -> " + " -> ".join(chain))
    return found


def literal_import_module_calls(root: Path, packages=PACKAGES) -> list[str]:
    """``import_module("name")`` calls with a literal name: imports that grimp cannot see."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Call)
                    and "import_module" in (getattr(node.func, "id", None), getattr(node.func, "attr", None))
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


# -- the real tree ---------------------------------------------------------------------------------


def test_the_contracts_cover_the_layers():
    """The configuration names the three contracts over all three packages."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert set(config["root_packages"]) == set(PACKAGES)
    assert {c["id"] for c in config["contracts"]} == CONTRACT_IDS


def test_the_real_tree_keeps_the_contracts():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


def test_no_import_cycle_runs_through_a_package_init():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert "studyapp.studies.api" in graph.modules  # not vacuous: the graph holds the tree
    assert package_init_cycles(graph) == []


def test_no_import_by_literal_name():
    assert literal_import_module_calls(ROOT) == []


# -- the checks themselves, on a tree made to break them -------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def _contracts_only() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    return text[text.index("[tool.importlinter]"):]


def test_the_contracts_break_on_a_tree_made_to_break_them(tmp_path):
    _write(tmp_path, {
        "pyproject.toml": _contracts_only(),
        "explainers/__init__.py": "",
        "explainers/clean.py": "import torch\nfrom . import lazy\n",
        "explainers/lazy.py": """
            def f():
                from django.conf import settings  # a lazy import counts
                return settings
        """,
        "stats/__init__.py": "",
        "stats/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import celery\n",
        "studyapp/__init__.py": "from studyapp.celery import app\n",  # package importing its submodule: fine
        "studyapp/celery.py": "import celery\napp = celery.Celery()\n",
        "studyapp/settings.py": "from studyapp.lib import env\n",  # siblings of the lowest layer: fine
        "studyapp/lib/__init__.py": "",
        "studyapp/lib/env.py": "",
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
        "studyapp/studies/__init__.py": "",
        "studyapp/studies/models.py": "from django.db import models\n",
        "studyapp/analysis/__init__.py": "",
        "studyapp/analysis/views.py": "from studyapp.studies.models import Study\nfrom ..pipeline import tasks\n",
    })
    result = lint_imports(tmp_path)
    out = " ".join(result.stdout.split())  # rich wraps long lines
    assert result.returncode == 1, out
    assert "Contracts: 0 kept, 3 broken." in out
    assert "explainers.lazy -> django (l.3)" in out
    assert "stats.typed -> celery (l.3)" in out
    assert "studyapp.pipeline is not allowed to import studyapp.studies" in out
    assert "studyapp.pipeline.services -> studyapp.studies.models (l.5)" in out
    assert "No cycles are allowed in studyapp.pipeline" in out and ".tasks -> .services" in out
    # The allowed imports were not reported.
    assert "studyapp.analysis.views ->" not in out and "studyapp.settings ->" not in out


def test_a_cycle_through_a_package_init_is_found(tmp_path, monkeypatch):
    # A package name of its own, so that grimp finds this tree and not one this process imported.
    _write(tmp_path, {
        "toy_cycles/__init__.py": "from toy_cycles.state import present\n",
        "toy_cycles/state.py": "from toy_cycles import helper\n",  # a name of its own __init__: back to it
        "toy_cycles/fine/__init__.py": "from . import leaf\n",
        "toy_cycles/fine/leaf.py": "import json\n",
        "toy_cycles/loader.py": "import importlib\nimportlib.import_module('toy_cycles.state')\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("toy_cycles", cache_dir=None)
    assert package_init_cycles(graph) == ["toy_cycles -> toy_cycles.state -> toy_cycles"]
    assert literal_import_module_calls(tmp_path, ("toy_cycles",)) == ["toy_cycles/loader.py:2"]
