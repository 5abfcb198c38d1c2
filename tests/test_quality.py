"""Lint and the layering contracts (pyproject.toml: the layers of the house, and what domain packages, the BIDS layer,
the settings tree, reports and the CLI may import), function-level imports included."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    exe = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(exe).exists():
        pytest.skip(f"{name} not installed (pip install -e '.[test]')")
    return exe


def test_ruff_clean():
    proc = subprocess.run([_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_import_layering():
    proc = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]


#: Scratch imports placed inside a function, each an arrow that runs back up, and the line lint-imports must print.
_SCRATCH = {
    "glm/estimators.py": ("from bids_recon.bids.derivatives import find_outputs",
                          "bids_recon.glm.estimators -> bids_recon.bids.derivatives"),
    "bids/checks.py": ("from bids_recon.config import Config", "bids_recon.bids.checks -> bids_recon.config"),
    "config.py": ("from bids_recon.reports import html", "bids_recon.config -> bids_recon.reports.html"),
    "reports/html.py": ("import nipype", "bids_recon.reports.html -> nipype"),
    "naming.py": ("from bids_recon.decoding import encoding", "bids_recon.naming -> bids_recon.decoding.encoding"),
}


def test_the_contracts_see_imports_inside_functions(tmp_path):
    """A copy of the package with one function-level import back up in each of glm, bids, config, reports and the
    output names: lint-imports fails and names every one (the issue found such imports slipping through)."""
    exe = _tool("lint-imports")
    shutil.copytree(ROOT / "bids_recon", tmp_path / "bids_recon", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for path, (statement, _) in _SCRATCH.items():
        with open(tmp_path / "bids_recon" / path, "a") as handle:
            handle.write(f"\n\ndef _scratch():\n    {statement}  # noqa\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([exe, "--no-cache"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode != 0, proc.stdout[-3000:]
    missed = [line for _, line in _SCRATCH.values() if line not in proc.stdout]
    assert not missed, proc.stdout[-5000:]
    summary = re.search(r"Contracts: (\d+) kept, (\d+) broken", proc.stdout)
    assert summary and int(summary[2]) >= 5, proc.stdout[-3000:]  # layers, domain, bids, config, reports
