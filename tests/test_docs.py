"""The documentation site builds with warnings as errors, and its generated pages match the code."""

from __future__ import annotations

import html
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bids_recon.cli.parser import build_parser
from bids_recon.cli.reference import render_markdown

ROOT = Path(__file__).resolve().parents[1]


def _options() -> list[str]:
    return [flag for action in build_parser()._actions for flag in action.option_strings
            if flag not in ("-h", "--help")]


def test_cli_reference_lists_every_option():
    text = render_markdown()
    for flag in _options():
        assert f"`{flag}" in text, flag
    assert "<!-- cli-reference -->" in (ROOT / "docs/cli.md").read_text(), "docs/cli.md must be generated"


def _pages(nav) -> set[str]:
    """Every page of a (nested) MkDocs navigation."""
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, dict):
        return set().union(*(_pages(v) for v in nav.values()))
    return set().union(*(_pages(v) for v in nav))


def test_every_docs_page_is_in_the_navigation():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    in_nav = _pages(config["nav"])
    on_disk = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert on_disk == in_nav, (on_disk - in_nav, in_nav - on_disk)


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs is not installed (pip install -e .[test])")
def test_docs_build_strict(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(site)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cli_page = html.unescape((site / "cli" / "index.html").read_text())
    for flag in _options():
        assert flag in cli_page, flag
    assert "<!-- include:" not in (site / "hpc" / "index.html").read_text()
    assert "#SBATCH" in html.unescape((site / "hpc" / "index.html").read_text())
    api = (site / "api" / "index.html").read_text()  # generated from the docstrings of the domain packages
    for name in ("bids_recon.glm.fit_session", "bids_recon.glm.GlmParams", "bids_recon.rois.build_rois",
                 "bids_recon.decoding.train_and_decode", "bids_recon.evaluate.evaluate_reconstructions",
                 "bids_recon.generate.diffusion.DiffusionParams", "bids_recon.sim.simulate_dataset"):
        assert f'id="{name}"' in api, name
    settings = html.unescape((site / "settings" / "index.html").read_text())
    assert "<!-- settings-reference -->" not in settings
    for table in ("[workflow.glm]", "[workflow.generate.diffusion]", "[workflow.generate.linear]", "[nipype]"):
        assert table in settings, table


def test_settings_reference_lists_every_setting():
    from bids_recon.cli.reference import render_settings_markdown
    from bids_recon.config import Config, flatten

    text = render_settings_markdown()
    for key, _ in flatten(Config().to_dict()):
        if key.startswith("environment."):
            continue
        table, _, name = key.rpartition(".")
        assert f"## `[{table}]`" in text and f"| `{name}` |" in text, key


def test_architecture_page_lists_every_registered_kind():
    from bids_recon.cli.reference import render_kinds_markdown
    from bids_recon.registry import ALL

    text = render_kinds_markdown()
    for registry in ALL:
        for key, entry in registry.items():
            assert f"| `{key}` | `{(entry if isinstance(entry, type) else type(entry)).__module__}` |" in text, key
    assert "<!-- kinds-reference -->" in (ROOT / "docs/architecture.md").read_text()
