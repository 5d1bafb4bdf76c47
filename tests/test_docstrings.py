"""The module docstrings of explainers/ and stats/ stay short (the paper, the deviations, the shapes
and an example), and each link to docs/DECISIONS.md, where the measurements and longer reasons
went, names a heading that exists there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r'docs/DECISIONS\.md,\s+"([^"]+)"')
MAX_LINES = 65  # cdeepex.py opened with 125 before the measurements moved out


def module_docstrings() -> dict[str, str]:
    out = {}
    for package in ("explainers", "stats"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name != "render.py":
                out[str(path.relative_to(ROOT))] = ast.get_docstring(ast.parse(path.read_text()), clean=False) or ""
    return out


def test_module_docstrings_are_short():
    docs = module_docstrings()
    assert "explainers/cdeepex.py" in docs and "stats/power.py" in docs
    long = {path: doc.count("\n") + 1 for path, doc in docs.items() if doc.count("\n") + 1 > MAX_LINES}
    assert not long, long


def test_links_to_the_decisions_name_existing_headings():
    headings = set(re.findall(r"^#+ (.+)$", (ROOT / "docs" / "DECISIONS.md").read_text(), flags=re.M))
    links = {(path, name) for path, doc in module_docstrings().items() for name in LINK.findall(doc)}
    assert len(links) >= 8  # cdeepex, apem, xnn, gad, excitation_bp, deeplift, power, trial_model
    missing = sorted((path, name) for path, name in links if name not in headings)
    assert not missing, missing
