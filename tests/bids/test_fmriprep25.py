"""fMRIPrep 23.2-25.x derivatives as input: the names fMRIPrep writes today, its processing levels, BIDS-URI Sources
and per-session anatomical references.

The trees are written here with the names fMRIPrep's own CI expects (nipreps/fmriprep ``.circleci/ds054_outputs.txt``,
``ds005_partial_outputs.txt``, ``ds210_outputs.txt``, branch maint/25.2.x) and those of a published fMRIPrep 25.1.4
dataset (spatialtopology/ds005256-fmriprep: ``acq-`` in the run names, anatomy in ``ses-01/anat``, ``space-`` without
``res-``, sidecars with ``bids:raw:`` Sources). Images are 4x4x4 voxels.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_recon.bids.checks import check_run_files
from bids_recon.bids.fmriprep import (
    anatomical_references,
    fit_only_runs,
    index_subject,
    parse_derivative,
    raw_sources,
    scan_spaces,
    spaces_of,
)
from bids_recon.bids.layout import collect_inputs
from bids_recon.errors import BadDataError, MissingInputError

TR = 2.0
N_VOLS = 10
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
MNI = "MNI152NLin2009cAsym"
VERSION = "25.2.5"


def _nifti(path: Path, shape: tuple[int, ...], dtype: type = np.float32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(np.ones(shape, dtype=dtype), AFFINE)
    image.header.set_xyzt_units("mm", "sec")
    if len(shape) == 4:
        image.header.set_zooms((2.0, 2.0, 2.0, TR))
    image.to_filename(path)


def _json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2))


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")


def _stem(session: str | None, run: str, acq: str | None = None) -> str:
    return "_".join(p for p in ("sub-01", f"ses-{session}" if session else "", "task-images",
                                f"acq-{acq}" if acq else "", f"run-{run}") if p)


def _folder(root: Path, session: str | None, datatype: str = "func") -> Path:
    return root / "sub-01" / (f"ses-{session}" if session else "") / datatype


def write_raw(bids: Path, sessions: list[str | None], runs: tuple[str, ...] = ("01",), echoes: int = 0,
              acq: str | None = None) -> None:
    """A raw dataset: BOLD (one file per echo when ``echoes``), sidecar and events per run."""
    _json(bids / "dataset_description.json", {"Name": "fmriprep25 test", "BIDSVersion": "1.10.0"})
    for session in sessions:
        for run in runs:
            stem = _stem(session, run, acq)
            func = _folder(bids, session)
            for echo in range(1, echoes + 1) if echoes else [None]:
                name = stem + (f"_echo-{echo}" if echo else "")
                _nifti(func / f"{name}_bold.nii.gz", (4, 4, 4, N_VOLS), np.int16)
                _json(func / f"{name}_bold.json", {"RepetitionTime": TR, "TaskName": "images"}
                      | ({"EchoTime": 0.012 * echo} if echo else {}))
            pd.DataFrame({"onset": [2.0, 8.0, 14.0], "duration": 1.0, "stim_file": ["a.png", "b.png", "a.png"]}
                         ).to_csv(func / f"{stem}_events.tsv", sep="\t", index=False)


def write_fmriprep(root: Path, sessions: list[str | None], runs: tuple[str, ...] = ("01",), level: str = "full",
                   spaces: tuple[tuple[str, str | None], ...] = ((MNI, "2"), ("T1w", None)), echoes: int = 0,
                   acq: str | None = None, anatomy: str = "first-lex", version: str = VERSION,
                   sources: dict[str, str] | None = None, start_time: float | None = None) -> None:
    """An fMRIPrep 25 tree as ``fmriprep --level LEVEL --output-spaces SPACES`` writes it.

    ``level`` ``minimal``/``resampling``: fit outputs only (plus, for ``resampling`` of multi-echo runs, per-echo series
    in the boldref grid). ``anatomy`` ``sessionwise``: one anatomical reference per session. ``sources``: run ->
    another raw path to name in the preprocessed BOLD's ``Sources``. ``start_time``: slice timing was corrected.
    """
    _json(root / "dataset_description.json", {
        "Name": "fMRIPrep - fMRI PREProcessing workflow", "BIDSVersion": "1.4.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "fMRIPrep", "Version": version,
                         "CodeURL": f"https://github.com/nipreps/fmriprep/archive/{version}.tar.gz"}],
        "DatasetLinks": {"raw": "/data", "templateflow": "https://github.com/templateflow/templateflow"}})
    anat_sessions = sessions if anatomy == "sessionwise" else [None]
    for session in anat_sessions:
        prefix = "sub-01" + (f"_ses-{session}" if session else "")
        anat = _folder(root, session, "anat")
        _nifti(anat / f"{prefix}_desc-preproc_T1w.nii.gz", (4, 4, 4))
        _nifti(anat / f"{prefix}_desc-brain_mask.nii.gz", (4, 4, 4), np.uint8)
        _nifti(anat / f"{prefix}_space-{MNI}_desc-preproc_T1w.nii.gz", (4, 4, 4))
        _touch(anat / f"{prefix}_from-T1w_to-{MNI}_mode-image_xfm.h5")
        _touch(anat / f"{prefix}_from-{MNI}_to-T1w_mode-image_xfm.h5")
    _nifti(root / "sub-01" / "fmap" / "sub-01_fmapid-auto00000_desc-preproc_fieldmap.nii.gz", (4, 4, 4))
    for session in sessions:
        for run in runs:
            stem = _stem(session, run, acq)
            func = _folder(root, session)
            rel = f"sub-01/{'ses-' + session + '/' if session else ''}func"
            hmc = f"{stem}_from-orig_to-boldref_mode-image_desc-hmc_xfm"
            coreg = f"{stem}_from-boldref_to-T1w_mode-image_desc-coreg_xfm"
            for desc in ("hmc", "coreg"):
                _nifti(func / f"{stem}_desc-{desc}_boldref.nii.gz", (4, 4, 4))
                _json(func / f"{stem}_desc-{desc}_boldref.json", {"Sources": [f"bids:raw:{rel}/{stem}_bold.nii.gz"]})
            _nifti(func / f"{stem}_desc-brain_mask.nii.gz", (4, 4, 4), np.uint8)
            for xfm in (hmc, coreg, f"{stem}_from-boldref_to-auto00000_mode-image_desc-fmap_xfm"):
                _touch(func / f"{xfm}.txt")
                _json(func / f"{xfm}.json", {"Sources": [f"bids::{rel}/{stem}_desc-hmc_boldref.nii.gz"]})
            raw_names = [f"{stem}_echo-{e}_bold.nii.gz" for e in range(1, echoes + 1)] if echoes \
                else [f"{stem}_bold.nii.gz"]
            if level == "resampling" and echoes:
                for echo in range(1, echoes + 1):
                    _nifti(func / f"{stem}_echo-{echo}_desc-preproc_bold.nii.gz", (4, 4, 4, N_VOLS))
            if level != "full":
                continue
            for space, res in spaces:
                entities = f"{stem}_space-{space}" + (f"_res-{res}" if res else "")
                _nifti(func / f"{entities}_desc-preproc_bold.nii.gz", (4, 4, 4, N_VOLS))
                named = [sources[run]] if sources and run in sources else [f"{rel}/{n}" for n in raw_names]
                _json(func / f"{entities}_desc-preproc_bold.json", {
                    "RepetitionTime": TR, "SkullStripped": False, "SliceTimingCorrected": start_time is not None,
                    "TaskName": "images"} | ({"StartTime": start_time} if start_time is not None else {}) | {
                    "Sources": [f"bids:raw:{n}" for n in named] + [
                        f"bids::{rel}/{hmc}.txt", f"bids::{rel}/{coreg}.txt",
                        f"bids::sub-01/anat/sub-01_from-T1w_to-{space}_mode-image_xfm.h5",
                        f"bids:templateflow:tpl-{space}/tpl-{space}_res-02_T1w.nii.gz"]})
                _nifti(func / f"{entities}_boldref.nii.gz", (4, 4, 4))
                _nifti(func / f"{entities}_desc-brain_mask.nii.gz", (4, 4, 4), np.uint8)
            _nifti(func / f"{stem}_space-T1w_desc-goodvoxels_mask.nii.gz", (4, 4, 4), np.uint8)
            for hemi in "LR":
                _touch(func / f"{stem}_hemi-{hemi}_space-fsaverage5_bold.func.gii")
            _touch(func / f"{stem}_space-fsLR_den-91k_bold.dtseries.nii")
            _json(func / f"{stem}_space-fsLR_den-91k_bold.json", {"RepetitionTime": TR})
            confounds = pd.DataFrame({"trans_x": np.zeros(N_VOLS), "rot_z": 0.0, "csf": 1.0,
                                      "framewise_displacement": ["n/a"] + [0.1] * (N_VOLS - 1)})
            confounds.to_csv(func / f"{stem}_desc-confounds_timeseries.tsv", sep="\t", index=False)
            _json(func / f"{stem}_desc-confounds_timeseries.json", {"trans_x": {"Description": "x"}})


@pytest.fixture
def dataset(tmp_path: Path):
    """``dataset(sessions, **options)`` -> (raw BIDS folder, fMRIPrep folder)."""
    def make(sessions: list[str | None], raw_runs: tuple[str, ...] = ("01",), **options):
        bids = tmp_path / "ds"
        write_raw(bids, sessions, raw_runs, options.get("echoes", 0), options.get("acq"))
        fmriprep = bids / "derivatives" / "fmriprep"
        write_fmriprep(fmriprep, sessions, options.pop("runs", raw_runs), **options)
        return bids, fmriprep

    return make


# --------------------------------------------------------------------------------------------------------------------
# names


def test_names_of_fmriprep_25_parse_and_only_volumes_count_as_spaces(dataset):
    _, fmriprep = dataset(["01"])
    func = fmriprep / "sub-01" / "ses-01" / "func"
    stem = "sub-01_ses-01_task-images_run-01"
    xfm = parse_derivative(func / f"{stem}_from-orig_to-boldref_mode-image_desc-hmc_xfm.txt")
    assert (xfm.suffix, xfm.extension, xfm.entities["from"], xfm.entities["to"], xfm.entities["desc"]) == \
        ("xfm", ".txt", "orig", "boldref", "hmc")
    cifti = parse_derivative(func / f"{stem}_space-fsLR_den-91k_bold.dtseries.nii")
    assert (cifti.suffix, cifti.extension, cifti.entities["density"]) == ("bold", ".dtseries.nii", "91k")
    gifti = parse_derivative(func / f"{stem}_hemi-L_space-fsaverage5_bold.func.gii")
    assert (gifti.entities["hemi"], gifti.extension) == ("L", ".func.gii")
    files = index_subject(fmriprep, "01")
    # surfaces and CIFTI are not volumes: only MNI res-2 and T1w are offered
    assert spaces_of(files) == [(MNI, "2"), ("T1w", None)]
    assert scan_spaces(fmriprep) == [(MNI, "2"), ("T1w", None)]
    assert fit_only_runs(files) == []


@pytest.mark.parametrize("space,res,prefix", [(MNI, "2", f"space-{MNI}_res-2"), ("T1w", None, "space-T1w")])
def test_full_level_outputs_of_fmriprep_25_are_found_in_the_asked_space(dataset, space, res, prefix):
    bids, fmriprep = dataset(["01", "02"], raw_runs=("01", "02"))
    inputs = collect_inputs(bids, fmriprep, space=space, resolution=res)
    runs = inputs["01"].runs
    assert [(r.session, r.run) for r in runs] == [("01", "01"), ("01", "02"), ("02", "01"), ("02", "02")]
    for run in runs:
        stem = f"sub-01_ses-{run.session}_task-images_run-{run.run}"
        assert run.preproc_bold.name == f"{stem}_{prefix}_desc-preproc_bold.nii.gz"
        assert run.brain_mask.name == f"{stem}_{prefix}_desc-brain_mask.nii.gz"  # not the boldref-grid mask
        assert run.boldref.name == f"{stem}_{prefix}_boldref.nii.gz"  # not desc-hmc/desc-coreg
        assert run.confounds.name == f"{stem}_desc-confounds_timeseries.tsv"
        assert run.repetition_time == TR
    assert check_run_files(runs[0], ["trans_x", "rot_z"])[0] == N_VOLS


def test_fmriprep_25_1_names_without_res_and_with_acq_are_read(dataset):
    """ds005256-fmriprep (25.1.4): ``--output-spaces MNI152NLin2009cAsym`` gives no ``res-``; runs carry ``acq-``;
    the only T1w was in ses-01, so the one anatomical reference is named and filed under ses-01."""
    bids, fmriprep = dataset(["01", "02"], acq="mb8", spaces=((MNI, None),), version="25.1.4")
    for res in (None, "2"):  # a name without res- is taken when no file has the res- asked for
        runs = collect_inputs(bids, fmriprep, space=MNI, resolution=res)["01"].runs
        assert [r.preproc_bold.name for r in runs] == [
            f"sub-01_ses-{s}_task-images_acq-mb8_run-01_space-{MNI}_desc-preproc_bold.nii.gz" for s in ("01", "02")]


# --------------------------------------------------------------------------------------------------------------------
# processing levels


@pytest.mark.parametrize("space,res,flags", [(MNI, "2", f"--level full --output-spaces {MNI}:res-2"),
                                             ("T1w", None, "--level full --output-spaces T1w")])
def test_minimal_level_derivatives_are_refused_with_the_fmriprep_command_to_rerun(dataset, space, res, flags):
    bids, fmriprep = dataset(["01"], raw_runs=("01", "02"), level="minimal")
    with pytest.raises(MissingInputError) as caught:
        collect_inputs(bids, fmriprep, space=space, resolution=res)
    message = str(caught.value)
    assert caught.value.exit_code == 66, message
    assert "sub-01_ses-01_task-images_run-01_bold.nii.gz" in message, message
    assert f"fMRIPrep {VERSION} wrote only its fit outputs" in message, message
    assert "--level minimal or --level resampling" in message and flags in message, message
    assert "so did 1 other run(s)" in message, message
    assert str(fmriprep) in message, message


def test_resampling_level_of_multi_echo_runs_is_refused_naming_its_per_echo_series(dataset):
    bids, fmriprep = dataset(["01"], level="resampling", echoes=2)
    with pytest.raises(MissingInputError) as caught:
        collect_inputs(bids, fmriprep, space=MNI, resolution="2")
    message = str(caught.value)
    assert "sub-01_ses-01_task-images_run-01_echo-1_bold.nii.gz" in message, message
    assert "sub-01_ses-01_task-images_run-01_echo-1_desc-preproc_bold.nii.gz" in message, message
    assert f"--level full --output-spaces {MNI}:res-2" in message, message


def test_a_run_left_at_minimal_level_beside_full_ones_is_named(dataset, tmp_path):
    """Like fMRIPrep's ds005_partial: one run rerun at another level. The full run is read, the minimal one named."""
    bids, fmriprep = dataset(["01"], raw_runs=("01", "02"), runs=("01",))
    write_fmriprep(fmriprep, ["01"], ("02",), level="minimal")
    with pytest.raises(MissingInputError) as caught:
        collect_inputs(bids, fmriprep, space=MNI, resolution="2")
    message = str(caught.value)
    assert "run-02_bold.nii.gz" in message and "run-01_bold" not in message, message
    assert "fit outputs" in message and "other run" not in message, message
    assert [f.path.name for f in fit_only_runs(index_subject(fmriprep, "01"))] == [
        "sub-01_ses-01_task-images_run-02_desc-coreg_boldref.nii.gz"]


def test_full_level_without_the_asked_space_names_the_spaces_there_not_the_level(dataset):
    bids, fmriprep = dataset(["01"], spaces=(("MNI152NLin6Asym", "2"),))
    with pytest.raises(MissingInputError) as caught:
        collect_inputs(bids, fmriprep, space=MNI, resolution="2")
    message = str(caught.value)
    assert "space-MNI152NLin6Asym res-2" in message and "--space MNI152NLin6Asym --res 2" in message, message
    assert "--level" not in message, message


def test_old_fmriprep_without_fit_outputs_gets_no_level_advice(dataset):
    """fMRIPrep 20.2 wrote no desc-hmc/desc-coreg outputs: a missing space is a missing space, not a level."""
    bids, fmriprep = dataset(["01"], spaces=(("T1w", None),), version="20.2.7")
    for path in fmriprep.rglob("*desc-hmc*"):
        path.unlink()
    for path in fmriprep.rglob("*desc-coreg*"):
        path.unlink()
    with pytest.raises(MissingInputError) as caught:
        collect_inputs(bids, fmriprep, space=MNI, resolution="2")
    assert "--level" not in str(caught.value) and "space-T1w (no res-)" in str(caught.value)


# --------------------------------------------------------------------------------------------------------------------
# Sources and DatasetLinks


def test_sources_name_the_raw_run_in_the_sidecar(dataset):
    _, fmriprep = dataset(["01"], echoes=2)
    sidecar = next(fmriprep.rglob(f"*run-01_space-{MNI}_res-2_desc-preproc_bold.json"))
    assert raw_sources(sidecar) == [f"sub-01/ses-01/func/sub-01_ses-01_task-images_run-01_echo-{e}_bold.nii.gz"
                                    for e in (1, 2)]
    assert raw_sources(next(fmriprep.rglob("*run-01_space-fsLR_den-91k_bold.json"))) is None  # none named


def test_multi_echo_full_level_is_read_from_its_first_echo(dataset):
    bids, fmriprep = dataset(["01"], echoes=2)
    (run,) = collect_inputs(bids, fmriprep, space=MNI, resolution="2")["01"].runs
    assert run.raw_bold.name == "sub-01_ses-01_task-images_run-01_echo-1_bold.nii.gz"
    assert run.preproc_bold.name == f"sub-01_ses-01_task-images_run-01_space-{MNI}_res-2_desc-preproc_bold.nii.gz"


def test_a_derivative_whose_sources_name_another_run_is_refused(dataset):
    other = "sub-01/ses-01/func/sub-01_ses-01_task-images_run-02_bold.nii.gz"
    bids, fmriprep = dataset(["01"], raw_runs=("01", "02"), sources={"01": other})
    with pytest.raises(BadDataError) as caught:
        collect_inputs(bids, fmriprep, space=MNI, resolution="2")
    message = str(caught.value)
    assert caught.value.exit_code == 65, message
    assert f"run-01_space-{MNI}_res-2_desc-preproc_bold.json" in message, message
    assert f"bids:raw:{other}" in message and "sub-01/ses-01/func/sub-01_ses-01_task-images_run-01_bold.nii.gz" \
        in message, message


def test_sources_naming_the_run_by_another_path_are_accepted(dataset):
    """The raw dataset may sit elsewhere than where fMRIPrep read it (DatasetLinks ``raw`` was ``/data``): the run is
    recognised by its entities, ``run-1`` as ``run-01``."""
    bids, fmriprep = dataset(["01"], sources={"01": "sub-01/ses-01/func/sub-01_ses-01_task-images_run-1_bold.nii.gz"})
    (run,) = collect_inputs(bids, fmriprep, space=MNI, resolution="2")["01"].runs
    assert run.run == "01"


# --------------------------------------------------------------------------------------------------------------------
# session-wise anatomy


def test_session_wise_anatomical_references_refuse_pooling_anatomical_space_across_sessions(dataset):
    bids, fmriprep = dataset(["01", "02"], anatomy="sessionwise")
    assert sorted(anatomical_references(fmriprep, "01")) == ["01", "02"]
    with pytest.raises(BadDataError) as caught:
        collect_inputs(bids, fmriprep, space="T1w", resolution=None)
    message = str(caught.value)
    assert caught.value.exit_code == 65, message
    assert "sub-01_ses-01_desc-preproc_T1w.nii.gz" in message and "sub-01_ses-02_desc-preproc_T1w.nii.gz" in message
    assert "--session-label" in message and "--space MNI152NLin2009cAsym" in message, message
    # a template space is one space across sessions; one session is one reference
    assert len(collect_inputs(bids, fmriprep, space=MNI, resolution="2")["01"].runs) == 2
    assert len(collect_inputs(bids, fmriprep, session_label=["02"], space="T1w", resolution=None)["01"].runs) == 1


def test_one_anatomical_reference_filed_under_a_session_serves_every_session(dataset):
    bids, fmriprep = dataset(["01", "02"])
    anat = fmriprep / "sub-01" / "anat"
    moved = fmriprep / "sub-01" / "ses-01" / "anat"
    moved.mkdir(parents=True)
    for path in anat.iterdir():
        path.rename(moved / path.name.replace("sub-01_", "sub-01_ses-01_"))
    assert list(anatomical_references(fmriprep, "01")) == ["01"]
    assert len(collect_inputs(bids, fmriprep, space="T1w", resolution=None)["01"].runs) == 2


def test_minimal_level_stops_the_command_line_with_exit_66_and_the_advice_in_the_log(dataset, tmp_path, monkeypatch):
    from bids_recon.cli.run import main

    bids, fmriprep = dataset(["01"], level="minimal")
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path / "templateflow"))
    out = tmp_path / "out"
    code = main([str(bids), str(out), "participant", "-d", f"fmriprep={fmriprep}", "-w", str(tmp_path / "work"),
                 "--check-only", "--skip-bids-validation"])
    assert code == 66
    (log,) = out.glob("logs/*/bids_recon.log")
    assert f"--level full --output-spaces {MNI}:res-2" in log.read_text()


def test_slice_timing_start_time_is_read_and_checked(dataset, caplog):
    """fMRIPrep's StartTime (after slice-timing correction) reaches each run's inputs, said once per participant; a
    StartTime outside [0, TR) is bad data naming the sidecar; no correction: 0."""
    bids, fmriprep = dataset(["01"], raw_runs=("01", "02"), start_time=0.95)
    with caplog.at_level("INFO", logger="bids_recon.bids"):
        inputs = collect_inputs(bids, fmriprep, space=MNI, resolution="2")
    assert [run.start_time for run in inputs["01"].runs] == [0.95, 0.95]
    lines = [r.getMessage() for r in caplog.records if "StartTime" in r.getMessage()]
    assert len(lines) == 1 and "2 of 2 runs" in lines[0] and "0.95 s" in lines[0], lines
    sidecar = next(fmriprep.rglob(f"*run-02*space-{MNI}_res-2_desc-preproc_bold.json"))
    sidecar.write_text(json.dumps(json.loads(sidecar.read_text()) | {"StartTime": 2 * TR}))
    with pytest.raises(BadDataError, match="StartTime") as raised:
        collect_inputs(bids, fmriprep, space=MNI, resolution="2")
    assert sidecar.name in str(raised.value)
    bids2 = bids.parent / "other"
    write_raw(bids2, ["01"])
    write_fmriprep(bids2 / "derivatives" / "fmriprep", ["01"])  # SliceTimingCorrected false, no StartTime
    inputs = collect_inputs(bids2, bids2 / "derivatives" / "fmriprep", space=MNI, resolution="2")
    assert {run.start_time for run in inputs["01"].runs} == {0.0}

