"""Nothing is written outside OUT and the work directory (issue 20): caches, temporary files, TemplateFlow.

The session's ``tiny_run`` (tests/conftest.py) runs the participant and group levels with ``HOME``,
``XDG_CACHE_HOME``, ``XDG_CONFIG_HOME``, ``TMPDIR`` and the current folder in fresh empty folders, and lists every
file of its inputs (raw dataset, fMRIPrep, TemplateFlow folder) before and after.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

from bids_recon.cli.confine import CACHE_VARIABLES, confine_writes, confined
from bids_recon.errors import BadDataError, MissingInputError, UsageError
from bids_recon.rois.atlas import templateflow_file
from bids_recon.rois.templates import find_template_files, templateflow_home
from tests.conftest import file_states


def _changes(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    return ([f"created {p}" for p in sorted(after.keys() - before.keys())]
            + [f"removed {p}" for p in sorted(before.keys() - after.keys())]
            + [f"changed {p}" for p in sorted(before.keys() & after.keys()) if before[p] != after[p]])


def test_runs_write_nothing_outside_out_and_work(tiny_run) -> None:
    assert tiny_run["participant"].returncode == 0, tiny_run["participant"].stderr[-3000:]
    assert tiny_run["group"].returncode == 0, tiny_run["group"].stderr[-3000:]
    written = {name: sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
               for name, folder in tiny_run["outside"].items()}
    assert not any(written.values()), f"written outside OUT and the work dir: {written}"
    changed = {folder: _changes(before, tiny_run["inputs_after"][folder])
               for folder, before in tiny_run["inputs_before"].items()}
    assert not any(changed.values()), f"inputs changed (TemplateFlow, raw, fMRIPrep): {changed}"
    cache = tiny_run["work"] / "cache"
    assert (cache / "matplotlib").is_dir() and (cache / "deno").is_dir()  # the writers ran, into the work dir


def _template_home(root: Path) -> Path:
    """A TemplateFlow folder as templateflow's skeleton lays it out: the atlas a 0-byte placeholder."""
    tpl = root / "tpl-MNI152NLin2009cAsym"
    tpl.mkdir(parents=True)
    (tpl / "tpl-MNI152NLin2009cAsym_res-02_atlas-HOCPA_desc-th25_dseg.nii.gz").write_bytes(b"")
    (tpl / "tpl-MNI152NLin2009cAsym_res-01_atlas-HOCPA_desc-th25_dseg.nii.gz").write_bytes(b"x")
    (tpl / "tpl-MNI152NLin2009cAsym_res-02_desc-brain_mask.nii.gz").write_bytes(b"mask")
    (tpl / "tpl-MNI152NLin2009cAsym_res-02_label-brain_probseg.nii.gz").write_bytes(b"prob")
    (tpl / "cohort-1").mkdir()
    (tpl / "cohort-1" / "tpl-MNI152NLin2009cAsym_cohort-1_res-02_desc-brain_mask.nii.gz").write_bytes(b"c")
    return root


def test_templateflow_lookup_reads_files_without_importing_templateflow(tmp_path, monkeypatch) -> None:
    """TemplateFlow's matching (``resolution=2`` is ``res-02``; entities not asked for are free), read-only, with
    ``import templateflow`` made impossible; a placeholder is exit 66 naming bids_recon-fetch."""
    home = _template_home(tmp_path / "tf")
    monkeypatch.setitem(sys.modules, "templateflow", None)  # any import of it raises ImportError
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(home))
    before = file_states(home)
    assert templateflow_home() == home
    tpl = home / "tpl-MNI152NLin2009cAsym"
    found = templateflow_file("MNI152NLin2009cAsym", resolution=1, atlas="HOCPA", desc="th25", suffix="dseg",
                              extension="nii.gz")
    assert found == tpl / "tpl-MNI152NLin2009cAsym_res-01_atlas-HOCPA_desc-th25_dseg.nii.gz"
    masks = find_template_files("MNI152NLin2009cAsym", {"resolution": "02", "desc": "brain", "suffix": "mask"})
    assert [p.name for p in masks] == ["tpl-MNI152NLin2009cAsym_cohort-1_res-02_desc-brain_mask.nii.gz",
                                       "tpl-MNI152NLin2009cAsym_res-02_desc-brain_mask.nii.gz"]
    assert find_template_files("MNI152NLin2009cAsym", {"cohort": None, "resolution": 2, "suffix": "mask"}) == [
        tpl / "tpl-MNI152NLin2009cAsym_res-02_desc-brain_mask.nii.gz"]
    with pytest.raises(BadDataError, match="matches 2 files"):
        templateflow_file("MNI152NLin2009cAsym", resolution=2, desc="brain", suffix="mask")
    with pytest.raises(MissingInputError) as placeholder:
        templateflow_file("MNI152NLin2009cAsym", resolution=2, atlas="HOCPA", desc="th25", suffix="dseg",
                          extension=".nii.gz")
    message = str(placeholder.value)
    assert placeholder.value.exit_code == 66 and "empty placeholder" in message
    assert f"TEMPLATEFLOW_HOME={home}" in message and "bids_recon-fetch" in message
    with pytest.raises(MissingInputError, match="is not on disk"):
        templateflow_file("MNI152NLin6Asym", atlas="HOCPA", suffix="dseg", extension=".tsv")
    assert file_states(home) == before


def test_confine_writes_moves_caches_and_keeps_the_stores(tmp_path) -> None:
    """Caches and TMPDIR go into WORK (TMPDIR and XDG_CACHE_HOME even when set); a cache variable the user set is
    kept; the model, weight and TemplateFlow stores stay where the user's XDG_CACHE_HOME put them."""
    user_cache, mpl = tmp_path / "usercache", tmp_path / "my_mpl"
    environ = {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(user_cache), "TMPDIR": "/scratch/job",
               "MPLCONFIGDIR": str(mpl), "HF_HOME": "/models/hf"}
    work = tmp_path / "work"
    changed = confine_writes(work, environ)
    assert environ["TMPDIR"] == str(work / "tmp") and (work / "tmp").is_dir()
    assert environ["XDG_CACHE_HOME"] == str(work / "cache")
    assert environ["MPLCONFIGDIR"] == str(mpl) and "MPLCONFIGDIR" not in changed
    assert environ["DENO_DIR"] == str(work / "cache" / "deno")
    assert all(environ[v].startswith(str(work)) for v in CACHE_VARIABLES if v != "MPLCONFIGDIR")
    assert environ["HF_HOME"] == "/models/hf" and "HF_HOME" not in changed
    assert environ["TORCH_HOME"] == str(user_cache / "torch")
    if sys.platform.startswith("linux"):
        assert environ["TEMPLATEFLOW_HOME"] == str(user_cache / "templateflow")
    assert not mpl.exists() and not user_cache.exists()  # nothing made outside WORK


def test_confined_restores_the_environment_and_leaves_no_unused_work_dir(tmp_path) -> None:
    """In-process callers (tests, notebooks) get their environment back; a work dir made only for the caches (no
    workflow ran: --check-only, refused inputs, the group level) is removed, one a workflow used is kept."""
    before = dict(os.environ)
    with confined(tmp_path / "unused") as changed:
        assert tempfile.gettempdir() == changed["TMPDIR"] == str(tmp_path / "unused" / "tmp")
        (tmp_path / "unused" / "cache" / "matplotlib").mkdir()
    assert dict(os.environ) == before and tempfile.gettempdir() != changed["TMPDIR"]
    assert not (tmp_path / "unused").exists()
    with confined(tmp_path / "used"):
        (tmp_path / "used" / "bids_recon_wf").mkdir()
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == ["bids_recon_wf", "cache", "tmp"]
    (tmp_path / "file").write_text("")  # a work dir that cannot be made (as /work on a read-only container)
    with pytest.raises(UsageError, match="choose another -w"), confined(tmp_path / "file" / "work"):
        pass
    with confined(tmp_path / "file" / "work", tmp_path / "out" / "logs" / ".cache-1") as changed:  # group level
        assert changed["TMPDIR"] == str(tmp_path / "out" / "logs" / ".cache-1" / "tmp")
    assert dict(os.environ) == before and [p.name for p in (tmp_path / "out" / "logs").iterdir()] == []
