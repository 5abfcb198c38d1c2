"""Exit codes and selections on real (simulated) data: bad data, invalid BIDS, filters, config files."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_recon.bids.layout import collect_inputs
from bids_recon.cli.parser import build_parser
from bids_recon.cli.run import build_config
from bids_recon.config import Config
from bids_recon.errors import EmptySelectionError
from tests.conftest import bids_validator, run_cli


@pytest.fixture
def dataset_copy(tiny_dataset, tmp_path):
    """A writable copy of the tiny dataset (raw + fMRIPrep inside it)."""
    bids = tmp_path / "ds"
    shutil.copytree(tiny_dataset.bids_dir, bids)
    return bids


def _participant(bids, out, templateflow, *extra):
    return run_cli([str(bids), str(out), "participant", "-d", f"fmriprep={bids / 'derivatives' / 'fmriprep'}",
                    "-w", str(out.parent / "work"), "--participant-label", "01", *extra], templateflow)


@pytest.mark.slow
def test_confounds_with_too_few_rows_is_65(dataset_copy, tiny_dataset, tmp_path):
    confounds = sorted((dataset_copy / "derivatives" / "fmriprep").rglob("*run-01_desc-confounds_timeseries.tsv"))[0]
    table = pd.read_csv(confounds, sep="\t")
    table.iloc[:-5].to_csv(confounds, sep="\t", index=False, na_rep="n/a")
    proc = _participant(dataset_copy, tmp_path / "out", tiny_dataset.templateflow_dir, "--skip-bids-validation")
    assert proc.returncode == 65, proc.stderr[-3000:]
    assert confounds.name in proc.stderr and "rows" in proc.stderr
    # nothing that looks complete: no report, no metrics
    assert not (tmp_path / "out" / "sub-01.html").exists()


@pytest.mark.slow
def test_invalid_bids_is_16(dataset_copy, tiny_dataset, tmp_path):
    if bids_validator() is None:
        pytest.skip("bids-validator-deno is not installed")
    description = dataset_copy / "dataset_description.json"
    data = json.loads(description.read_text())
    del data["Name"]  # a required field
    description.write_text(json.dumps(data))
    (dataset_copy / "sub-01" / "ses-01" / "func" / "sub-01_ses-01_task-images_run-01_notasuffix.txt").write_text("x")
    proc = _participant(dataset_copy, tmp_path / "out", tiny_dataset.templateflow_dir)
    assert proc.returncode == 16, proc.stderr[-3000:]
    assert "BIDS validator" in proc.stderr


def test_session_and_filters_select_runs(tiny_dataset, tmp_path):
    both = collect_inputs(tiny_dataset.bids_dir, tiny_dataset.fmriprep_dir)
    assert set(both) == set(tiny_dataset.subjects)
    one_run = collect_inputs(tiny_dataset.bids_dir, tiny_dataset.fmriprep_dir, ["sub-01"],
                             bids_filters={"bold": {"run": [1]}})
    assert list(one_run) == ["01"] and [r.run for r in one_run["01"].runs] == ["01"]
    assert all(r.repetition_time == 1.5 for r in both["01"].runs)
    with pytest.raises(EmptySelectionError):
        collect_inputs(tiny_dataset.bids_dir, tiny_dataset.fmriprep_dir, session_label=["99"])
    with pytest.raises(EmptySelectionError, match="task 'rest'"):
        collect_inputs(tiny_dataset.bids_dir, tiny_dataset.fmriprep_dir, task="rest")


@pytest.mark.slow
def test_filter_file_selecting_nothing_is_18(tiny_dataset, tmp_path):
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"bold": {"run": [7]}}))
    proc = _participant(tiny_dataset.bids_dir, tmp_path / "out", tiny_dataset.templateflow_dir,
                        "--skip-bids-validation", "--bids-filter-file", str(filters))
    assert proc.returncode == 18, proc.stderr[-2000:]


def test_config_file_and_flags(tmp_path):
    config = Config()
    config.workflow.generate.linear.n_components = 7
    config.workflow.generate.linear.image_size = 40
    config.execution.random_seed = 3
    path = config.save(tmp_path / "saved.toml")
    parser = build_parser()
    args = parser.parse_args([str(tmp_path / "ds"), str(tmp_path / "out"), "participant", "--config-file", str(path),
                              "--image-size", "48", "--roi-mask", "earlyvisual=/data/v1.nii.gz:1",
                              "--roi-mask", "highervisual=masks/v4.nii.gz"])
    merged = build_config(args, parser)
    assert merged.workflow.generate.linear.n_components == 7  # from the file
    assert merged.workflow.generate.linear.image_size == 48  # the flag wins
    assert merged.execution.random_seed == 3
    assert merged.workflow.rois.user_masks == {"earlyvisual": "/data/v1.nii.gz:1",  # relative: made absolute
                                               "highervisual": str(Path("masks/v4.nii.gz").absolute())}


def _roi_mask(kind: str, brain: Path) -> nib.Nifti1Image:
    """A user ROI mask: all zeros, 5 brain voxels, or a finer grid whose voxels all lie outside the BOLD field."""
    img = nib.load(brain)
    data = np.zeros(img.shape, np.uint8)
    if kind == "few-voxels":
        for i, j, k in np.argwhere(np.asarray(img.dataobj) > 0)[:5]:
            data[i, j, k] = 1
        return nib.Nifti1Image(data, img.affine)
    if kind == "outside-after-resampling":
        affine = np.diag([1.0, 1.0, 1.0, 1.0])
        affine[:3, 3] = img.affine[:3, 3] + 1000.0  # 1 m away: nothing survives resampling to the BOLD grid
        return nib.Nifti1Image(np.ones((10, 10, 10), np.uint8), affine)
    return nib.Nifti1Image(data, img.affine)


@pytest.mark.spread
@pytest.mark.slow
@pytest.mark.parametrize(("kind", "count"), [("empty", 0), ("few-voxels", 5), ("outside-after-resampling", 0)])
def test_user_roi_mask_too_small_is_65(kind, count, dataset_copy, tiny_dataset, tmp_path):
    """--roi-mask replaces the atlas ROI: a mask with fewer than the minimum voxels in the brain is refused (65)."""
    brain = sorted((dataset_copy / "derivatives" / "fmriprep").rglob("*desc-brain_mask.nii.gz"))[0]
    mask = tmp_path / f"{kind}.nii.gz"
    nib.save(_roi_mask(kind, brain), mask)
    proc = _participant(dataset_copy, tmp_path / "out", tiny_dataset.templateflow_dir, "--skip-bids-validation",
                        "--roi-mask", f"earlyvisual={mask}")
    assert proc.returncode == 65, proc.stderr[-3000:]
    assert mask.name in proc.stderr and "earlyvisual" in proc.stderr, proc.stderr[-3000:]
    if kind == "outside-after-resampling":  # nothing of it inside the BOLD's brain: another space, both files named
        assert "another space" in proc.stderr and "desc-preproc_bold" in proc.stderr, proc.stderr[-3000:]
    else:
        assert f"has {count} voxels" in proc.stderr and "minimum 20" in proc.stderr, proc.stderr[-3000:]
    assert not list((tmp_path / "work").rglob("result_*.pklz"))  # found before any workflow node ran


@pytest.mark.slow
def test_malformed_test_split_is_64(dataset_copy, tiny_dataset, tmp_path):
    """A --test-split that is not a rule stops at once (the rules themselves run end to end in test_layouts.py:
    THINGS' trial_type=test, NSD's shared1000, GOD's test session)."""
    bad = _participant(dataset_copy, tmp_path / "bad", tiny_dataset.templateflow_dir, "--test-split", "set")
    assert bad.returncode == 64 and "COLUMN=VALUE" in bad.stderr, bad.stderr[-2000:]
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_check_only_checks_without_computing(dataset_copy, tiny_dataset, tmp_path):
    """--check-only: 0 on good inputs, nothing computed; the preflight's exit code on bad ones."""
    good = _participant(dataset_copy, tmp_path / "good", tiny_dataset.templateflow_dir, "--skip-bids-validation",
                        "--check-only")
    assert good.returncode == 0, good.stderr[-3000:]
    assert "--check-only: inputs and workflow" in good.stderr
    assert [p.name for p in (tmp_path / "good").iterdir()] == ["logs"] and not (tmp_path / "work").exists()
    assert list((tmp_path / "good" / "logs").glob("*/CITATION.md"))  # the methods text is written
    saved = next((tmp_path / "good" / "logs").glob("*/bids_recon.toml"))
    assert tomllib.loads(saved.read_text())["execution"]["check_only"] is True  # recorded, as every setting
    assert Config.load(saved).execution.check_only is False  # but never read back from a file
    parser = build_parser()
    rerun = parser.parse_args([str(dataset_copy), str(tmp_path / "good"), "participant", "--config-file", str(saved)])
    assert build_config(rerun, parser).execution.check_only is False  # a saved configuration reruns for real
    events = sorted((dataset_copy / "sub-01").rglob("*_events.tsv"))[0]
    table = pd.read_csv(events, sep="\t", keep_default_na=False)
    table.loc[0, "stim_file"] = "missing.png"
    table.to_csv(events, sep="\t", index=False)
    bad = _participant(dataset_copy, tmp_path / "bad", tiny_dataset.templateflow_dir, "--skip-bids-validation",
                       "--check-only")
    assert bad.returncode == 66 and "missing.png" in bad.stderr, bad.stderr[-3000:]
