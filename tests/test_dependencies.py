"""Every imported package is declared, and the lock files cover the declarations with hashes.

- A top-level import in ``studyapp/``, ``explainers/`` or ``stats/`` (and the Django apps and
  middleware the settings name) must come from a distribution that ``requirements.txt`` names
  directly: being pulled in by something else is not enough, because that can change with the
  something else. Imports in ``tests/``, ``benchmarks/`` and ``scripts/`` must be declared in
  ``requirements-dev.txt`` (which includes ``requirements.txt``).
- Every requirement of ``requirements.txt`` / ``requirements-dev.txt`` must be pinned in
  ``requirements.lock`` / ``requirements-dev.lock`` to a version its specifier allows, and every
  lock entry must be pinned with ``==`` and carry at least one ``--hash`` (``pip install
  --require-hashes`` refuses the whole file otherwise); the installed versions are the dev lock's.
- pyproject's ``filterwarnings`` makes a deprecation raised from our packages an error, and not
  one raised from third-party code.

Import names map to distributions through ``importlib.metadata.packages_distributions()`` of the
running environment, so an import of something not installed at all is reported too.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import os
import sys
import warnings
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_DIRS = ("studyapp", "explainers", "stats")
DEV_DIRS = ("tests", "benchmarks", "scripts")
LOCKS = {"requirements.txt": "requirements.lock", "requirements-dev.txt": "requirements-dev.lock"}


# --- parsing -------------------------------------------------------------------------------------


def read_requirements(path: Path) -> list[Requirement]:
    """The requirements of a pip requirements file, following ``-r`` includes; comments dropped."""
    out: list[Requirement] = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ")):
            out += read_requirements(path.parent / line.split(None, 1)[1].strip())
        elif line.startswith("-"):
            continue  # other pip options (an index, a constraint): no requirement
        else:
            out.append(Requirement(line))
    return out


def read_lock(path: Path) -> tuple[dict[str, str], list[str]]:
    """A pip-compile lock: {canonical name: pinned version}, and the problems found in it."""
    logical: list[str] = []
    current = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        current += " " + stripped.removesuffix("\\")
        if not stripped.endswith("\\"):
            logical.append(current.strip())
            current = ""
    if current.strip():
        logical.append(current.strip())
    pins: dict[str, str] = {}
    problems: list[str] = []
    for entry in logical:
        spec, *options = entry.split(" --")
        if spec.startswith("-"):
            problems.append(f"{path.name}: a pip option instead of a pinned entry: {entry[:60]}")
            continue
        req = Requirement(spec.strip())
        name = canonicalize_name(req.name)
        pinned = [s.version for s in req.specifier if s.operator == "=="]
        if len(req.specifier) != 1 or not pinned:
            problems.append(f"{path.name}: {req.name} is not pinned with == ({spec.strip()})")
            continue
        if not any(o.startswith("hash=sha256:") for o in options):
            problems.append(f"{path.name}: {req.name}=={pinned[0]} has no --hash")
        pins[name] = pinned[0]
    return pins, problems


def lock_problems(requirements: Path, lock: Path) -> list[str]:
    """What is wrong with ``lock`` as the lock of ``requirements``."""
    if not lock.exists():
        return [f"{lock.name} is missing"]
    pins, problems = read_lock(lock)
    for req in read_requirements(requirements):
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req} ({requirements.name}) is not in {lock.name}")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{req} ({requirements.name}) but {lock.name} pins {pins[name]}")
    return problems


def top_level_imports(path: Path) -> set[str]:
    """The top-level names of the absolute imports in one file (lazy and guarded ones included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def is_local(name: str, importer: Path, root: Path) -> bool:
    """A package of this repository (``benchmarks`` is a namespace package: a folder without
    ``__init__.py``), or a module beside the importing script (the benchmarks import each other)."""
    return (root / name).is_dir() or any(
        (base / f"{name}.py").exists() or (base / name / "__init__.py").exists()
        for base in (root, importer.parent)
    )


def undeclared_imports(
    root: Path, dirs: tuple[str, ...], declared: set[str], packages: dict[str, list[str]]
) -> list[str]:
    """``file: import -> distribution`` for each third-party import no declared distribution gives."""
    problems: list[str] = []
    for directory in dirs:
        for path in sorted((root / directory).rglob("*.py")):
            for name in sorted(top_level_imports(path)):
                if name in sys.stdlib_module_names or name == "__future__":
                    continue
                if is_local(name, path, root):
                    continue
                dists = {canonicalize_name(d) for d in packages.get(name, [])}
                if not dists & declared:
                    given_by = ", ".join(sorted(dists)) or "not installed"
                    problems.append(f"{path.relative_to(root)}: import {name} ({given_by})")
    return problems


def declared_names(requirements: Path) -> set[str]:
    return {canonicalize_name(r.name) for r in read_requirements(requirements)}


# --- the checks on this repository ---------------------------------------------------------------


@pytest.fixture(scope="module")
def packages() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def test_runtime_imports_are_declared_in_requirements_txt(packages):
    declared = declared_names(ROOT / "requirements.txt")
    assert undeclared_imports(ROOT, RUNTIME_DIRS, declared, packages) == []


def test_test_and_benchmark_imports_are_declared_in_requirements_dev_txt(packages):
    declared = declared_names(ROOT / "requirements-dev.txt")
    assert undeclared_imports(ROOT, DEV_DIRS, declared, packages) == []


def test_the_apps_and_middleware_the_settings_name_are_declared(settings, packages):
    declared = declared_names(ROOT / "requirements.txt")
    missing = []
    for dotted in [*settings.INSTALLED_APPS, *settings.MIDDLEWARE]:
        name = dotted.split(".")[0]
        if name in sys.stdlib_module_names or is_local(name, ROOT / "manage.py", ROOT):
            continue
        if not {canonicalize_name(d) for d in packages.get(name, [])} & declared:
            missing.append(dotted)
    assert missing == []


@pytest.mark.parametrize(("requirements", "lock"), sorted(LOCKS.items()))
def test_the_lock_pins_every_requirement_with_hashes(requirements, lock):
    assert lock_problems(ROOT / requirements, ROOT / lock) == []


@pytest.mark.parametrize("lock", sorted(LOCKS.values()))
def test_the_lock_says_how_to_regenerate_it(lock):
    head = (ROOT / lock).read_text()[:1000]
    assert "pip-compile" in head and "--generate-hashes" in head and "--allow-unsafe" in head


def test_the_dev_lock_holds_the_runtime_lock():
    """The same versions in both: installing the dev lock gives the runtime the tests ran on."""
    runtime, _ = read_lock(ROOT / "requirements.lock")
    dev, _ = read_lock(ROOT / "requirements-dev.lock")
    assert {n: (v, dev.get(n)) for n, v in runtime.items() if dev.get(n) != v} == {}


@pytest.mark.skipif(
    os.environ.get("INSTALL_UNLOCKED") == "1", reason="installed from the open ranges on purpose"
)
def test_the_tests_run_on_the_locked_versions():
    """What scripts/install.sh --dev installed is what the dev lock says (``pip freeze`` agrees)."""
    pins, _ = read_lock(ROOT / "requirements-dev.lock")
    installed = {
        canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()
    }
    assert {n: (v, installed.get(n)) for n, v in pins.items() if installed.get(n) != v} == {}


# --- our deprecations are errors (pyproject.toml's filterwarnings) ------------------------------


OURS = ["stats", "stats.exclusions", "studyapp.analysis.frames", "explainers.gad", "tests.x", "benchmarks.b"]
THEIRS = ["statsmodels.base.model", "pandas.core.frame", "kombu.utils", "explainers_x", "testsuite"]
CATEGORIES = [DeprecationWarning, PendingDeprecationWarning, FutureWarning]


def apply_ini_filters(pytestconfig) -> None:
    """pyproject's filterwarnings alone (whatever -W the run was given), over "always"."""
    warnings.resetwarnings()
    warnings.simplefilter("always")
    for spec in pytestconfig.getini("filterwarnings"):
        action, message, category, module = (spec.split(":") + ["", "", ""])[:4]
        owner, _, name = category.rpartition(".")
        kind = getattr(importlib.import_module(owner or "builtins"), name) if name else Warning
        warnings.filterwarnings(action, message, kind, module)  # later entries win, as in pytest


@pytest.mark.parametrize("category", CATEGORIES)
@pytest.mark.parametrize("module", OURS)
def test_a_deprecation_raised_from_our_code_is_an_error(pytestconfig, category, module):
    with pytest.raises(category):  # in this run
        warnings.warn_explicit("deprecated", category, "f.py", 1, module=module)
    with warnings.catch_warnings():  # by pyproject's filters alone
        apply_ini_filters(pytestconfig)
        with pytest.raises(category):
            warnings.warn_explicit("deprecated", category, "f.py", 1, module=module)


@pytest.mark.parametrize("category", CATEGORIES)
@pytest.mark.parametrize("module", THEIRS)
def test_a_deprecation_raised_from_third_party_code_is_not(pytestconfig, category, module):
    with warnings.catch_warnings(record=True) as caught:
        apply_ini_filters(pytestconfig)
        warnings.warn_explicit("deprecated", category, "f.py", 1, module=module)
    assert [str(w.message) for w in caught] in ([], ["deprecated"])


# --- the checkers themselves catch what they should ----------------------------------------------


def test_an_undeclared_import_is_reported(tmp_path, packages):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "mod.py").write_text(
        "import os\nfrom . import x\nfrom pkg import y\nimport numpy as np\n"
        "def f():\n    import pandas\n    from no_such_module_xyz import z\n"
    )
    problems = undeclared_imports(tmp_path, ("pkg",), {"numpy"}, packages)
    assert problems == [
        "pkg/mod.py: import no_such_module_xyz (not installed)",
        "pkg/mod.py: import pandas (pandas)",
    ]
    assert undeclared_imports(tmp_path, ("pkg",), {"numpy", "pandas"}, packages) == [
        "pkg/mod.py: import no_such_module_xyz (not installed)"
    ]


def test_an_import_name_maps_to_its_distribution(tmp_path, packages):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("import PIL.Image\nfrom sklearn import metrics\n")
    assert undeclared_imports(tmp_path, ("pkg",), {"pillow", "scikit-learn"}, packages) == []
    assert undeclared_imports(tmp_path, ("pkg",), {"pil", "sklearn"}, packages) == [
        "pkg/mod.py: import PIL (pillow)",
        "pkg/mod.py: import sklearn (scikit-learn)",
    ]


def test_a_lock_that_misses_a_requirement_or_a_hash_is_reported(tmp_path):
    (tmp_path / "base.txt").write_text("numpy>=1.26  # arrays\npsycopg[binary]>=3.2\n")
    (tmp_path / "dev.txt").write_text("-r base.txt\npytest>=8\n")
    lock = tmp_path / "dev.lock"
    lock.write_text(
        "# pip-compile --generate-hashes\n"
        "numpy==1.25.0 \\\n    --hash=sha256:aaaa\n    # via -r base.txt\n"
        "psycopg==3.2.1 \\\n    --hash=sha256:bbbb \\\n    --hash=sha256:cccc\n"
        "six==1.17.0\n    # via python-dateutil\n"
        "rich>=13\n"
    )
    assert lock_problems(tmp_path / "dev.txt", lock) == [
        "dev.lock: six==1.17.0 has no --hash",
        "dev.lock: rich is not pinned with == (rich>=13)",
        "numpy>=1.26 (dev.txt) but dev.lock pins 1.25.0",
        "pytest>=8 (dev.txt) is not in dev.lock",
    ]
    assert lock_problems(tmp_path / "dev.txt", tmp_path / "absent.lock") == ["absent.lock is missing"]
